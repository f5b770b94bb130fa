/**
 * `cloister setup AGENT` end to end: the credential goes into the guardian's vault under the agent's
 * name, one kind at a time, never into a file or an output; the guardian hands it out only over its
 * control socket.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { resolvePaths } from "../../src/config/paths.js";
import { agentCredentialFromGuardian } from "../../src/guardian/control-client.js";
import { CLI, createInstance, startCommand, waitUntil, type CliResult, type TestInstance } from "../helpers/cloister.js";

describe("cloister setup", () => {
  let t: TestInstance;
  const apiKey = `sk-ant-api03-CANARY-${Date.now()}`;
  const oauthToken = `sk-ant-oat01-CANARY-${Date.now()}`;
  const credential = () => agentCredentialFromGuardian(resolvePaths({ CLOISTER_HOME: t.home }), "claude", "0123abcd");
  /** A cloister gets a placeholder of the stored value's shape, never the value (the broker swaps it on egress). */
  const assertPlaceholderOf = (got: { kind: string; value: string } | undefined, kind: string, real: string, prefix: string) => {
    assert.equal(got?.kind, kind);
    assert.notEqual(got?.value, real);
    assert.ok(got?.value.startsWith(prefix), got?.value);
    assert.ok((got?.value.length ?? 0) >= real.length);
  };

  before(() => {
    t = createInstance("su");
  });
  after(() => t.teardown());

  it("stores an API key from stdin and hands it out as the agent's credential", async () => {
    const r = await t.cli(["setup", "claude", "--api-key"], { input: `${apiKey}\n` });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /Stored an Anthropic API key for claude/);
    assertPlaceholderOf(await credential(), "api_key", apiKey, "sk-ant-api03-");
  });

  it("an OAuth token replaces the API key (one credential per agent)", async () => {
    const r = await t.cli(["setup", "claude", "--oauth-token"], { input: oauthToken });
    assert.equal(r.code, 0, r.stderr);
    // Said, not done silently (QA A10).
    assert.match(r.stderr, /\nRemoved the API key stored before for claude \(claude\.api_key\): an agent has one credential\.\n$/);
    assertPlaceholderOf(await credential(), "oauth_token", oauthToken, "sk-ant-oat01-");
    const list = JSON.parse((await t.cli(["secret", "list", "--json"])).stdout) as { name: string }[] | { secrets: { name: string }[] };
    const names = (Array.isArray(list) ? list : list.secrets).map((s) => s.name);
    assert.deepEqual(names, ["claude.oauth_token"]);
  });

  it("refuses what an agent does not take, an unknown agent, and a missing kind on stdin", async () => {
    const codex = await t.cli(["setup", "codex", "--oauth-token"], { input: "x" });
    assert.equal(codex.code, 125);
    assert.match(codex.stderr, /codex does not take an OAuth token/);
    const unknown = await t.cli(["setup", "nope", "--api-key"], { input: "x" });
    assert.match(unknown.stderr, /no built-in agent named "nope"/);
    const ambiguous = await t.cli(["setup", "claude"], { input: "x" });
    assert.match(ambiguous.stderr, /add --api-key or --oauth-token/);
  });

  it("an empty stdin is refused with an example of this command, not of another", async () => {
    const empty = await t.cli(["setup", "claude", "--api-key"], { input: "" });
    assert.equal(empty.code, 125);
    assert.match(empty.stderr, /nothing on stdin \(pipe the value in, e\.g\. printf %s "\$VALUE" \| cloister setup claude --api-key\)/);
  });

  it("the values appear in no file, log or output outside the vault's ciphertext", async () => {
    const outputs = [await t.cli(["secret", "list", "--json"]), await t.cli(["secret", "status", "--json"]), await t.cli(["config", "show"])];
    for (const r of outputs) assert.ok(!r.stdout.includes(oauthToken) && !r.stderr.includes(oauthToken));
    const files: string[] = [];
    const walk = (dir: string): void => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) walk(path);
        else if (entry.isFile()) files.push(path);
      }
    };
    walk(t.home);
    for (const file of files) {
      const text = readFileSync(file, "latin1");
      assert.ok(!text.includes(oauthToken) && !text.includes(apiKey), `a credential in plain text in ${file}`);
    }
  });

  it("a value unlike the agent's key is stored with a warning, not refused: formats change (QA: stored without a word)", async () => {
    const r = await t.cli(["setup", "gemini", "--api-key"], { input: "notakey\n" });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^Warning: this does not look like a Gemini API key, which starts with AIza .*\nStored a Gemini API key for gemini/);
    assert.ok((await storedNames()).includes("gemini.api_key"));
  });

  describe("the wizard, in a terminal", () => {
    /** `cloister setup claude` in a terminal (script(1)), answered prompt by prompt. */
    async function wizard(answers: readonly (readonly [prompt: string, typed: string])[]): Promise<CliResult> {
      const live = startCommand("script", ["-qec", `${process.execPath} ${CLI} setup claude`, "/dev/null"], { env: t.env, cwd: t.project, timeoutMs: 60_000 });
      let seen = 0;
      for (const [prompt, typed] of answers) {
        await waitUntil(`the prompt ${JSON.stringify(prompt)}`, () => live.output().indexOf(prompt, seen) >= 0 || live.child.exitCode !== null);
        seen = live.output().indexOf(prompt, seen) + prompt.length;
        live.child.stdin?.write(`${typed}\r`);
      }
      return live.done;
    }
    const garbage: [string, string][] = [["Choice [1]: ", "2"], ["Anthropic API key: ", "garbage"], ["(again): ", "garbage"]];

    it("asks before a credential of the other kind is replaced, and no keeps it (QA: a garbage token replaced a working key unasked)", async () => {
      assert.deepEqual(await storedNames(), ["claude.oauth_token", "gemini.api_key"]);
      const kept = await wizard([...garbage, ["Replace it? [y/N] ", "n"]]);
      assert.equal(kept.code, 125, kept.stdout);
      assert.match(kept.stdout, /Warning: this does not look like an Anthropic API key/);
      assert.match(kept.stdout, /An OAuth token is stored for claude; an agent has one credential, so storing an Anthropic API key removes it\. Replace it\? \[y\/N\] /);
      assert.match(kept.stdout, /kept the OAuth token stored for claude; nothing was changed/);
      assert.deepEqual(await storedNames(), ["claude.oauth_token", "gemini.api_key"]);

      const replaced = await wizard([...garbage, ["Replace it? [y/N] ", "y"]]);
      assert.equal(replaced.code, 0, replaced.stdout);
      assert.match(replaced.stdout, /Removed the OAuth token stored before for claude/);
      assert.deepEqual(await storedNames(), ["claude.api_key", "gemini.api_key"]);
    });
  });

  async function storedNames(): Promise<string[]> {
    const secrets = JSON.parse((await t.cli(["secret", "list", "--json"])).stdout) as { name: string }[];
    return secrets.map((secret) => secret.name).sort();
  }
});
