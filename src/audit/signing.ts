/**
 * The log's Ed25519 key pair: created on first open, private half 0600, public half next to it so a
 * verifier (or a copy kept elsewhere) can check the log offline with nothing else.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";
import { chmod, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { createFileAtomic, writeFileAtomic } from "../config/atomic-write.js";
import { CloisterError } from "../errors.js";

export const PRIVATE_KEY_FILE = "signing-key.pem";
export const PUBLIC_KEY_FILE = "signing-key.pub.pem";

export interface SigningKeys {
  privateKey: KeyObject;
  publicKey: KeyObject;
  publicKeyPem: string;
  /** Short fingerprint of the public key, written into each file's first record (see log.ts). */
  keyId: string;
}

/**
 * Load the key pair from `dir`, creating it if there is none. `mayCreate: false` is for a directory
 * that already holds records: a fresh key there would make every old record unverifiable, so a
 * missing key is an error the user must look at rather than something to paper over.
 */
export async function loadOrCreateKeys(dir: string, mayCreate: boolean): Promise<SigningKeys> {
  const privatePath = join(dir, PRIVATE_KEY_FILE);
  let privatePem = await readFile(privatePath, "utf8").catch((error: unknown) => {
    if (isNotFound(error)) return undefined;
    throw error;
  });
  if (privatePem === undefined) {
    if (!mayCreate) {
      throw new CloisterError(
        `the audit log in ${dir} has records but its signing key ${PRIVATE_KEY_FILE} is missing`,
        "restore the key, or move the old audit files elsewhere to start a new log",
      );
    }
    const pair = generateKeyPairSync("ed25519");
    const pem = pair.privateKey.export({ format: "pem", type: "pkcs8" }).toString();
    // link()-based create: if two processes race on first start, one key wins and both use it.
    await createFileAtomic(privatePath, pem, 0o600);
    privatePem = await readFile(privatePath, "utf8");
  }
  // A key copied in by hand may carry the umask's 0644: nobody but us may read it.
  if (((await stat(privatePath)).mode & 0o077) !== 0) await chmod(privatePath, 0o600);
  const privateKey = parsePrivateKey(privatePem, privatePath);
  const publicKey = createPublicKey(privateKey);
  const publicKeyPem = publicKey.export({ format: "pem", type: "spki" }).toString();
  await writePublicKeyIfStale(join(dir, PUBLIC_KEY_FILE), publicKeyPem);
  return { privateKey, publicKey, publicKeyPem, keyId: keyIdOf(publicKey) };
}

/** The public file is derived data: rewrite it when missing or not matching the private key. */
async function writePublicKeyIfStale(path: string, pem: string): Promise<void> {
  const current = await readFile(path, "utf8").catch(() => undefined);
  if (current !== pem) await writeFileAtomic(path, pem, 0o644);
}

function parsePrivateKey(pem: string, path: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    throw new CloisterError(`${path} is not a readable private key`);
  }
  if (key.asymmetricKeyType !== "ed25519") throw new CloisterError(`${path} is a ${key.asymmetricKeyType} key, not Ed25519`);
  return key;
}

/** The label of a PEM private key in any of its encodings (PKCS#8, encrypted, PKCS#1, SEC1, OpenSSH). */
const PRIVATE_PEM_RE = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;

/**
 * A public key from PEM text, refused unless it is Ed25519 (the only kind a record is signed with).
 * A private key is refused too, though node would derive the public half from it: the key that
 * proves the log must be one that cannot sign it, and a copy of the private key kept "to verify
 * with" is a copy that can forge records.
 */
export function parsePublicKey(pem: string, source: string): KeyObject {
  if (PRIVATE_PEM_RE.test(pem)) {
    throw new CloisterError(
      `${source} is a private key; verifying takes the public key`,
      `pass ${PUBLIC_KEY_FILE} from the audit directory (cloister audit path) or a copy of it (cloister audit key prints it), and keep the private key out of copies`,
    );
  }
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch {
    throw new CloisterError(`${source} is not a PEM public key`);
  }
  if (key.asymmetricKeyType !== "ed25519") throw new CloisterError(`${source} is a ${key.asymmetricKeyType} key, not Ed25519`);
  return key;
}

/** First 16 hex digits of the SHA-256 of the key's SPKI encoding: enough to tell keys apart in a message. */
export function keyIdOf(publicKey: KeyObject): string {
  return createHash("sha256").update(publicKey.export({ format: "der", type: "spki" })).digest("hex").slice(0, 16);
}

export function signBody(body: string | Buffer, privateKey: KeyObject): string {
  return sign(null, typeof body === "string" ? Buffer.from(body) : body, privateKey).toString("base64");
}

export function verifyBody(body: Buffer, sig: string, publicKey: KeyObject): boolean {
  try {
    return verify(null, body, publicKey, Buffer.from(sig, "base64"));
  } catch {
    return false;
  }
}

function isNotFound(error: unknown): boolean {
  return error instanceof Error && "code" in error && error.code === "ENOENT";
}
