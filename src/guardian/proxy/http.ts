import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { Transform, type Duplex } from "node:stream";
import type { Dispatcher } from "undici";
import type { Socket } from "node:net";
import type { ProxySettings } from "../../config/schema.js";
import { formatAuthority, hostText, HostSyntaxError, parseAuthority, type Host } from "../../policy/hosts.js";
import type { EgressContext } from "./context.js";
import type { Admitted } from "./judge.js";
import { forwardedHeaders, headerPairs, headerValues, responseHeaders } from "./headers.js";
import { sightingInRequest, type Sighting } from "../../policy/injection.js";
import { intercept } from "../broker/intercept.js";
import { discardRest, relayScanned, type Scan } from "../broker/scanner.js";
import { dial, DialError } from "./tunnel.js";
import { whileHeld } from "./held-client.js";

/**
 * The HTTP side of the proxy: CONNECT tunnels and absolute-form plain HTTP. Parsing is node's own
 * (llhttp), which rejects malformed request lines, bad header syntax and conflicting framing
 * (Content-Length with Transfer-Encoding) with 400 before any of this code runs; this module
 * adds what a proxy must check on top: the token, the authority, and one policy decision per request.
 */

const contexts = new WeakMap<Socket, EgressContext>();

/** Requests one connection may have pipelined (the one being forwarded and those waiting behind it). */
const MAX_PIPELINED = 16;

/**
 * Per client connection: the forwarding in progress, and how many requests wait behind it. node
 * emits 'request' for every pipelined request as soon as it is parsed, and forwarding each at once
 * let one connection hold an upstream connection per pipelined request: thousands of sockets from
 * a single client connection, past max_connections and into the guardian's file descriptors, which
 * every cloister shares. Requests on a connection are forwarded one after another instead (their
 * responses go out in that order anyway), and a client that piles up more than MAX_PIPELINED
 * is refused.
 */
const pipelines = new WeakMap<Socket, { tail: Promise<void>; waiting: number }>();

/** The whole header section of a request must arrive within this (slowloris). */
const HEADERS_TIMEOUT_MS = 15_000;

/**
 * An HTTP/1.1 server that is handed connections instead of listening, with the proxy's limits: the
 * header size and count, and the whole header section within `headersTimeoutMs` (slowloris). Bodies
 * may be slow (uploads); the idle timeout on the socket covers a body that stops moving. Shared by
 * the proxy below and by intercepted TLS connections (broker/intercept.ts).
 */
export function handedConnectionServer(
  settings: ProxySettings,
  onRequest?: (req: IncomingMessage, res: ServerResponse) => void,
  { headersTimeoutMs = HEADERS_TIMEOUT_MS, requireHostHeader = true }: { headersTimeoutMs?: number; requireHostHeader?: boolean } = {},
): Server {
  const server = createServer(
    {
      requireHostHeader,
      maxHeaderSize: settings.max_header_size,
      headersTimeout: headersTimeoutMs,
      // node checks the header deadline on this timer (30 s by default): checked as often as the
      // deadline itself, a dripping client is cut within twice the limit rather than three times.
      connectionsCheckingInterval: headersTimeoutMs,
      requestTimeout: 0,
      keepAliveTimeout: 30_000,
      noDelay: true,
    },
    onRequest,
  );
  // One more than allowed, so a request over the limit is visible (node silently drops extras).
  server.maxHeadersCount = settings.max_headers + 1;
  // node enforces headersTimeout from a connection-tracking timer that it starts when a server
  // starts listening. This one never listens, so without this the timeout above did nothing and a
  // client dripping its headers held its connection for as long as it kept dripping. Emitting
  // 'listening' runs exactly that set-up (an unref'd timer, cleared by server.close()).
  server.emit("listening");
  return server;
}

/**
 * The proxy's HTTP server for the settings in force. The header limits belong to a settings
 * generation, so after a reload new connections get a new server. The one it replaces goes on
 * serving the connections it was handed, with all its limits, and is closed only once the last of
 * them has closed: close() stops the timer that enforces the header deadline, and closing it at
 * once let a client that was dripping its headers across a reload drip them forever.
 */
export class HttpProxyServers {
  private current?: { settings: ProxySettings; server: Server; retire: () => void };

  /** `headersTimeoutMs` is the slowloris deadline (tests shorten it). */
  constructor(private readonly headersTimeoutMs = HEADERS_TIMEOUT_MS) {}

  serverFor(settings: ProxySettings): Server {
    if (this.current?.settings !== settings) {
      this.current?.retire();
      const server = createHttpProxy(settings, this.headersTimeoutMs);
      this.current = { settings, server, retire: closesWhenDrained(server) };
    }
    return this.current.server;
  }
}

/** Counts the connections handed to `server`; the function returned closes it once none is left. */
function closesWhenDrained(server: Server): () => void {
  const open = new Set<Duplex>();
  let retired = false;
  const closeIfDrained = () => {
    if (retired && open.size === 0) server.close(() => undefined);
  };
  server.on("connection", (socket: Duplex) => {
    open.add(socket);
    socket.once("close", () => {
      open.delete(socket);
      closeIfDrained();
    });
  });
  return () => {
    retired = true;
    closeIfDrained();
  };
}

/** One HTTP server per proxy settings generation; each endpoint hands it connections it accepted. */
export function createHttpProxy(settings: ProxySettings, headersTimeoutMs = HEADERS_TIMEOUT_MS): Server {
  // node answers an HTTP/1.1 request without Host with a bare 400 before any of this code sees it:
  // absoluteTarget refuses it instead, with a reason and an audit record like every other refusal.
  const server = handedConnectionServer(settings, undefined, { headersTimeoutMs, requireHostHeader: false });
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const context = contexts.get(req.socket);
    if (context) enqueue(context, req, res);
    else res.destroy();
  });
  server.on("connect", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const context = contexts.get(req.socket);
    if (context) void connectTunnel(context, req, socket as Socket, head);
    else socket.destroy();
  });
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) => {
    // node's parser reports every later chunk of a broken request again: answer (and audit) once.
    if (answeredErrors.has(socket)) return;
    answeredErrors.add(socket);
    const tooLarge = error.code === "HPE_HEADER_OVERFLOW";
    const tooSlow = error.code === "ERR_HTTP_REQUEST_TIMEOUT";
    contexts.get(socket as Socket)?.refused("http", "invalid", error.code ?? "parse error");
    if (socket.writable) {
      answerAndClose(
        socket,
        tooLarge
          ? rawResponse(431, "Request Header Fields Too Large", "cloister: the request's headers are too large\n")
          : tooSlow
            ? rawResponse(408, "Request Timeout", "cloister: the request's headers did not arrive in time\n")
            : rawResponse(400, "Bad Request", "cloister: malformed HTTP request\n"),
      );
    } else {
      socket.destroy();
    }
  });
  return server;
}

const answeredErrors = new WeakSet<Duplex>();
/** How long a refused client may keep sending (into the void) before its connection is closed. */
const LINGER_MS = 1_000;

/**
 * Sends a refusal and closes. Closing a socket while the client is still sending makes the kernel
 * answer with a reset, and a reset can make the client throw away the error response it already
 * received (a 431 for a 64 KiB header arrives while the rest of the header is still on its way).
 * So: read and discard for a moment after answering, then close.
 */
export function answerAndClose(socket: Duplex, response: string): void {
  socket.end(response);
  socket.on("data", () => undefined);
  socket.resume();
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}

/** Hands an accepted connection (whose first bytes were not SOCKS) to the HTTP server. */
export function serveHttp(server: Server, context: EgressContext, socket: Socket): void {
  contexts.set(socket, context);
  server.emit("connection", socket);
}

// ---------------------------------------------------------------------------------------------------
// CONNECT

async function connectTunnel(context: EgressContext, req: IncomingMessage, client: Socket, head: Buffer): Promise<void> {
  const problem = requestProblem(context, req);
  if (problem) return void client.end(rawResponse(problem.status, problem.reason, problem.body, problem.headers));
  let target: { host: Host; port: number };
  try {
    // CONNECT takes authority-form only: host:port with an explicit port.
    target = parseAuthority(req.url ?? "", undefined, context.canonicalHost);
  } catch (error) {
    context.refused("connect", "invalid", String(req.url));
    return void client.end(rawResponse(400, "Bad Request", `cloister: bad CONNECT target ${JSON.stringify(req.url)}: ${message(error)}\n`));
  }
  const conflict = hostHeaderProblem(req, target, target.port, context.canonicalHost);
  if (conflict) {
    context.refused("connect", "invalid", conflict);
    return void client.end(rawResponse(400, "Bad Request", `cloister: ${conflict}\n`));
  }
  const { result: verdict, early } = await whileHeld(client, head, async () => {
    // After plain requests on the connection, the CONNECT is one more request and takes its own turn.
    if (pipelines.has(client)) await context.turn();
    return context.judge("connect", target.host, target.port, client);
  });
  if (!verdict.ok) return void client.end(rawResponse(verdict.status, statusText(verdict.status), `${verdict.message}\n`));
  let plan;
  try {
    plan = await context.credentials?.interception(verdict.host, verdict.port);
  } catch (error) {
    context.ended("connect", verdict, { bytesUp: 0, bytesDown: 0, durationMs: 0, end: "error" });
    return void client.end(rawResponse(502, "Bad Gateway", `cloister: cannot intercept ${formatAuthority(verdict.host, verdict.port)} to inject its credential: ${message(error)}\n`));
  }
  if (plan) {
    client.write("HTTP/1.1 200 Connection established\r\n\r\n");
    return void context.ended("connect", verdict, await intercept(context, verdict, plan, client, early));
  }
  let upstream: Socket;
  try {
    upstream = await dial(verdict.address, verdict.port, context.settings.connect_timeout);
  } catch (error) {
    const status = error instanceof DialError ? error.status : 502;
    context.ended("connect", verdict, { bytesUp: 0, bytesDown: 0, durationMs: 0, end: "unreachable" });
    return void client.end(rawResponse(status, statusText(status), `cloister: ${formatAuthority(verdict.host, verdict.port)}: ${message(error)}\n`));
  }
  if (client.destroyed) return void upstream.destroy();
  client.write("HTTP/1.1 200 Connection established\r\n\r\n");
  context.ended("connect", verdict, await context.tunnel(client, upstream, early));
}

// ---------------------------------------------------------------------------------------------------
// Absolute-form plain HTTP

/** Forwards `req` once the requests before it on its connection are done (see `pipelines`). */
function enqueue(context: EgressContext, req: IncomingMessage, res: ServerResponse): void {
  const client = req.socket;
  let line = pipelines.get(client);
  // The connection's turn paid for its first request; each later one takes its own (record-pace.ts).
  const turn = line ? () => context.turn() : () => undefined;
  if (!line) pipelines.set(client, (line = { tail: Promise.resolve(), waiting: 0 }));
  if (line.waiting >= MAX_PIPELINED) {
    if (context.paced) return context.closeUnread(client, `more than ${MAX_PIPELINED} pipelined requests`);
    context.refused("http", "over-limit", `more than ${MAX_PIPELINED} pipelined requests`);
    return reply(res, 503, `cloister: more than ${MAX_PIPELINED} requests pipelined on one connection; wait for the responses\n`);
  }
  const queue = line;
  queue.waiting++;
  queue.tail = queue.tail
    .then(turn)
    .then(() => {
      queue.waiting--;
      // The client may have gone while this request waited: then there is nothing to forward it for.
      if (res.destroyed || client.destroyed) return;
      return forward(context, req, res);
    })
    // forward() handles its own failures; should one escape anyway, this response is dropped and the
    // connection's later requests still run.
    .catch(() => void res.destroy());
}

/** Resolves when the request is answered or its relay has ended. */
async function forward(context: EgressContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const problem = requestProblem(context, req);
  if (problem) return reply(res, problem.status, problem.body, problem.headers);
  const target = absoluteTarget(req, context.canonicalHost);
  if ("error" in target) {
    context.refused("http", "invalid", target.error);
    return reply(res, 400, `cloister: ${target.error}\n`);
  }
  const verdict = await context.judge("http", target.host, target.port, req.socket);
  if (!verdict.ok) return reply(res, verdict.status, `${verdict.message}\n`);
  // Plain HTTP never carries a credential: a placeholder in it is on its way somewhere it must not go.
  const active = (await context.credentials?.active()) ?? [];
  const sighting = sightingInRequest(active, headerPairs(req.rawHeaders), target.path);
  if (sighting) {
    recordPlainSighting(context, verdict, sighting);
    return reply(res, 403, `cloister: request to ${formatAuthority(verdict.host, verdict.port)} blocked: it carries the placeholder of the secret ${sighting.secret}; secrets are only ever sent over verified TLS to their own hosts\n`);
  }
  const scan: Scan | undefined =
    active.length > 0
      ? { needles: active.map((a) => Buffer.from(a.placeholder)), found: (index) => recordPlainSighting(context, verdict, { secret: active[index]?.rule.secret ?? "?", where: "body" }) }
      : undefined;
  const started = Date.now();
  await new Promise<void>((done) => relay(context, verdict, req, res, target.path, started, done, scan));
}

/**
 * Calls `done` once, when the exchange has ended (the egress.end event is recorded then). The
 * origin connection comes from the cloister's pools (dialed to the checked address if none is
 * free) and goes back to it after a clean response.
 */
function relay(context: EgressContext, target: Admitted, req: IncomingMessage, res: ServerResponse, path: string, started: number, done: () => void, scan?: Scan): void {
  const headers = forwardedHeaders(req.rawHeaders, hostHeader(target));
  // Bytes on the origin connection: the request head as undici writes it, then the body, which
  // (when there is one) goes through a stream that counts it; the placeholder scan writes into it.
  let bytesUp = requestHeadBytes(req.method ?? "GET", path, headers);
  const hasBody = req.headers["content-length"] !== undefined || req.headers["transfer-encoding"] !== undefined;
  const body = hasBody
    ? new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          bytesUp += chunk.length;
          callback(null, chunk);
        },
      })
    : null;
  if (body && !scan) req.pipe(body);
  const client = req.socket;
  const downBefore = client.bytesWritten;
  let controller: Dispatcher.DispatchController | undefined;
  let finished = false;
  const finish = (end: string) => {
    if (finished) return;
    finished = true;
    if (end !== "closed") controller?.abort(new Error(end));
    context.ended("http", target, { bytesUp, bytesDown: client.bytesWritten - downBefore, durationMs: Date.now() - started, end });
    done();
  };
  const failed = (error: Error) => {
    if (finished) return; // ended here first (blocked, client gone): undici reports the abort
    const status = error instanceof DialError ? error.status : 502;
    if (!res.headersSent) reply(res, status, `cloister: ${formatAuthority(target.host, target.port)}: ${originError(error)}\n`);
    else res.destroy();
    finish(error instanceof DialError ? "unreachable" : "error");
  };
  res.on("drain", () => controller?.resume());
  res.on("close", () => finish(res.writableFinished ? "closed" : "client-closed"));
  const idle = context.settings.idle_timeout;
  context.origins.dispatch(target.address, target.family, target.port, { method: req.method ?? "GET", path, headers, body, headersTimeout: idle, bodyTimeout: idle }, {
    onRequestStart: (request) => {
      controller = request;
      // Ended while it waited for a free origin connection (the client went away): not sent at all.
      if (finished) request.abort(new Error("client-closed"));
    },
    onResponseStart: (request, status, parsed, statusMessage) => {
      if (status < 200) return; // informational (103 Early Hints): the final response follows
      try {
        res.writeHead(status, statusMessage, responseHeaders(rawHeaderList(request.rawHeaders, parsed)));
      } catch (error) {
        // undici's parser accepts status lines node's server refuses to write (control bytes in
        // the reason phrase). Uncaught, that exception ended the guardian; the origin's response
        // is refused instead. writeHead kept the bad reason phrase: clear it first.
        res.statusMessage = "";
        reply(res, 502, `cloister: ${formatAuthority(target.host, target.port)} sent a response that cannot be relayed: ${message(error)}\n`);
        finish("error");
      }
    },
    onResponseData: (request, chunk) => {
      if (!res.write(chunk)) request.pause();
    },
    onResponseEnd: () => {
      res.end();
      finish("closed");
    },
    onResponseError: (_response, error) => failed(error),
  });
  if (!scan || !body) return;
  // A placeholder in the body: what came before it went out, the rest never does; the client is
  // answered, and what it still sends is read and dropped (see discardRest).
  const blocked = (index: number) => {
    scan.found(index);
    if (!res.headersSent) reply(res, 403, `cloister: request to ${formatAuthority(target.host, target.port)} blocked: its body carries a secret's placeholder\n`);
    finish("blocked");
    discardRest(req);
  };
  relayScanned(req, body, scan.needles, blocked, () => undefined, "leave-source");
}

/** What undici writes before a request's body: request line, headers, and its own Connection header. */
function requestHeadBytes(method: string, path: string, headers: readonly string[]): number {
  let bytes = Buffer.byteLength(`${method} ${path} HTTP/1.1\r\nconnection: keep-alive\r\n\r\n`);
  for (let i = 0; i + 1 < headers.length; i += 2) bytes += Buffer.byteLength(`${headers[i]}: ${headers[i + 1]}\r\n`);
  return bytes;
}

/** The response's headers as node's raw list: undici's raw form when it kept one, else from the parsed object. */
function rawHeaderList(raw: Dispatcher.DispatchController["rawHeaders"], parsed: Record<string, string | string[] | undefined>): string[] {
  if (Array.isArray(raw)) return raw.map((item) => (typeof item === "string" ? item : item.toString("latin1")));
  return Object.entries(parsed).flatMap(([name, value]) => (value === undefined ? [] : (Array.isArray(value) ? value : [value]).flatMap((v) => [name, v])));
}

/** undici's errors for what went wrong at the origin, in the words the proxy's other errors use. */
function originError(error: Error): string {
  const code = (error as { code?: string }).code;
  if (code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT") return "idle timeout";
  if (code === "UND_ERR_SOCKET") return `the connection failed (${error.message})`;
  return error.message;
}

function recordPlainSighting(context: EgressContext, target: Admitted, sighting: Sighting): void {
  context.record({ type: "credential.exfiltration", name: sighting.secret, where: sighting.where, header: sighting.header ?? null, host: hostText(target.host), port: target.port, protocol: "http" });
}

/** The request target of a plain-HTTP proxy request, checked: `http://authority/path`, nothing else. */
function absoluteTarget(req: IncomingMessage, canonical: (raw: string) => Host): { host: Host; port: number; path: string } | { error: string } {
  const url = req.url ?? "";
  const match = /^http:\/\/([^/?#]*)([/?][^#]*)?$/i.exec(url);
  if (!match) {
    if (/^https:\/\//i.test(url)) return { error: `${url.slice(0, 100)}: https:// URLs go through CONNECT (set HTTPS_PROXY), not plain HTTP` };
    if (url.startsWith("/")) return { error: `this is a proxy: send absolute-form requests (GET http://host/path), got ${JSON.stringify(url.slice(0, 100))}` };
    return { error: `bad request target ${JSON.stringify(url.slice(0, 100))}: expected http://host[:port]/path` };
  }
  const [, authority = "", path = "/"] = match;
  if (req.httpVersion === "1.1" && headerValues(req.rawHeaders, "host").length === 0) return { error: "an HTTP/1.1 request must carry a Host header (RFC 9112, 3.2)" };
  if (authority.includes("@")) return { error: "credentials in the URL (user@host) are refused" };
  let target: { host: Host; port: number };
  try {
    target = parseAuthority(authority, 80, canonical);
  } catch (error) {
    return { error: `bad host in ${JSON.stringify(url.slice(0, 100))}: ${message(error)}` };
  }
  const conflict = hostHeaderProblem(req, target, 80, canonical);
  if (conflict) return { error: conflict };
  return { ...target, path: path.startsWith("?") ? `/${path}` : path };
}

/**
 * A Host header naming somewhere else than the request target is ambiguous (which one would be
 * checked?), and so are two Host headers: both are refused. A Host without a port means
 * `defaultPort` (80 for plain HTTP; for CONNECT, the target's own port).
 */
function hostHeaderProblem(req: IncomingMessage, target: { host: Host; port: number }, defaultPort: number, canonical: (raw: string) => Host): string | undefined {
  const hosts = headerValues(req.rawHeaders, "host");
  if (hosts.length > 1) return "more than one Host header";
  if (hosts[0] === undefined) return undefined;
  try {
    const stated = parseAuthority(hosts[0], defaultPort, canonical);
    const expected = formatAuthority(target.host, target.port);
    if (formatAuthority(stated.host, stated.port) !== expected) return `Host header ${JSON.stringify(hosts[0])} does not match the target ${expected}`;
  } catch (error) {
    return `bad Host header ${JSON.stringify(hosts[0])}: ${message(error)}`;
  }
  return undefined;
}

/** Checks shared by CONNECT and plain HTTP before anything else: header count, then the token. */
function requestProblem(context: EgressContext, req: IncomingMessage): { status: number; reason: string; body: string; headers?: string[] } | undefined {
  const protocol = req.method === "CONNECT" ? "connect" : "http";
  if (req.rawHeaders.length / 2 > context.settings.max_headers) {
    context.refused(protocol, "invalid", "too many headers");
    return { status: 431, reason: "Request Header Fields Too Large", body: `cloister: more than ${context.settings.max_headers} header lines\n` };
  }
  const auth = headerValues(req.rawHeaders, "proxy-authorization");
  if (auth.length !== 1 || !context.basicAuthMatches(auth[0])) {
    context.refused(protocol, "unauthenticated", "");
    return {
      status: 407,
      reason: "Proxy Authentication Required",
      body: "cloister: proxy credentials missing or wrong (use the proxy URL from $HTTPS_PROXY inside the cloister)\n",
      headers: ['Proxy-Authenticate: Basic realm="cloister"'],
    };
  }
  return undefined;
}

/** The checked authority, without the default port (what an origin server expects in Host). */
function hostHeader(target: Admitted): string {
  const authority = formatAuthority(target.host, target.port);
  return target.port === 80 ? authority.slice(0, authority.lastIndexOf(":")) : authority;
}

function reply(res: ServerResponse, status: number, body: string, headers: string[] = []): void {
  const extra = Object.fromEntries(headers.map((h) => [h.slice(0, h.indexOf(":")), h.slice(h.indexOf(":") + 1).trim()]));
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body), ...extra });
  res.end(body);
}

export function rawResponse(status: number, reason: string, body: string, headers: string[] = []): string {
  return [`HTTP/1.1 ${status} ${reason}`, "Content-Type: text/plain; charset=utf-8", `Content-Length: ${Buffer.byteLength(body)}`, "Connection: close", ...headers, "", body].join("\r\n");
}

function statusText(status: number): string {
  return { 400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway", 504: "Gateway Timeout" }[status] ?? "Error";
}

function message(error: unknown): string {
  return error instanceof HostSyntaxError || error instanceof Error ? error.message : String(error);
}
