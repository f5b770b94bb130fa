import { timingSafeEqual } from "node:crypto";
import { chmodSync, mkdirSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";

/**
 * One listening unix socket per cloister, bind-mounted read-only into that cloister alone: the
 * socket a connection arrives on says which cloister is speaking (DESIGN.md decision 4).
 *
 * Until the egress policy lands, every request is refused here: plain HTTP and CONNECT get 407
 * without this cloister's token and 403 with it; SOCKS5 gets "connection not allowed by ruleset".
 */
export class EgressEndpoint {
  private readonly server: Server;
  private readonly connections = new Set<Socket>();

  private constructor(
    readonly cloister: string,
    private readonly token: string,
    readonly socketPath: string,
  ) {
    this.server = createServer((socket) => this.accept(socket));
  }

  static async open(cloister: string, token: string, socketDir: string): Promise<EgressEndpoint> {
    mkdirSync(socketDir, { recursive: true, mode: 0o700 });
    const socketPath = join(socketDir, "proxy.sock");
    rmSync(socketPath, { force: true });
    const endpoint = new EgressEndpoint(cloister, token, socketPath);
    await new Promise<void>((resolve, reject) => {
      endpoint.server.once("error", reject);
      endpoint.server.listen(socketPath, () => resolve());
    });
    // The cloister runs as this same uid; nobody else needs it.
    chmodSync(socketPath, 0o600);
    return endpoint;
  }

  close(): void {
    this.server.close();
    for (const socket of this.connections) socket.destroy();
    rmSync(this.socketPath, { force: true });
  }

  private accept(socket: Socket): void {
    this.connections.add(socket);
    socket.on("close", () => this.connections.delete(socket));
    socket.on("error", () => socket.destroy());
    socket.setTimeout(30_000, () => socket.destroy());
    socket.once("data", (first: Buffer) => {
      if (first[0] === 0x05) this.refuseSocks(socket);
      else this.refuseHttp(socket, first);
    });
  }

  private refuseSocks(socket: Socket): void {
    // Greeting answered with "no acceptable methods" would hide the reason; accept no-auth, then
    // refuse the CONNECT itself with reply 0x02 (connection not allowed by ruleset).
    socket.write(Buffer.from([0x05, 0x00]));
    socket.once("data", () => socket.end(Buffer.from([0x05, 0x02, 0x00, 0x01, 0, 0, 0, 0, 0, 0])));
  }

  private refuseHttp(socket: Socket, first: Buffer): void {
    const head = first.toString("latin1");
    const auth = /^proxy-authorization:\s*basic\s+(\S+)/im.exec(head)?.[1];
    if (!this.tokenMatches(auth)) {
      socket.end(httpResponse(407, "Proxy Authentication Required", "cloister: proxy credentials missing or wrong\n", ['Proxy-Authenticate: Basic realm="cloister"']));
      return;
    }
    const target = /^\S+\s+(\S+)/.exec(head)?.[1] ?? "?";
    socket.end(httpResponse(403, "Forbidden", `cloister: egress to ${target} refused: this guardian has no egress policy yet, so nothing leaves the cloister\n`));
  }

  /** The token is the password of the proxy URL's basic credentials; compared in constant time. */
  private tokenMatches(basic: string | undefined): boolean {
    if (!basic) return false;
    const decoded = Buffer.from(basic, "base64").toString("utf8");
    const given = Buffer.from(decoded.slice(decoded.indexOf(":") + 1));
    const expected = Buffer.from(this.token);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}

function httpResponse(status: number, reason: string, body: string, headers: string[] = []): string {
  return [`HTTP/1.1 ${status} ${reason}`, "Content-Type: text/plain; charset=utf-8", `Content-Length: ${Buffer.byteLength(body)}`, "Connection: close", ...headers, "", body].join("\r\n");
}
