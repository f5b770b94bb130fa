import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isExcluded } from "../../src/agents/copy.js";
import { agentNames, ALWAYS_EXCLUDED, BUILTIN_AGENTS, fixedArgs, resolveAgent } from "../../src/agents/registry.js";
import { ConfigError, parseConfigText } from "../../src/config/load.js";
import { CloisterError } from "../../src/errors.js";

const FILE = "/cfg/config.yaml";

function agents(yaml: string) {
  return parseConfigText(yaml, FILE, "global").agents;
}

function problem(yaml: string): { line: number; key: string; problem: string; hint?: string } {
  try {
    parseConfigText(yaml, FILE, "global");
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return { line: error.line, key: error.key, problem: error.problems[0]?.problem ?? "", hint: error.hint };
  }
  assert.fail("the config was accepted");
}

describe("agents: built-ins", () => {
  test("claude, codex and gemini, with their packages, config dirs and permission switches", () => {
    assert.deepEqual(Object.keys(BUILTIN_AGENTS), ["claude", "codex", "gemini"]);
    const claude = resolveAgent("claude", {});
    assert.equal(claude.npmPackage, "@anthropic-ai/claude-code");
    assert.deepEqual(claude.configPaths, [".claude"]);
    assert.deepEqual(fixedArgs(claude), ["--dangerously-skip-permissions"]);
    assert.equal(claude.instructionsFile, ".claude/CLAUDE.md");
    assert.deepEqual(claude.credentialEnv, { api_key: "ANTHROPIC_API_KEY", oauth_token: "CLAUDE_CODE_OAUTH_TOKEN" });
    assert.equal(claude.env.CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC, "1");
    for (const left of [".credentials.json", "history.jsonl", "projects", "statsig", "telemetry", "todos", "shell-snapshots", "file-history", "debug", "downloads", "paste-cache", "session-env", "plans", "tasks", "cache"]) {
      assert.ok(isExcluded(left, [...ALWAYS_EXCLUDED, ...claude.exclude]), left);
    }
    assert.deepEqual(fixedArgs(resolveAgent("codex", {})), ["--dangerously-bypass-approvals-and-sandbox"]);
    assert.equal(resolveAgent("codex", {}).credentialFile, ".codex/auth.json");
    assert.deepEqual(fixedArgs(resolveAgent("gemini", {})), ["--yolo"]);
    assert.equal(resolveAgent("gemini", {}).credentialEnv.api_key, "GEMINI_API_KEY");
  });

  test("a built-in resolved twice is two copies (callers may not change the registry)", () => {
    const a = resolveAgent("claude", {});
    a.args.push("--x");
    assert.deepEqual(resolveAgent("claude", {}).args, []);
  });

  test("an unknown agent is a usage error listing the known ones", () => {
    assert.throws(() => resolveAgent("aider", {}), (error: unknown) => error instanceof CloisterError && /unknown agent "aider"/.test(error.message) && /claude, codex, gemini/.test(error.hint ?? ""));
  });

  test("an npm package given for an agent's name is named as such, with its agent when one has it", () => {
    const refusal = (name: string, config = {}): string => {
      try {
        resolveAgent(name, config);
      } catch (error) {
        if (error instanceof CloisterError) return error.oneLine();
      }
      return assert.fail("not refused");
    };
    assert.equal(refusal("@anthropic-ai/claude-code"), `"@anthropic-ai/claude-code" is the npm package of claude, not an agent's name (name the agent: claude)`);
    assert.equal(refusal("aider-cli", agents("agents:\n  aider: {command: aider, npm: aider-cli}\n")), `"aider-cli" is the npm package of aider, not an agent's name (name the agent: aider)`);
    assert.match(refusal("@someone/agent"), /^"@someone\/agent" is not an agent's name \(give the agent's name, not an npm package; known agents: claude, codex, gemini;/);
  });
});

describe("agents: config", () => {
  test("a built-in can keep its permission prompts, or have them switched off another way", () => {
    const config = agents("agents:\n  claude:\n    skip_permissions: false\n  codex:\n    skip_permissions_args: [--full-auto]\n");
    assert.deepEqual(fixedArgs(resolveAgent("claude", config)), []);
    assert.deepEqual(fixedArgs(resolveAgent("codex", config)), ["--full-auto"]);
  });

  test("a custom agent: command, args, env names, config dirs, credential variable", () => {
    const config = agents(
      "agents:\n  aider:\n    command: /opt/aider/bin/aider\n    args: [--no-auto-commits]\n    env: [AIDER_MODEL]\n    config_dirs: [~/.aider, ~/.config/aider]\n    credential: {env: OPENAI_API_KEY}\n    skip_permissions_args: [--yes-always]\n    npm: aider-cli\n",
    );
    const aider = resolveAgent("aider", config);
    assert.equal(aider.builtin, false);
    assert.equal(aider.command, "/opt/aider/bin/aider");
    assert.deepEqual(fixedArgs(aider), ["--no-auto-commits", "--yes-always"]);
    assert.deepEqual(aider.passEnv, ["AIDER_MODEL"]);
    assert.deepEqual(aider.configPaths, [".aider", ".config/aider"]);
    assert.deepEqual(aider.credentialEnv, { api_key: "OPENAI_API_KEY", oauth_token: "OPENAI_API_KEY" });
    assert.equal(aider.npmPackage, "aider-cli");
    assert.deepEqual(agentNames(config), ["claude", "codex", "gemini", "aider"]);
  });

  test("a credential variable on codex replaces its auth.json", () => {
    const codex = resolveAgent("codex", agents("agents:\n  codex:\n    credential: {env: CODEX_API_KEY}\n"));
    assert.equal(codex.credentialFile, undefined);
    assert.equal(codex.credentialEnv.api_key, "CODEX_API_KEY");
  });

  test("defaults.agent: none by default; a known agent; an unknown one is an error at its line", () => {
    assert.equal(parseConfigText("", FILE, "global").defaults.agent, null);
    assert.equal(parseConfigText("defaults:\n  agent: codex\n", FILE, "global").defaults.agent, "codex");
    assert.equal(parseConfigText("defaults:\n  agent: mine\nagents:\n  mine: {command: mine}\n", FILE, "global").defaults.agent, "mine");
    const p = problem("defaults:\n  shell: /bin/sh\n  agent: aider\n");
    assert.deepEqual([p.line, p.key], [3, "defaults.agent"]);
    assert.match(p.problem, /unknown agent "aider".*claude, codex, gemini/);
  });

  for (const [yaml, line, key, message] of [
    ["agents:\n  aider: {}\n", 2, "agents.aider.command", /a custom agent needs a command/],
    ["agents:\n  claude:\n    skip_permission: false\n", 3, "agents.claude.skip_permission", /unknown key/],
    ["agents:\n  Aider: {command: aider}\n", 2, "agents.Aider", /not a valid agent name/],
    ["agents:\n  x:\n    command: bin/x\n", 3, "agents.x.command", /command name .* or an absolute path/],
    ["agents:\n  x:\n    command: x\n    env: [GITHUB_TOKEN]\n", 4, "agents.x.env[0]", /GITHUB_TOKEN is refused/],
    ["agents:\n  x:\n    command: x\n    config_dirs: [/etc/x]\n", 4, "agents.x.config_dirs[0]", /under your home directory/],
    ["agents:\n  x:\n    command: x\n    config_dirs: [~/../etc]\n", 4, "agents.x.config_dirs[0]", /contains/],
    ["agents:\n  x:\n    command: x\n    credential: {env: HTTPS_PROXY}\n", 4, "agents.x.credential.env", /set by cloister/],
    ["agents:\n  x:\n    command: x\n    credential: OPENAI_API_KEY\n", 4, "agents.x.credential", /expected a mapping \{env: NAME\}/],
    ["agents:\n  claude:\n    skip_permissions: yes\n", 3, "agents.claude.skip_permissions", /expected true or false/],
    ["agents: [claude]\n", 1, "agents", /expected a mapping of agent names/],
  ] as const) {
    test(`refused: ${JSON.stringify(yaml)}`, () => {
      const p = problem(yaml);
      assert.deepEqual([p.line, p.key], [line, key], p.problem);
      assert.match(p.problem, message);
    });
  }

  test("a misspelt key gets a suggestion", () => {
    assert.equal(problem("agents:\n  claude:\n    skip_permission: false\n").hint, 'did you mean "skip_permissions"?');
  });
});
