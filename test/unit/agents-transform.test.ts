import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parse as parseToml } from "smol-toml";
import { rewritePaths, transformConfigText, type Transformed } from "../../src/agents/config-transform.js";
import { isExcluded } from "../../src/agents/copy.js";
import { looksSecret, looksSecretArgument, textHoldsSecret } from "../../src/agents/looks-secret.js";
import { cloisterInstructions, withInstructions } from "../../src/agents/instructions.js";
import { launcherScript, shellQuote } from "../../src/agents/launch.js";
import { ALWAYS_EXCLUDED, resolveAgent } from "../../src/agents/registry.js";

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

/** A transform that must have parsed. */
function parsed(result: Transformed): Extract<Transformed, { ok: true }> {
  assert.ok(result.ok, result.ok ? "" : result.error);
  return result;
}

/** The JSON a transform writes, and where it left values out. */
function filtered(data: unknown, fileName = "settings.json"): { data: unknown; dropped: string[] } {
  const result = parsed(transformConfigText(fileName, JSON.stringify(data), MAP));
  return { data: JSON.parse(result.text), dropped: result.dropped };
}

describe("config files on their way in", () => {
  test("JSON: keys and values rewritten, secret-looking text values left out, numbers and variable names kept", () => {
    const input = JSON.stringify({ projects: { "/home/u/src/app": { ok: true } }, env: { API_TOKEN: "abc", PORT: "1" }, maxTokens: 4000, env_var: "GITHUB_TOKEN", headers: { Authorization: "Bearer x" } });
    const result = parsed(transformConfigText("settings.json", input, MAP));
    assert.deepEqual(JSON.parse(result.text), { projects: { "/work": { ok: true } }, env: { PORT: "1" }, maxTokens: 4000, env_var: "GITHUB_TOKEN", headers: {} });
    assert.deepEqual(result.dropped, ["env.API_TOKEN", "headers.Authorization"]);
  });

  test("JSON is always written from its parsed value: the first of two equal keys, hidden by the second, is not carried", () => {
    const input = '{"mcp": {"note": "ghp_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3d", "note": "hi"}, "a":   1}';
    assert.deepEqual(transformConfigText("x.json", input, MAP), { ok: true, text: '{\n  "mcp": {\n    "note": "hi"\n  },\n  "a": 1\n}\n', dropped: [] });
    // TOML cannot hide one: smol-toml refuses a key defined twice.
    assert.equal(transformConfigText("x.toml", 'note = "ghp_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3d"\nnote = "hi"\n', MAP).ok, false);
  });

  test("the extension is matched in any letters: keys.JSON is filtered as JSON", () => {
    assert.deepEqual(filtered({ token: "abc", theme: "dark" }, "keys.JSON"), { data: { theme: "dark" }, dropped: ["token"] });
    assert.equal(transformConfigText("C.Toml", "token = [", MAP).ok, false);
  });

  test("JSON or TOML that does not parse is an error, never carried as text", () => {
    assert.deepEqual(transformConfigText("x.json", '{ "token": "sk-x", /home/u/a', MAP).ok, false);
    assert.deepEqual(transformConfigText("x.toml", 'token = "sk-x"\n[broken', MAP).ok, false);
    assert.equal(parsed(transformConfigText("notes.md", "see /home/u/a", MAP)).text, "see /home/cl/a");
  });

  test("JSON nested deeper than the stack holds is an error like one that does not parse (red team: the launch crashed)", () => {
    const deep = transformConfigText("deep.json", `${"[".repeat(100_000)}${"]".repeat(100_000)}`, MAP);
    assert.deepEqual(deep, { ok: false, error: "nested too deeply to be read" });
  });

  test("JSON with comments and trailing commas (Gemini's settings.json): parsed, filtered, written as plain JSON", () => {
    const input = '{\n  // my theme\n  "ui": { "theme": "Dracula", },\n  /* "apiKey": "AIzaSyA-commented-out-0123456789abcdefgh" */\n  "env": { "GITHUB_TOKEN": "abc" },\n}\n';
    const result = parsed(transformConfigText("settings.json", input, MAP));
    assert.deepEqual(JSON.parse(result.text), { ui: { theme: "Dracula" }, env: {} });
    assert.deepEqual(result.dropped, ["env.GITHUB_TOKEN"]);
  });

  test("a comment is never carried, even when no value changes: it may hold a key commented out", () => {
    const json = parsed(transformConfigText("settings.json", '{"ui": 1} // "apiKey": "hunter2"\n', MAP));
    assert.deepEqual(json, { ok: true, text: '{\n  "ui": 1\n}\n', dropped: [] });
    const toml = parsed(transformConfigText("config.toml", 'model = "o3"\n# api_key = "hunter2"\n', MAP));
    assert.equal(toml.text, 'model = "o3"\n');
  });

  test("keys that end in key or pat after a separator hold secrets; words that only end in key do not", () => {
    const { data, dropped } = filtered({ env: { OPENAI_KEY: "sk-proj-x", OTHER_KEY: "v", GITHUB_PAT: "v" }, apiKey: "v", keybindings: "vim", hotkey: "ctrl+k", monkey: "v", key: "ctrl+s" });
    assert.deepEqual(data, { env: {}, keybindings: "vim", hotkey: "ctrl+k", monkey: "v", key: "ctrl+s" });
    assert.deepEqual(dropped, ["env.OPENAI_KEY", "env.OTHER_KEY", "env.GITHUB_PAT", "apiKey"]);
  });

  test("codex: a header named like a key in http_headers is left out; variable names stay", () => {
    const input = '[mcp_servers.corp]\nurl = "https://mcp.example.com"\nbearer_token_env_var = "GITHUB_TOKEN"\nhttp_headers = { "X-Corp-Key" = "abc", "X-Trace" = "on" }\nenv_http_headers = { "X-Api-Key" = "CORP_KEY" }\n\n[model_providers.corp]\nenv_key = "OPENAI_API_KEY"\n';
    const result = parsed(transformConfigText("config.toml", input, MAP));
    assert.deepEqual(result.dropped, ["mcp_servers.corp.http_headers.X-Corp-Key"]);
    assert.deepEqual(JSON.parse(JSON.stringify(parseToml(result.text))), {
      mcp_servers: { corp: { url: "https://mcp.example.com", bearer_token_env_var: "GITHUB_TOKEN", http_headers: { "X-Trace": "on" }, env_http_headers: { "X-Api-Key": "CORP_KEY" } } },
      model_providers: { corp: { env_key: "OPENAI_API_KEY" } },
    });
  });

  test("an all-caps value is a variable's name only where the key says so", () => {
    assert.ok(looksSecret("token", "ABC123XYZ"));
    assert.ok(looksSecret("api_key", "ABC123XYZ"));
    assert.ok(!looksSecret("token_var", "GH_TOKEN"));
    assert.ok(!looksSecret("tokenEnvVar", "GH_TOKEN"));
    assert.ok(looksSecret("env_key", "sk-not-a-variable-name"));
  });

  test("what stays under a secret key: a variable reference, a count of tokens", () => {
    const { data, dropped } = filtered({ headers: { Authorization: "Bearer ${GITHUB_TOKEN}", "X-Api-Key": "$CORP_KEY", Cookie: "${SESSION:-abc}" }, env: { MAX_THINKING_TOKENS: "10000", CLAUDE_CODE_MAX_OUTPUT_TOKENS: "32000" } });
    assert.deepEqual(data, { headers: { Authorization: "Bearer ${GITHUB_TOKEN}", "X-Api-Key": "$CORP_KEY" }, env: { MAX_THINKING_TOKENS: "10000", CLAUDE_CODE_MAX_OUTPUT_TOKENS: "32000" } });
    assert.deepEqual(dropped, ["headers.Cookie"]);
  });

  const SHAPES = {
    openai: "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t",
    anthropic: "sk-ant-api03-Ab3dEf6hIj9kLm2nOp5qRs8t",
    github: "ghp_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3d",
    githubOauth: "gho_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3d",
    githubUser: "ghu_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3d",
    githubServer: "ghs_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3d",
    githubFine: "github_pat_11AB3DEF0_Ab3dEf6hIj9kLm2nOp5qRs8t",
    gitlab: "glpat-Ab3dEf6hIj9kLm2nOp5q",
    slack: "xoxb-1234567890-Ab3dEf6hIj",
    google: "AIzaSyAb3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
    aws: "AKIAIOSFODNN7EXAMPLE",
    awsSession: "ASIAIOSFODNN7EXAMPLE",
    privateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
    jwt: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    inCommand: "curl -H 'Authorization: Bearer Ab3dEf6hIj9kLm2n' https://api.example.com",
    assignment: "GITHUB_TOKEN=abc123 ./deploy.sh",
    queryParameter: "https://api.example.com/v1?api_key=abc123",
    slackWebhook: "https://hooks.slack.com/services/T0000/B0000/Ab3dEf6hIj9kLm2n",
    discordWebhook: "https://discord.com/api/webhooks/123456789/Ab3dEf6hIj9kLm2n",
  };
  for (const [label, value] of Object.entries(SHAPES)) {
    test(`a value shaped like a secret is left out under any key: ${label}`, () => {
      assert.deepEqual(filtered({ note: value, theme: "dark" }), { data: { theme: "dark" }, dropped: ["note"] });
    });
  }

  test("innocent values that start like secrets are kept", () => {
    for (const value of ["task-list", "sk-short", "desk-ghp_x", "AKIA", "Bash(git commit:*)", "https://example.com/a?page=2", "model=o3", "C:\\Users\\me", "Uses Bearer authentication", "TOKEN=", "a:".repeat(100_000), "a=".repeat(100_000)]) {
      assert.ok(!looksSecret("note", value), value);
    }
  });

  test("a URL's password is left out under any key; the URL stays a URL", () => {
    const { data, dropped } = filtered({ gateway: "https://user:PASS@gateway.example.com/v1", mcp: { db: { args: ["postgres://admin:PASS@db/x"] } }, plain: "https://gateway.example.com:8443/x" });
    assert.deepEqual(data, { gateway: "https://user@gateway.example.com/v1", mcp: { db: { args: ["postgres://admin@db/x"] } }, plain: "https://gateway.example.com:8443/x" });
    assert.deepEqual(dropped, ["gateway (the password in its URL)", "mcp.db.args[0] (the password in its URL)"]);
  });

  test("MCP server args: secret options are left out, with their value or their option; the rest still runs", () => {
    const args = ["-y", "@corp/mcp", "--pat=ghp_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3d", "--token=abc", "--api-key", "abc", "--port", "8080", "-e", "GITHUB_TOKEN=abc", "--header", "X-Api-Key: abc", "--max-tokens", "4000", "--token-env-var", "GH_TOKEN", "--token", "--verbose"];
    const { data, dropped } = filtered({ mcpServers: { corp: { command: "npx", args } } });
    assert.deepEqual(data, { mcpServers: { corp: { command: "npx", args: ["-y", "@corp/mcp", "--port", "8080", "--max-tokens", "4000", "--token-env-var", "GH_TOKEN", "--token", "--verbose"] } } });
    const at = "mcpServers.corp.args";
    assert.deepEqual(dropped, [`${at}[2]`, `${at}[3]`, `${at}[5] with --api-key`, `${at}[9] with -e`, `${at}[11] with --header`]);
  });

  test("keys for passphrases, webhooks and auth as a word of its own hold secrets; author, oauth_client_id and authType do not", () => {
    const env = { DB_PASSPHRASE: "v", NPM_AUTH: "v", _auth: "v", npm_auth: "v", basicAuth: "v", SLACK_WEBHOOK_URL: "https://example.com/x" };
    const kept = { author: "me", oauth_client_id: "abc", selectedAuthType: "oauth-personal", authMethod: "browser", OAUTH: "on" };
    const { data, dropped } = filtered({ env: { ...env, ...kept } });
    assert.deepEqual(data, { env: kept });
    assert.deepEqual(dropped, Object.keys(env).map((key) => `env.${key}`));
  });

  test("MCP server args: --auth…, a bare --key, and a single letter's random-looking value are left out with their option", () => {
    const random = "3f9a1c0d8e7b6a5f4e3d2c1b";
    const args = ["-y", "srv", "--auth", "v1", "--auth-header", "v2", "--key", "v3", "--password", "v4", "--key=v5", "-k", random, "-k", "CANARY-shortopt", "-p", "8080", "--key-file", "/etc/k.pem", "-i", "my-server", `-t=${random}`];
    const { data, dropped } = filtered({ mcpServers: { x: { command: "npx", args } } });
    assert.deepEqual(data, { mcpServers: { x: { command: "npx", args: ["-y", "srv", "-k", "CANARY-shortopt", "-p", "8080", "--key-file", "/etc/k.pem", "-i", "my-server"] } } });
    const at = "mcpServers.x.args";
    assert.deepEqual(dropped, [`${at}[3] with --auth`, `${at}[5] with --auth-header`, `${at}[7] with --key`, `${at}[9] with --password`, `${at}[10]`, `${at}[12] with -k`, `${at}[21]`]);
    assert.ok(!looksSecretArgument("k", "https://example.com/a-long-url-1234567890"), "curl's -k before a URL");
  });

  test("a file's text: secret shapes and URL passwords anywhere; secrets set by name only where it is not prose", () => {
    for (const text of ['curl -H "Authorization: Bearer ghp_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3d" https://x', "slack:\n  token: xoxb-1234567890-Ab3dEf6hIj\n", "db = postgres://me:hunter2@db/x\n"]) {
      assert.ok(textHoldsSecret(text, false), text);
    }
    for (const text of ['[srv]\ntoken = "abc"\n', "slack:\n  webhook: https://example.com/x\n", "export NPM_AUTH=abc\n", "- api_key: abc\n", "X-Api-Key: abc\n", "GITHUB_TOKEN=abc ./deploy.sh\n", "run --password=abc\n"]) {
      assert.ok(textHoldsSecret(text, true), text);
      assert.ok(!textHoldsSecret(text, false), `prose: ${text}`);
    }
    const script = '#!/bin/sh\ntoken="$1"\nauth=$(cat ~/.config/x)\ncurl -H "Authorization: Bearer $TOKEN" -H "X-Api-Key: ${API_KEY}" https://x\nmax_tokens: 4000\ntoken_env_var = GH_TOKEN\napi_key: null\nsecret:\n';
    assert.ok(!textHoldsSecret(script, true));
    assert.ok(!textHoldsSecret("a: b\n".repeat(100_000) + "x=".repeat(100_000), true));
  });

  test("a command line that passes a secret as an argument, in a script or a hook's command (QA: these were carried)", () => {
    const passing = [
      'curl -s -H "X-Api-Key: 3f9a1c0d8e7b6a5f4e3d2c1b" https://x',
      "curl --header 'Authorization: token abc123' https://x",
      "wget --header='X-Api-Key: abc' https://x",
      "curl -u admin:hunter2hunter2 https://x",
      "curl --user=admin:hunter2 https://x",
      "if /usr/bin/curl -sf -uadmin:pw https://x; then echo ok; fi",
      "curl \\\n  --user admin:pw \\\n  https://x",
      "mysql -pHunter2Secret99 db",
      "mysqldump -u root -pHunter2 db > x.sql",
      "wget --http-password hunter2 https://x",
      "tool --api-key 3f9a1c0d8e7b https://x",
      "sshpass -p hunter2 ssh host",
      "redis-cli -a hunter2 ping",
    ];
    for (const line of passing) {
      assert.ok(textHoldsSecret(`#!/bin/sh\n${line}\n`, true), line);
      assert.ok(looksSecret("command", line), `a hook's command: ${line}`);
    }
    const carried = [
      "docker run -p 8080:80 -u 1000:1000 img",
      "ssh -p 2222 host",
      "mysql -p db",
      'mysql -p"$DB_PASS" db',
      'curl -u "$USER:$PASS" https://x',
      "curl -u admin: https://x",
      'curl -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" https://x',
      'wget --password "$(cat ~/.pw)" https://x',
      "tool --password --verbose",
      "grep -Hn token file",
    ];
    for (const line of carried) assert.ok(!textHoldsSecret(line, true), line);
  });

  test("the items of a list under a secret key are secrets", () => {
    assert.deepEqual(filtered({ tokens: ["abc", "def"], env_vars: ["GITHUB_TOKEN"], vars: { API_TOKEN: "abc" } }).data, { tokens: [], env_vars: ["GITHUB_TOKEN"], vars: {} });
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

  test(".env files, and .env.local and the like, are never copied", () => {
    for (const rel of [".env", ".env.local", "sub/.env.production"]) assert.ok(isExcluded(rel, ALWAYS_EXCLUDED), rel);
    for (const rel of ["env.json", ".envrc.md", "environment"]) assert.ok(!isExcluded(rel, ALWAYS_EXCLUDED), rel);
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
