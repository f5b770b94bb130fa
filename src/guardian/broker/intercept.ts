/**
 * TLS interception of one admitted connection (CONNECT or SOCKS5) to a host the broker intercepts.
 * The guardian finishes the cloister's TLS handshake with a certificate from its own CA (which the
 * cloister trusts), reads each HTTP request (HTTP/1.1, or HTTP/2 when the client offers it by ALPN),
 * swaps placeholders for real credentials by policy/injection.ts, and sends it on over a new TLS
 * connection to exactly the checked address, verified against the system roots for the checked
 * name. Responses stream back as they arrive (server-sent events, chunked bodies); a WebSocket
 * upgrade becomes a tunnel after the swap of its handshake.
 *
 * Request bodies are scanned for placeholders and responses for the real values (an origin echoing
 * a credential back must not hand it to the cloister); both are cut at the first sighting.
 */
import { createServer as createHttp1Server, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttp2Server, type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import { request as httpsRequest, type Agent as HttpsAgent, type RequestOptions } from "node:https";
import type { Socket } from "node:net";
import { Duplex, pipeline, PassThrough, type Readable, type Transform } from "node:stream";
import { TLSSocket, type ConnectionOptions } from "node:tls";
import { formatAuthority, hostText, parseAuthority } from "../../policy/hosts.js";
import { render, rulesFor, swapCredentials, type Sighting } from "../../policy/injection.js";
import type { EgressContext } from "../proxy/context.js";
import { endToEnd, headerPairs } from "../proxy/headers.js";
import type { Admitted } from "../proxy/judge.js";
import { tunnel, type TunnelResult } from "../proxy/tunnel.js";
import type { Interception } from "./broker.js";
import { scanningStream } from "./scanner.js";

type ClientRequest = IncomingMessage | Http2ServerRequest;
type ClientResponse = ServerResponse | Http2ServerResponse;

/** One intercepted connection: who, where to, and with which rules. */
interface Intercepted {
  context: EgressContext;
  target: Admitted;
  /** The checked host name (interception is only ever for names). */
  name: string;
  plan: Interception;
  agent: HttpsAgent;
}

/**
 * Terminates the client's TLS on `client` (the CONNECT or SOCKS reply has been sent) and serves its
 * requests until either side closes. Resolves with what went through, as a tunnel would.
 */
export function intercept(context: EgressContext, target: Admitted, plan: Interception, client: Socket, early: Buffer): Promise<TunnelResult> {
  const started = Date.now();
  const ix: Intercepted = { context, target, name: hostText(target.host), plan, agent: context.tlsUpstream };
  const secure = new TLSSocket(early.length > 0 ? withEarlyBytes(client, early) : client, { isServer: true, secureContext: plan.serverContext, ALPNProtocols: ["h2", "http/1.1"] });
  secure.setTimeout(context.settings.idle_timeout, () => secure.destroy());
  return new Promise((resolve) => {
    let end: TunnelResult["end"] = "closed";
    let established = false;
    secure.once("secure", () => {
      established = true;
      // node clears this flag only on sockets its own tls.Server made; an HTTP/2 session on a socket
      // that still says "connecting" waits for a 'secureConnect' that a server socket never emits.
      (secure as TLSSocket & { secureConnecting: boolean }).secureConnecting = false;
      serve(ix, secure);
    });
    secure.on("error", (error: NodeJS.ErrnoException) => {
      end = "error";
      // An error before the handshake is done is nearly always a client that does not trust the
      // cloister CA (a tool that ignores SSL_CERT_FILE, or pins certificates): say so in the log.
      if (!established) context.record({ type: "credential.tls-refused", host: ix.name, port: target.port, detail: error.code ?? error.message });
      secure.destroy();
    });
    secure.once("close", () => {
      client.destroy();
      resolve({ bytesUp: secure.bytesRead, bytesDown: secure.bytesWritten, durationMs: Date.now() - started, end });
    });
  });
}

/**
 * The client's socket with bytes it sent before the tunnel was up put back in front. TLSSocket reads
 * a net.Socket's handle directly, past anything waiting in the socket's own buffer, so those bytes
 * (the start of a ClientHello) go through a stream of their own instead.
 */
function withEarlyBytes(client: Socket, early: Buffer): Duplex {
  const readable = new PassThrough();
  readable.write(early);
  client.pipe(readable);
  const joined = Duplex.from({ readable, writable: client });
  joined.once("close", () => client.destroy());
  return joined;
}

/** Hands the decrypted connection to an HTTP/2 or HTTP/1.1 server made for this connection alone. */
function serve(ix: Intercepted, secure: TLSSocket): void {
  const handle = (req: ClientRequest, res: ClientResponse) => exchange(ix, req, res);
  if (secure.alpnProtocol === "h2") {
    const server = createHttp2Server({ maxSessionMemory: 32 }, handle);
    server.emit("connection", secure);
    return;
  }
  const server = createHttp1Server({ maxHeaderSize: ix.context.settings.max_header_size, headersTimeout: 15_000, requestTimeout: 0, noDelay: true }, handle);
  server.maxHeadersCount = ix.context.settings.max_headers;
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => upgrade(ix, req, socket, head));
  server.on("clientError", (_error, socket: Duplex) => socket.destroy());
  server.emit("connection", secure);
}

/** One request: check its authority, swap credentials, forward, stream the response back. */
function exchange(ix: Intercepted, req: ClientRequest, res: ClientResponse): void {
  const prepared = prepare(ix, req);
  if ("status" in prepared) return answer(res, prepared.status, prepared.message);
  const outgoing = httpsRequest(upstreamOptions(ix, req, prepared.headers, ix.agent));
  outgoing.setTimeout(ix.context.settings.idle_timeout, () => outgoing.destroy(new Error("idle timeout")));
  outgoing.on("response", (upstream) => {
    res.writeHead(upstream.statusCode ?? 502, headerObject(endToEnd(upstream.rawHeaders)));
    // Headers go out now, not with the first body chunk: a streamed response shows up at once.
    // (@types/node omits the HTTP/2 compatibility response's flushHeaders, which node has.)
    (res as ServerResponse).flushHeaders();
    relayBody(upstream, echoScanner(ix), res as unknown as NodeJS.WritableStream, (error) => error && res.destroy());
  });
  outgoing.on("error", (error) => {
    if (!res.headersSent) answer(res, 502, `cloister: ${formatAuthority(ix.target.host, ix.target.port)}: ${error.message}`);
    else res.destroy();
  });
  const body = bodyScanner(ix, (sighting) => {
    outgoing.destroy();
    if (!res.headersSent) answer(res, 403, blockedMessage(sighting, ix));
  });
  relayBody(req, body, outgoing, () => undefined);
}

/** The forwarded headers, or why the request is refused. */
function prepare(ix: Intercepted, req: ClientRequest): { headers: string[] } | { status: number; message: string } {
  const stated = (req.headers[":authority"] ?? req.headers.host) as string | undefined;
  if (!sameAuthority(stated, ix)) {
    // The certificate shown was for the checked host: a request for another one on this connection
    // is not what policy decided on.
    return { status: 421, message: `cloister: this connection is for ${formatAuthority(ix.target.host, ix.target.port)}, not ${JSON.stringify(stated ?? "")}` };
  }
  const swap = swapCredentials(ix.plan.active, ix.name, ix.target.port, headerPairs(endToEnd(req.rawHeaders, "host")), req.url ?? "/");
  if (!swap.ok) {
    if ("unavailable" in swap) return { status: 503, message: `cloister: the secret ${swap.unavailable} cannot be injected: the vault is locked (run \`cloister secret unlock\` on the host)` };
    recordSighting(ix, swap.sighting);
    return { status: 403, message: blockedMessage(swap.sighting, ix) };
  }
  for (const secret of swap.injected) {
    ix.context.record({ type: "credential.inject", name: secret, host: ix.name, port: ix.target.port, header: injectedHeader(ix, secret) });
  }
  if (swap.stripped.length > 0) ix.context.record({ type: "credential.strip", host: ix.name, port: ix.target.port, headers: swap.stripped.join(",") });
  return { headers: ["Host", hostHeader(ix), ...swap.headers.flat()] };
}

/**
 * A WebSocket (or other) upgrade over HTTP/1.1: the handshake is swapped like any request, then the
 * two connections are joined. Frames after the upgrade are not inspected.
 */
function upgrade(ix: Intercepted, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const prepared = prepare(ix, req);
  if ("status" in prepared) return void socket.end(`HTTP/1.1 ${prepared.status} Refused\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: ${Buffer.byteLength(prepared.message) + 1}\r\n\r\n${prepared.message}\n`);
  const outgoing = httpsRequest(upstreamOptions(ix, req, [...prepared.headers, "Connection", "Upgrade", "Upgrade", req.headers.upgrade ?? ""], false));
  outgoing.on("upgrade", (response, upstream: Socket, upstreamHead: Buffer) => {
    const lines = [`HTTP/1.1 101 ${response.statusMessage ?? "Switching Protocols"}`];
    for (let i = 0; i + 1 < response.rawHeaders.length; i += 2) lines.push(`${response.rawHeaders[i]}: ${response.rawHeaders[i + 1]}`);
    socket.write(`${lines.join("\r\n")}\r\n\r\n`);
    if (upstreamHead.length > 0) socket.write(upstreamHead);
    void tunnel(socket as Socket, upstream, ix.context.settings.idle_timeout, head);
  });
  outgoing.on("response", (response) => {
    // The origin declined the upgrade: relay its answer and close.
    socket.write(`HTTP/1.1 ${response.statusCode ?? 502} ${response.statusMessage ?? ""}\r\nConnection: close\r\n\r\n`);
    response.pipe(socket as NodeJS.WritableStream);
  });
  outgoing.on("error", () => socket.destroy());
  outgoing.end();
}

/**
 * The origin request: to exactly the checked address, verified for the checked name against the
 * system roots (the default rejectUnauthorized stays on).
 */
function upstreamOptions(ix: Intercepted, req: ClientRequest, headers: string[], agent: HttpsAgent | false): RequestOptions & Pick<ConnectionOptions, "secureContext" | "ALPNProtocols"> {
  return {
    agent,
    host: ix.target.address,
    port: ix.target.port,
    servername: ix.name,
    secureContext: ix.plan.upstreamContext,
    ALPNProtocols: ["http/1.1"],
    method: req.method,
    path: req.url,
    headers,
    setHost: false,
  };
}

/** Request bodies: cut at the first placeholder of any rule in force (where it could only leak). */
function bodyScanner(ix: Intercepted, blocked: (sighting: Sighting) => void): Transform | undefined {
  const active = ix.plan.active;
  if (active.length === 0) return undefined;
  return scanningStream(
    active.map((a) => Buffer.from(a.placeholder)),
    (index) => {
      const sighting: Sighting = { secret: active[index]?.rule.secret ?? "?", where: "body" };
      recordSighting(ix, sighting);
      blocked(sighting);
    },
  );
}

/** Responses: cut at a real value of this host's secrets (an origin echoing the request back). */
function echoScanner(ix: Intercepted): Transform | undefined {
  const mine = rulesFor(ix.plan.active, ix.name, ix.target.port).filter((a) => a.real !== undefined);
  if (mine.length === 0) return undefined;
  const needles = mine.flatMap((a) => [Buffer.from(a.real ?? ""), Buffer.from(render(a.rule.present, a.real ?? ""))]);
  return scanningStream(needles, (index) => {
    ix.context.record({ type: "credential.echo", name: mine[Math.floor(index / 2)]?.rule.secret ?? "?", host: ix.name, port: ix.target.port });
  });
}

/** Pipes `from` to `to`, through `scanner` when there is one; `done` gets the error, if any. */
function relayBody(from: Readable, scanner: Transform | undefined, to: NodeJS.WritableStream, done: (error: Error | null) => void): void {
  if (scanner) pipeline(from, scanner, to, (error) => done(error ?? null));
  else pipeline(from, new PassThrough({ highWaterMark: 0 }), to, (error) => done(error ?? null));
}

function recordSighting(ix: Intercepted, sighting: Sighting): void {
  ix.context.record({ type: "credential.exfiltration", name: sighting.secret, where: sighting.where, header: sighting.header ?? null, host: ix.name, port: ix.target.port, protocol: "https" });
}

function blockedMessage(sighting: Sighting, ix: Intercepted): string {
  return `cloister: request to ${formatAuthority(ix.target.host, ix.target.port)} blocked: it carries the placeholder of the secret ${sighting.secret} in ${sighting.where === "header" ? `the ${sighting.header} header` : `the ${sighting.where}`}, where it does not belong (the guardian only puts a secret in its configured header, for its own hosts)`;
}

function injectedHeader(ix: Intercepted, secret: string): string {
  const rule = ix.plan.active.find((a) => a.rule.secret === secret)?.rule;
  return rule ? (rule.present.kind === "header" ? rule.present.header : "authorization") : "?";
}

function sameAuthority(stated: string | undefined, ix: Intercepted): boolean {
  if (stated === undefined) return false;
  try {
    const parsed = parseAuthority(stated, 443);
    return formatAuthority(parsed.host, parsed.port) === formatAuthority(ix.target.host, ix.target.port);
  } catch {
    return false;
  }
}

function hostHeader(ix: Intercepted): string {
  return ix.target.port === 443 ? ix.name : `${ix.name}:${ix.target.port}`;
}

/** A raw header list as an object (HTTP/2 takes no raw list); repeated names become arrays. */
function headerObject(raw: readonly string[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] ?? "").toLowerCase();
    const value = raw[i + 1] ?? "";
    const existing = out[name];
    out[name] = existing === undefined ? value : Array.isArray(existing) ? [...existing, value] : [existing, value];
  }
  return out;
}

function answer(res: ClientResponse, status: number, message: string): void {
  const body = `${message}\n`;
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body) });
  res.end(body);
}
