import { mkdirSync, rmSync } from "node:fs";
import type { Server as HttpServer } from "node:http";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import type { EgressContext } from "./context.js";
import { answerAndClose, rawResponse, serveHttp } from "./http.js";
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
 * Connections over the cap that are being told why, at most, per cloister; more are closed at once.
 * Each is answered as soon as its first bytes show its protocol, or closed unanswered after
 * REFUSAL_WAIT_MS: what the cap protects (the guardian's sockets) stays bounded.
 */
const MAX_REFUSING = 16;
const REFUSAL_WAIT_MS = 2_000;

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
  /** Connections over the cap being answered (see MAX_REFUSING). */
  private readonly refusing = new Set<Socket>();

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
    for (const socket of this.refusing) socket.destroy();
    rmSync(this.socketPath, { force: true });
  }

  private accept(socket: Socket): void {
    socket.on("error", () => socket.destroy());
    // One cloister cannot hold more than its share of the guardian's sockets and memory.
    if (this.openConnections >= this.context.settings.max_connections) return this.refuseOverLimit(socket);
    this.context.track(socket);
    // A connection is new work: when the cloister has outrun its audit rate, it waits its turn
    // (record-pace.ts), unread (pauseOnConnect) and counted against the cap, which then bounds
    // what a flood can hold. The turn pays for the connection's first request.
    this.context.onTurn(() => this.awaitFirstBytes(socket));
  }

  private awaitFirstBytes(socket: Socket): void {
    if (socket.destroyed) return;
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

  /**
   * A connection over the cap is told so in its own protocol, so the agent can tell it from a broken
   * proxy: HTTP gets a 503 at once, SOCKS5 its general failure once the handshake is through (its
   * reader is bounded). It is audited with the protocol its first byte shows, "unknown" if none came.
   */
  private refuseOverLimit(socket: Socket): void {
    const max = this.context.settings.max_connections;
    const detail = `more than ${max} connections open`;
    if (this.context.paced) return this.context.closeUnread(socket, detail);
    if (this.refusing.size >= MAX_REFUSING) {
      this.context.refused("unknown", "over-limit", detail);
      return void socket.destroy();
    }
    this.refusing.add(socket);
    socket.once("close", () => this.refusing.delete(socket));
    socket.setTimeout(REFUSAL_WAIT_MS, () => {
      this.context.refused("unknown", "over-limit", detail);
      socket.destroy();
    });
    socket.once("readable", () => {
      // What has arrived, at most one read's worth (the stream's high-water mark).
      const head = socket.read() as Buffer | null;
      socket.setTimeout(0);
      if (head === null) return void socket.destroy();
      socket.unshift(head);
      if (head[0] === SOCKS_VERSION) return serveSocks(this.context, socket, detail);
      if (head[0] === HOSTEXEC_MAGIC) {
        this.context.refused("hostexec", "over-limit", detail);
        return void socket.destroy();
      }
      // Only the audit's label: the request is not parsed, and answered the same either way.
      const protocol = head.toString("latin1", 0, 8) === "CONNECT " ? "connect" : "http";
      this.context.refused(protocol, "over-limit", detail);
      answerAndClose(socket, rawResponse(503, "Service Unavailable", `cloister: ${detail} for this cloister; close some, or raise proxy.max_connections (${max}) in config.yaml and run \`cloister guardian reload\`\n`));
    });
  }

  private serveHostexec(socket: Socket): void {
    if (this.hostexec) return this.hostexec(socket);
    this.context.refused("hostexec", "unsupported", "hostexec is not served on this endpoint");
    socket.destroy();
  }
}
