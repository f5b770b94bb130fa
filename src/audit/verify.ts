/**
 * Offline verification: given the log files and the public key (nothing else: no guardian, no
 * private key), check every record's signature, that seq counts up by one, and that each `prev` is
 * the hash of the line before it, across rotated files. Stops at the first bad record and names it.
 */
import { readFile, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { CloisterError } from "../errors.js";
import { GENESIS_PREV, hashLine } from "./chain.js";
import { listLogFiles } from "./files.js";
import { readLinesForward } from "./lines.js";
import { parseRecordLine, SEGMENT_TYPE, splitSignedLine } from "./record.js";
import { explainSeqMismatch, fileBoundary } from "./seq-mismatch.js";
import { keyIdOf, parsePublicKey, PUBLIC_KEY_FILE, verifyBody } from "./signing.js";

export interface VerifyResult {
  ok: boolean;
  /** Records that passed every check (before the first bad one, if any). */
  records: number;
  /** Files checked, oldest first. */
  files: string[];
  /** `expectedSeq`: when the record's seq is not the one that should come next. */
  firstBad?: { file: string; line: number; seq?: number; expectedSeq?: number; reason: string };
  /**
   * Where the chain begins: at its genesis record (seq 1), or later when older rotated files were
   * pruned (by design: `keep` bounds the disk used). Absent for an empty log.
   */
  chainStart?: { seq: number; genesis: boolean };
  /** seq of the last good record. */
  lastSeq?: number;
}

/**
 * Verify a log directory (all its files, oldest first) or one file, with the key given or the one
 * next to the log. `keySource` names the key given in messages (the file it came from).
 */
export async function verifyAuditLog(pathOrDir: string, publicKeyPem?: string, keySource = "the public key given"): Promise<VerifyResult> {
  // Only a missing log is "no audit log": one the caller may not read (another user's) is not.
  const isDir = await stat(pathOrDir).then(
    (info) => info.isDirectory(),
    (error: NodeJS.ErrnoException) => {
      throw error.code === "ENOENT" ? new CloisterError(`no audit log at ${pathOrDir}`) : error;
    },
  );
  const files = isDir ? await listLogFiles(pathOrDir) : [pathOrDir];
  if (files.length === 0) throw new CloisterError(`no audit log files in ${pathOrDir}`, "the guardian creates audit.jsonl when it starts");
  const keyFile = join(isDir ? pathOrDir : dirname(pathOrDir), PUBLIC_KEY_FILE);
  const pem =
    publicKeyPem ??
    (await readFile(keyFile, "utf8").catch((error: NodeJS.ErrnoException) => {
      throw error.code === "ENOENT" ? new CloisterError(`no public key at ${keyFile}`, "pass the key the log was signed with: --pubkey FILE") : error;
    }));
  const publicKey = parsePublicKey(pem, publicKeyPem === undefined ? keyFile : keySource);
  const keyId = keyIdOf(publicKey);

  const result: VerifyResult = { ok: true, records: 0, files };
  let expectedSeq: number | undefined;
  let prevHash = "";
  let prevFile = "";
  /** keyId claimed by the latest segment record: lets a signature failure say "wrong key". */
  let signerKeyId: string | undefined;

  for (const [fileIndex, file] of files.entries()) {
    let firstInFile = true;
    for await (const { bytes, terminated, lineNo } of readLinesForward(file)) {
      const fail = (reason: string, seq?: number, expectedSeq?: number): VerifyResult => {
        result.ok = false;
        result.firstBad = { file, line: lineNo, ...(seq === undefined ? {} : { seq }), ...(expectedSeq === undefined ? {} : { expectedSeq }), reason };
        return result;
      };
      if (!terminated) return fail("cut off: the last line has no newline (a write was interrupted; the guardian moves it aside when it next starts)");
      if (bytes.length === 0) return fail("empty line");
      const parsed = parseRecordLine(bytes);
      if ("problem" in parsed) return fail(parsed.problem);
      const record = parsed.record;
      if (record.type === SEGMENT_TYPE && typeof record.keyId === "string") signerKeyId = record.keyId;
      const split = splitSignedLine(bytes);
      if (!split) return fail("the signature is not the record's last field", record.seq);
      if (!verifyBody(split.body, split.sig, publicKey)) {
        const otherKey = signerKeyId !== undefined && signerKeyId !== keyId;
        return fail(
          otherKey
            ? `signature does not verify: this log says it is signed by key ${signerKeyId}, the public key given is ${keyId} (wrong key?), or the record was edited`
            : "signature does not verify: the record was edited (or signed by another key)",
          record.seq,
        );
      }
      if (expectedSeq === undefined) {
        const genesis = record.prev === GENESIS_PREV;
        if (genesis && record.seq !== 1) return fail(`the genesis record has seq ${record.seq}, not 1`, record.seq);
        if (record.type !== SEGMENT_TYPE) return fail(`the log starts in the middle of a file: the records before seq ${record.seq} were removed`, record.seq);
        result.chainStart = { seq: record.seq, genesis };
      } else {
        if (record.seq !== expectedSeq) {
          const chainStart = result.chainStart?.seq ?? expectedSeq;
          const reason = await explainSeqMismatch({ files, fileIndex, line: lineNo, expected: expectedSeq, found: record.seq, previousFile: prevFile, chainStart, publicKey });
          return fail(reason, record.seq, expectedSeq);
        }
        const where = firstInFile ? fileBoundary(file, prevFile, expectedSeq - 1) : "";
        if (record.prev !== prevHash) return fail(`prev does not match the hash of the record before it: a record was replaced or moved${where}`, record.seq);
        if (firstInFile && record.type !== SEGMENT_TYPE) return fail(`${basename(file)} does not start with an ${SEGMENT_TYPE} record: records were removed`, record.seq);
      }
      firstInFile = false;
      expectedSeq = record.seq + 1;
      prevHash = hashLine(bytes);
      prevFile = file;
      result.records++;
      result.lastSeq = record.seq;
    }
  }
  if (result.records === 0) {
    // Not "intact: nothing to check": the guardian begins each file it creates with a segment record
    // (and signs a start record), so a log without records is one that was emptied.
    result.ok = false;
    result.firstBad = { file: files[files.length - 1] ?? pathOrDir, line: 1, reason: `no records: the guardian begins every log file with an ${SEGMENT_TYPE} record, so this log was emptied` };
  }
  return result;
}

/** One line for people: "intact: …" or "<file> line L (seq S): reason". */
export function describeVerifyResult(result: VerifyResult): string {
  const { firstBad: bad, chainStart: chain } = result;
  if (bad) return `${bad.file} line ${bad.line}${bad.seq === undefined ? "" : ` (seq ${bad.seq})`}: ${bad.reason}`;
  const files = `${result.files.length} file${result.files.length === 1 ? "" : "s"}`;
  // Only an emptied log has no chain start, and verifyAuditLog reports that one as bad.
  if (!chain) return `no records in ${files}`;
  const start = chain.genesis ? "from its genesis record" : `chain starts at seq ${chain.seq} (older files were rotated out)`;
  return `intact: ${result.records} records in ${files}, seq ${chain.seq}–${result.lastSeq}, ${start}`;
}
