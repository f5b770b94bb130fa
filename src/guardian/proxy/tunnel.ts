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
