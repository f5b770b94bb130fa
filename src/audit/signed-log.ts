/**
 * The audit log's writing side: builds, chains, signs and writes its records (DESIGN.md decision
 * 8). It runs in the audit worker (audit-worker.ts), off the guardian's main thread: signing
 * (Ed25519, ~30 µs a record here) and the file writes cost the proxy ~180 µs of CPU per plain-HTTP
 * request when they ran beside it (docs/benchmarks.md). The guardian talks to it through AuditLog
 * (log.ts), which stamps each event's time and hands records over in batches.
 *
 * Record format and signed bytes: record.ts. Chain: chain.ts. Files and rotation: files.ts.
 * Crash recovery at open: resume.ts. Offline checking: verify.ts.
 */
import { basename } from "node:path";
import { ensurePrivateDir } from "../config/atomic-write.js";
import { CloisterError } from "../errors.js";
import { GENESIS_PREV, hashLine } from "./chain.js";
import { recordBody, SEGMENT_TYPE, signedLine, splitSignedLine, type AuditValue } from "./record.js";
import { resumeLog } from "./resume.js";
import { loadOrCreateKeys, signBody, verifyBody, type SigningKeys } from "./signing.js";
import { QueuedFileWriter } from "./writer.js";

/** When the log rotates; the guardian changes it at a reload (AuditLog.setRotation). */
export interface Rotation {
  /** Rotate before audit.jsonl would grow past this many bytes. Default 64 MiB. */
  maxBytes?: number;
  /** Rotated files kept (audit.1.jsonl … audit.<keep>.jsonl). Default 10. */
  keep?: number;
}

export interface AuditLogOptions extends Rotation {
  dir: string;
  /** Records appended but not yet in the file before new ones are counted instead (log.ts). Default MAX_BACKLOG. */
  maxBacklog?: number;
}

/** An event as AuditLog hands it over: sanitized fields (record.ts) and the time it happened. */
export interface StampedEvent {
  fields: Record<string, AuditValue>;
  time: string;
}

export const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;
export const DEFAULT_KEEP = 10;

/**
 * Past this many unwritten bytes (the disk is full or gone), new events are counted instead of queued,
 * so a stuck disk cannot grow the guardian's memory without bound. The count is written as one
 * `audit.dropped` record when there is room again: the loss is on the record, and the chain unbroken.
 */
export const MAX_PENDING_BYTES = 32 * 1024 * 1024;

/** `rotation` with its defaults filled in; throws a CloisterError for a size or count that cannot work. */
export function checkedRotation(rotation: Rotation): Required<Rotation> {
  const maxBytes = rotation.maxBytes ?? DEFAULT_MAX_BYTES;
  const keep = rotation.keep ?? DEFAULT_KEEP;
  if (!(maxBytes > 0)) throw new CloisterError(`audit maxBytes must be positive, not ${maxBytes}`);
  if (!Number.isInteger(keep) || keep < 0) throw new CloisterError(`audit keep must be a whole number ≥ 0, not ${keep}`);
  return { maxBytes, keep };
}

export class SignedLog {
  private seq: number;
  private prev: string;
  /** Bytes in audit.jsonl, counting queued records: the rotation decision is made at append time. */
  private fileBytes: number;
  /** Records in audit.jsonl besides its segment header: a file never rotates with only its header. */
  private fileRecords: number;
  private dropped = 0;
  /**
   * Records given to appendAll whose line is not queued: counted-only ones (see appendAll), on disk
   * once the `audit.dropped` note that counts them is; the writer's onWritten count includes them then.
   */
  private uncounted = 0;

  private constructor(
    private readonly keys: SigningKeys,
    private readonly writer: QueuedFileWriter,
    private maxBytes: number,
    private readonly onError: (error: Error) => void,
    state: { seq: number; prev: string; fileBytes: number; fileRecords: number },
  ) {
    this.seq = state.seq;
    this.prev = state.prev;
    this.fileBytes = state.fileBytes;
    this.fileRecords = state.fileRecords;
  }

  /**
   * Open (or create) the log in `options.dir`: directory 0700, key pair on first open, chain resumed
   * from the last intact record on disk (a cut-off tail from a crash is moved aside and noted in an
   * `audit.recovered` record). Write errors after this go to `onError`; nothing here throws later.
   * `onWritten` hears how many of the records given to appendAll are in the file (with wrap-around
   * at 2^31), after each write.
   */
  static async open(options: AuditLogOptions, onError: (error: Error) => void, onWritten: (records: number) => void): Promise<SignedLog> {
    const { maxBytes, keep } = checkedRotation(options);
    ensurePrivateDir(options.dir);
    const state = await resumeLog(options.dir);
    const keys = await loadOrCreateKeys(options.dir, state.tip === undefined);
    if (state.tip) assertSignedBy(state.tip.line, keys, `${basename(state.tip.file)} (seq ${state.tip.seq})`);

    const writer = await QueuedFileWriter.open(options.dir, keep, onError, onWritten);
    const log = new SignedLog(keys, writer, maxBytes, onError, {
      seq: state.tip?.seq ?? 0,
      prev: state.tip?.hash ?? GENESIS_PREV,
      fileBytes: state.currentBytes,
      fileRecords: state.currentHasRecords ? 1 : 0,
    });
    if (!state.currentHasRecords) log.emit(log.build(log.segmentFields(state.tip ? "resume" : "genesis")));
    for (const recovery of state.recoveries) {
      log.write({ type: "audit.recovered", file: basename(recovery.file), droppedBytes: recovery.droppedBytes, savedTo: basename(recovery.savedTo) });
    }
    return log;
  }

  get publicKeyPem(): string {
    return this.keys.publicKeyPem;
  }

  /** Fingerprint of the signing key (also in every file's `audit.segment` record). */
  get keyId(): string {
    return this.keys.keyId;
  }

  /** Sequence number of the last record written or queued (0 before the first). */
  get lastSeq(): number {
    return this.seq;
  }

  /**
   * Records `events` in order: seq, prev and signature now, the write soon after. A count of
   * records lost on their way here (AuditLog.append) becomes an `audit.dropped` record in its
   * place. Never throws.
   */
  appendAll(events: ReadonlyArray<StampedEvent | { dropped: number }>): void {
    for (const event of events) {
      const lost = "dropped" in event ? event.dropped : 0;
      try {
        if (this.writer.pendingBytes > MAX_PENDING_BYTES) {
          this.dropped += lost || 1;
          this.uncounted++;
          throw new Error(`audit log writes are ${MAX_PENDING_BYTES} bytes behind; records are being dropped`);
        }
        this.dropped += lost;
        if ("dropped" in event) this.uncounted++;
        if (this.dropped > 0) this.writeDroppedNote();
        if (!("dropped" in event)) this.write(event.fields, event.time, 1);
      } catch (error) {
        this.onError(error instanceof Error ? error : new Error(String(error)));
      }
    }
  }

  /**
   * Rotation from here on: the next record that would grow audit.jsonl past `maxBytes` rotates it,
   * and the next rotation keeps `keep` old files (deleting any beyond). Throws for values that
   * cannot work (checkedRotation).
   */
  setRotation(rotation: Rotation): void {
    const { maxBytes, keep } = checkedRotation(rotation);
    this.maxBytes = maxBytes;
    this.writer.setKeep(keep);
  }

  /** Resolves when every record appended so far is in the file and synced to disk (fdatasync). */
  async flush(): Promise<void> {
    await this.writer.drain();
    await this.writer.sync();
  }

  /** Writes what is queued (and the count of dropped records, if any), syncs, and closes the file. */
  async close(): Promise<void> {
    if (this.dropped > 0) this.writeDroppedNote();
    await this.writer.close();
  }

  private writeDroppedNote(): void {
    const records = this.dropped;
    const completes = this.uncounted;
    this.dropped = 0;
    this.uncounted = 0;
    this.write({ type: "audit.dropped", records }, new Date().toISOString(), completes);
  }

  /**
   * Build and queue one record, rotating first if it would not fit in the current file. `completes`:
   * how many records given to appendAll are on disk once this line is (QueuedFileWriter.push).
   */
  private write(fields: Record<string, AuditValue>, time = new Date().toISOString(), completes = 0): void {
    let line = this.build(fields, time);
    if (this.fileRecords > 0 && this.fileBytes + Buffer.byteLength(line) + 1 > this.maxBytes) {
      this.writer.pushRotation();
      this.fileBytes = 0;
      this.emit(this.build(this.segmentFields("rotation")));
      this.fileRecords = 0;
      line = this.build(fields, time); // again: its seq and prev changed
    }
    this.emit(line, completes);
    this.fileRecords++;
  }

  private segmentFields(reason: "genesis" | "resume" | "rotation"): Record<string, AuditValue> {
    return { type: SEGMENT_TYPE, reason, keyId: this.keys.keyId, format: 1 };
  }

  /** The signed line for the next seq; commits nothing (emit does). */
  private build(fields: Record<string, AuditValue>, time = new Date().toISOString()): string {
    const body = recordBody(this.seq + 1, time, fields, this.prev);
    return signedLine(body, signBody(body, this.keys.privateKey));
  }

  private emit(line: string, completes = 0): void {
    const bytes = Buffer.byteLength(line) + 1;
    this.seq++;
    this.prev = hashLine(line);
    this.fileBytes += bytes;
    this.writer.push(`${line}\n`, bytes, completes);
  }
}

/**
 * The record the chain resumes from must verify with our key: if it does not, the key file was
 * replaced or the log was edited, and continuing would mix two keys in one chain.
 */
function assertSignedBy(line: Buffer, keys: SigningKeys, where: string): void {
  const split = splitSignedLine(line);
  if (split && verifyBody(split.body, split.sig, keys.publicKey)) return;
  throw new CloisterError(
    `the last audit record, ${where}, is not signed by the audit signing key (key ${keys.keyId})`,
    "run `cloister audit verify` to see what changed; move the audit files aside to start a new log",
  );
}
