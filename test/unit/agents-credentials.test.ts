import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { credentialDelivery, deliverCredential, findCredential, type Credential } from "../../src/agents/credentials.js";
import { resolveAgent } from "../../src/agents/registry.js";
import { CloisterError } from "../../src/errors.js";

const custom = resolveAgent("aider", { aider: { command: "aider", args: [], env: [], config_dirs: [], credential: { env: "OPENAI_API_KEY" } } });

describe("credential delivery: each agent the way it reads it", () => {
  test("claude: an API key in ANTHROPIC_API_KEY, an OAuth token in CLAUDE_CODE_OAUTH_TOKEN", () => {
    const claude = resolveAgent("claude", {});
    assert.deepEqual(deliverCredential(claude, { kind: "api_key", value: "sk-ant" }), { env: { ANTHROPIC_API_KEY: "sk-ant" }, files: [] });
    assert.deepEqual(deliverCredential(claude, { kind: "oauth_token", value: "oat" }), { env: { CLAUDE_CODE_OAUTH_TOKEN: "oat" }, files: [] });
  });

  test("codex: ~/.codex/auth.json as `codex login --with-api-key` writes it; no OAuth token", () => {
    const codex = resolveAgent("codex", {});
    const delivery = deliverCredential(codex, { kind: "api_key", value: "sk-oai" });
    assert.deepEqual(delivery.env, {});
    assert.equal(delivery.files[0]?.path, ".codex/auth.json");
    assert.deepEqual(JSON.parse(delivery.files[0]?.content ?? ""), { auth_mode: "apikey", OPENAI_API_KEY: "sk-oai" });
    assert.throws(() => deliverCredential(codex, { kind: "oauth_token", value: "x" }), (error: unknown) => error instanceof CloisterError && /codex takes: api key/.test(error.hint ?? ""));
  });

  test("gemini and custom agents: the variable they name", () => {
    assert.deepEqual(deliverCredential(resolveAgent("gemini", {}), { kind: "api_key", value: "g" }).env, { GEMINI_API_KEY: "g" });
    assert.deepEqual(deliverCredential(custom, { kind: "oauth_token", value: "t" }).env, { OPENAI_API_KEY: "t" });
  });

  test("a custom agent without a credential variable says where to declare one", () => {
    const bare = resolveAgent("bare", { bare: { command: "bare", args: [], env: [], config_dirs: [] } });
    assert.throws(() => deliverCredential(bare, { kind: "api_key", value: "x" }), (error: unknown) => error instanceof CloisterError && /agents\.bare\.credential\.env/.test(error.hint ?? ""));
  });
});

describe("credential sources", () => {
  const claude = resolveAgent("claude", {});
  const hostEnv = { ANTHROPIC_API_KEY: "from-host-env", PATH: "/bin" };
  const stored: Credential = { kind: "oauth_token", value: "from-vault" };

  test("the host environment is never used without --pass-env-credential", async () => {
    const warnings: string[] = [];
    assert.equal(await findCredential(claude, { cloisterId: "0123abcd", passEnv: false, hostEnv, warn: (w) => warnings.push(w) }), undefined);
    assert.deepEqual(await findCredential(claude, { cloisterId: "0123abcd", lookup: async () => stored, passEnv: false, hostEnv, warn: (w) => warnings.push(w) }), stored);
    assert.deepEqual(warnings, []);
  });

  test("with it, the host's variable wins, with a warning that names it", async () => {
    const warnings: string[] = [];
    const asked: string[] = [];
    const found = await findCredential(claude, { cloisterId: "0123abcd", lookup: async (name) => (asked.push(name), stored), passEnv: true, hostEnv, warn: (w) => warnings.push(w) });
    assert.deepEqual(found, { kind: "api_key", value: "from-host-env" });
    assert.deepEqual(asked, []);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? "", /passing ANTHROPIC_API_KEY from your environment/);
    assert.ok(!(warnings[0] ?? "").includes("from-host-env"), "the warning never shows the value");
  });

  test("with it but nothing set, the stored credential is used, and the user is told", async () => {
    const warnings: string[] = [];
    assert.deepEqual(await findCredential(claude, { cloisterId: "0123abcd", lookup: async () => stored, passEnv: true, hostEnv: {}, warn: (w) => warnings.push(w) }), stored);
    assert.match(warnings[0] ?? "", /ANTHROPIC_API_KEY and CLAUDE_CODE_OAUTH_TOKEN are not set/);
  });

  test("a stored real value is said to enter as it is once delivered; one the agent cannot take fails with that alone", async () => {
    const warnings: string[] = [];
    const real: Credential = { kind: "api_key", value: "v", placeholder: false };
    const sources = { cloisterId: "0123abcd", lookup: async () => real, passEnv: false, hostEnv: {}, warn: (w: string) => void warnings.push(w) };
    assert.deepEqual((await credentialDelivery(custom, sources)).env, { OPENAI_API_KEY: "v" });
    assert.match(warnings.pop() ?? "", /aider's stored credential enters the cloister as it is \(no injection rule for aider\.api_key\)/);
    const bare = resolveAgent("bare", { bare: { command: "bare", args: [], env: [], config_dirs: [] } });
    await assert.rejects(
      credentialDelivery(bare, sources),
      (error: unknown) => error instanceof CloisterError && /bare cannot use the stored api key \(bare\.api_key\): no variable is declared/.test(error.message) && /cloister secret rm bare\.api_key/.test(error.hint ?? ""),
    );
    assert.deepEqual(warnings, [], "no word of it entering the cloister");
    assert.deepEqual((await credentialDelivery(custom, { ...sources, lookup: async () => ({ ...real, placeholder: true }) })).env, { OPENAI_API_KEY: "v" });
    assert.deepEqual(warnings, [], "a placeholder is not the value");
  });

  test("the lookup is asked by agent name", async () => {
    const asked: string[] = [];
    await findCredential(resolveAgent("codex", {}), { cloisterId: "0123abcd", lookup: async (name) => (asked.push(name), undefined), passEnv: false, hostEnv: {}, warn: () => undefined });
    assert.deepEqual(asked, ["codex"]);
  });

  test("the launch's signal reaches the lookup, and its abort ends the wait even for a lookup that ignores it", async () => {
    const launch = new AbortController();
    const given: (AbortSignal | undefined)[] = [];
    const stalled = findCredential(claude, { cloisterId: "0123abcd", lookup: (_name, _id, options) => (given.push(options?.signal), new Promise<never>(() => undefined)), passEnv: false, hostEnv: {}, warn: () => undefined, signal: launch.signal });
    const reason = new CloisterError("interrupted (SIGINT) while starting");
    launch.abort(reason);
    await assert.rejects(stalled, (error: unknown) => error === reason);
    assert.deepEqual(given, [launch.signal]);
  });

  test("a lookup written for two arguments (before the signal) still works", async () => {
    const twoArguments = async (agent: string, cloisterId: string): Promise<Credential> => ({ kind: "api_key", value: `${agent}@${cloisterId}` });
    const found = await findCredential(claude, { cloisterId: "0123abcd", lookup: twoArguments, passEnv: false, hostEnv: {}, warn: () => undefined, signal: new AbortController().signal });
    assert.deepEqual(found, { kind: "api_key", value: "claude@0123abcd" });
  });
});
