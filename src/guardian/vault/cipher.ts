/**
 * Sealing one vault value with AES-256-GCM. Each seal draws a fresh 96-bit nonce (random nonces are
 * safe far beyond the number of secrets a vault holds) and keeps the full 128-bit tag. The associated
 * data binds the value to its name and to the file format version: a ciphertext copied under another
 * name, or into a file of another format, fails to open instead of yielding someone else's secret.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { CloisterError } from "../../errors.js";

export const VAULT_FORMAT_VERSION = 1;
export const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const ALGORITHM = "aes-256-gcm";

/**
 * The name the vault's check value is sealed under (a known text that proves a key right or wrong
 * before any secret is touched). Secret names start with a letter, so no secret can take it.
 */
export const CHECK_NAME = "#check";

/** What the vault file holds for one value, each part base64. */
export interface Sealed {
  nonce: string;
  ciphertext: string;
  tag: string;
}

/** A sealed value that does not open: wrong key, wrong name, or changed bytes (GCM cannot tell which). */
export class UnsealError extends CloisterError {}

export function seal(key: Buffer, name: string, plaintext: string): Sealed {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv(ALGORITHM, checkedKey(key), nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(associatedData(name));
  const ciphertext = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
  return { nonce: nonce.toString("base64"), ciphertext: ciphertext.toString("base64"), tag: cipher.getAuthTag().toString("base64") };
}

export function unseal(key: Buffer, name: string, sealed: Sealed): string {
  const nonce = Buffer.from(sealed.nonce, "base64");
  const tag = Buffer.from(sealed.tag, "base64");
  const refused = new UnsealError(`${describe(name)} cannot be decrypted: the key is wrong, or the vault file was changed`);
  // Lengths are checked by hand: GCM would accept a short tag, which weakens the forgery bound.
  if (nonce.length !== NONCE_BYTES || tag.length !== TAG_BYTES) throw refused;
  const decipher = createDecipheriv(ALGORITHM, checkedKey(key), nonce, { authTagLength: TAG_BYTES });
  decipher.setAAD(associatedData(name));
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(Buffer.from(sealed.ciphertext, "base64")), decipher.final()]).toString("utf8");
  } catch {
    throw refused;
  }
}

function associatedData(name: string): Buffer {
  return Buffer.from(JSON.stringify(["cloister-vault", VAULT_FORMAT_VERSION, name]), "utf8");
}

function checkedKey(key: Buffer): Buffer {
  if (key.length !== KEY_BYTES) throw new CloisterError(`a vault key must be ${KEY_BYTES} bytes, not ${key.length}`);
  return key;
}

function describe(name: string): string {
  return name === CHECK_NAME ? "the vault's check value" : `secret ${JSON.stringify(name)}`;
}
