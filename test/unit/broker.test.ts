/**
 * The broker's bookkeeping (src/guardian/broker/broker.ts) against a real vault in a temp dir: which
 * rules are in force, placeholders stable across a guardian restart and unique per cloister, what a
 * replaced or locked secret does, and which connections are intercepted.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { resolvePaths } from "../../src/config/paths.js";
import { Broker, type BrokerSettings } from "../../src/guardian/broker/broker.js";
import { Vault } from "../../src/guardian/vault/vault.js";
import { canonicalHost } from "../../src/policy/hosts.js";

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function instance(settings: BrokerSettings = { inspect: [], upstreamCa: null }) {
  const home = mkdtempSync(join(tmpdir(), "broker-unit-"));
  dirs.push(home);
  const paths = resolvePaths({ CLOISTER_HOME: home });
  const vault = Vault.open(paths, { keySource: "keyfile" });
  return { paths, vault, broker: await Broker.open(paths, vault, () => settings) };
}

const KEY = `sk-ant-api03-${"a1B2".repeat(23)}AA`;
const host = (name: string) => canonicalHost(name);

describe("Broker", () => {
  it("brokers only stored secrets: a built-in rule applies once its secret is stored", async () => {
    const { vault, broker } = await instance();
    assert.deepEqual(await broker.active("0000aaaa"), []);
    await vault.set("claude.api_key", KEY);
    broker.invalidate();
    const active = await broker.active("0000aaaa");
    assert.deepEqual(active.map((a) => [a.rule.secret, a.real]), [["claude.api_key", KEY]]);
    assert.ok(active[0]?.placeholder.startsWith("sk-ant-api03-") && active[0].placeholder !== KEY);
  });

  it("placeholders are unique per cloister and the same after a restart (a new Broker on the same state)", async () => {
    const { paths, vault, broker } = await instance();
    await vault.set("claude.api_key", KEY);
    const first = await broker.placeholder("0000aaaa", "claude.api_key");
    const other = await broker.placeholder("0000bbbb", "claude.api_key");
    assert.notEqual(first, other);
    const restarted = await Broker.open(paths, vault, () => ({ inspect: [], upstreamCa: null }));
    assert.equal(await restarted.placeholder("0000aaaa", "claude.api_key"), first);
    assert.equal(statSync(join(paths.stateDir, "broker", "placeholder.key")).mode & 0o777, 0o600);
  });

  it("a replaced value of another shape gets a new placeholder; a secret without a rule gets none", async () => {
    const { vault, broker } = await instance();
    await vault.set("claude.api_key", KEY);
    const before = await broker.placeholder("0000aaaa", "claude.api_key");
    await vault.set("claude.api_key", `${KEY}extra`);
    broker.invalidate();
    const after = await broker.placeholder("0000aaaa", "claude.api_key");
    assert.notEqual(after, before);
    assert.equal(after?.length, KEY.length + 5);
    await vault.set("plain", "some-value-without-rule");
    broker.invalidate();
    assert.equal(await broker.placeholder("0000aaaa", "plain"), undefined);
  });

  it("a locked vault keeps the placeholders handed out before, without a value (requests are then refused)", async () => {
    const { vault, broker } = await instance();
    await vault.set("gh", "ghp_0123456789abcdefghijABCDEFGHIJ012345", undefined, { hosts: ["api.github.com"], header: "Authorization: Bearer {}" });
    const placeholder = await broker.placeholder("0000aaaa", "gh");
    await vault.setPassphrase("a long enough passphrase");
    await vault.lock();
    broker.invalidate();
    const active = await broker.active("0000aaaa");
    assert.deepEqual(active.map((a) => [a.placeholder, a.real]), [[placeholder, undefined]]);
    // A cloister whose placeholder was never derived cannot be recognised: its host is refused outright.
    await assert.rejects(broker.interception("0000bbbb", host("api.github.com"), 443), /vault is locked/);
    // A stopped cloister's placeholders are let go.
    broker.forget("0000aaaa");
    assert.deepEqual(await broker.active("0000aaaa"), []);
  });

  it("lets go of the placeholders of launches that never became a cloister, once they are old enough", async () => {
    const { vault, broker } = await instance();
    await vault.set("gh", "ghp_0123456789abcdefghijABCDEFGHIJ012345", undefined, { hosts: ["api.github.com"], header: "Authorization: Bearer {}" });
    const running = await broker.placeholder("0000aaaa", "gh");
    const cutOff = await broker.placeholder("0000bbbb", "gh");
    // Locked, a placeholder is known only as long as it is kept: what is let go shows.
    await vault.setPassphrase("a long enough passphrase");
    await vault.lock();
    broker.invalidate();
    const placeholdersOf = async (id: string) => (await broker.active(id)).map((a) => a.placeholder);
    broker.forgetAllBut(new Set(["0000aaaa"]), Date.now() - 60_000);
    assert.deepEqual(await placeholdersOf("0000bbbb"), [cutOff], "a launch still within its grace");
    broker.forgetAllBut(new Set(["0000aaaa"]), Date.now() + 1);
    assert.deepEqual(await placeholdersOf("0000bbbb"), []);
    assert.deepEqual(await placeholdersOf("0000aaaa"), [running]);
  });

  it("intercepts exactly the rule's host and port, and inspected hosts on 443; everything else is tunnelled", async () => {
    const { vault, broker } = await instance({ inspect: ["watch.example.com"], upstreamCa: null });
    await vault.set("gh", "ghp_0123456789abcdefghijABCDEFGHIJ012345", undefined, { hosts: ["api.github.com:8443"], header: "Authorization: Bearer {}" });
    assert.ok(await broker.interception("0000aaaa", host("api.github.com"), 8443));
    assert.equal(await broker.interception("0000aaaa", host("api.github.com"), 443), undefined);
    assert.equal(await broker.interception("0000aaaa", host("github.com"), 8443), undefined);
    assert.equal(await broker.interception("0000aaaa", host("10.0.0.1"), 8443), undefined);
    assert.ok(await broker.interception("0000aaaa", host("watch.example.com"), 443));
    assert.equal(await broker.interception("0000aaaa", host("watch.example.com"), 8443), undefined);
  });
});
