/**
 * The hash chain: every record carries `prev`, the SHA-256 of the previous record's complete line
 * (signature included, newline excluded). Deleting, inserting or reordering a record breaks the link
 * of the record after it; editing one breaks its own signature.
 */
import { createHash } from "node:crypto";

/**
 * What the very first record of a log points back to. A fixed, documented marker (rather than 64
 * zeros) so that "this log starts at its genesis" is something a verifier can recognise.
 */
export const GENESIS_MARKER = "cloister audit log genesis v1";
export const GENESIS_PREV = sha256Hex(GENESIS_MARKER);

export function hashLine(line: string | Buffer): string {
  return sha256Hex(line);
}

function sha256Hex(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}
