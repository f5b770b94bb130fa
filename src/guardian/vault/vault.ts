/**
 * The guardian's secret store: one JSON file, each value sealed on its own (cipher.ts) under a master
 * key that never sits in the file (key-source.ts). Names, dates and descriptions stay readable, so
 * `list` works while a passphrase vault is locked. The file is read for every operation and written
 * atomically; one that does not parse is reported and left exactly as it is.
 */
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { z } from "zod";
import { ensurePrivateDir, writeFileAtomic } from "../../config/atomic-write.js";
import type { CloisterPaths } from "../../config/paths.js";
import { CloisterError } from "../../errors.js";
import { CHECK_NAME, seal, unseal, UnsealError, VAULT_FORMAT_VERSION } from "./cipher.js";
import { effectiveRules, InjectionRuleError, ruleFromSpec, unpresentable, type InjectionRule, type InjectionSpec } from "../../policy/injection.js";
import { checkNewPassphrase, deriveKey, newKdf, StoredKeys, type Kdf, type KeyPreference, type KeyringOptions, type KeySourceKind } from "./key-source.js";

export const SECRET_NAME_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
export const MAX_VALUE_BYTES = 64 * 1024;
const MAX_DESCRIPTION_CHARS = 200;
/** Sealed under CHECK_NAME: opening it proves a key (or passphrase) right before any secret is touched. */
const CHECK_TEXT = "cloister vault check";

const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, "expected base64");
const sealedSchema = z.strictObject({ nonce: base64, ciphertext: base64, tag: base64 });
/** A user's injection rule (policy/injection.ts), kept as given; parsed when the broker loads it. */
const injectSchema = z.strictObject({ hosts: z.array(z.string()), header: z.string().optional(), basic: z.string().optional() });
const entrySchema = sealedSchema.extend({ createdAt: z.iso.datetime(), updatedAt: z.iso.datetime(), description: z.string().optional(), inject: injectSchema.optional() });
const kdfSchema = z.strictObject({ name: z.literal("scrypt"), N: z.int(), r: z.int(), p: z.int(), salt: base64 });
const fileSchema = z
  .strictObject({
    version: z.literal(VAULT_FORMAT_VERSION),
    keySource: z.enum(["keyring", "keyfile", "passphrase"]),
    kdf: kdfSchema.optional(),
    check: sealedSchema,
    secrets: z.record(z.string().regex(SECRET_NAME_RE, "not a valid secret name"), entrySchema),
  })
  .refine((file) => (file.keySource === "passphrase") === (file.kdf !== undefined), "kdf must be present exactly when keySource is passphrase");

type VaultFile = z.infer<typeof fileSchema>;
type Entry = z.infer<typeof entrySchema>;

export interface VaultOptions {
  /** Where the key of a new vault goes; default "auto": the OS keyring when it answers, else a key file. */
  keySource?: KeyPreference;
  keyring?: KeyringOptions;
}

export interface SecretInfo {
  name: string;
  createdAt: string;
  updatedAt: string;
  description: string | null;
  /** Where the broker injects it: the user's rule, or a built-in one for an agent's credential. */
  inject: InjectionRule | null;
  /** Why a stored rule does not apply (it no longer parses): then nothing may hand the value out either. */
  injectError: string | null;
}

export interface VaultStatus {
  file: string;
  /** False until the first secret (or a passphrase) is set. */
  exists: boolean;
  keySource: KeySourceKind | null;
  /** Where the key is, in words: a keyring entry, a key file, or a passphrase. */
  key: string | null;
  /** A passphrase vault not unlocked since the guardian started (or locked again). */
  locked: boolean;
  secrets: number;
  /** Why the key went where it did, when the keyring was tried and not used. */
  note: string | null;
}

/** What setting a secret did; `key` and `note` only when that set created the vault. */
export interface SetResult {
  created: boolean;
  key?: string;
  note?: string;
}

export class Vault {
  /** The master key once known; for a passphrase vault only between unlock and lock (or a restart). */
  private key: Buffer | undefined;
  private note: string | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly file: string,
    private readonly keys: StoredKeys,
  ) {}

  /** Cheap: nothing is read until the first operation, so a damaged file never keeps the guardian from starting. */
  static open(paths: CloisterPaths, options: VaultOptions = {}): Vault {
    const keys = new StoredKeys(join(paths.stateDir, "vault.key"), paths.configDir, options.keySource ?? "auto", options.keyring);
    return new Vault(join(paths.dataDir, "vault.json"), keys);
  }

  /** Names and dates, never values. */
  list(): Promise<SecretInfo[]> {
    return this.exclusive(async () => {
      const secrets = (await this.read())?.secrets ?? {};
      return Object.keys(secrets)
        .sort()
        .map((name) => infoOf(name, secrets[name] as Entry));
    });
  }

  /** A secret's value, for the guardian's own use (delivery into cloisters); no route returns it. */
  async get(name: string): Promise<string> {
    checkSecretName(name);
    return this.exclusive(async () => {
      const file = await this.read();
      const entry = file && entryOf(file, name);
      if (!file || !entry) throw noSuchSecret(name);
      return unseal(await this.keyOf(file), name, entry);
    });
  }

  /**
   * `value`: the new value, or undefined to keep the stored one (changing only the description or
   * the rule). `inject`: a new injection rule; null removes the user's rule; undefined keeps what
   * there is.
   */
  async set(name: string, value: string | undefined, description?: string, inject?: InjectionSpec | null): Promise<SetResult> {
    checkSecretName(name);
    if (value !== undefined) checkSecretValue(value);
    if (description !== undefined) checkDescription(description);
    if (inject) checkRule(name, inject);
    return this.exclusive(async () => {
      const existingFile = await this.read();
      const file = existingFile ?? (await this.create());
      const key = await this.keyOf(file);
      const existing = entryOf(file, name);
      if (value === undefined && !existing) throw noSuchSecret(name, "give it a value: leave out --keep-value");
      const now = new Date().toISOString();
      const rule = inject === undefined ? existing?.inject : (inject ?? undefined);
      const kept = value ?? unseal(key, name, existing as Entry);
      checkPresentable(name, kept, rule);
      file.secrets[name] = withRule(withDescription({ ...seal(key, name, kept), createdAt: existing?.createdAt ?? now, updatedAt: now }, description ?? existing?.description), rule);
      await this.write(file);
      if (existingFile) return { created: !existing };
      return { created: true, key: this.whereIsKey(file), ...(this.note ? { note: this.note } : {}) };
    });
  }

  /** False when there was no such secret. Works while locked: removing reveals nothing. */
  async remove(name: string): Promise<boolean> {
    checkSecretName(name);
    return this.exclusive(async () => {
      const file = await this.read();
      if (!file || !entryOf(file, name)) return false;
      delete file.secrets[name];
      await this.write(file);
      return true;
    });
  }

  unlock(passphrase: string): Promise<void> {
    return this.exclusive(async () => {
      const file = this.passphraseFile(await this.read());
      if (!passphrase) throw new CloisterError("the passphrase is empty");
      const key = await deriveKey(passphrase, file.kdf as Kdf);
      try {
        unseal(key, CHECK_NAME, file.check);
      } catch (error) {
        if (error instanceof UnsealError) throw new CloisterError("wrong passphrase");
        throw error;
      }
      this.forgetKey();
      this.key = key;
    });
  }

  lock(): Promise<void> {
    return this.exclusive(async () => {
      this.passphraseFile(await this.read());
      this.forgetKey();
    });
  }

  /**
   * Turns passphrase mode on (or changes the passphrase): every value is sealed again under a key
   * derived from the new passphrase, and the key that served before is discarded.
   */
  async setPassphrase(passphrase: string): Promise<void> {
    checkNewPassphrase(passphrase);
    return this.exclusive(async () => {
      const old = await this.read();
      const kdf = newKdf();
      const key = await deriveKey(passphrase, kdf);
      await this.rekey(old, { keySource: "passphrase", kdf }, key);
      if (old && old.keySource !== "passphrase") await this.keys.discard(old.keySource);
      this.note = undefined;
    });
  }

  /** Back from a passphrase to a stored key (keyring or key file); says where it went. */
  removePassphrase(): Promise<{ key: string; note: string | null }> {
    return this.exclusive(async () => {
      const old = this.passphraseFile(await this.read());
      await this.keyOf(old); // locked: fail before a new key is stored anywhere
      const stored = await this.keys.obtain();
      const file = await this.rekey(old, { keySource: stored.source }, stored.key);
      this.note = keyringNote(stored.keyringFailure);
      return { key: this.whereIsKey(file), note: this.note ?? null };
    });
  }

  status(): Promise<VaultStatus> {
    return this.exclusive(async () => {
      const file = await this.read();
      return {
        file: this.file,
        exists: file !== undefined,
        keySource: file?.keySource ?? null,
        key: file ? this.whereIsKey(file) : null,
        locked: file?.keySource === "passphrase" && !this.key,
        secrets: file ? Object.keys(file.secrets).length : 0,
        note: this.note ?? null,
      };
    });
  }

  /** One operation at a time: each reads the file, some write it back. */
  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const result = this.queue.then(work);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** A new, empty vault with a stored key (written with its first secret). */
  private async create(): Promise<VaultFile> {
    const stored = await this.keys.obtain();
    this.forgetKey();
    this.key = stored.key;
    this.note = keyringNote(stored.keyringFailure);
    return { version: VAULT_FORMAT_VERSION, keySource: stored.source, check: seal(stored.key, CHECK_NAME, CHECK_TEXT), secrets: {} };
  }

  /** Seals every value of `old` (none when there is no vault yet) again under `key`, and writes the result. */
  private async rekey(old: VaultFile | undefined, source: Pick<VaultFile, "keySource" | "kdf">, key: Buffer): Promise<VaultFile> {
    const secrets: VaultFile["secrets"] = {};
    if (old) {
      const oldKey = await this.keyOf(old);
      for (const [name, entry] of Object.entries(old.secrets)) secrets[name] = { ...entry, ...seal(key, name, unseal(oldKey, name, entry)) };
    }
    const file: VaultFile = { version: VAULT_FORMAT_VERSION, ...source, check: seal(key, CHECK_NAME, CHECK_TEXT), secrets };
    await this.write(file);
    this.forgetKey();
    this.key = key;
    return file;
  }

  /** The master key, proven against the file's check value. */
  private async keyOf(file: VaultFile): Promise<Buffer> {
    if (!this.key && file.keySource === "passphrase") throw vaultLocked();
    const key = this.key ?? (await this.keys.load(file.keySource as "keyring" | "keyfile"));
    try {
      unseal(key, CHECK_NAME, file.check);
    } catch (error) {
      this.forgetKey();
      if (!(error instanceof UnsealError)) throw error;
      if (file.keySource === "passphrase") throw vaultLocked();
      throw new CloisterError(`${this.whereIsKey(file)} does not open the vault file ${this.file}`, "the key or the file was replaced since: restore the pair that belongs together from a backup");
    }
    this.key = key;
    return key;
  }

  private passphraseFile(file: VaultFile | undefined): VaultFile {
    if (file?.keySource === "passphrase") return file;
    const why = file ? `its key is in ${this.whereIsKey(file)}` : "there is no vault yet";
    throw new CloisterError(`the vault does not use a passphrase: ${why}`, "turn passphrase mode on with `cloister secret passphrase`");
  }

  private whereIsKey(file: VaultFile): string {
    return file.keySource === "passphrase" ? "a passphrase (scrypt)" : this.keys.describe(file.keySource);
  }

  private forgetKey(): void {
    this.key?.fill(0);
    this.key = undefined;
  }

  private async read(): Promise<VaultFile | undefined> {
    let text: string;
    try {
      text = await readFile(this.file, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
    return parseVaultFile(text, this.file);
  }

  private async write(file: VaultFile): Promise<void> {
    ensurePrivateDir(dirname(this.file));
    await writeFileAtomic(this.file, `${JSON.stringify(file, null, 2)}\n`, 0o600);
  }
}

export function checkSecretName(name: unknown): string {
  if (typeof name !== "string" || !SECRET_NAME_RE.test(name)) {
    throw new CloisterError(`invalid secret name ${JSON.stringify(name)}`, "a name starts with a letter, then up to 63 letters, digits, '_', '.' or '-'");
  }
  return name;
}

export function checkSecretValue(value: unknown): string {
  if (typeof value !== "string" || value === "") throw new CloisterError("a secret's value must not be empty");
  const bytes = Buffer.byteLength(value);
  if (bytes > MAX_VALUE_BYTES) throw new CloisterError(`a secret's value may have at most ${MAX_VALUE_BYTES} bytes; this one has ${bytes}`);
  if (value.includes("\0")) throw new CloisterError("a secret's value must not contain a NUL byte");
  // A lone surrogate would come back as U+FFFD: the stored value would not be the one given.
  if (Buffer.from(value, "utf8").toString("utf8") !== value) throw new CloisterError("a secret's value must be valid Unicode text");
  return value;
}

function checkDescription(description: string): void {
  if (description.length > MAX_DESCRIPTION_CHARS) throw new CloisterError(`a description may have at most ${MAX_DESCRIPTION_CHARS} characters`);
  if (/[\u0000-\u001f\u007f]/.test(description)) throw new CloisterError("a description must be one line of text");
}

/** An empty description removes the old one. */
function withDescription(entry: Entry, description: string | undefined): Entry {
  return description ? { ...entry, description } : entry;
}

/** Refuses a rule that does not parse, naming the secret; the CLI checks before it asks for the value. */
export function checkRule(name: string, inject: InjectionSpec): void {
  try {
    ruleFromSpec(name, inject);
  } catch (error) {
    if (error instanceof InjectionRuleError) throw new CloisterError(`the injection rule for ${name} is invalid: ${error.message}`);
    throw error;
  }
}

/** Refuses a value its rule (the user's, else a built-in one) could not put in a request. */
function checkPresentable(name: string, value: string, inject: InjectionSpec | undefined): void {
  const { inject: rule } = ruleOf(name, inject ? { inject } : {});
  const why = rule && unpresentable(rule.present, value);
  if (why) throw new CloisterError(`the value of ${name} cannot be injected: ${why}`, "give it as one line: a key or token has no line breaks inside");
}

function withRule(entry: Entry, inject: InjectionSpec | undefined): Entry {
  return inject ? { ...entry, inject: { hosts: inject.hosts, ...(inject.header !== undefined ? { header: inject.header } : {}), ...(inject.basic !== undefined ? { basic: inject.basic } : {}) } } : entry;
}

/** Own properties only: a secret named "constructor" must not find Object.prototype's. */
function entryOf(file: VaultFile, name: string): Entry | undefined {
  return Object.hasOwn(file.secrets, name) ? file.secrets[name] : undefined;
}

function infoOf(name: string, entry: Entry): SecretInfo {
  return { name, createdAt: entry.createdAt, updatedAt: entry.updatedAt, description: entry.description ?? null, ...ruleOf(name, entry) };
}

/** The rule in force for a secret. A stored rule that no longer parses brokers nothing, and says why. */
function ruleOf(name: string, entry: Pick<Entry, "inject">): { inject: InjectionRule | null; injectError: string | null } {
  if (!entry.inject) return { inject: effectiveRules([]).find((rule) => rule.secret === name) ?? null, injectError: null };
  try {
    return { inject: ruleFromSpec(name, entry.inject), injectError: null };
  } catch (error) {
    return { inject: null, injectError: error instanceof Error ? error.message : String(error) };
  }
}

function parseVaultFile(text: string, path: string): VaultFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw damaged(path, `not JSON (${(error as Error).message})`);
  }
  const version = (json as { version?: unknown } | null)?.version;
  if (typeof version === "number" && version > VAULT_FORMAT_VERSION) {
    throw new CloisterError(`the vault file ${path} has format version ${version}; this cloister reads version ${VAULT_FORMAT_VERSION}`, "upgrade cloister");
  }
  const parsed = fileSchema.safeParse(json);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw damaged(path, `${issue?.path.join(".") || "top level"}: ${issue?.message ?? "invalid"}`);
}

function damaged(path: string, detail: string): CloisterError {
  return new CloisterError(`the vault file ${path} is damaged: ${detail}`, "cloister leaves it untouched: restore it from a backup, or move it aside to start an empty vault");
}

function keyringNote(failure: string | undefined): string | undefined {
  return failure && `the OS keyring was not used: ${failure}`;
}

function noSuchSecret(name: string, hint = "see `cloister secret list`"): CloisterError {
  return new CloisterError(`no secret named ${JSON.stringify(name)}`, hint);
}

function vaultLocked(): CloisterError {
  return new CloisterError("the vault is locked: run `cloister secret unlock`");
}
