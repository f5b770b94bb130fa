/**
 * Where the chain left off when the log is opened: the last intact record on disk. A guardian killed
 * mid-write (kill -9, OOM, power loss) can leave a cut-off last line, or after a power loss a tail of
 * NUL bytes; those bytes are moved to a side file and cut from the log, so the next record links to
 * the last intact one and the whole log still verifies. Records are never rewritten, only that tail.
 */
import { open, stat, type FileHandle } from "node:fs/promises";
import { basename, join } from "node:path";
import { writeFileAtomic } from "../config/atomic-write.js";
import { hashLine } from "./chain.js";
import { CURRENT_FILE, listLogFiles } from "./files.js";
import { readFully, readLinesBackward } from "./lines.js";
import { parseRecordLine, type AuditRecord } from "./record.js";

export interface ChainTip {
  seq: number;
  /** SHA-256 of the tip's line: the `prev` of the next record. */
  hash: string;
  line: Buffer;
  file: string;
}

export interface Recovery {
  file: string;
  droppedBytes: number;
  /** Where the dropped bytes were saved (a file in the log directory). */
  savedTo: string;
}

export interface ResumeState {
  /** The last intact record; undefined for a log without any (start at genesis). */
  tip?: ChainTip;
  /** Whether audit.jsonl exists and holds at least one record (else a new file starts). */
  currentHasRecords: boolean;
  /** Size of audit.jsonl after recovery (0 when it does not exist). */
  currentBytes: number;
  recoveries: Recovery[];
  /** True when any log file exists at all, even an empty one. */
  anyFiles: boolean;
}

export async function resumeLog(dir: string): Promise<ResumeState> {
  const files = await listLogFiles(dir);
  const recoveries: Recovery[] = [];
  const state: ResumeState = { currentHasRecords: false, currentBytes: 0, recoveries, anyFiles: files.length > 0 };
  // Newest first: the tip is in the newest file that holds a record (audit.jsonl may be missing or
  // empty after a crash during rotation).
  for (const file of [...files].reverse()) {
    const { tip, keptBytes, recovery } = await recoverTail(file);
    if (recovery) recoveries.push(recovery);
    if (basename(file) === CURRENT_FILE) {
      state.currentBytes = keptBytes;
      state.currentHasRecords = tip !== undefined;
    }
    if (tip) {
      state.tip = tip;
      break;
    }
  }
  return state;
}

/** How the guardian that wrote a log last ended, as its next start records it (`guardian.start`). */
export interface PreviousEnd {
  /** Judged by the log's last record: `stopped` when it is guardian.stop, `crashed` after anything else. */
  previous: "none" | "stopped" | "crashed";
  /** The time of the log's last record, when there is one. */
  lastRecordAt?: string;
  /**
   * Bytes that are not a record follow the last one (a write cut off, a power loss's zeros, garbage):
   * the guardian moves them aside as it opens the log, and its audit.recovered record says where.
   */
  tail?: "damaged";
}

/**
 * Read before a guardian opens the log: a guardian killed (SIGKILL, OOM, power loss) writes no
 * guardian.stop, and the connections it had open get no egress.end, so the next start says so. The
 * last record is the one resumeLog will resume from, so this and the audit.recovered record agree.
 */
export async function previousEnd(dir: string): Promise<PreviousEnd> {
  const files = await listLogFiles(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return []; // the first start: the directory is made after this
    throw error;
  });
  let damaged = false;
  for (const file of files.reverse()) {
    const handle = await open(file, "r");
    try {
      const size = (await handle.stat()).size;
      const last = await lastRecordIn(handle, size);
      damaged ||= (last?.end ?? 0) < size;
      if (last) return describeEnd(last.record, damaged);
    } finally {
      await handle.close();
    }
  }
  return damaged ? { previous: "none", tail: "damaged" } : { previous: "none" };
}

function describeEnd(last: AuditRecord, damaged: boolean): PreviousEnd {
  const end: PreviousEnd = { previous: last.type === "guardian.stop" ? "stopped" : "crashed", lastRecordAt: last.time };
  if (damaged) end.tail = "damaged";
  return end;
}

/**
 * The last line of a file that is a well-formed record, and the offset just past its newline. Only
 * the shape is checked (a torn or zeroed line does not parse), not the signature.
 */
async function lastRecordIn(handle: FileHandle, size: number): Promise<{ line: Buffer; record: AuditRecord; end: number } | undefined> {
  for await (const line of readLinesBackward(handle, size)) {
    if (!line.terminated || line.bytes.length === 0) continue;
    const parsed = parseRecordLine(line.bytes);
    if ("record" in parsed) return { line: Buffer.from(line.bytes), record: parsed.record, end: line.offset + line.bytes.length + 1 };
  }
  return undefined;
}

/**
 * Find the last line of `file` that is a well-formed record and cut anything after it. A complete
 * record with a bad signature is left alone, because it is evidence, not crash debris.
 */
async function recoverTail(file: string): Promise<{ tip?: ChainTip; keptBytes: number; recovery?: Recovery }> {
  const size = (await stat(file)).size;
  const handle = await open(file, "r+");
  try {
    const last = await lastRecordIn(handle, size);
    const tip = last && { seq: last.record.seq, hash: hashLine(last.line), line: last.line, file };
    const keptBytes = last?.end ?? 0;
    if (keptBytes === size) return { tip, keptBytes };
    const dropped = Buffer.alloc(size - keptBytes);
    await readFully(handle, dropped, keptBytes);
    const savedTo = join(file, "..", `torn-${basename(file)}-${timestamp()}.part`);
    await writeFileAtomic(savedTo, dropped, 0o600);
    await handle.truncate(keptBytes);
    await handle.sync();
    return { tip, keptBytes, recovery: { file, droppedBytes: dropped.length, savedTo } };
  } finally {
    await handle.close();
  }
}

/** Compact UTC time for file names, e.g. 20250101T000000123Z. */
function timestamp(): string {
  return new Date().toISOString().replace(/[-:.]/g, "");
}
