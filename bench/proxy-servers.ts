/**
 * The loopback servers of the proxy section, run in the bench process: the "internet" the clients
 * reach directly or through a proxy. Each is as small as it can be, so what differs between the
 * rows is the path, not the server.
 */
import { createServer, type Server, type Socket } from "node:net";

export interface LoopbackServer {
  port: number;
  /** Connections open right now. */
  readonly open: number;
  close(): Promise<void>;
}

const RESPONSE = Buffer.from("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n", "latin1");
const CHUNK = Buffer.alloc(1024 * 1024, 0x62);

async function listen(server: Server, backlog: number): Promise<LoopbackServer> {
  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0, backlog }, () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("loopback server has no port");
  return {
    port: address.port,
    get open() {
      return sockets.size;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * Answers every request (a header section ending in an empty line; GETs carry no body) with the
 * same 3-byte 200, on kept-alive connections too. Pipelined requests are answered in order.
 */
export function startSmallHttp(): Promise<LoopbackServer> {
  const server = createServer({ noDelay: true }, (socket) => {
    let pending = "";
    socket.on("data", (chunk: Buffer) => {
      pending += chunk.toString("latin1");
      let end = pending.indexOf("\r\n\r\n");
      while (end >= 0) {
        socket.write(RESPONSE);
        pending = pending.slice(end + 4);
        end = pending.indexOf("\r\n\r\n");
      }
    });
  });
  return listen(server, 511);
}

/**
 * The first line says what to do: `down N` sends N bytes and ends; `up N` reads N bytes, then says
 * `ok`. Writes wait for 'drain', so the slower side sets the pace, as with a real download.
 */
export function startBlob(): Promise<LoopbackServer> {
  const server = createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
    let head = Buffer.alloc(0);
    let upLeft = -1;
    const onData = (chunk: Buffer): void => {
      if (upLeft >= 0) {
        upLeft -= chunk.length;
        if (upLeft <= 0) {
          upLeft = -1;
          socket.end("ok\n");
        }
        return;
      }
      head = Buffer.concat([head, chunk]);
      const nl = head.indexOf("\n");
      if (nl < 0) return;
      const [verb, size] = head.toString("latin1", 0, nl).split(" ");
      const bytes = Number(size);
      const rest = head.subarray(nl + 1);
      if (!Number.isSafeInteger(bytes) || bytes < 0) return void socket.destroy();
      if (verb === "down") {
        socket.off("data", onData);
        send(socket, bytes);
      } else if (verb === "up") {
        upLeft = bytes;
        if (rest.length > 0) onData(rest);
      } else socket.destroy();
    };
    socket.on("data", onData);
  });
  return listen(server, 511);
}

function send(socket: Socket, bytes: number): void {
  let left = bytes;
  const pump = (): void => {
    while (left > 0) {
      const piece = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
      left -= piece.length;
      if (!socket.write(piece)) return void socket.once("drain", pump);
    }
    socket.end();
  };
  pump();
}

/** Echoes whatever it receives; a backlog as long as the host allows, for thousands of connections at once. */
export function startEcho(): Promise<LoopbackServer> {
  const server = createServer({ noDelay: true }, (socket) => socket.pipe(socket));
  return listen(server, 8192);
}
