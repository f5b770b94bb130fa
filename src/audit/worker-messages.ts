/**
 * What AuditLog (log.ts, the guardian's thread) and the audit worker (audit-worker.ts) say to each
 * other. One message port, so records arrive in the order they were appended.
 */
import type { AuditLogOptions, Rotation, StampedEvent } from "./signed-log.js";

/** Where AuditLog counted records instead of keeping them (the worker too far behind), and how many. */
export interface DroppedEvents {
  dropped: number;
}

/** What the worker is started with. */
export interface WorkerStart {
  options: AuditLogOptions;
  /**
   * One Int32: how many of the records handed to this worker are in the file, counted with
   * wrap-around. The main thread keeps every record handed over until it is counted here, so a
   * worker that dies loses none (AuditLog.restartWorker), and bounds that backlog without a message
   * per batch (AuditLog.append).
   */
  written: SharedArrayBuffer;
}

/** Main thread → worker. */
export type ToWorker =
  | { kind: "append"; events: Array<StampedEvent | DroppedEvents> }
  /** New rotation settings (a guardian reload), for the records after those appended before it. */
  | { kind: "rotation"; rotation: Rotation }
  /** Every record appended before it written and synced; answered with `done`. */
  | { kind: "flush"; id: number }
  /** The seq of the last record appended before it; answered with `done`. */
  | { kind: "last-seq"; id: number }
  /** Flush, close the file and stop; answered with `done`. */
  | { kind: "close"; id: number };

/** Worker → main thread. */
export type FromWorker =
  | { kind: "ready"; publicKeyPem: string; keyId: string }
  /** The log could not be opened (the worker then ends). */
  | { kind: "failed"; message: string; hint?: string }
  /** A write or usage error; appending goes on (see SignedLog). */
  | { kind: "error"; message: string }
  | { kind: "done"; id: number; seq: number; error?: string };
