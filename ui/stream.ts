import type { ApprovalEvent, DecisionView, Pending } from "../src/guardian/approvals/types.js";
import { signedIn } from "./api.js";

export interface Snapshot {
  pending: Pending[];
  recent: DecisionView[];
}

export interface StreamHandlers {
  snapshot(snapshot: Snapshot): void;
  event(event: ApprovalEvent): void;
  /** The stream dropped; `signedOut` when retrying is pointless until a new login. */
  lost(signedOut: boolean): void;
}

const FIRST_RETRY_MS = 1_000;
const MAX_RETRY_MS = 30_000;

/**
 * Follows the guardian's event stream, reconnecting with doubling delays. EventSource's own retry is
 * not used: it gives up for good on any non-200 answer (a full server, a restarted guardian).
 */
export function follow(handlers: StreamHandlers): void {
  let delay = FIRST_RETRY_MS;
  const open = () => {
    const source = new EventSource("/api/events");
    source.addEventListener("snapshot", (message) => {
      delay = FIRST_RETRY_MS;
      handlers.snapshot(JSON.parse(message.data) as Snapshot);
    });
    for (const type of ["added", "removed", "decided"]) {
      source.addEventListener(type, (message) => handlers.event(JSON.parse(message.data) as ApprovalEvent));
    }
    source.onerror = () => {
      source.close();
      void signedIn().then(
        (yes) => retry(!yes),
        () => retry(false),
      );
    };
  };
  const retry = (signedOut: boolean) => {
    handlers.lost(signedOut);
    if (signedOut) return;
    setTimeout(open, delay);
    delay = Math.min(delay * 2, MAX_RETRY_MS);
  };
  open();
}
