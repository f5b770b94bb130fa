/**
 * Agents in a cloister, end to end with the built CLI, real bwrap and a real guardian: fake agent
 * executables (shell scripts that report what they see) for set-up, config carrying, path
 * rewriting and credentials; then the real agent CLIs from the npm registry, when it is reachable,
 * against local fake APIs reached through the guardian; and claude once more with its key stored in
 * the vault, over HTTPS that the guardian's credential broker intercepts to swap the placeholder
 * claude holds for the stored key.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { vaultCredentials } from "../../src/agents/vault-lookup.js";
import { runInCloister, type RunOptions } from "../../src/cloister.js";
import { resolvePaths } from "../../src/config/paths.js";
import { FAKE_REPLY, startFakeAnthropicApi, startFakeGeminiApi, startFakeOpenAiApi, type FakeAgentApi } from "../fixtures/fake-agent-api.js";
import { createTestCa, type TestCa } from "../fixtures/upstreams.js";
import { createInstance, leakedCanaries, trustUpstreamCa, waitUntil, withConfig, type TestInstance } from "../helpers/cloister.js";

/** Reports its arguments, environment names, credential, HOME and ~/.claude; edits /work when asked. */
const FAKE_CLAUDE = `#!/bin/sh
echo "ARGV:$*"
echo "ENV:$(env | cut -d= -f1 | sort | tr '\\n' ' ')"
echo "CRED:\${ANTHROPIC_API_KEY:+set}"
echo "HOME:$HOME"
echo "FILES:$(ls -A "$HOME/.claude" | tr '\\n' ' ')"
echo "SETTINGS:$(cat "$HOME/.claude/settings.json" | tr -d '\\n ')"
echo "TRUST:$(grep -c hasTrustDialogAccepted "$HOME/.claude.json")"
echo "RULES:$(grep -c 'You are running in a cloister' "$HOME/.claude/CLAUDE.md")"
case "$*" in *edit-work*) echo agent-was-here > /work/agent-edit.txt ;; esac
`;

const FAKE_CUSTOM = `#!/bin/sh
echo "ARGV:$*"
echo "CONF:$(cat "$HOME/.myagent/conf.txt")"
echo "FILES:$(ls -A "$HOME/.myagent" | tr '\\n' ' ')"
`;

function executable(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
  chmodSync(path, 0o755);
}

function line(output: string, label: string): string {
  return output.split("\n").find((l) => l.startsWith(`${label}:`))?.slice(label.length + 1) ?? "";
}

/** Hash of the host's agent config and secrets: must not change, whatever the agent does. */
function hostHash(t: TestInstance): string {
  const hash = createHash("sha256");
  const walk = (path: string) => {
    if (!existsSync(path) && !isLink(path)) return;
    const info = lstatSync(path);
    hash.update(`${path}:${info.mode}`);
    if (info.isSymbolicLink()) hash.update(readlinkSync(path));
    else if (info.isDirectory()) for (const name of readdirSync(path).sort()) walk(join(path, name));
    else hash.update(readFileSync(path));
  };
  for (const name of [".claude", ".claude.json", ".ssh", ".myagent"]) walk(join(t.hostHome, name));
  return hash.digest("hex");
}

function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

describe("agents in a cloister (fake agent executables)", () => {
  let t: TestInstance;
  let fakeBin: string;
  let hostBefore: string;
  before(() => {
    t = createInstance("ag");
    fakeBin = join(dirname(t.home), "fakebin");
    executable(join(fakeBin, "claude"), FAKE_CLAUDE);
    executable(join(fakeBin, "myagent"), FAKE_CUSTOM);
    t.env.PATH = `${fakeBin}:${t.env.PATH ?? ""}`;
    const claude = join(t.hostHome, ".claude");
    mkdirSync(join(claude, "projects"), { recursive: true });
    writeFileSync(join(claude, "settings.json"), JSON.stringify({ model: "opus", env: { GITHUB_TOKEN: t.canaries.envToken }, hooks: { Stop: `${t.project}/scripts/done.sh` } }));
    writeFileSync(join(claude, ".credentials.json"), JSON.stringify({ token: t.canaries.envToken }));
    writeFileSync(join(claude, "history.jsonl"), `${t.canaries.ssh}\n`);
    writeFileSync(join(claude, "CLAUDE.md"), "my rules\n");
    symlinkSync(join(t.hostHome, ".ssh"), join(claude, "ssh"));
    writeFileSync(join(t.hostHome, ".claude.json"), JSON.stringify({ theme: "dark", oauthAccount: { email: t.canaries.aws } }));
    mkdirSync(join(t.hostHome, ".myagent"));
    writeFileSync(join(t.hostHome, ".myagent", "conf.txt"), `src=${t.project}/src notes=${t.hostHome}/notes`);
    writeFileSync(join(t.hostHome, ".myagent", "keys.json"), JSON.stringify({ api_key: t.canaries.netrc, model: "m" }));
    hostBefore = hostHash(t);
  });
  after(async () => t.teardown());

  it("`run --agent claude -- -p hello` runs it with prompts skipped, its config carried and filtered, no host credential", async () => {
    const r = await t.cli(["run", "--agent", "claude", "--", "-p", "hello"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(line(r.stdout, "ARGV"), "--dangerously-skip-permissions -p hello");
    assert.equal(line(r.stdout, "CRED"), "", "ANTHROPIC_API_KEY of the host is not passed without --pass-env-credential");
    const env = line(r.stdout, "ENV").split(" ");
    assert.ok(env.includes("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"));
    assert.ok(!env.includes("ANTHROPIC_API_KEY") && !env.includes("GITHUB_TOKEN") && !env.includes("SSH_AUTH_SOCK"));
    assert.deepEqual(line(r.stdout, "FILES").trim().split(" ").sort(), ["CLAUDE.md", "settings.json"]);
    assert.equal(line(r.stdout, "SETTINGS"), '{"model":"opus","env":{},"hooks":{"Stop":"/work/scripts/done.sh"},"skipDangerousModePermissionPrompt":true}');
    assert.equal(line(r.stdout, "TRUST"), "1");
    assert.equal(line(r.stdout, "RULES"), "1");
    assert.deepEqual(leakedCanaries(t, r.stdout + r.stderr), []);
    assert.match(r.stderr, /settings\.json: env\.GITHUB_TOKEN looks like a secret; left out/);
    assert.match(r.stderr, /~\/\.claude\/ssh is a link to ~\/\.ssh, outside ~\/\.claude; not copied/);
  });

  it("--pass-env-credential hands over the host's ANTHROPIC_API_KEY, with a warning", async () => {
    const r = await t.cli(["run", "--agent", "claude", "--pass-env-credential", "--", "-p", "x"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(line(r.stdout, "CRED"), "set");
    assert.match(r.stderr, /passing ANTHROPIC_API_KEY from your environment into the cloister/);
    assert.deepEqual(leakedCanaries(t, r.stdout + r.stderr), []);
  });

  it("the agent can edit a file in /work", async () => {
    const r = await t.cli(["run", "--agent", "claude", "--", "edit-work"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(join(t.project, "agent-edit.txt"), "utf8"), "agent-was-here\n");
  });

  it("an unknown agent, or one not installed, exits 125 and says what to do", async () => {
    const unknown = await t.cli(["run", "--agent", "nope", "--", "x"]);
    assert.equal(unknown.code, 125);
    assert.match(unknown.stderr, /unknown agent "nope".*known agents: claude, codex, gemini/);
    const missing = await t.cli(["run", "--agent", "gemini", "--", "x"]);
    assert.equal(missing.code, 125);
    assert.match(missing.stderr, /gemini is not installed.*cloister agent install gemini/);
    const noDefault = await t.cli(["run", "--agent", "--", "x"]);
    assert.equal(noDefault.code, 125);
    assert.match(noDefault.stderr, /no default agent configured/);
  });

  it("`start -d --agent` sets it up; `start --agent` opens it; the cloister keeps running; another agent needs a restart", async () => {
    const started = await t.cli(["start", "-d", "--agent", "claude", "--name", "agentbox"]);
    assert.equal(started.code, 0, started.stderr);
    assert.match(started.stderr, /Started cloister agentbox \(project at \/work, set up for claude\)\. Open claude with: cloister start --name agentbox --agent claude/);
    try {
      const entered = await t.cli(["start", "--agent", "claude", "--name", "agentbox"]);
      assert.equal(entered.code, 0, entered.stderr);
      assert.equal(line(entered.stdout, "ARGV"), "--dangerously-skip-permissions");
      assert.match(entered.stderr, /Left cloister agentbox; it is still running/);
      // The agent's own arguments after -- (QA: there was no way to pass --resume).
      const resumed = await t.cli(["start", "--agent", "claude", "--name", "agentbox", "--", "--resume", "two words"]);
      assert.equal(resumed.code, 0, resumed.stderr);
      assert.equal(line(resumed.stdout, "ARGV"), "--dangerously-skip-permissions --resume two words");
      for (const [args, message] of [
        [["--", "--resume"], /arguments after -- are the agent's, and no --agent was given/],
        [["-d", "--agent", "claude", "--", "--resume"], /-d starts the cloister without opening the agent/],
      ] as const) {
        const refused = await t.cli(["start", "--name", "agentbox", ...args]);
        assert.equal(refused.code, 125, refused.stderr);
        assert.match(refused.stderr, message);
      }
      const onPath = await t.cli(["exec", "agentbox", "--", "sh", "-c", "command -v claude"]);
      assert.equal(onPath.stdout.trim(), "/run/cloister/agent-bin/claude");
      // The launcher and the host's install are read-only inside: the agent cannot plant code the host runs.
      const tamper = await t.cli(["exec", "agentbox", "--", "sh", "-c", `echo evil > /run/cloister/agent-bin/claude; echo evil > ${join(fakeBin, "claude")}; echo done`]);
      assert.equal(tamper.stdout.trim(), "done");
      assert.match(tamper.stderr, /Read-only file system[\s\S]*Read-only file system/);
      assert.equal(readFileSync(join(fakeBin, "claude"), "utf8"), FAKE_CLAUDE);
      const other = await t.cli(["start", "--agent", "codex", "--name", "agentbox"]);
      assert.equal(other.code, 125);
      assert.match(other.stderr, /set up for claude, not codex.*cloister stop agentbox/);
    } finally {
      await t.cli(["stop", "agentbox"]);
    }
  });

  it("a custom agent from config: its command, arguments and config dir, host paths rewritten, secrets left out", async () => {
    const agent = `agents:\n  mine:\n    command: ${join(fakeBin, "myagent")}\n    args: [--fixed]\n    config_dirs: [~/.myagent]\n    skip_permissions_args: [--yes]\n`;
    await withConfig(t, (config) => config.replace(/^agents:\n((?:  #.*\n)*)  \{\}\n/m, agent), async () => {
      const r = await t.cli(["run", "--agent", "mine", "--", "hello"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(line(r.stdout, "ARGV"), "--fixed --yes hello");
      assert.match(line(r.stdout, "CONF"), /^src=\/work\/src notes=\/home\/[^/]+\/notes$/);
      assert.deepEqual(line(r.stdout, "FILES").trim().split(" ").sort(), ["conf.txt", "keys.json"]);
      assert.deepEqual(leakedCanaries(t, r.stdout + r.stderr), []);
      const list = await t.cli(["agent", "list", "--json"]);
      const rows = JSON.parse(list.stdout) as { name: string; found: boolean; how?: string; path?: string }[];
      assert.deepEqual(rows.map((row) => [row.name, row.found, row.how]), [["claude", true, "PATH"], ["codex", false, undefined], ["gemini", false, undefined], ["mine", true, "config"]]);
    });
  });

  it("a credential stored with `cloister setup claude` reaches the agent, without any flag", async () => {
    const stored = await t.cli(["setup", "claude", "--api-key"], { input: "sk-ant-stored-for-test" });
    assert.equal(stored.code, 0, stored.stderr);
    const r = await t.cli(["run", "--agent", "claude", "--", "-p", "x"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(line(r.stdout, "CRED"), "set");
    assert.doesNotMatch(r.stderr, /from your environment/);
    const shell = await t.cli(["run", "--", "sh", "-c", "echo ${ANTHROPIC_API_KEY:-none}"]);
    assert.equal(shell.stdout.trim(), "none", "a cloister not set up for the agent does not get its credential");

    // The library: no credential unless asked for, the vault's with vaultCredentials (the CLI's lookup).
    const paths = resolvePaths({ CLOISTER_HOME: t.home });
    const asUser = { PATH: process.env.PATH, HOME: process.env.HOME };
    Object.assign(process.env, { PATH: t.env.PATH, HOME: t.env.HOME }); // where the library finds the agent and its config
    try {
      const outputOf = async (options: RunOptions) => {
        let stdout = "";
        const sink = new Writable({ write: (chunk: Buffer, _encoding, done) => void ((stdout += chunk.toString()), done()) });
        assert.equal(await runInCloister(["-p", "x"], { project: t.project, paths, agent: "claude", ...options }, { stdout: sink }), 0);
        return stdout;
      };
      assert.equal(line(await outputOf({}), "CRED"), "");
      assert.equal(line(await outputOf({ credentials: vaultCredentials(paths) }), "CRED"), "set");
    } finally {
      Object.assign(process.env, asUser);
    }
    // In a running cloister set up for claude, `exec NAME -- claude` is the agent with its credential
    // (QA: only the shell `start` opens had it); an explicit --env of the same name wins.
    const started = await t.cli(["start", "-d", "--agent", "claude", "--name", "credbox"]);
    assert.equal(started.code, 0, started.stderr);
    try {
      const agent = await t.cli(["exec", "credbox", "--", "claude", "-p", "x"]);
      assert.equal(agent.code, 0, agent.stderr);
      assert.equal(line(agent.stdout, "CRED"), "set");
      const explicit = await t.cli(["exec", "--env", "ANTHROPIC_API_KEY=mine", "credbox", "--", "sh", "-c", "echo $ANTHROPIC_API_KEY"]);
      assert.equal(explicit.stdout.trim(), "mine");
    } finally {
      await t.cli(["stop", "credbox"]);
    }
  });

  it("the host's agent config and secrets are unchanged after all of it", () => {
    assert.equal(hostHash(t), hostBefore);
  });
});

/** Whether the npm registry answers (there is no internet here, but the registry may be reachable). */
function registryReachable(): boolean {
  return spawnSync("npm", ["view", "@anthropic-ai/claude-code", "version"], { timeout: 30_000, stdio: "ignore" }).status === 0;
}

describe("real agent CLIs from the npm registry", { skip: registryReachable() ? false : "the npm registry is not reachable" }, () => {
  let t: TestInstance;
  before(() => {
    t = createInstance("agr");
    // npm runs as the user: their CA settings (a TLS-inspecting proxy) and their cache (a second run
    // downloads nothing), not the fake HOME's.
    for (const name of ["NODE_EXTRA_CA_CERTS", "npm_config_cafile"]) if (process.env[name]) t.env[name] = process.env[name];
    t.env.npm_config_cache = process.env.npm_config_cache ?? join(process.env.HOME ?? "/root", ".npm");
  });
  after(async () => t.teardown());

  /**
   * `cloister run --agent NAME` against a fake API at fake.test, reached through the guardian; the
   * agent must answer with the fake's reply. Returns the requests the fake saw.
   */
  async function runAgainst(start: () => Promise<FakeAgentApi>, agent: string, credential: Record<string, string>, args: (port: number) => string[], env: (port: number) => string[] = () => []) {
    const api = await start();
    try {
      Object.assign(t.env, credential);
      const session = ["--resolve", "fake.test=127.0.0.1", "--allow-private", `fake.test:${api.port}`, ...env(api.port).flatMap((e) => ["--env", e])];
      const r = await t.cli(["run", "--agent", agent, "--pass-env-credential", ...session, "--", ...args(api.port)], { timeoutMs: 120_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(FAKE_REPLY));
      return api.requests;
    } finally {
      await api.close();
    }
  }

  for (const [agent, version] of [
    ["claude", /^\d+\.\d+\.\d+ \(Claude Code\)$/m],
    ["codex", /^codex-cli \d+\.\d+\.\d+/m],
    ["gemini", /^\d+\.\d+\.\d+$/m],
  ] as const) {
    it(`cloister agent install ${agent}, then --version inside a cloister`, async () => {
      const installed = await t.cli(["agent", "install", agent], { timeoutMs: 600_000 });
      assert.equal(installed.code, 0, installed.stderr);
      assert.match(installed.stderr, new RegExp(`Installed ${agent} \\d`));
      const r = await t.cli(["run", "--agent", agent, "--", "--version"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, version);
    });
  }

  it("a re-install or uninstall leaves a running cloister's claude working (QA A6: it was deleted under it)", async () => {
    const started = await t.cli(["start", "-d", "--agent", "claude", "--name", "keeps-claude"]);
    assert.equal(started.code, 0, started.stderr);
    try {
      const again = await t.cli(["agent", "install", "claude"], { timeoutMs: 600_000 });
      assert.equal(again.code, 0, again.stderr);
      const removed = await t.cli(["agent", "uninstall", "claude"]);
      assert.match(removed.stderr, /Removed the managed copy of claude; cloisters running with it keep it until they stop\./);
      const r = await t.cli(["exec", "keeps-claude", "--", "claude", "--version"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^\d+\.\d+\.\d+ \(Claude Code\)$/m);
    } finally {
      await t.cli(["stop", "keeps-claude"]);
    }
    const reinstalled = await t.cli(["agent", "install", "claude"], { timeoutMs: 600_000 });
    assert.equal(reinstalled.code, 0, reinstalled.stderr);
    assert.deepEqual(readdirSync(join(t.home, "data", "agents")).filter((entry) => entry.includes("retired")), [], "the retired copies outlived their cloister");
  });

  it("claude: a prompt through the proxy to a fake API; its Write tool edits a file in /work", async () => {
    const requests = await runAgainst(startFakeAnthropicApi, "claude", { ANTHROPIC_API_KEY: "sk-ant-fake-for-test" }, () => ["-p", "WRITE /work/by-claude.txt written-by-claude"], (port) => [`ANTHROPIC_BASE_URL=http://fake.test:${port}`]);
    assert.equal(readFileSync(join(t.project, "by-claude.txt"), "utf8"), "written-by-claude\n");
    assert.ok(requests.length >= 2 && requests.every((req) => req.apiKey === "sk-ant-fake-for-test"));
  });

  it("codex: `exec` through the proxy to a fake Responses API, its key from ~/.codex/auth.json", async () => {
    const requests = await runAgainst(startFakeOpenAiApi, "codex", { OPENAI_API_KEY: "sk-openai-fake-for-test" }, (port) => ["-c", `openai_base_url="http://fake.test:${port}/v1"`, "exec", "say hello"]);
    assert.ok(requests.some((req) => req.path === "/v1/responses" && req.apiKey === "sk-openai-fake-for-test"));
  });

  it("gemini: `-p` through the proxy to a fake Gemini API", async () => {
    const requests = await runAgainst(startFakeGeminiApi, "gemini", { GEMINI_API_KEY: "gemini-fake-for-test" }, () => ["-p", "say hello"], (port) => [`GOOGLE_GEMINI_BASE_URL=http://fake.test:${port}`]);
    assert.ok(requests.some((req) => req.apiKey === "gemini-fake-for-test"));
  });
});

describe("real claude through the credential broker (TLS interception, placeholder swapped for the stored key)", { skip: registryReachable() ? false : "the npm registry is not reachable" }, () => {
  let t: TestInstance;
  let ca: TestCa;
  /** The shape of a real Anthropic API key; random, so finding it anywhere means it leaked. */
  const KEY = `sk-ant-api03-${randomBytes(70).toString("base64url").slice(0, 93)}-${randomBytes(6).toString("hex").slice(0, 6)}AA`;
  const audit = () =>
    readFileSync(join(t.home, "state", "audit", "audit.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((entry) => JSON.parse(entry) as Record<string, unknown>);

  before(() => {
    t = createInstance("agb");
    for (const name of ["NODE_EXTRA_CA_CERTS", "npm_config_cafile"]) if (process.env[name]) t.env[name] = process.env[name];
    t.env.npm_config_cache = process.env.npm_config_cache ?? join(process.env.HOME ?? "/root", ".npm");
    // The fake API's certificate comes from a test CA: the guardian verifies the upstream against it.
    ca = createTestCa();
    trustUpstreamCa(t.home, ca.certFile);
  });
  after(async () => {
    await t.teardown();
    rmSync(ca.dir, { recursive: true, force: true });
  });

  it("claude with its key from `cloister setup claude --api-key`, no flag: the fake API gets the key over HTTPS; claude and its tools only ever see the placeholder", async () => {
    const installed = await t.cli(["agent", "install", "claude"], { timeoutMs: 600_000 });
    assert.equal(installed.code, 0, installed.stderr);
    const api = await startFakeAnthropicApi({ tls: ca.issue(["fake.test"]) });
    try {
      const stored = await t.cli(["setup", "claude", "--api-key"], { input: KEY });
      assert.equal(stored.code, 0, stored.stderr);
      // The built-in rule injects claude.api_key for api.anthropic.com; this user rule (same value)
      // names the fake API instead.
      const rule = await t.cli(["secret", "set", "claude.api_key", "--host", `fake.test:${api.port}`, "--header", "x-api-key: {}"], { input: KEY });
      assert.equal(rule.code, 0, rule.stderr);

      // Claude's Bash tool writes what claude's environment holds into /work.
      const session = ["--resolve", "fake.test=127.0.0.1", "--allow-private", `fake.test:${api.port}`, "--env", `ANTHROPIC_BASE_URL=https://fake.test:${api.port}`];
      const r = await t.cli(["run", "--agent", "claude", ...session, "--", "-p", "BASH[printenv ANTHROPIC_API_KEY > /work/key-seen-by-claude.txt]"], { timeoutMs: 120_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(FAKE_REPLY));
      assert.doesNotMatch(r.stderr, /from your environment/);

      // Two requests at least: the tool call, then the answer after the tool's result.
      assert.ok(api.requests.length >= 2, JSON.stringify(api.requests));
      assert.deepEqual([...new Set(api.requests.map((req) => req.apiKey === KEY))], [true], "a request reached the API without the stored key");
      const seen = readFileSync(join(t.project, "key-seen-by-claude.txt"), "utf8").trim();
      assert.ok(seen.startsWith("sk-ant-api03-") && seen.length === KEY.length, `claude's tool did not see a placeholder of the key's shape: ${JSON.stringify(seen)}`);
      assert.notEqual(seen, KEY, "the stored key itself was inside the cloister");

      assert.ok(!(r.stdout + r.stderr).includes(KEY));
      assert.deepEqual(leakedCanaries(t, r.stdout + r.stderr + JSON.stringify(api.requests)), [], "the host's ANTHROPIC_API_KEY went somewhere");
      await waitUntil("the delivery and the injections are audited", () => {
        const events = audit();
        return events.some((e) => e.type === "secret.deliver" && e.agent === "claude" && e.placeholder === true) && events.some((e) => e.type === "credential.inject" && e.name === "claude.api_key" && e.host === "fake.test" && e.header === "x-api-key");
      });
      assert.ok(!JSON.stringify(audit()).includes(KEY), "the audit log holds the key");
    } finally {
      await api.close();
      rmSync(join(t.project, "key-seen-by-claude.txt"), { force: true });
    }
  });
});

describe("agent install, uninstall and list: what they say", () => {
  let t: TestInstance;
  before(() => {
    t = createInstance("agsay");
  });
  after(() => t.teardown());

  it("an npm package given for the agent's name is named as such, with the agent it belongs to", async () => {
    const r = await t.cli(["agent", "install", "@anthropic-ai/claude-code"]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /"@anthropic-ai\/claude-code" is the npm package of claude, not an agent's name \(name the agent: claude\)/);
    const versioned = await t.cli(["agent", "install", "@anthropic-ai/claude-code@1.0.0"]);
    assert.match(versioned.stderr, /is the npm package of claude/);
  });

  it("uninstall of an agent that has no managed copy says so", async () => {
    mkdirSync(join(t.home, "data", "agents", "codex"), { recursive: true });
    const r = await t.cli(["agent", "uninstall", "codex"]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /there is no managed copy of codex/);
  });

  it("list tells how to get a missing custom agent: PATH for one without an npm package, agent install for one with", async () => {
    // No guardian to reload: `agent list` reads the file.
    const file = join(t.home, "config", "config.yaml");
    const agents = "agents:\n  plain:\n    command: no-such-plain-agent\n  packaged:\n    command: no-such-packaged-agent\n    npm: some-agent-cli\n";
    writeFileSync(file, readFileSync(file, "utf8").replace(/^agents:\n((?:  #.*\n)*)  \{\}\n/m, agents));
    const rows = JSON.parse((await t.cli(["agent", "list", "--json"])).stdout) as { name: string; hint?: string }[];
    const hints = Object.fromEntries(rows.map((row) => [row.name, row.hint]));
    assert.equal(hints.plain, "put no-such-plain-agent on your PATH, or set agents.plain.command to its absolute path");
    assert.match(hints.packaged ?? "", /^install it with `cloister agent install packaged`, npm package some-agent-cli/);
    assert.match((await t.cli(["agent", "list"])).stdout, /plain +missing +- +- +put no-such-plain-agent on your PATH/);
  });
});
