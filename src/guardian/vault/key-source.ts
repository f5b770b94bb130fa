/**
 * Where the vault's 32-byte master key comes from. A new vault takes the OS keyring (libsecret's
 * `secret-tool`) when it answers, else a 0600 key file beside the guardian's state; a passphrase
 * (scrypt) replaces both when the user opts in. The vault file records which one holds its key.
 */
import { spawn } from "node:child_process";
import { createHash, randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { constants } from "node:fs";
import { open, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { createFileAtomic, ensurePrivateDir } from "../../config/atomic-write.js";
import { CloisterError } from "../../errors.js";
import { KEY_BYTES } from "./cipher.js";

export type KeySourceKind = "keyring" | "keyfile" | "passphrase";
/** What a new vault uses: "auto" tries the keyring and falls back to the key file. */
export type KeyPreference = "auto" | "keyring" | "keyfile";

export interface KeyringOptions {
  /** The libsecret CLI; tests put a fake one here. */
  command?: string;
  /** Its environment: DBUS_SESSION_BUS_ADDRESS says where the session bus is. */
  env?: NodeJS.ProcessEnv;
  /** A locked keyring may wait for a password prompt nobody sees; give up after this. */
  timeoutMs?: number;
}

const KEYRING_TIMEOUT_MS = 5_000;

/** One vault key in the OS keyring, found by attributes naming this Cloister instance. */
class Keyring {
  readonly attributes: string[];
  private readonly command: string;
  private readonly env: NodeJS.ProcessEnv;
  private readonly timeoutMs: number;

  constructor(configDir: string, options: KeyringOptions = {}) {
    const instance = createHash("sha256").update(configDir).digest("hex").slice(0, 16);
    this.attributes = ["service", "cloister-vault", "instance", instance];
    this.command = options.command ?? "secret-tool";
    this.env = options.env ?? process.env;
    this.timeoutMs = options.timeoutMs ?? KEYRING_TIMEOUT_MS;
  }

  describe(): string {
    return `the OS keyring (secret-tool, ${this.attributes.join(" ")})`;
  }

  /** The stored key, or undefined when the keyring answers that it has none. */
  async lookup(): Promise<Buffer | undefined> {
    const result = await this.run(["lookup", ...this.attributes]);
    const text = result.stdout.trim();
    // Not found is exit 1 with nothing said; anything on stderr is a failure to reach the keyring.
    if (result.code !== 0 && !result.stderr.trim() && !text) return undefined;
    if (result.code !== 0) throw new CloisterError(`secret-tool lookup failed: ${firstLine(result.stderr) || `exit ${result.code}`}`);
    if (!text) return undefined;
    const key = Buffer.from(text, "base64");
    if (key.length !== KEY_BYTES) throw new CloisterError(`the keyring entry ${this.attributes.join(" ")} is not a vault key`);
    return key;
  }

  async store(key: Buffer): Promise<void> {
    const result = await this.run(["store", "--label=Cloister vault key", ...this.attributes], key.toString("base64"));
    if (result.code !== 0) throw new CloisterError(`secret-tool store failed: ${firstLine(result.stderr) || `exit ${result.code}`}`);
  }

  async clear(): Promise<void> {
    await this.run(["clear", ...this.attributes]);
  }

  private run(args: string[], input = ""): Promise<{ code: number | null; stdout: string; stderr: string }> {
    if (!this.env.DBUS_SESSION_BUS_ADDRESS) return Promise.reject(new CloisterError("no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)"));
    return new Promise((resolve, reject) => {
      const child = spawn(this.command, args, { env: this.env, stdio: ["pipe", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        // A helper it started may still hold the pipes open; stop waiting for them.
        child.stdout.destroy();
        child.stderr.destroy();
        reject(new CloisterError(`secret-tool did not answer within ${this.timeoutMs / 1000} s (a locked keyring waiting for its password?)`));
      }, this.timeoutMs);
      child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      child.stdin.on("error", () => undefined); // a tool that exits without reading its input
      child.on("error", (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new CloisterError(error.code === "ENOENT" ? "secret-tool is not installed (Debian package libsecret-tools)" : `secret-tool: ${error.message}`));
      });
      child.on("close", (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
      child.stdin.end(input);
    });
  }
}

/**
 * The key in a key file, or undefined when there is none. Refused unless it is a regular file of
 * ours that nobody else can read: a key others can read (or swap) protects nothing.
 */
export async function readKeyFile(path: string): Promise<Buffer | undefined> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    if ((error as NodeJS.ErrnoException).code === "ELOOP") throw new CloisterError(`the vault key file ${path} is a symbolic link; refusing to follow it`, `replace it with the file itself`);
    throw error;
  }
  try {
    const info = await handle.stat();
    const uid = process.getuid?.();
    if (!info.isFile()) throw new CloisterError(`the vault key file ${path} is not a regular file`);
    if (uid !== undefined && info.uid !== uid) {
      throw new CloisterError(`the vault key file ${path} belongs to uid ${info.uid}, not to you (uid ${uid}); refusing to use it`, `if it is yours: chown ${uid} ${path}`);
    }
    if ((info.mode & 0o077) !== 0) {
      throw new CloisterError(`the vault key file ${path} is open to other users (mode ${(info.mode & 0o777).toString(8)}); refusing to use it`, `make it private: chmod 600 ${path}`);
    }
    const key = await handle.readFile();
    if (key.length !== KEY_BYTES) throw new CloisterError(`the vault key file ${path} holds ${key.length} bytes, not a ${KEY_BYTES}-byte key`);
    return key;
  } finally {
    await handle.close();
  }
}

/** The key file's key, created with fresh random bytes first if there is none (link-atomic: two racing creators agree). */
async function obtainKeyFile(path: string): Promise<Buffer> {
  ensurePrivateDir(dirname(path));
  await createFileAtomic(path, randomBytes(KEY_BYTES), 0o600);
  const key = await readKeyFile(path);
  if (!key) throw new CloisterError(`the vault key file ${path} vanished while it was being created`);
  return key;
}

/** Passphrase mode: scrypt's parameters and salt, kept in the vault file. */
export interface Kdf {
  name: "scrypt";
  N: number;
  r: number;
  p: number;
  salt: string;
}

/**
 * N=2^15, r=8 needs 32 MiB, just over node's default scrypt memory cap; the cap is raised for this
 * call rather than the cost lowered. Parameters read from a file are bounded, so an edited file
 * cannot make the guardian allocate gigabytes.
 */
const KDF_DEFAULTS = { N: 2 ** 15, r: 8, p: 1 };
const KDF_LIMITS = { minN: 2 ** 14, maxN: 2 ** 20, maxR: 16, maxP: 4 };
const MIN_PASSPHRASE_CHARS = 8;

export function newKdf(): Kdf {
  return { name: "scrypt", ...KDF_DEFAULTS, salt: randomBytes(16).toString("base64") };
}

export function deriveKey(passphrase: string, kdf: Kdf): Promise<Buffer> {
  const { N, r, p } = kdf;
  const powerOfTwo = Number.isInteger(Math.log2(N));
  if (!powerOfTwo || N < KDF_LIMITS.minN || N > KDF_LIMITS.maxN || r < 1 || r > KDF_LIMITS.maxR || p < 1 || p > KDF_LIMITS.maxP) {
    return Promise.reject(new CloisterError(`the vault file's scrypt parameters are out of range (N=${N}, r=${r}, p=${p})`));
  }
  return new Promise((resolve, reject) => {
    scrypt(passphrase.normalize("NFC"), Buffer.from(kdf.salt, "base64"), KEY_BYTES, { N, r, p, maxmem: 256 * N * r }, (error, key) => (error ? reject(error) : resolve(key)));
  });
}

/** A passphrase to set (unlocking accepts whatever was set). */
export function checkNewPassphrase(passphrase: string): void {
  if ([...passphrase].length < MIN_PASSPHRASE_CHARS) throw new CloisterError(`the passphrase is too short: use at least ${MIN_PASSPHRASE_CHARS} characters`);
}

/**
 * The stored (not passphrase-derived) key of one instance: obtained for a new vault, loaded for an
 * existing one, discarded when the vault moves to another source.
 */
export class StoredKeys {
  readonly keyring: Keyring;

  constructor(
    readonly keyFile: string,
    configDir: string,
    private readonly preference: KeyPreference,
    keyringOptions?: KeyringOptions,
  ) {
    this.keyring = new Keyring(configDir, keyringOptions);
  }

  /**
   * A key for a vault being created (or leaving passphrase mode). With "auto", a keyring that fails
   * in any way (not installed, no session bus, locked, silent) means the key file, and the reason
   * comes back so the user learns why.
   */
  async obtain(): Promise<{ source: "keyring" | "keyfile"; key: Buffer; keyringFailure?: string }> {
    if (this.preference === "keyfile") return { source: "keyfile", key: await obtainKeyFile(this.keyFile) };
    try {
      return { source: "keyring", key: await this.obtainFromKeyring() };
    } catch (error) {
      const keyringFailure = (error as Error).message;
      if (this.preference === "keyring") throw new CloisterError(`the OS keyring cannot hold the vault key: ${keyringFailure}`, KEYRING_HINT);
      return { source: "keyfile", key: await obtainKeyFile(this.keyFile), keyringFailure };
    }
  }

  /** The key of an existing vault, from the source its file names. */
  async load(source: "keyring" | "keyfile"): Promise<Buffer> {
    if (source === "keyfile") {
      const key = await readKeyFile(this.keyFile);
      if (!key) throw new CloisterError(`the vault's key file ${this.keyFile} is missing`, LOST_KEY_HINT);
      return key;
    }
    let key: Buffer | undefined;
    try {
      key = await this.keyring.lookup();
    } catch (error) {
      throw new CloisterError(`the vault's key is in the OS keyring, which cannot be reached: ${(error as Error).message}`, KEYRING_HINT);
    }
    if (!key) throw new CloisterError(`the vault's key is missing from ${this.keyring.describe()}`, LOST_KEY_HINT);
    return key;
  }

  /** Forget a key no longer used, so old copies of the vault file cannot be opened with it. */
  async discard(source: "keyring" | "keyfile"): Promise<void> {
    if (source === "keyring") await this.keyring.clear().catch(() => undefined);
    else await rm(this.keyFile, { force: true });
  }

  describe(source: "keyring" | "keyfile"): string {
    return source === "keyring" ? this.keyring.describe() : `the key file ${this.keyFile}`;
  }

  private async obtainFromKeyring(): Promise<Buffer> {
    const existing = await this.keyring.lookup();
    if (existing) return existing;
    const key = randomBytes(KEY_BYTES);
    await this.keyring.store(key);
    const stored = await this.keyring.lookup();
    if (!stored || stored.length !== key.length || !timingSafeEqual(stored, key)) throw new CloisterError("the keyring did not keep the key it was given");
    return key;
  }
}

const KEYRING_HINT =
  "the guardian reaches the keyring through the D-Bus session bus of the shell that started it: stop it (`cloister guardian stop`) and run cloister again from a desktop session with the keyring unlocked";
const LOST_KEY_HINT = "restore it from a backup; without it the stored secrets cannot be decrypted (moving vault.json aside starts an empty vault)";

function firstLine(text: string): string {
  return text.trim().split("\n")[0] ?? "";
}
