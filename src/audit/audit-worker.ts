/**
 * The audit worker: a thread of the guardian that owns the audit log's signing key, chain and files
 * (SignedLog), so that neither the Ed25519 signatures nor the writes run on the thread that serves
 * the proxy. Started by AuditLog.open (log.ts) with the log's options as workerData.
 */
import { parentPort, workerData } from "node:worker_threads";
import { CloisterError } from "../errors.js";
import { SignedLog } from "./signed-log.js";
import type { FromWorker, ToWorker, WorkerStart } from "./worker-messages.js";

const port = parentPort;
if (!port) throw new Error("audit-worker.js runs as a worker thread of the guardian, not on its own");
const send = (message: FromWorker) => port.postMessage(message);

/** Each distinct error once: a full disk fails every write the same way, and the main thread keeps only the latest. */
let lastReported = "";
function reportError(error: Error): void {
  if (error.message === lastReported) return;
  lastReported = error.message;
  send({ kind: "error", message: error.message });
}

const start = workerData as WorkerStart;
const written = new Int32Array(start.written);

let log: SignedLog;
try {
  log = await SignedLog.open(start.options, reportError, (records) => Atomics.store(written, 0, records));
} catch (error) {
  send({ kind: "failed", message: error instanceof Error ? error.message : String(error), hint: error instanceof CloisterError ? error.hint : undefined });
  process.exit(1);
}
send({ kind: "ready", publicKeyPem: log.publicKeyPem, keyId: log.keyId });

port.on("message", (message: ToWorker) => {
  switch (message.kind) {
    case "append":
      return log.appendAll(message.events);
    case "rotation":
      return log.setRotation(message.rotation);
    case "last-seq":
      return send({ kind: "done", id: message.id, seq: log.lastSeq });
    case "flush":
    case "close": {
      const { id, kind } = message;
      const seq = log.lastSeq;
      void (kind === "flush" ? log.flush() : log.close()).then(
        () => send({ kind: "done", id, seq }),
        (error: unknown) => send({ kind: "done", id, seq, error: error instanceof Error ? error.message : String(error) }),
      );
      // After close nothing else comes: let the thread end once the answer is out.
      if (kind === "close") port.unref();
      return;
    }
  }
});
