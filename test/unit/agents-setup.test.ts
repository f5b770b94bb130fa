import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { parse } from "smol-toml";
import type { Delivery } from "../../src/agents/credentials.js";
import { resolveAgent, type AgentConfigEntry } from "../../src/agents/registry.js";
import { setUpAgentHome } from "../../src/agents/setup.js";
import { updateJsonFile } from "../../src/agents/staged-files.js";

const CLOISTER_HOME = "/home/tester";
let base: string;
let hostHome: string;
let project: string;
let outside: string;
const canaries: Record<string, string> = {};

function canary(label: string): string {
  canaries[label] = `CANARY-${label}-${randomBytes(6).toString("hex")}`;
  return canaries[label];
}

function put(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

/** Every entry under `root`, with its content or link text: equal hashes mean nothing changed. */
function treeHash(root: string): string {
  const hash = createHash("sha256");
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const info = lstatSync(path);
      hash.update(`${path.slice(root.length)}:${info.mode}:`);
      if (info.isSymbolicLink()) hash.update(readlinkSync(path));
      else if (info.isDirectory()) walk(path);
      else hash.update(readFileSync(path));
    }
  };
  walk(root);
  return hash.digest("hex");
}

/** All text in files under `root` (links not followed). */
function allText(root: string): string {
  let out = "";
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      const info = lstatSync(path);
      if (info.isDirectory()) walk(path);
      else if (info.isFile()) out += readFileSync(path, "utf8");
    }
  };
  walk(root);
  return out;
}

function fakeHostHome(): void {
  const claude = join(hostHome, ".claude");
  put(join(claude, "settings.json"), JSON.stringify({ env: { GITHUB_TOKEN: canary("settingsToken"), FOO: "bar" }, hooks: { Stop: `${hostHome}/bin/notify.sh` }, model: "opus", apiKeyHelper: `${hostHome}/bin/key.sh` }));
  put(join(claude, "CLAUDE.md"), `# My rules\nThe project lives in ${project}; my notes are in ${hostHome}/notes.\nNot ${project}2 though.\n`);
  put(join(claude, ".credentials.json"), JSON.stringify({ claudeAiOauth: { accessToken: canary("claudeCredentials") } }));
  put(join(claude, "history.jsonl"), `{"display":"${canary("history")}"}\n`);
  put(join(claude, "projects", "-work", "session.jsonl"), canary("projects"));
  put(join(claude, "statsig", "x"), canary("statsig"));
  put(join(claude, "todos", "t.json"), canary("todos"));
  put(join(claude, "shell-snapshots", "s.sh"), canary("snapshots"));
  put(join(claude, "plugins", "repos", "r"), canary("pluginRepos"));
  put(join(claude, "plugins", "config.json"), JSON.stringify({ path: `${hostHome}/.claude/plugins/x` }));
  put(join(claude, "local", "node_modules", ".bin", "claude"), "#!/bin/sh\n");
  put(join(claude, "commands", "review.md"), "Review the diff.\n");
  put(join(claude, ".env.local"), `SECRET=${canary("claudeEnvLocal")}\n`);
  put(join(claude, "broken.json"), `{ "token": "${canary("brokenJson")}", `);
  symlinkSync("review.md", join(claude, "commands", "alias.md"));
  symlinkSync(join(hostHome, ".ssh"), join(claude, "sshlink"));
  symlinkSync(join(outside, "secret.txt"), join(claude, "agents.md"));
  put(join(hostHome, ".ssh", "id_ed25519"), canary("ssh"));
  put(join(outside, "secret.txt"), canary("outside"));
  put(join(hostHome, ".claude.json"), JSON.stringify({ theme: "light", oauthAccount: { emailAddress: canary("oauthAccount") }, projects: { [project]: { allowedTools: ["Bash"] } }, mcpServers: { gh: { env: { GH_TOKEN: canary("mcpToken") } } } }));

  const codex = join(hostHome, ".codex");
  put(
    join(codex, "config.toml"),
    `model = "o3"\napproval_policy = "on-request"\n\n[projects."${project}"]\ntrust_level = "trusted"\n\n[mcp_servers.gh]\ncommand = "gh-mcp"\nbearer_token_env_var = "GH_TOKEN"\nenv = { GITHUB_TOKEN = "${canary("codexMcp")}" }\n` +
      `args = ["--pat=${canary("codexArg")}", "--port", "8080"]\nhttp_headers = { "X-Corp-Key" = "${canary("codexHeader")}" }\n\n` +
      `[mcp_servers.db]\ncommand = "db-mcp"\nargs = ["postgres://admin:${canary("codexUrl")}@db/x"]\n`,
  );
  put(join(codex, "auth.json"), JSON.stringify({ OPENAI_API_KEY: canary("codexAuth") }));
  put(join(codex, "history.jsonl"), canary("codexHistory"));
  put(join(codex, "sessions", "2025", "s.jsonl"), canary("codexSessions"));
  put(join(codex, "AGENTS.md"), "Be brief.\n");

  const gemini = join(hostHome, ".gemini");
  put(
    join(gemini, "settings.json"),
    `{\n  // Gemini CLI reads comments and trailing commas\n  "ui": { "theme": "Dracula", },\n  "mcpServers": {\n    "gh": { "command": "gh-mcp", "args": ["--token", "${canary("geminiArg")}", "--port", "1"], "env": { "GITHUB_TOKEN": "${canary("geminiMcp")}" } },\n  },\n}\n`,
  );
  put(join(gemini, "oauth_creds.json"), canary("geminiOauth"));
  put(join(gemini, "google_accounts.json"), canary("geminiAccounts"));
  put(join(gemini, ".env"), `GEMINI_API_KEY=${canary("geminiEnv")}\n`);
  put(join(gemini, "tmp", "chat"), canary("geminiTmp"));
}

before(() => {
  base = realpathSync(mkdtempSync(join(tmpdir(), "agents-setup-")));
  hostHome = join(base, "host");
  project = join(base, "proj");
  outside = join(base, "outside");
  mkdirSync(project, { recursive: true });
  fakeHostHome();
});
after(() => rmSync(base, { recursive: true, force: true }));

let homeCount = 0;
function newHome(): string {
  const home = join(base, "data", "homes", `c${++homeCount}`);
  mkdirSync(home, { recursive: true });
  return home;
}

function setUp(name: string, homeDir: string, options: { delivery?: Delivery; config?: Record<string, AgentConfigEntry>; network?: boolean } = {}): string[] {
  const notes: string[] = [];
  setUpAgentHome({
    agent: resolveAgent(name, options.config ?? {}),
    hostHome,
    homeDir,
    cloisterHome: CLOISTER_HOME,
    projectRoot: project,
    network: options.network ?? true,
    delivery: options.delivery ?? { env: {}, files: [] },
    notes,
  });
  return notes;
}

/** TOML as plain data (smol-toml makes objects without a prototype). */
const parseToml = (text: string) => JSON.parse(JSON.stringify(parse(text))) as Record<string, any>;
const json = (path: string) => JSON.parse(readFileSync(path, "utf8")) as Record<string, any>;

describe("set-up: claude", () => {
  let home: string;
  let notes: string[];
  let hostBefore: string;
  before(() => {
    hostBefore = treeHash(base.replace(/$/, "/host"));
    home = newHome();
    notes = setUp("claude", home, { delivery: { env: { ANTHROPIC_API_KEY: "sk-ant-0123456789abcdefghijXYZ" }, files: [] } });
  });

  test("copies config, leaves out credentials, history, sessions, caches and the local install", () => {
    const claude = join(home, ".claude");
    assert.deepEqual(readdirSync(claude).sort(), ["CLAUDE.md", "commands", "plugins", "settings.json"]);
    assert.deepEqual(readdirSync(join(claude, "plugins")), ["config.json"]);
    assert.equal(readFileSync(join(claude, "commands", "review.md"), "utf8"), "Review the diff.\n");
  });

  test("no canary of the host reaches the cloister's HOME", () => {
    const text = allText(home);
    for (const [label, value] of Object.entries(canaries)) assert.ok(!text.includes(value), `${label} leaked`);
  });

  test("a link out of ~/.claude copies nothing; a link inside stays a relative link", () => {
    assert.equal(existsSync(join(home, ".claude", "sshlink")), false);
    assert.equal(existsSync(join(home, ".claude", "agents.md")), false);
    assert.equal(readlinkSync(join(home, ".claude", "commands", "alias.md")), "review.md");
    assert.ok(notes.some((n) => /sshlink is a link to ~\/\.ssh/.test(n)), notes.join("\n"));
  });

  test("secrets in settings.json are left out with a note; the rest is kept with host paths rewritten", () => {
    const settings = json(join(home, ".claude", "settings.json"));
    assert.deepEqual(settings.env, { FOO: "bar" });
    assert.equal(settings.apiKeyHelper, undefined);
    assert.equal(settings.hooks.Stop, `${CLOISTER_HOME}/bin/notify.sh`);
    assert.equal(settings.model, "opus");
    assert.equal(settings.skipDangerousModePermissionPrompt, true);
    assert.ok(notes.some((n) => n.includes("env.GITHUB_TOKEN looks like a secret")), notes.join("\n"));
    assert.equal(json(join(home, ".claude", "plugins", "config.json")).path, `${CLOISTER_HOME}/.claude/plugins/x`);
  });

  test("a JSON file that does not parse is left out with a note, never copied as it is", () => {
    assert.equal(existsSync(join(home, ".claude", "broken.json")), false);
    assert.ok(notes.some((n) => /~\/\.claude\/broken\.json does not parse \(.*\); not copied/.test(n)), notes.join("\n"));
  });

  test("CLAUDE.md: host paths rewritten at path boundaries, the cloister's instructions appended once", () => {
    const text = readFileSync(join(home, ".claude", "CLAUDE.md"), "utf8");
    assert.match(text, /^# My rules\nThe project lives in \/work; my notes are in \/home\/tester\/notes\.\n/);
    assert.ok(text.includes(`Not ${project}2 though.`), "a longer name that starts like the project is not rewritten");
    assert.equal(text.split("cloister:begin").length, 2);
    assert.match(text, /The project is at \/work/);
    assert.match(text, /HTTP 403 with a body starting\s+`cloister:`/);
    assert.match(text, /hostexec CMD ARGS/);
  });

  test(".claude.json: generated, onboarding done, /work trusted, only safe host keys, the API key pre-approved", () => {
    const data = json(join(home, ".claude.json"));
    assert.equal(data.hasCompletedOnboarding, true);
    assert.equal(data.bypassPermissionsModeAccepted, true);
    assert.equal(data.theme, "light");
    assert.deepEqual(Object.keys(data.projects), ["/work"]);
    assert.equal(data.projects["/work"].hasTrustDialogAccepted, true);
    assert.equal(data.oauthAccount, undefined);
    assert.equal(data.mcpServers, undefined);
    assert.deepEqual(data.customApiKeyResponses, { approved: ["3456789abcdefghijXYZ"], rejected: [] }, "Claude Code remembers a key by its last 20 characters");
    assert.equal(statSync(join(home, ".claude.json")).mode & 0o777, 0o600);
  });

  test("the host's files are unchanged", () => {
    assert.equal(treeHash(join(base, "host")), hostBefore);
  });

  test("idempotent: a second set-up gives the same HOME, instructions still once", () => {
    const first = treeHash(home);
    setUp("claude", home, { delivery: { env: { ANTHROPIC_API_KEY: "sk-ant-0123456789abcdefghijXYZ" }, files: [] } });
    assert.equal(treeHash(home), first);
  });
});

describe("set-up: a persistent HOME is redone, keeping the agent's own sessions", () => {
  test("sessions and a login made inside survive; config edited inside is replaced by the host's", () => {
    const home = newHome();
    setUp("claude", home);
    put(join(home, ".claude", "projects", "-work", "mine.jsonl"), "session");
    put(join(home, ".claude", ".credentials.json"), "login made inside");
    writeFileSync(join(home, ".claude", "settings.json"), "{}");
    put(join(home, ".claude", "junk"), "x");
    setUp("claude", home);
    assert.equal(readFileSync(join(home, ".claude", "projects", "-work", "mine.jsonl"), "utf8"), "session");
    assert.equal(readFileSync(join(home, ".claude", ".credentials.json"), "utf8"), "login made inside");
    assert.equal(json(join(home, ".claude", "settings.json")).model, "opus");
    assert.equal(existsSync(join(home, ".claude", "junk")), false);
    assert.deepEqual(readdirSync(join(base, "data", "homes")).filter((n) => n.startsWith(".agent-setup")), [], "no staging dir left behind");
  });

  test("links planted in the HOME from inside lead nowhere: nothing outside is written or moved", () => {
    const target = join(base, "victim");
    put(join(target, "keep.txt"), "victim");
    put(join(target, "projects", "p"), "victim's");
    const before = treeHash(target);
    const home = newHome();
    symlinkSync(target, join(home, ".claude"));
    symlinkSync(join(target, "keep.txt"), join(home, ".claude.json"));
    symlinkSync(target, join(home, ".config"));
    setUp("claude", home);
    setUp("mine", home, { config: { mine: { command: "mine", args: [], env: [], config_dirs: ["~/.config/mine"], instructions_file: "~/.config/mine/RULES.md" } } });
    assert.equal(treeHash(target), before);
    assert.ok(lstatSync(join(home, ".claude")).isDirectory());
    assert.ok(lstatSync(join(home, ".claude.json")).isFile());
    assert.ok(lstatSync(join(home, ".config")).isDirectory());
    assert.match(readFileSync(join(home, ".config", "mine", "RULES.md"), "utf8"), /cloister:begin/);
    assert.equal(existsSync(join(home, ".claude", "projects")), false, "a linked directory's contents are not kept as sessions");
  });
});

describe("set-up: codex", () => {
  test("config.toml parsed and written back: /work trusted, host project rewritten, secrets out, no duplicate tables", () => {
    const home = newHome();
    const notes = setUp("codex", home, { delivery: { env: {}, files: [{ path: ".codex/auth.json", content: '{"auth_mode":"apikey","OPENAI_API_KEY":"sk-test"}\n' }] } });
    const text = readFileSync(join(home, ".codex", "config.toml"), "utf8");
    const config = parseToml(text);
    assert.equal(config.model, "o3");
    assert.equal(config.approval_policy, "on-request");
    assert.deepEqual(Object.keys(config.projects), ["/work"]);
    assert.equal(config.projects["/work"].trust_level, "trusted");
    assert.equal(config.mcp_servers.gh.bearer_token_env_var, "GH_TOKEN", "a variable's name is not a secret");
    assert.deepEqual(config.mcp_servers.gh.env, {});
    assert.deepEqual(config.mcp_servers.gh.args, ["--port", "8080"]);
    assert.deepEqual(config.mcp_servers.gh.http_headers, {});
    assert.deepEqual(config.mcp_servers.db.args, ["postgres://admin@db/x"], "a URL's password is left out, the URL kept");
    for (const key of ["mcp_servers.gh.env.GITHUB_TOKEN", "mcp_servers.gh.args[0]", "mcp_servers.gh.http_headers.X-Corp-Key", "mcp_servers.db.args[0] (the password in its URL)"]) {
      assert.ok(notes.some((n) => n.includes(`${key} looks like a secret`)), `${key}: ${notes.join("\n")}`);
    }
    assert.deepEqual(readdirSync(join(home, ".codex")).sort(), ["AGENTS.md", "auth.json", "config.toml"]);
    assert.equal(json(join(home, ".codex", "auth.json")).OPENAI_API_KEY, "sk-test");
    assert.equal(statSync(join(home, ".codex", "auth.json")).mode & 0o777, 0o600);
    assert.match(readFileSync(join(home, ".codex", "AGENTS.md"), "utf8"), /^Be brief\.\n\n<!-- cloister:begin/);
  });

  test("a config.toml that does not parse is replaced, never appended to", () => {
    const host = join(hostHome, ".codex", "config.toml");
    const original = readFileSync(host, "utf8");
    writeFileSync(host, "[projects\nbroken = ");
    try {
      const home = newHome();
      const notes = setUp("codex", home);
      assert.deepEqual(parseToml(readFileSync(join(home, ".codex", "config.toml"), "utf8")), { projects: { "/work": { trust_level: "trusted" } } });
      assert.ok(notes.some((n) => /config\.toml does not parse/.test(n)), notes.join("\n"));
    } finally {
      writeFileSync(host, original);
    }
  });
});

describe("set-up: gemini", () => {
  test("credentials, .env and tmp left out; /work trusted; API-key auth chosen when a key is delivered", () => {
    const home = newHome();
    setUp("gemini", home, { delivery: { env: { GEMINI_API_KEY: "k" }, files: [] } });
    assert.deepEqual(readdirSync(join(home, ".gemini")).sort(), ["GEMINI.md", "settings.json", "trustedFolders.json"]);
    assert.deepEqual(json(join(home, ".gemini", "trustedFolders.json")), { "/work": "TRUST_FOLDER" });
  });

  test("settings.json with comments: filtered and updated, not replaced (MCP servers and theme kept, secrets out)", () => {
    const home = newHome();
    const notes = setUp("gemini", home, { delivery: { env: { GEMINI_API_KEY: "k" }, files: [] } });
    assert.deepEqual(json(join(home, ".gemini", "settings.json")), {
      ui: { theme: "Dracula" },
      mcpServers: { gh: { command: "gh-mcp", args: ["--port", "1"], env: {} } },
      security: { auth: { selectedType: "gemini-api-key" } },
    });
    assert.ok(!notes.some((n) => /does not parse/.test(n)), notes.join("\n"));
    const text = allText(join(home, ".gemini"));
    for (const label of ["geminiArg", "geminiMcp"]) assert.ok(!text.includes(canaries[label] ?? "?"), `${label} leaked`);
  });
});

describe("set-up: files that are not JSON or TOML", () => {
  const GHP = "ghp_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3d";
  let home: string;
  let notes: string[];
  before(() => {
    const dir = join(hostHome, ".tool");
    put(join(dir, "hooks", "notify.sh"), `#!/bin/sh\ncurl -H "Authorization: Bearer ${GHP}" https://api.github.com/x\n`);
    put(join(dir, "hooks", "ok.sh"), '#!/bin/sh\ntoken="$1"\ncurl -H "Authorization: Bearer $GITHUB_TOKEN" https://api.github.com/x\n');
    put(join(dir, "config.yaml"), `slack:\n  channel: dev\n  token: xoxb-1234567890-${canary("yaml")}\n`);
    put(join(dir, "settings.yaml"), "model: o3\nmax_tokens: 4000\n");
    put(join(dir, "x.cfg"), `[srv]\ntoken = "${canary("cfg")}"\n`);
    put(join(dir, "keys.JSON"), `{"token": "${canary("upperJson")}", "theme": "dark"}\n`);
    put(join(dir, "extra.json"), `{"mcp": {"note": "${GHP}", "note": "hi"}}\n`);
    put(join(dir, "odd.json"), `{"${GHP}": 1}\n`);
    put(join(dir, "NOTES.md"), `Token: ask the on-call person.\nThe key is ${GHP}.\n`);
    put(join(dir, "README.md"), "Password: ask the on-call person.\n");
    writeFileSync(join(dir, "blob.bin"), Buffer.concat([Buffer.from([0, 1, 2]), Buffer.from(GHP), Buffer.from([0])]));
    writeFileSync(join(dir, "icon.bin"), Buffer.from([0, 1, 2, 255, 0]));
    home = newHome();
    notes = setUp("tool", home, { config: { tool: { command: "tool", args: [], env: [], config_dirs: ["~/.tool"] } } });
  });

  test("one that holds a secret is left out whole, with a note; the others are copied", () => {
    const dir = join(home, ".tool");
    assert.deepEqual(readdirSync(dir).sort(), ["README.md", "extra.json", "hooks", "icon.bin", "keys.JSON", "settings.yaml"]);
    assert.deepEqual(readdirSync(join(dir, "hooks")), ["ok.sh"]);
    for (const rel of ["hooks/notify.sh", "config.yaml", "x.cfg", "odd.json", "NOTES.md", "blob.bin"]) {
      assert.ok(notes.includes(`~/.tool/${rel} looks like it holds a secret; not copied`), `${rel}: ${notes.join("\n")}`);
    }
    assert.ok(!allText(home).includes(GHP));
    for (const label of ["yaml", "cfg", "upperJson"]) assert.ok(!allText(home).includes(canaries[label] ?? "?"), `${label} leaked`);
  });

  test("JSON in any letters is filtered, and written from its value: a duplicate key's hidden value stays out", () => {
    assert.deepEqual(json(join(home, ".tool", "keys.JSON")), { theme: "dark" });
    assert.ok(notes.includes("~/.tool/keys.JSON: token looks like a secret; left out"), notes.join("\n"));
    assert.equal(readFileSync(join(home, ".tool", "extra.json"), "utf8"), '{\n  "mcp": {\n    "note": "hi"\n  }\n}\n');
  });
});

describe("staged files", () => {
  test("JSON with comments is updated as data, not replaced by a fresh file", () => {
    const file = join(base, "staged-settings.json");
    writeFileSync(file, '{\n  // mine\n  "ui": { "theme": "Dracula" },\n  "mcpServers": { "a": { "command": "a" } },\n}\n');
    const notes: string[] = [];
    updateJsonFile(file, notes, (data) => ({ ...data, added: true }));
    assert.deepEqual(json(file), { ui: { theme: "Dracula" }, mcpServers: { a: { command: "a" } }, added: true });
    assert.deepEqual(notes, []);
  });
});

describe("set-up: without network", () => {
  test("the instructions say there is none, and no hostexec", () => {
    const home = newHome();
    setUp("gemini", home, { network: false });
    const text = readFileSync(join(home, ".gemini", "GEMINI.md"), "utf8");
    assert.match(text, /Network: none/);
    assert.match(text, /hostexec` is not available/);
  });
});
