/**
 * Where the chain left off when the log is opened: the last intact record on disk. A guardian killed
 * mid-write (kill -9, OOM, power loss) can leave a cut-off last line, or after a power loss a tail of
 * NUL bytes; those bytes are moved to a side file and cut from the log, so the next record links to
 * the last intact one and the whole log still verifies. Records are never rewritten, only that tail.
 */
import { open, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { writeFileAtomic } from "../config/atomic-write.js";
import { hashLine } from "./chain.js";
import { CURRENT_FILE, listLogFiles } from "./files.js";
import { readFully, readLinesBackward } from "./lines.js";
import { parseRecordLine } from "./record.js";

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

/**
 * Find the last line of `file` that is a well-formed record and cut anything after it. Only the
 * shape is checked here (a torn or zeroed line does not parse); a complete record with a bad
 * signature is left alone, because it is evidence, not crash debris.
 */
async function recoverTail(file: string): Promise<{ tip?: ChainTip; keptBytes: number; recovery?: Recovery }> {
  const size = (await stat(file)).size;
  const handle = await open(file, "r+");
  try {
    let keptBytes = 0;
    let tip: ChainTip | undefined;
    for await (const line of readLinesBackward(handle, size)) {
      if (line.terminated && line.bytes.length > 0) {
        const parsed = parseRecordLine(line.bytes);
        if ("record" in parsed) {
          tip = { seq: parsed.record.seq, hash: hashLine(line.bytes), line: Buffer.from(line.bytes), file };
          keptBytes = line.offset + line.bytes.length + 1;
          break;
        }
      }
    }
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
