import type { ServerResponse } from "node:http";
import { SECURITY_HEADERS } from "./respond.js";

const MAX_STREAMS = 32;
const KEEPALIVE_MS = 15_000;
/** What one stream may have queued in the process before it is dropped instead of buffered further. */
const MAX_QUEUED_BYTES = 1 << 20;

/**
 * The open Server-Sent Events streams. Every event goes to every stream; a client that stops reading
 * is cut off once its queue passes 1 MiB (it reconnects and gets a fresh snapshot), so a stuck tab
 * cannot grow the guardian's memory.
 */
export class EventStreams {
  readonly #streams = new Set<ServerResponse>();
  readonly #keepalive = setInterval(() => this.#writeAll(": keepalive\n\n"), KEEPALIVE_MS).unref();

  /** Starts a stream with its first event; false (and nothing written) when all slots are taken. */
  open(res: ServerResponse, firstEvent: string, data: unknown): boolean {
    if (this.#streams.size >= MAX_STREAMS) return false;
    res.writeHead(200, { ...SECURITY_HEADERS, "content-type": "text/event-stream; charset=utf-8" });
    this.#streams.add(res);
    res.once("close", () => this.#streams.delete(res));
    res.write(frame(firstEvent, data));
    return true;
  }

  send(event: string, data: unknown): void {
    this.#writeAll(frame(event, data));
  }

  close(): void {
    clearInterval(this.#keepalive);
    for (const res of this.#streams) res.end();
    this.#streams.clear();
  }

  #writeAll(chunk: string): void {
    for (const res of this.#streams) this.#write(res, chunk);
  }

  /**
   * The backlog is judged before writing, not after: one large event (a long argv, or a snapshot
   * holding it) still reaches a client that keeps up, rather than cutting every client off.
   */
  #write(res: ServerResponse, chunk: string): void {
    if (res.writableLength > MAX_QUEUED_BYTES) {
      this.#streams.delete(res);
      res.destroy();
      return;
    }
    res.write(chunk);
  }
}

/** JSON.stringify escapes every line break, so the data is always one `data:` line. */
function frame(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}
