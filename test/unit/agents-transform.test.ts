import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { looksSecret, rewritePaths, transformConfigText } from "../../src/agents/config-transform.js";
import { isExcluded } from "../../src/agents/copy.js";
import { cloisterInstructions, withInstructions } from "../../src/agents/instructions.js";
import { launcherScript, shellQuote } from "../../src/agents/launch.js";
import { resolveAgent } from "../../src/agents/registry.js";

const MAP = [
  ["/home/u/src/app", "/work"],
  ["/home/u", "/home/cl"],
] as const;

describe("host paths → cloister paths", () => {
  for (const [input, output] of [
    ["/home/u/src/app", "/work"],
    ["cd /home/u/src/app/lib && ls", "cd /work/lib && ls"],
    ['"/home/u/.claude/x"', '"/home/cl/.claude/x"'],
    ["/home/u/src/app2 stays", "/home/cl/src/app2 stays"],
    ["/home/user stays", "/home/user stays"],
    ["/x/home/u stays", "/x/home/u stays"],
    ["file:///home/u/notes", "file:///home/cl/notes"],
    ["~/notes stays", "~/notes stays"],
  ] as const) {
    test(JSON.stringify(input), () => assert.equal(rewritePaths(input, MAP), output));
  }
});

describe("config files on their way in", () => {
  test("JSON: keys and values rewritten, secret-looking text values left out, numbers and variable names kept", () => {
    const input = JSON.stringify({ projects: { "/home/u/src/app": { ok: true } }, env: { API_TOKEN: "abc", PORT: "1" }, maxTokens: 4000, env_var: "GITHUB_TOKEN", headers: { Authorization: "Bearer x" } });
    const result = transformConfigText("settings.json", input, MAP);
    assert.deepEqual(JSON.parse(result.text), { projects: { "/work": { ok: true } }, env: { PORT: "1" }, maxTokens: 4000, env_var: "GITHUB_TOKEN", headers: {} });
    assert.deepEqual(result.dropped, ["env.API_TOKEN", "headers.Authorization"]);
  });

  test("a file with nothing to change is left byte for byte", () => {
    const input = '{"a":   1}';
    assert.deepEqual(transformConfigText("x.json", input, MAP), { text: input, dropped: [], changed: false });
  });

  test("JSON that does not parse is treated as text", () => {
    assert.equal(transformConfigText("x.json", "{ /home/u/a", MAP).text, "{ /home/cl/a");
  });

  test("what looks secret", () => {
    assert.ok(looksSecret("OPENAI_API_KEY", "sk-1"));
    assert.ok(looksSecret("bearer_token", "x"));
    assert.ok(!looksSecret("bearer_token_env_var", "GH_TOKEN"));
    assert.ok(!looksSecret("max_tokens", 100));
    assert.ok(!looksSecret("env_key", "OPENAI_API_KEY"));
    assert.ok(!looksSecret("theme", "dark"));
  });

  test("exclusion patterns: top level, nested path, any depth, suffix", () => {
    assert.ok(isExcluded("projects", ["projects"]));
    assert.ok(!isExcluded("commands/projects", ["projects"]));
    assert.ok(isExcluded("plugins/repos", ["plugins/repos"]));
    assert.ok(isExcluded("a/b/.credentials.json", ["**/.credentials.json"]));
    assert.ok(isExcluded("x/update.lock", ["*.lock"]));
  });
});

describe("instructions", () => {
  test("appended once, replaced in place on the next set-up", () => {
    const block = cloisterInstructions("claude", true);
    const once = withInstructions("# Mine\n", block);
    assert.equal(once, `# Mine\n\n${block}`);
    assert.equal(withInstructions(once, block), once);
    const updated = withInstructions(`${once}\nmore of mine\n`, cloisterInstructions("claude", false));
    assert.equal(updated.split("cloister:begin").length, 2);
    assert.match(updated, /Network: none[\s\S]*more of mine\n$/);
    assert.equal(withInstructions("", block), block);
  });
});

describe("the launcher", () => {
  test("fixed environment and arguments, then the user's, safely quoted", () => {
    const agent = resolveAgent("claude", {});
    const script = launcherScript(agent, { how: "PATH", path: "/p/claude", realPath: "/p/claude", exec: "/p/it's/claude", mounts: [], links: [] }, {});
    assert.match(script, /^#!\/bin\/sh\n/);
    assert.match(script, /export CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC='1'\n/);
    assert.match(script, /exec '\/p\/it'\\''s\/claude' '--dangerously-skip-permissions' "\$@"\n$/);
    assert.equal(shellQuote("a'b"), `'a'\\''b'`);
  });

  test("a custom agent's host variables are passed by name, when set", () => {
    const agent = resolveAgent("aider", { aider: { command: "aider", args: ["--x"], env: ["AIDER_MODEL", "UNSET_ONE"], config_dirs: [] } });
    const script = launcherScript(agent, { how: "PATH", path: "/a", realPath: "/a", exec: "/a", mounts: [], links: [] }, { AIDER_MODEL: "gpt $HOME" });
    assert.match(script, /export AIDER_MODEL='gpt \$HOME'\n/);
    assert.doesNotMatch(script, /UNSET_ONE/);
    assert.match(script, /exec '\/a' '--x' "\$@"/);
  });
});
