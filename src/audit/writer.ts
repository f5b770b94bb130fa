/**
 * The I/O half of the audit log: lines already built, signed and chained (signed-log.ts) go into a
 * queue, and one loop appends them to audit.jsonl in batches, once per turn of the event loop. The
 * caller never waits and never sees an exception; a failed write keeps its bytes and is retried, so
 * a full disk delays records instead of punching a hole in the chain.
 *
 * The appends themselves are synchronous write(2) calls: this runs in the audit worker, a thread
 * that does nothing else, and an asynchronous write went through libuv's thread pool (which the
 * guardian's DNS lookups share) and woke this thread again for every batch.
 */
import { writeSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { CURRENT_FILE, rotateFiles } from "./files.js";

/** Marks where the current file ends and the next one begins. */
const ROTATE = Symbol("rotate");

/** Upper bound for one write(): large enough to amortise the syscall, small enough not to copy much. */
const MAX_BATCH_BYTES = 4 * 1024 * 1024;

/** After a failed write, wait this long before trying again on our own (flush() tries at once). */
const RETRY_DELAY_MS = 1000;

export class QueuedFileWriter {
  /** Lines waiting, from `head` on. An index instead of shift(): shift() is O(n) on a long array. */
  private queue: Array<string | typeof ROTATE> = [];
  /** For each entry of `queue`: how many appended records its line completes (see push). */
  private completes: number[] = [];
  private head = 0;
  /** Bytes queued or in the batch being written: what a crash right now would lose. */
  private pending = 0;
  /** The batch being written, minus what already reached the file. Survives a failed write. */
  private batch: { bytes: Buffer; lines: number; records: number } | undefined;
  private running: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryAt = 0;
  private failure: Error | undefined;
  private pushed = 0;
  private written = 0;
  /** Appended records whose lines are all in the file, counted with wrap-around (see onWritten). */
  private recordsWritten = 0;
  private unsynced = false;
  private closed = false;
  /** A write is due at the end of this turn of the event loop, when the turn's lines are all queued. */
  private writeScheduled = false;

  private constructor(
    private readonly dir: string,
    private keep: number,
    private handle: FileHandle | undefined,
    private readonly onError: (error: Error) => void,
    private readonly onWritten: (records: number) => void,
  ) {}

  /** `onWritten` hears, after each write, how many appended records are in the file so far (see push). */
  static async open(dir: string, keep: number, onError: (error: Error) => void, onWritten: (records: number) => void): Promise<QueuedFileWriter> {
    return new QueuedFileWriter(dir, keep, await openCurrent(dir), onError, onWritten);
  }

  /** Bytes not yet handed to the kernel. */
  get pendingBytes(): number {
    return this.pending;
  }

  /**
   * Queue one line (newline included); `bytes` is its UTF-8 length, already known to the caller.
   * `completes`: how many of the records appended to the log are in the file once this line is (an
   * event's own line completes it; a segment header completes none), for onWritten.
   */
  push(line: string, bytes: number, completes = 0): void {
    this.queue.push(line);
    this.completes.push(completes);
    this.pending += bytes;
    this.pushed++;
    if (this.writeScheduled) return;
    this.writeScheduled = true;
    setImmediate(() => {
      this.writeScheduled = false;
      this.kick();
    });
  }

  /** Everything pushed after this goes to a fresh audit.jsonl; the current one becomes audit.1.jsonl. */
  pushRotation(): void {
    this.queue.push(ROTATE);
    this.completes.push(0);
  }

  /** Rotated files kept from the next rotation on (one already queued included). */
  setKeep(keep: number): void {
    this.keep = keep;
  }

  /** Resolves once every line pushed before the call is in the file; rejects if a write keeps failing. */
  async drain(): Promise<void> {
    const target = this.pushed;
    while (this.written < target) {
      if (!this.running) this.start();
      await this.running;
      if (this.written < target && this.failure) throw this.failure;
    }
  }

  /** fdatasync, skipped when nothing was written since the last one. */
  async sync(): Promise<void> {
    if (!this.unsynced || !this.handle) return;
    this.unsynced = false;
    await this.handle.datasync();
  }

  async close(): Promise<void> {
    try {
      await this.drain();
      await this.sync();
    } finally {
      this.closed = true;
      clearTimeout(this.retryTimer);
      await this.handle?.close();
      this.handle = undefined;
    }
  }

  /** Start writing unless already at it, or backing off after a failure (then a timer will). */
  private kick(): void {
    if (this.running || this.closed) return;
    const wait = this.retryAt - Date.now();
    if (wait > 0) {
      this.retryTimer ??= setTimeout(() => {
        this.retryTimer = undefined;
        this.kick();
      }, wait).unref();
      return;
    }
    this.start();
  }

  private start(): void {
    this.running = this.run().finally(() => {
      this.running = undefined;
      // After a failure nobody may append again for a while: retry on a timer so the queue drains.
      if (this.failure && (this.queued() || this.batch)) this.kick();
    });
  }

  /** The one writing loop. Never rejects: a failure is kept in `failure` and reported. */
  private async run(): Promise<void> {
    this.failure = undefined;
    try {
      while (this.batch || this.queued()) {
        if (!this.batch && this.queue[this.head] === ROTATE) {
          this.head++;
          await this.rotate();
          continue;
        }
        this.handle ??= await openCurrent(this.dir);
        this.batch ??= this.takeBatch();
        while (this.batch.bytes.length > 0) {
          // O_APPEND: each write lands at the end, so a retried remainder continues the cut line.
          const bytesWritten = writeSync(this.handle.fd, this.batch.bytes);
          this.batch.bytes = this.batch.bytes.subarray(bytesWritten);
          this.pending -= bytesWritten;
          this.unsynced = true;
        }
        this.written += this.batch.lines;
        if (this.batch.records > 0) {
          this.recordsWritten = (this.recordsWritten + this.batch.records) | 0;
          this.onWritten(this.recordsWritten);
        }
        this.batch = undefined;
      }
      this.retryAt = 0;
    } catch (error) {
      this.failure = error instanceof Error ? error : new Error(String(error));
      this.retryAt = Date.now() + RETRY_DELAY_MS;
      this.onError(this.failure);
    }
  }

  private queued(): boolean {
    return this.head < this.queue.length;
  }

  /** Consecutive lines up to the next rotation mark, joined into one buffer. */
  private takeBatch(): { bytes: Buffer; lines: number; records: number } {
    const lines: string[] = [];
    let size = 0;
    let records = 0;
    for (let item = this.queue[this.head]; typeof item === "string" && size < MAX_BATCH_BYTES; item = this.queue[this.head]) {
      lines.push(item);
      size += item.length;
      records += this.completes[this.head] ?? 0;
      this.head++;
    }
    // Drop the consumed front now and then, so the arrays do not keep every line ever written.
    if (this.head === this.queue.length) {
      this.queue = [];
      this.completes = [];
      this.head = 0;
    } else if (this.head > 4096 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.completes = this.completes.slice(this.head);
      this.head = 0;
    }
    return { bytes: Buffer.from(lines.join("")), lines: lines.length, records };
  }

  /**
   * Close the full file (synced: it will not be written again), shift the rotated files, and open a
   * new audit.jsonl. If the renames fail, writing simply continues in whatever file is current: the
   * chain does not care which file a record is in, only about their order.
   */
  private async rotate(): Promise<void> {
    if (this.handle) {
      const full = this.handle;
      this.handle = undefined;
      try {
        await full.sync();
      } finally {
        await full.close();
      }
    }
    try {
      await rotateFiles(this.dir, this.keep);
    } catch (error) {
      this.onError(error instanceof Error ? error : new Error(String(error)));
    }
    this.handle = await openCurrent(this.dir);
    await syncDir(this.dir);
  }
}

async function openCurrent(dir: string): Promise<FileHandle> {
  const handle = await open(join(dir, CURRENT_FILE), "a", 0o600);
  await handle.chmod(0o600); // the umask may have loosened a newly created file
  return handle;
}

/** Make the renames of a rotation durable; some filesystems refuse fsync on a directory (not fatal). */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r").catch(() => undefined);
  await handle?.sync().catch(() => undefined);
  await handle?.close();
}
