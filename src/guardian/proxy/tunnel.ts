import { connect, type Socket } from "node:net";

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
