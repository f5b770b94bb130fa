/**
 * The audit log as the guardian uses it: one signed, hash-chained JSONL record per event (DESIGN.md
 * decision 8). append() only sanitizes the event and stamps its time; every few milliseconds the
 * records go, in call order, to the audit worker (audit-worker.ts), a thread that assigns seq and
 * prev, signs, and writes (signed-log.ts). The proxy appends twice per request; signing and writing
 * on its own thread had cost it ~160 µs of CPU per kept-alive plain-HTTP request (docs/audit.md).
 */
import { Worker } from "node:worker_threads";
import { CloisterError } from "../errors.js";
import { sanitizeEvent } from "./record.js";
import type { AuditLogOptions, StampedEvent } from "./signed-log.js";
import type { DroppedEvents, FromWorker, ToWorker, WorkerStart } from "./worker-messages.js";

export type { AuditLogOptions } from "./signed-log.js";

/** How long appended records may wait before they go to the worker together. */
const HAND_OVER_MS = 5;

/**
 * Past this many records handed over but not yet taken on by the worker (it is stuck, e.g. in a
 * write to a hung file system), new events are counted instead of kept, so the guardian's memory
 * stays bounded; the worker writes the count as an `audit.dropped` record once it moves again.
 * ~40 s of a busy proxy's records; the worker takes on ~25,000 a second.
 */
const MAX_BACKLOG = 100_000;

export type AuditEvent = { type: string } & Record<string, string | number | boolean | null>;

/**
 * Starts the worker from its file beside this one: dist/audit/, or dist/bundle/ in the guardian's
 * bundle, which has it as an entry of its own (scripts/bundle.mjs). Run from TypeScript source (the
 * tests, the bench) the file is audit-worker.ts, and node 20 does not pass tsx's loader on to a
 * worker thread, so a one-line module registers it there first.
 */
function startWorker(start: WorkerStart): Worker {
  if (!import.meta.url.endsWith(".ts")) return new Worker(new URL("./audit-worker.js", import.meta.url), { workerData: start });
  const boot = `import { register } from ${JSON.stringify(import.meta.resolve("tsx/esm/api"))}; register(); await import(${JSON.stringify(new URL("./audit-worker.ts", import.meta.url).href)});`;
  return new Worker(new URL(`data:text/javascript,${encodeURIComponent(boot)}`), { workerData: start });
}

export class AuditLog {
  /** Appended, not yet handed to the worker: see scheduleHandOver. */
  private outbox: Array<StampedEvent | DroppedEvents> = [];
  private handOverScheduled = false;
  /** Records handed to the worker, and records it has taken on (its counter, shared): both wrap at 2^31. */
  private handedOver = 0;
  private readonly taken: Int32Array;
  private closed = false;
  /** Set when the worker is gone; every later call fails with it. */
  private stopped: Error | undefined;
  private error: Error | undefined;
  private reported = false;
  private nextId = 1;
  private readonly answers = new Map<number, { resolve: (seq: number) => void; reject: (error: Error) => void }>();

  private constructor(
    private readonly worker: Worker,
    taken: SharedArrayBuffer,
    private readonly maxBacklog: number,
    readonly publicKeyPem: string,
    /** Fingerprint of the signing key (also in every file's `audit.segment` record). */
    readonly keyId: string,
  ) {
    this.taken = new Int32Array(taken);
    worker.on("message", (message: FromWorker) => this.hear(message));
    worker.on("error", (error) => this.workerStopped(`failed: ${error.message}`));
    worker.on("exit", (code) => this.workerStopped(`exited (code ${code})`));
    // The worker keeps the process alive only while someone waits for an answer (see ask()).
    worker.unref();
  }

  /**
   * Open (or create) the log in `options.dir`: directory 0700, key pair on first open, chain resumed
   * from the last intact record on disk (a cut-off tail from a crash is moved aside and noted in an
   * `audit.recovered` record). Rejects with a CloisterError when the log cannot be opened.
   */
  static async open(options: AuditLogOptions): Promise<AuditLog> {
    const taken = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);
    const worker = startWorker({ options, taken });
    let settle: { resolve: (message: FromWorker) => void; reject: (error: Error) => void } | undefined;
    const onExit = (code: number) => settle?.reject(new Error(`the audit worker exited (code ${code}) before opening the log`));
    const first = await new Promise<FromWorker>((resolve, reject) => {
      settle = { resolve, reject };
      worker.once("message", resolve).once("error", reject).once("exit", onExit);
    }).finally(() => {
      if (settle) worker.off("message", settle.resolve).off("error", settle.reject);
      worker.off("exit", onExit);
    });
    if (first.kind === "ready") return new AuditLog(worker, taken, options.maxBacklog ?? MAX_BACKLOG, first.publicKeyPem, first.keyId);
    await worker.terminate();
    if (first.kind === "failed") throw new CloisterError(first.message, first.hint);
    throw new Error(`the audit worker said ${first.kind} before opening the log`);
  }

  /** The most recent write or usage error, if any (append never throws; this is where errors go). */
  get lastError(): Error | undefined {
    return this.error;
  }

  /**
   * Record an event. Returns at once: the time is taken now and records keep the order of the calls;
   * seq, prev and signature are the worker's, and the write follows (flush() waits for it). Fields
   * named like credentials (token, secret, password, …) are dropped and the record is marked
   * `redacted: true`. Never throws.
   */
  append(event: AuditEvent): void {
    try {
      if (this.closed) throw new Error("audit record appended after close()");
      if (this.stopped) throw this.stopped;
      if (this.backlog() >= this.maxBacklog) {
        this.countDropped();
        throw new Error(`the audit worker is ${this.maxBacklog} records behind (is the disk stuck?); records are being dropped`);
      }
      this.outbox.push({ fields: sanitizeEvent(event), time: new Date().toISOString() });
      this.scheduleHandOver();
    } catch (error) {
      this.noteError(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /** Sequence number of the last record appended (0 before the first), once the worker has it. */
  lastSeq(): Promise<number> {
    return this.ask("last-seq");
  }

  /** Resolves when every record appended so far is in the file and synced to disk (fdatasync). */
  async flush(): Promise<void> {
    await this.ask("flush");
  }

  /** Flush, then close the file and end the worker. Later appends are ignored (and noted in lastError). */
  async close(): Promise<void> {
    if (this.closed) return;
    const closing = this.ask("close");
    this.closed = true;
    try {
      await closing;
    } finally {
      await this.worker.terminate();
    }
  }

  /**
   * Records go over in one message at most every HAND_OVER_MS: a message per turn of the event loop
   * woke the idle worker twice per proxied request, and all those wake-ups together cost more CPU
   * than the signatures (flush() and close() hand over at once).
   */
  private scheduleHandOver(): void {
    if (this.handOverScheduled) return;
    this.handOverScheduled = true;
    setTimeout(() => this.handOver(), HAND_OVER_MS).unref();
  }

  private handOver(): void {
    this.handOverScheduled = false;
    if (this.outbox.length === 0 || this.stopped) return;
    this.post({ kind: "append", events: this.outbox });
    this.handedOver = (this.handedOver + this.outbox.length) | 0;
    this.outbox = [];
  }

  /** One more record lost: counted in the outbox where it would have been, so the note lands in order. */
  private countDropped(): void {
    const last = this.outbox[this.outbox.length - 1];
    if (last && "dropped" in last) last.dropped++;
    else this.outbox.push({ dropped: 1 });
    this.scheduleHandOver();
  }

  /** Records appended and not yet taken on by the worker. */
  private backlog(): number {
    return ((this.handedOver - Atomics.load(this.taken, 0)) | 0) + this.outbox.length;
  }

  /** Sends a request after everything appended so far; resolves with the worker's seq at that point. */
  private ask(kind: "flush" | "last-seq" | "close"): Promise<number> {
    if (this.stopped) return Promise.reject(this.stopped);
    if (this.closed) return Promise.reject(new Error("the audit log is closed"));
    this.handOver();
    const id = this.nextId++;
    const answer = new Promise<number>((resolve, reject) => this.answers.set(id, { resolve, reject }));
    if (this.answers.size === 1) this.worker.ref();
    this.post({ kind, id });
    return answer;
  }

  private post(message: ToWorker): void {
    this.worker.postMessage(message);
  }

  private hear(message: FromWorker): void {
    if (message.kind === "error") return this.noteError(new Error(message.message));
    if (message.kind !== "done") return;
    const waiting = this.answers.get(message.id);
    this.answers.delete(message.id);
    if (this.answers.size === 0) this.worker.unref();
    if (message.error === undefined) waiting?.resolve(message.seq);
    else waiting?.reject(new Error(message.error));
  }

  /** The worker ended (after close, or on a crash): nothing more can be recorded. */
  private workerStopped(how: string): void {
    if (this.stopped) return;
    this.stopped = new Error(`the audit worker ${how}; no more audit records can be written`);
    if (!this.closed) this.noteError(this.stopped);
    for (const { reject } of this.answers.values()) reject(this.stopped);
    this.answers.clear();
  }

  /** Keep the error for lastError/flush; tell stderr (the guardian's log) once, not per record. */
  private noteError(error: Error): void {
    this.error = error;
    if (this.reported) return;
    this.reported = true;
    process.stderr.write(`cloister: audit log: ${error.message} (further audit errors are not printed)\n`);
  }
}
