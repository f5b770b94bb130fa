import { mkdirSync, rmSync } from "node:fs";
import type { Server as HttpServer } from "node:http";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import type { EgressContext } from "./context.js";
import { serveHttp } from "./http.js";
import { listenPrivately } from "../private-socket.js";
import { ListenerHandover } from "./listener-handover.js";
import { PROXY_PORT } from "../../sandbox/engine.js";
import { serveSocks } from "./socks.js";

/** First byte of every SOCKS5 greeting; no HTTP request line starts with it. */
const SOCKS_VERSION = 0x05;
/** First byte of a hostexec connection's magic (see hostexec/wire.ts): neither a letter nor 0x05. */
const HOSTEXEC_MAGIC = 0xc7;
/** The first bytes must arrive this quickly after connecting; a silent connection is dropped. */
const FIRST_BYTES_TIMEOUT_MS = 15_000;

/**
 * One listening unix socket per cloister, bind-mounted read-only into that cloister alone: the
 * socket a connection arrives on says which cloister is speaking (DESIGN.md decision 4). HTTP,
 * SOCKS5 and hostexec share it and are told apart by the first byte. Once the cloister's bridge
 * has handed over its own listener (listener-handover.ts), connections to the cloister's proxy
 * port arrive on that listener instead, and are served the same way. Closing the endpoint
 * (cloister stopped) cuts every connection it carries and, with it, the token's use.
 */
export class EgressEndpoint {
  private readonly server: Server;
  private handover?: ListenerHandover;

  private constructor(
    readonly context: EgressContext,
    readonly socketPath: string,
    private readonly httpServer: () => HttpServer,
    /** Serves a hostexec connection; without it (tests, --no-hostexec) such connections are closed. */
    private readonly hostexec?: (socket: Socket) => void,
  ) {
    // Half-open: a client that has sent everything still receives the whole answer.
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.accept(socket));
  }

  static async open(context: EgressContext, socketDir: string, httpServer: () => HttpServer, hostexec?: (socket: Socket) => void): Promise<EgressEndpoint> {
    mkdirSync(socketDir, { recursive: true, mode: 0o700 });
    const socketPath = join(socketDir, "proxy.sock");
    const endpoint = new EgressEndpoint(context, socketPath, httpServer, hostexec);
    // The cloister runs as this same uid; nobody else needs it.
    await listenPrivately(endpoint.server, socketPath, 1024);
    // The hand-over only shortens the path: should its socket fail to open, connections keep
    // coming through the bridge (and `guardian status` counts this cloister's port as not taken).
    endpoint.handover = await ListenerHandover.open(join(socketDir, "handover.sock"), PROXY_PORT, (socket) => endpoint.accept(socket)).catch(() => undefined);
    return endpoint;
  }

  get openConnections(): number {
    return this.context.openConnections;
  }

  /** Whether connections come straight from the cloister's listener (else through its bridge). */
  get listenerTaken(): boolean {
    return this.handover?.taken ?? false;
  }

  close(): void {
    this.server.close();
    this.handover?.close();
    this.context.close();
    rmSync(this.socketPath, { force: true });
  }

  private accept(socket: Socket): void {
    socket.on("error", () => socket.destroy());
    if (this.openConnections >= this.context.settings.max_connections) {
      // One cloister cannot hold more than its share of the guardian's sockets and memory.
      this.context.refused("connect", "over-limit", `more than ${this.context.settings.max_connections} connections open`);
      socket.destroy();
      return;
    }
    this.context.track(socket);
    socket.setTimeout(FIRST_BYTES_TIMEOUT_MS, () => socket.destroy());
    // A 'readable' listener starts reading without letting data flow anywhere yet.
    socket.once("readable", () => this.dispatch(socket));
  }

  /** Peeks at the first byte, puts it back, and hands the connection to the right protocol. */
  private dispatch(socket: Socket): void {
    const first = socket.read(1) as Buffer | null;
    if (first === null) return void socket.destroy();
    socket.unshift(first);
    socket.setTimeout(this.context.settings.idle_timeout);
    if (first[0] === SOCKS_VERSION) serveSocks(this.context, socket);
    else if (first[0] === HOSTEXEC_MAGIC) this.serveHostexec(socket);
    else serveHttp(this.httpServer(), this.context, socket);
  }

  private serveHostexec(socket: Socket): void {
    if (this.hostexec) return this.hostexec(socket);
    this.context.refused("hostexec", "unsupported", "hostexec is not served on this endpoint");
    socket.destroy();
  }
}
