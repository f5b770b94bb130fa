import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { resolvePaths } from "../../src/config/paths.js";
import { Vault } from "../../src/guardian/vault/vault.js";
import { createInstance, type CliResult, type TestInstance } from "../helpers/cloister.js";

describe("cloister secret", () => {
  let t: TestInstance;
  let vaultFile: string;
  let keyFile: string;
  const value = `sk-canary-${randomBytes(16).toString("hex")}`;
  const output = (r: CliResult) => r.stdout + r.stderr;
  /** The stored value, read the way the guardian reads it (the test runs as the vault's owner). */
  const stored = (name: string) => Vault.open(resolvePaths({ CLOISTER_HOME: t.home }), { keySource: "keyfile" }).get(name);

  before(async () => {
    t = createInstance("sec");
    vaultFile = join(t.home, "data", "vault.json");
    keyFile = join(t.home, "state", "vault.key");
    const set = await t.cli(["secret", "set", "anthropic", "--description", "Claude key"], { input: `${value}\n` });
    assert.equal(set.code, 0, set.stderr);
    // The test environment has no session bus: the key file is used, and the user is told why.
    assert.match(set.stderr, /Created the vault; its key is in the key file .*vault\.key\./);
    assert.match(set.stderr, /Note: the OS keyring was not used: no D-Bus session bus/);
    assert.match(set.stderr, /Stored secret anthropic\./);
  });
  after(async () => t.teardown());

  it("stores the value from stdin with one trailing newline dropped", async () => {
    assert.equal(await stored("anthropic"), value);
    const twice = await t.cli(["secret", "set", "lines"], { input: "v\n\n" });
    assert.equal(twice.code, 0, twice.stderr);
    assert.equal(await stored("lines"), "v\n");
    const replaced = await t.cli(["secret", "set", "lines"], { input: "w" });
    assert.match(replaced.stderr, /Replaced the value of secret lines/);
    assert.equal(await stored("lines"), "w");
  });

  it("lists names and descriptions, never the value", async () => {
    const list = await t.cli(["secret", "list"]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^NAME\s+UPDATED\s+INJECTED FOR\s+DESCRIPTION\nanthropic\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+-\s+Claude key\n/);
    const json = await t.cli(["secret", "list", "--json"]);
    const secrets = JSON.parse(json.stdout) as { name: string; description: string | null }[];
    assert.deepEqual(
      secrets.map((s) => [s.name, s.description]),
      [
        ["anthropic", "Claude key"],
        ["lines", null],
      ],
    );
    const status = await t.cli(["secret", "status", "--json"]);
    assert.equal((JSON.parse(status.stdout) as { keySource: string }).keySource, "keyfile");
    for (const r of [list, json, status, await t.cli(["secret", "status"])]) assert.ok(!output(r).includes(value), "a listing shows the value");
  });

  it("keeps the vault and its key file private", () => {
    assert.equal(statSync(vaultFile).mode & 0o777, 0o600);
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    assert.ok(!readFileSync(vaultFile, "utf8").includes(value));
  });

  it("leaks the value into no log, audit record, config output or cloister", async () => {
    const shown = [await t.cli(["config", "show"]), await t.cli(["config", "show", "--json"])];
    const inside = await t.cli(["run", "--", "sh", "-c", `env; cat ~/.* 2>/dev/null; cat ${vaultFile} ${keyFile}`]);
    assert.match(inside.stderr, /No such file or directory/, "the vault files are visible inside the cloister");
    const auditDir = join(t.home, "state", "audit");
    const audit = readdirSync(auditDir).map((f) => readFileSync(join(auditDir, f), "utf8"));
    assert.match(audit.join(""), /"secret\.set".*"anthropic"|"anthropic".*"secret\.set"/, "setting a secret is audited by name");
    const places: [string, string][] = [
      ["guardian log", readFileSync(join(t.home, "state", "guardian.log"), "utf8")],
      ...audit.map((text, i): [string, string] => [`audit file ${i}`, text]),
      ...shown.map((r): [string, string] => ["config show", output(r)]),
      ["inside a cloister", output(inside)],
    ];
    for (const [place, text] of places) assert.ok(!text.includes(value), `the secret's value is in the ${place}`);
  });

  it("removes a secret, and fails for one that is not there", async () => {
    await t.cli(["secret", "set", "gone"], { input: "x" });
    const rm = await t.cli(["secret", "rm", "gone"]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.match(rm.stderr, /Removed secret gone\./);
    const again = await t.cli(["secret", "rm", "gone"]);
    assert.equal(again.code, 125);
    assert.match(again.stderr, /no secret named "gone"/);
  });

  it("--keep-value changes the rule or description without asking for the value (QA A9)", async () => {
    await t.cli(["secret", "set", "gh", "--host", "api.github.com", "--header", "Authorization: Bearer {}"], { input: "tok-1" });
    // No stdin at all: a value asked for would fail with "nothing on stdin".
    const dropped = await t.cli(["secret", "set", "gh", "--keep-value", "--no-inject", "--description", "GitHub"]);
    assert.equal(dropped.code, 0, dropped.stderr);
    assert.match(dropped.stderr, /^Updated secret gh; its value is unchanged\.\n$/);
    assert.equal(await stored("gh"), "tok-1");
    const listed = (JSON.parse((await t.cli(["secret", "list", "--json"])).stdout) as { name: string; inject: unknown; description: string }[]).find((s) => s.name === "gh");
    assert.deepEqual([listed?.inject, listed?.description], [null, "GitHub"]);
    // A rule the kept value cannot be sent under is refused, and nothing changes.
    await t.cli(["secret", "set", "pem"], { input: "line one\nline two" });
    const unsendable = await t.cli(["secret", "set", "pem", "--keep-value", "--host", "api.example.com", "--header", "x-key: {}"]);
    assert.equal(unsendable.code, 125);
    assert.match(unsendable.stderr, /the value of pem cannot be injected: it goes in the x-key header, where a line break or other control character cannot go/);
    const missing = await t.cli(["secret", "set", "nosuch", "--keep-value", "--description", "x"]);
    assert.equal(missing.code, 125);
    assert.match(missing.stderr, /no secret named "nosuch" \(give it a value: leave out --keep-value\)/);
    const nothing = await t.cli(["secret", "set", "gh", "--keep-value"]);
    assert.equal(nothing.code, 125);
    assert.match(nothing.stderr, /--keep-value changes only the description or the rule, and neither was given/);
    for (const name of ["gh", "pem"]) await t.cli(["secret", "rm", name]);
  });

  it("stores a value of several lines from stdin (a PEM key); an agent's credential must be one line", async () => {
    const pem = "-----BEGIN KEY-----\nabc\n-----END KEY-----";
    const stored = await t.cli(["secret", "set", "pem"], { input: `${pem}\n` });
    assert.equal(stored.code, 0, stored.stderr);
    const key = await t.cli(["setup", "claude", "--api-key"], { input: "sk-ant-1\nsk-ant-1\n" });
    assert.equal(key.code, 125);
    assert.match(key.stderr, /^cloister: stdin holds more than one line.*\| cloister setup claude --api-key\)$/m);
    assert.equal((await t.cli(["secret", "rm", "pem"])).code, 0);
  });

  it("refuses a bad name before reading a value, and an empty stdin", async () => {
    const bad = await t.cli(["secret", "set", "no/slash"], { input: "x" });
    assert.equal(bad.code, 125);
    assert.match(bad.stderr, /invalid secret name "no\/slash"/);
    const empty = await t.cli(["secret", "set", "empty"], { input: "" });
    assert.equal(empty.code, 125);
    assert.match(empty.stderr, /nothing on stdin \(pipe the value in, e\.g\. printf %s "\$VALUE" \| cloister secret set empty\)/);
  });

  it("passphrase mode: locked after a guardian restart until unlocked; wrong passphrases refused", async () => {
    const passphrase = `pass-${randomBytes(6).toString("hex")}`;
    // Given twice on two lines ("typed twice"), it could never be typed at unlock's prompt (QA).
    const twoLines = await t.cli(["secret", "passphrase"], { input: `${passphrase}\n${passphrase}\n` });
    assert.equal(twoLines.code, 125);
    assert.equal(twoLines.stderr, `cloister: stdin holds more than one line, and a line break could never be typed at the prompt; nothing was changed (give it on one line, e.g. printf '%s\\n' "$VALUE" | cloister secret passphrase)\n`);
    assert.match((await t.cli(["secret", "status"])).stdout, /key: +the key file/, "the refused passphrase changed the key");
    const on = await t.cli(["secret", "passphrase"], { input: `${passphrase}\n` });
    assert.equal(on.code, 0, on.stderr);
    assert.throws(() => statSync(keyFile), /ENOENT/, "the key file outlived passphrase mode");

    assert.equal((await t.cli(["guardian", "stop"])).code, 0);
    const status = await t.cli(["secret", "status"]);
    assert.match(status.stdout, /key: +a passphrase \(scrypt\)\nstate: +locked/);
    const locked = await t.cli(["secret", "set", "new"], { input: "x" });
    assert.equal(locked.code, 125);
    assert.match(locked.stderr, /the vault is locked: run `cloister secret unlock`/);
    assert.match((await t.cli(["secret", "list"])).stdout, /anthropic/, "listing needs no passphrase");

    const twoLineUnlock = await t.cli(["secret", "unlock"], { input: `${passphrase}\n${passphrase}\n` });
    assert.equal(twoLineUnlock.code, 125);
    assert.match(twoLineUnlock.stderr, /stdin holds more than one line.*\| cloister secret unlock\)/);
    const wrong = await t.cli(["secret", "unlock"], { input: "not the passphrase\n" });
    assert.equal(wrong.code, 125);
    assert.match(wrong.stderr, /wrong passphrase/);
    const unlock = await t.cli(["secret", "unlock"], { input: `${passphrase}\n` });
    assert.equal(unlock.code, 0, unlock.stderr);
    assert.equal((await t.cli(["secret", "set", "new"], { input: "x" })).code, 0);
    assert.equal((await t.cli(["secret", "lock"])).code, 0);
    assert.match((await t.cli(["secret", "status"])).stdout, /state: +locked/);
    const auditDir = join(t.home, "state", "audit");
    for (const file of [vaultFile, join(t.home, "state", "guardian.log"), ...readdirSync(auditDir).map((f) => join(auditDir, f))]) {
      assert.ok(!readFileSync(file, "utf8").includes(passphrase), `the passphrase is in ${file}`);
    }
  });
});
