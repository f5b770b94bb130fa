import { Agent, type ClientRequestArgs } from "node:http";
import { connect, type Socket } from "node:net";
import type { Duplex } from "node:stream";

export class DialError extends Error {
  constructor(
    message: string,
    /** 502: refused/unreachable; 504: no answer within the connect timeout. */
    readonly status: 502 | 504,
  ) {
    super(message);
  }
}

/**
 * Connects to exactly `address:port` (never a name: the address is the one that was checked).
 * Half-open is allowed so a client that finishes sending still gets the whole answer.
 */
export function dial(address: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: address, port, allowHalfOpen: true, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new DialError(`no answer from ${address} port ${port} within ${Math.round(timeoutMs / 1000)} s`, 504));
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.removeAllListeners("error");
      resolve(socket);
    });
    socket.once("error", (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new DialError(`cannot connect to ${address} port ${port}: ${error.code ?? error.message}`, 502));
    });
  });
}

export interface TunnelResult {
  /** Bytes the client sent to the destination, and the destination sent back. */
  bytesUp: number;
  bytesDown: number;
  durationMs: number;
  /** "closed" normally; "idle" when the idle timeout cut it; "error" on a reset. */
  end: "closed" | "idle" | "error";
}

/**
 * Joins two sockets both ways until both directions are done (half-close is passed on), either
 * side errors, or nothing moves for `idleMs`. Resolves once, with what went through. `early` is what
 * the client sent before the tunnel was up (pipelined after its request); it goes first, and counts.
 */
export function tunnel(client: Socket, upstream: Socket, idleMs: number, early: Buffer = Buffer.alloc(0)): Promise<TunnelResult> {
  const started = Date.now();
  const upstreamWrittenBefore = upstream.bytesWritten;
  const clientWrittenBefore = client.bytesWritten;
  if (early.length > 0) upstream.write(early);
  return new Promise((resolve) => {
    let end: TunnelResult["end"] = "closed";
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      client.destroy();
      upstream.destroy();
      resolve({
        bytesUp: upstream.bytesWritten - upstreamWrittenBefore,
        bytesDown: client.bytesWritten - clientWrittenBefore,
        durationMs: Date.now() - started,
        end,
      });
    };
    const fail = (kind: TunnelResult["end"]) => () => {
      end = kind;
      finish();
    };
    for (const socket of [client, upstream]) {
      socket.setTimeout(idleMs, fail("idle"));
      socket.on("error", fail("error"));
      // With half-open allowed, a socket closes only when it has both read and written its end:
      // then both directions of the tunnel are done.
      socket.on("close", finish);
    }
    relayBytes(client, upstream);
    relayBytes(upstream, client);
  });
}

/**
 * How many bytes a tunnel direction may have waiting in the guardian for the receiving socket
 * before the sending one is paused. node reads a socket 64 KiB at a time, and pipe() pauses the
 * source whenever a write returns false, which at node's 16 KiB mark is after every chunk, however
 * fast the kernel takes it: a pause and a resume (and their epoll changes) per 64 KiB. Pausing only
 * past this many waiting bytes took the guardian a little less CPU per byte: downloads through a
 * tunnel 5% faster at 1 GiB and 14–21% at 256 MiB in interleaved runs here (docs/benchmarks.md), for
 * at most this, one read and a socket's read-ahead (~340 KiB; ~100 KiB with pipe()) held per stalled direction.
 */
const RELAY_BUFFER_BYTES = 256 * 1024;

/**
 * Copies `from` into `to` and passes its end on (half-close); back-pressure as above. Errors and
 * closes are the tunnel's to handle (it destroys both sockets).
 */
function relayBytes(from: Socket, to: Socket): void {
  const resume = () => from.resume();
  from.on("data", (chunk: Buffer) => {
    to.write(chunk);
    if (to.writableLength < RELAY_BUFFER_BYTES) return;
    // Past the mark, write() has returned false, so 'drain' comes once `to` has taken it all.
    from.pause();
    to.once("drain", resume);
  });
  from.once("end", () => to.end());
  // A socket handed over paused (the endpoint accepts with pauseOnConnect) stays so for a 'data'
  // listener: start it, as pipe() does.
  from.resume();
}

/**
 * Kept-alive connections to origins for one cloister's plain-HTTP requests. Sockets are pooled by
 * the checked address and port (requests are made with the address, never a name), so a reused
 * connection goes exactly where a new one would. One pool per cloister: no cloister's request ever
 * rides another's connection, and `maxTotalSockets` bounds the descriptors one cloister can hold.
 */
export class UpstreamAgent extends Agent {
  constructor(private readonly connectTimeoutMs: () => number) {
    super({ keepAlive: true, maxSockets: 32, maxTotalSockets: 256, maxFreeSockets: 8, timeout: 30_000, scheduling: "lifo" });
  }

  // node hands the socket (or the error) to the request through the callback when it comes later.
  override createConnection(options: ClientRequestArgs, callback?: (error: Error | null, stream: Duplex) => void): undefined {
    dial(String(options.host), Number(options.port), this.connectTimeoutMs()).then(
      (socket) => callback?.(null, socket),
      // With an error node never looks at the stream; the type insists on one all the same.
      (error: Error) => callback?.(error, undefined as unknown as Duplex),
    );
    return undefined;
  }
}
