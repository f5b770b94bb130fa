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
import { checkedRotation, type AuditLogOptions, type Rotation, type StampedEvent } from "./signed-log.js";
import type { DroppedEvents, FromWorker, ToWorker, WorkerStart } from "./worker-messages.js";

export type { AuditLogOptions } from "./signed-log.js";

/** How long appended records may wait before they go to the worker together. */
const HAND_OVER_MS = 5;

/**
 * Past this many records appended but not yet in the file (the worker is stuck, e.g. in a write to
 * a hung file system), new events are counted instead of kept, so the guardian's memory stays
 * bounded; the worker writes the count as an `audit.dropped` record once it moves again.
 * ~40 s of a busy proxy's records; the worker takes on ~25,000 a second.
 */
const MAX_BACKLOG = 100_000;

/**
 * A worker that ends on its own (a bug, or out of memory) is started again at most this many times
 * within RESTART_WINDOW_MS: a record that killed it each time would otherwise loop forever.
 */
const MAX_RESTARTS = 3;
const RESTART_WINDOW_MS = 60_000;

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

/** A worker that opened the log, and its count of records written (WorkerStart.written). */
interface BootedWorker {
  worker: Worker;
  written: Int32Array;
  publicKeyPem: string;
  keyId: string;
}

/** Starts a worker and waits until it has opened the log (chain resumed from disk). */
async function bootWorker(options: AuditLogOptions): Promise<BootedWorker> {
  const written = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);
  const worker = startWorker({ options, written });
  let settle: { resolve: (message: FromWorker) => void; reject: (error: Error) => void } | undefined;
  const onExit = (code: number) => settle?.reject(new Error(`the audit worker exited (code ${code}) before opening the log`));
  const first = await new Promise<FromWorker>((resolve, reject) => {
    settle = { resolve, reject };
    worker.once("message", resolve).once("error", reject).once("exit", onExit);
  }).finally(() => {
    if (settle) worker.off("message", settle.resolve).off("error", settle.reject);
    worker.off("exit", onExit);
  });
  if (first.kind === "ready") return { worker, written: new Int32Array(written), publicKeyPem: first.publicKeyPem, keyId: first.keyId };
  await worker.terminate();
  if (first.kind === "failed") throw new CloisterError(first.message, first.hint);
  throw new Error(`the audit worker said ${first.kind} before opening the log`);
}

type Outgoing = StampedEvent | DroppedEvents;
type Question = "flush" | "last-seq" | "close";

export class AuditLog {
  /** Appended, not yet handed to the worker: see scheduleHandOver. */
  private outbox: Outgoing[] = [];
  private handOverScheduled = false;
  private worker!: Worker;
  /** The worker's count of records handed to it that are in the file (shared; wraps at 2^31). */
  private written!: Int32Array;
  /** Records handed to the current worker (wraps at 2^31). */
  private handedOver = 0;
  /**
   * What the current worker was handed and has not all written, batch by batch, oldest first;
   * `inFlightStart` is handedOver as it was before the first of them. Kept so that a worker that
   * dies loses nothing: its successor is handed these again (restartWorker).
   */
  private inFlight: Outgoing[][] = [];
  private inFlightStart = 0;
  /** Set while a new worker opens the log: appends and questions wait for it. */
  private restarting = false;
  /** When the worker was started again, within the last RESTART_WINDOW_MS. */
  private restarts: number[] = [];
  private closed = false;
  /** Set when the worker is gone for good; every later call fails with it. */
  private stopped: Error | undefined;
  private error: Error | undefined;
  private reported = false;
  private nextId = 1;
  private readonly answers = new Map<number, { kind: Question; resolve: (seq: number) => void; reject: (error: Error) => void }>();
  /** Records appended and not yet in the file past which new ones are counted instead (see append). */
  private readonly maxBacklog: number;
  readonly publicKeyPem: string;
  /** Fingerprint of the signing key (also in every file's `audit.segment` record). */
  readonly keyId: string;

  private constructor(
    /** What a worker opens the log with; its rotation is the latest setRotation's. */
    private options: AuditLogOptions,
    booted: BootedWorker,
  ) {
    this.maxBacklog = options.maxBacklog ?? MAX_BACKLOG;
    this.publicKeyPem = booted.publicKeyPem;
    this.keyId = booted.keyId;
    this.attach(booted);
  }

  /**
   * Open (or create) the log in `options.dir`: directory 0700, key pair on first open, chain resumed
   * from the last intact record on disk (a cut-off tail from a crash is moved aside and noted in an
   * `audit.recovered` record). Rejects with a CloisterError when the log cannot be opened.
   */
  static async open(options: AuditLogOptions): Promise<AuditLog> {
    return new AuditLog(options, await bootWorker(options));
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
        throw new Error(`the audit log is ${this.maxBacklog} records behind (is the disk stuck?); records are being dropped`);
      }
      this.outbox.push({ fields: sanitizeEvent(event), time: new Date().toISOString() });
      this.scheduleHandOver();
    } catch (error) {
      this.noteError(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /**
   * Rotation for the records appended from now on (a guardian reload applies the config's
   * audit.max_size and audit.keep). Throws a CloisterError for values that cannot work.
   */
  setRotation(rotation: Rotation): void {
    checkedRotation(rotation);
    this.options = { ...this.options, maxBytes: rotation.maxBytes, keep: rotation.keep };
    // During a restart the new worker opens the log with these options (restartWorker).
    if (this.stopped || this.closed || this.restarting) return;
    this.handOver();
    this.post({ kind: "rotation", rotation });
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

  /** Listens to a newly opened worker, which becomes the current one. */
  private attach(booted: BootedWorker): void {
    const { worker } = booted;
    this.worker = worker;
    this.written = booted.written;
    this.handedOver = 0;
    this.inFlight = [];
    this.inFlightStart = 0;
    worker.on("message", (message: FromWorker) => this.hear(message));
    worker.on("error", (error) => this.workerEnded(worker, `failed: ${error.message}`));
    worker.on("exit", (code) => this.workerEnded(worker, `exited (code ${code})`));
    // The worker keeps the process alive only while someone waits for an answer (see ask()).
    if (this.answers.size === 0) worker.unref();
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
    if (this.outbox.length === 0 || this.stopped || this.restarting) return;
    this.forgetWritten();
    this.inFlight.push(this.outbox);
    this.post({ kind: "append", events: this.outbox });
    this.handedOver = (this.handedOver + this.outbox.length) | 0;
    this.outbox = [];
  }

  /** Lets go of the batches handed over that are in the file by now. */
  private forgetWritten(): void {
    const written = Atomics.load(this.written, 0);
    for (let first = this.inFlight[0]; first && ((written - this.inFlightStart) | 0) >= first.length; first = this.inFlight[0]) {
      this.inFlightStart = (this.inFlightStart + first.length) | 0;
      this.inFlight.shift();
    }
  }

  /** One more record lost: counted in the outbox where it would have been, so the note lands in order. */
  private countDropped(): void {
    const last = this.outbox[this.outbox.length - 1];
    if (last && "dropped" in last) last.dropped++;
    else this.outbox.push({ dropped: 1 });
    this.scheduleHandOver();
  }

  /** Records appended and not yet in the file. */
  private backlog(): number {
    return ((this.handedOver - Atomics.load(this.written, 0)) | 0) + this.outbox.length;
  }

  /** Sends a request after everything appended so far; resolves with the worker's seq at that point. */
  private ask(kind: Question): Promise<number> {
    if (this.stopped) return Promise.reject(this.stopped);
    if (this.closed) return Promise.reject(new Error("the audit log is closed"));
    this.handOver();
    const id = this.nextId++;
    const answer = new Promise<number>((resolve, reject) => this.answers.set(id, { kind, resolve, reject }));
    if (this.answers.size === 1) this.worker.ref();
    // During a restart the question goes to the new worker, after what was appended before it.
    if (!this.restarting) this.post({ kind, id });
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

  /** A worker ended: after close() that is its job done; otherwise it is started again. */
  private workerEnded(worker: Worker, how: string): void {
    // "error" and "exit" both come for one crash; a replaced worker's are old news.
    if (worker !== this.worker || this.restarting || this.stopped) return;
    if (this.closed) return this.giveUp(how);
    this.restarting = true;
    void this.restartWorker(how);
  }

  /**
   * Opens the log in a new worker (the chain resumes from the file, as after a guardian restart)
   * and hands it, in order: an `audit.worker-restarted` record, every record the old worker was
   * handed but had not written, and what was appended meanwhile; then the questions still waiting.
   * A record the old worker wrote just before it died without counting it can appear twice; none
   * is lost.
   */
  private async restartWorker(how: string): Promise<void> {
    this.forgetWritten();
    const unwritten = this.inFlight.flat().slice((Atomics.load(this.written, 0) - this.inFlightStart) | 0);
    const now = Date.now();
    this.restarts = this.restarts.filter((at) => now - at < RESTART_WINDOW_MS);
    if (this.restarts.length >= MAX_RESTARTS) {
      const lost = unwritten.length + this.outbox.length;
      return this.giveUp(`${how}, for the ${MAX_RESTARTS + 1}th time within ${RESTART_WINDOW_MS / 1000} s (${lost} record(s) not yet written are lost)`);
    }
    this.restarts.push(now);
    await this.worker.terminate();
    const bootOptions = this.options;
    let booted: BootedWorker;
    try {
      booted = await bootWorker(bootOptions);
    } catch (error) {
      return this.giveUp(`${how}, and could not be started again: ${error instanceof Error ? error.message : String(error)}`);
    }
    process.stderr.write(`cloister: audit log: the audit worker ${how}; started again, handing it the ${unwritten.length} record(s) it had not written\n`);
    this.attach(booted);
    this.restarting = false;
    // A reload while the worker opened the log: it opened with the settings from before.
    if (this.options !== bootOptions) this.post({ kind: "rotation", rotation: this.options });
    const note: StampedEvent = { fields: sanitizeEvent({ type: "audit.worker-restarted", reason: `the audit worker ${how}`, resent: unwritten.length }), time: new Date().toISOString() };
    this.outbox = [note, ...unwritten, ...this.outbox];
    this.handOver();
    for (const [id, { kind }] of this.answers) this.post({ kind, id });
  }

  /** The worker is gone and will not be started again: nothing more can be recorded. */
  private giveUp(how: string): void {
    this.restarting = false;
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
