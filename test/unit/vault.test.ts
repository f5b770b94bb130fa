import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { resolvePaths, type CloisterPaths } from "../../src/config/paths.js";
import { seal, unseal, UnsealError, type Sealed } from "../../src/guardian/vault/cipher.js";
import { readKeyFile } from "../../src/guardian/vault/key-source.js";
import { Vault, type VaultOptions } from "../../src/guardian/vault/vault.js";

const base = mkdtempSync(join(tmpdir(), "cvault-"));
after(() => rmSync(base, { recursive: true, force: true }));
let counter = 0;

function instance(): CloisterPaths {
  return resolvePaths({ CLOISTER_HOME: join(base, String(counter++)) });
}

function fresh(options: VaultOptions = { keySource: "keyfile" }): { paths: CloisterPaths; vault: Vault } {
  const paths = instance();
  return { paths, vault: Vault.open(paths, options) };
}

const vaultFile = (paths: CloisterPaths) => join(paths.dataDir, "vault.json");
const keyFile = (paths: CloisterPaths) => join(paths.stateDir, "vault.key");
const canary = () => `sk-canary-${randomBytes(12).toString("hex")}`;
const isRoot = process.getuid?.() === 0;

/** Flips one bit in byte `index` of a base64 field. */
function flipped(field: string, index: number): string {
  const bytes = Buffer.from(field, "base64");
  bytes[index] = (bytes[index] ?? 0) ^ 0x01;
  return bytes.toString("base64");
}

describe("vault cipher: AES-256-GCM per value", () => {
  const key = randomBytes(32);

  it("round-trips text of any size up to the limit, with a fresh nonce each time", () => {
    for (const value of ["x", "ünïcødé ✓ 🔑", "a".repeat(64 * 1024)]) assert.equal(unseal(key, "name", seal(key, "name", value)), value);
    assert.notEqual(seal(key, "n", "same").nonce, seal(key, "n", "same").nonce);
  });

  it("refuses every changed byte of nonce, ciphertext and tag", () => {
    const sealed = seal(key, "name", "a secret value");
    for (const part of ["nonce", "ciphertext", "tag"] as const) {
      const length = Buffer.from(sealed[part], "base64").length;
      for (let i = 0; i < length; i++) {
        const tampered: Sealed = { ...sealed, [part]: flipped(sealed[part], i) };
        assert.throws(() => unseal(key, "name", tampered), UnsealError, `${part} byte ${i}`);
      }
    }
  });

  it("refuses a value moved to another name, a wrong key, and a shortened tag", () => {
    const sealed = seal(key, "anthropic", "value");
    assert.throws(() => unseal(key, "openai", sealed), /secret "openai" cannot be decrypted/);
    assert.throws(() => unseal(randomBytes(32), "anthropic", sealed), UnsealError);
    const shortTag = { ...sealed, tag: Buffer.from(sealed.tag, "base64").subarray(0, 12).toString("base64") };
    assert.throws(() => unseal(key, "anthropic", shortTag), UnsealError);
  });
});

describe("vault: storing, listing, removing", () => {
  it("stores values it never shows in list() or in the file", async () => {
    const { paths, vault } = fresh();
    const value = canary();
    assert.deepEqual(await vault.set("anthropic", value, "Claude key"), { created: true, key: `the key file ${keyFile(paths)}` });
    assert.deepEqual(await vault.set("anthropic", value), { created: false });
    assert.equal(await vault.get("anthropic"), value);
    const listed = await vault.list();
    assert.deepEqual(
      listed.map((s) => [s.name, s.description]),
      [["anthropic", "Claude key"]],
    );
    assert.ok(!JSON.stringify(listed).includes(value));
    const bytes = readFileSync(vaultFile(paths));
    assert.ok(!bytes.includes(value) && !bytes.includes(Buffer.from(value).toString("base64")), "the plaintext is in vault.json");
    assert.equal(statSync(vaultFile(paths)).mode & 0o777, 0o600);
    assert.equal(statSync(paths.dataDir).mode & 0o777, 0o700);
    const file = JSON.parse(bytes.toString()) as { version: number; keySource: string; secrets: Record<string, object> };
    assert.equal(file.version, 1);
    assert.equal(file.keySource, "keyfile");
    assert.deepEqual(Object.keys(file.secrets.anthropic ?? {}).sort(), ["ciphertext", "createdAt", "description", "nonce", "tag", "updatedAt"]);
  });

  it("removes secrets and says whether there was one", async () => {
    const { vault } = fresh();
    await vault.set("a", "1");
    assert.equal(await vault.remove("a"), true);
    assert.equal(await vault.remove("a"), false);
    await assert.rejects(vault.get("a"), /no secret named "a"/);
    assert.deepEqual(await vault.list(), []);
  });

  it("keeps every one of concurrent writes", async () => {
    const { paths } = fresh();
    const vault = Vault.open(paths, { keySource: "keyfile" });
    await Promise.all(Array.from({ length: 10 }, (_, i) => vault.set(`s${i}`, `v${i}`)));
    const reopened = Vault.open(paths, { keySource: "keyfile" });
    assert.equal((await reopened.list()).length, 10);
    assert.equal(await reopened.get("s7"), "v7");
  });

  it("validates names", async () => {
    const { vault } = fresh();
    for (const good of ["a", "A1_b.c-d", `x${"y".repeat(63)}`]) await vault.set(good, "v");
    for (const bad of ["", "1abc", "_x", "a b", "a/b", "../x", `x${"y".repeat(64)}`]) {
      await assert.rejects(vault.set(bad, "v"), /invalid secret name/, bad);
    }
    // Names of Object.prototype's members are ordinary names, not lookups into the prototype.
    await assert.rejects(vault.get("constructor"), /no secret named "constructor"/);
    assert.equal(await vault.remove("toString"), false);
  });

  it("validates values: not empty, at most 64 KiB, no NUL, valid Unicode", async () => {
    const { vault } = fresh();
    await vault.set("max", "a".repeat(64 * 1024));
    await assert.rejects(vault.set("big", "a".repeat(64 * 1024 + 1)), /at most 65536 bytes/);
    await assert.rejects(vault.set("empty", ""), /must not be empty/);
    await assert.rejects(vault.set("nul", "a\0b"), /NUL/);
    await assert.rejects(vault.set("half", "a\uD800b"), /valid Unicode/);
    await assert.rejects(vault.set("desc", "v", "two\nlines"), /one line/);
  });

  it("refuses a value its header rule could not send: control characters under a header rule, built-in or the user's", async () => {
    const { vault } = fresh();
    const header = { hosts: ["api.example.com"], header: "Authorization: Bearer {}" };
    for (const bad of ["tok\r\nX-Evil: 1", "tok\n", "a\u0001b", "a\u007fb"]) {
      await assert.rejects(vault.set("gh", bad, undefined, header), /the value of gh cannot be injected: it goes in the authorization header/, JSON.stringify(bad));
      await assert.rejects(vault.set("claude.api_key", bad), /the value of claude\.api_key cannot be injected: it goes in the x-api-key header/, JSON.stringify(bad));
    }
    await vault.set("gh", "tok\there", undefined, header); // a tab is allowed in a header value
    // A value stored without a rule keeps its line breaks; a rule added later with a new value is checked.
    await vault.set("pem", "-----BEGIN-----\nAAAA\n-----END-----");
    await assert.rejects(vault.set("pem", "two\nlines", undefined, header), /cannot be injected/);
    // Basic auth base64s the value, so any text goes.
    await vault.set("basic", "pass\nword", undefined, { hosts: ["api.example.com"], basic: "bob" });
    assert.deepEqual((await vault.list()).map((s) => s.name), ["basic", "gh", "pem"]);
  });
});

describe("vault: damaged files and wrong keys", () => {
  it("names a file that is not JSON, and leaves it untouched", async () => {
    const { paths, vault } = fresh();
    await vault.set("a", "1");
    writeFileSync(vaultFile(paths), "{ not json");
    for (const attempt of [vault.list(), vault.set("b", "2"), vault.status()]) {
      await assert.rejects(attempt, (error: Error) => error.message.includes(`the vault file ${vaultFile(paths)} is damaged`));
    }
    assert.equal(readFileSync(vaultFile(paths), "utf8"), "{ not json");
  });

  it("names the field that is wrong, and refuses a newer format", async () => {
    const { paths, vault } = fresh();
    await vault.set("a", "1");
    const file = JSON.parse(readFileSync(vaultFile(paths), "utf8")) as Record<string, unknown>;
    writeFileSync(vaultFile(paths), JSON.stringify({ ...file, check: undefined }));
    await assert.rejects(vault.list(), /vault\.json is damaged: check/);
    writeFileSync(vaultFile(paths), JSON.stringify({ ...file, version: 2 }));
    await assert.rejects(vault.list(), { message: `the vault file ${vaultFile(paths)} has format version 2; this cloister reads version 1`, hint: "upgrade cloister" });
  });

  it("refuses a ciphertext moved under another name", async () => {
    const { paths, vault } = fresh();
    await vault.set("a", "value-a");
    await vault.set("b", "value-b");
    const file = JSON.parse(readFileSync(vaultFile(paths), "utf8")) as { secrets: Record<string, object> };
    file.secrets.b = file.secrets.a ?? {};
    writeFileSync(vaultFile(paths), JSON.stringify(file));
    await assert.rejects(vault.get("b"), /secret "b" cannot be decrypted/);
  });

  it("says so when the key file does not belong to the vault file", async () => {
    const { paths } = fresh();
    await Vault.open(paths, { keySource: "keyfile" }).set("a", "1");
    writeFileSync(keyFile(paths), randomBytes(32), { mode: 0o600 });
    await assert.rejects(Vault.open(paths, { keySource: "keyfile" }).get("a"), /the key file .* does not open the vault file/);
  });
});

describe("vault: the key file", () => {
  it("is created with 32 random bytes, 0600, in a 0700 directory", async () => {
    const { paths, vault } = fresh();
    await vault.set("a", "1");
    const info = statSync(keyFile(paths));
    assert.equal(info.mode & 0o777, 0o600);
    assert.equal(info.size, 32);
    assert.equal(statSync(paths.stateDir).mode & 0o777, 0o700);
  });

  it("is refused when others can read it, with the command that fixes it", async () => {
    const { paths } = fresh();
    await Vault.open(paths, { keySource: "keyfile" }).set("a", "1");
    chmodSync(keyFile(paths), 0o644);
    await assert.rejects(Vault.open(paths, { keySource: "keyfile" }).get("a"), (error: Error & { hint?: string }) => {
      assert.match(error.message, /is open to other users \(mode 644\)/);
      assert.equal(error.hint, `make it private: chmod 600 ${keyFile(paths)}`);
      return true;
    });
    chmodSync(keyFile(paths), 0o600);
    assert.equal(await Vault.open(paths, { keySource: "keyfile" }).get("a"), "1");
  });

  it("is refused when it belongs to another user", { skip: !isRoot && "needs root to chown" }, async () => {
    const { paths } = fresh();
    await Vault.open(paths, { keySource: "keyfile" }).set("a", "1");
    chownSync(keyFile(paths), 65534, 65534);
    await assert.rejects(Vault.open(paths, { keySource: "keyfile" }).get("a"), /belongs to uid 65534, not to you/);
  });

  it("is refused when it is a symbolic link, or of the wrong size", async () => {
    const dir = join(base, `k${counter++}`);
    mkdirSync(dir);
    writeFileSync(join(dir, "real"), randomBytes(32), { mode: 0o600 });
    symlinkSync(join(dir, "real"), join(dir, "link"));
    await assert.rejects(readKeyFile(join(dir, "link")), /symbolic link/);
    writeFileSync(join(dir, "short"), randomBytes(16), { mode: 0o600 });
    await assert.rejects(readKeyFile(join(dir, "short")), /holds 16 bytes/);
    assert.equal(await readKeyFile(join(dir, "missing")), undefined);
  });

  it("missing while the vault holds secrets is an error, never a fresh key", async () => {
    const { paths } = fresh();
    await Vault.open(paths, { keySource: "keyfile" }).set("a", "1");
    rmSync(keyFile(paths));
    const vault = Vault.open(paths, { keySource: "keyfile" });
    await assert.rejects(vault.get("a"), /key file .* is missing/);
    await assert.rejects(vault.set("b", "2"), /key file .* is missing/);
    assert.equal(existsSync(keyFile(paths)), false);
  });
});

/** A stand-in for libsecret's secret-tool: keeps the one secret in a file, logs its arguments. */
function fakeSecretTool(body?: string): { command: string; store: string; log: string } {
  const dir = join(base, `tool${counter++}`);
  mkdirSync(dir);
  const store = join(dir, "store");
  const log = join(dir, "log");
  const script = body ?? `echo "$@" >> ${log}
case "$1" in
  lookup) [ -f ${store} ] || exit 1; cat ${store} ;;
  store) cat > ${store} ;;
  clear) rm -f ${store} ;;
esac`;
  writeFileSync(join(dir, "secret-tool"), `#!/bin/sh\n${script}\n`, { mode: 0o755 });
  return { command: join(dir, "secret-tool"), store, log };
}

const BUS = { DBUS_SESSION_BUS_ADDRESS: "unix:path=/nonexistent/bus" };

describe("vault: the OS keyring through secret-tool", () => {
  it("keeps the key in the keyring under this instance's attributes, and no key file", async () => {
    const tool = fakeSecretTool();
    const { paths, vault } = fresh({ keyring: { command: tool.command, env: BUS } });
    const result = await vault.set("a", "1");
    assert.match(result.key ?? "", /^the OS keyring \(secret-tool, service cloister-vault instance [0-9a-f]{16}\)$/);
    assert.equal(result.note, undefined);
    assert.equal(existsSync(keyFile(paths)), false);
    assert.equal(Buffer.from(readFileSync(tool.store, "utf8"), "base64").length, 32);
    assert.match(readFileSync(tool.log, "utf8"), /^store --label=Cloister vault key service cloister-vault instance [0-9a-f]{16}$/m);
    // A restarted guardian finds it again.
    const reopened = Vault.open(paths, { keyring: { command: tool.command, env: BUS } });
    assert.equal(await reopened.get("a"), "1");
    assert.equal((await reopened.status()).keySource, "keyring");
  });

  it("falls back to the key file and says why: no session bus, not installed, no answer", async () => {
    const cases: [VaultOptions["keyring"], RegExp][] = [
      [{ command: fakeSecretTool().command, env: {} }, /no D-Bus session bus/],
      [{ command: join(base, "no-such-secret-tool"), env: BUS }, /secret-tool is not installed \(Debian package libsecret-tools\)/],
      [{ command: fakeSecretTool("sleep 10").command, env: BUS, timeoutMs: 200 }, /did not answer within 0.2 s/],
      [{ command: fakeSecretTool('echo "Cannot autolaunch D-Bus" >&2; exit 1').command, env: BUS }, /lookup failed: Cannot autolaunch D-Bus/],
    ];
    for (const [keyring, reason] of cases) {
      const { paths, vault } = fresh({ keyring });
      const result = await vault.set("a", "1");
      assert.equal(result.key, `the key file ${keyFile(paths)}`);
      assert.match(result.note ?? "", reason);
      assert.match((await vault.status()).note ?? "", reason);
    }
  });

  it("refuses instead of falling back when the keyring was asked for", async () => {
    const { vault } = fresh({ keySource: "keyring", keyring: { env: {} } });
    await assert.rejects(vault.set("a", "1"), /the OS keyring cannot hold the vault key: no D-Bus session bus/);
  });

  it("says the keyring cannot be reached when a keyring vault is opened without it", async () => {
    const tool = fakeSecretTool();
    const { paths } = fresh();
    await Vault.open(paths, { keyring: { command: tool.command, env: BUS } }).set("a", "1");
    await assert.rejects(Vault.open(paths, { keyring: { command: tool.command, env: {} } }).get("a"), /key is in the OS keyring, which cannot be reached: no D-Bus/);
    rmSync(tool.store);
    await assert.rejects(Vault.open(paths, { keyring: { command: tool.command, env: BUS } }).get("a"), /key is missing from the OS keyring/);
  });
});

describe("vault: passphrase mode", () => {
  const passphrase = "correct horse battery";

  it("re-seals existing secrets, discards the key file, and starts locked after a restart", async () => {
    const { paths, vault } = fresh();
    await vault.set("a", "value-a");
    await vault.setPassphrase(passphrase);
    assert.equal(existsSync(keyFile(paths)), false);
    assert.equal(await vault.get("a"), "value-a");

    const restarted = Vault.open(paths, { keySource: "keyfile" });
    assert.deepEqual((await restarted.status()).locked, true);
    await assert.rejects(restarted.get("a"), { message: "the vault is locked: run `cloister secret unlock`" });
    await assert.rejects(restarted.set("b", "2"), /the vault is locked/);
    assert.deepEqual((await restarted.list()).map((s) => s.name), ["a"]);

    await assert.rejects(restarted.unlock("wrong passphrase"), /wrong passphrase/);
    await assert.rejects(restarted.get("a"), /locked/);
    await restarted.unlock(passphrase);
    assert.equal(await restarted.get("a"), "value-a");
    await restarted.lock();
    await assert.rejects(restarted.get("a"), /locked/);
  });

  it("stores scrypt's parameters and salt in the file, not the passphrase", async () => {
    const { paths, vault } = fresh();
    await vault.setPassphrase(passphrase);
    const text = readFileSync(vaultFile(paths), "utf8");
    assert.ok(!text.includes(passphrase));
    const file = JSON.parse(text) as { keySource: string; kdf: { name: string; N: number; r: number; p: number; salt: string } };
    assert.equal(file.keySource, "passphrase");
    assert.equal(file.kdf.name, "scrypt");
    assert.ok(file.kdf.N >= 2 ** 15 && file.kdf.r >= 8 && file.kdf.p >= 1);
    assert.equal(Buffer.from(file.kdf.salt, "base64").length, 16);
    writeFileSync(vaultFile(paths), JSON.stringify({ ...file, kdf: { ...file.kdf, N: 2 ** 30 } }));
    await assert.rejects(Vault.open(paths).unlock(passphrase), /scrypt parameters are out of range/);
  });

  it("refuses short passphrases, lock and unlock without passphrase mode", async () => {
    const { vault } = fresh();
    await assert.rejects(vault.setPassphrase("short"), /at least 8 characters/);
    await vault.set("a", "1");
    await assert.rejects(vault.lock(), /does not use a passphrase: its key is in the key file/);
    await assert.rejects(vault.unlock(passphrase), /does not use a passphrase/);
  });

  it("goes back to a stored key, and from the keyring it clears the keyring entry", async () => {
    const tool = fakeSecretTool();
    const options: VaultOptions = { keyring: { command: tool.command, env: BUS } };
    const { paths, vault } = fresh(options);
    await vault.set("a", "1");
    await vault.setPassphrase(passphrase);
    assert.equal(existsSync(tool.store), false, "the keyring entry outlived passphrase mode");
    const restarted = Vault.open(paths, options);
    await assert.rejects(restarted.removePassphrase(), /locked/);
    assert.equal(existsSync(tool.store), false, "a locked vault stored a new key");
    await restarted.unlock(passphrase);
    assert.match((await restarted.removePassphrase()).key, /OS keyring/);
    assert.equal(await Vault.open(paths, options).get("a"), "1");
  });
});
