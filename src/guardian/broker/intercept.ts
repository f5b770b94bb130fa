/**
 * TLS interception of one admitted connection (CONNECT or SOCKS5) to a host the broker intercepts.
 * The guardian finishes the cloister's TLS handshake with a certificate from its own CA (which the
 * cloister trusts), reads each HTTP request (HTTP/1.1, or HTTP/2 when the client offers it by ALPN),
 * swaps placeholders for real credentials by policy/injection.ts, and sends it on over a new TLS
 * connection to exactly the checked address, verified against the system roots for the checked
 * name. Responses stream back as they arrive (server-sent events, chunked bodies); a WebSocket
 * upgrade is joined after the swap of its handshake, the origin's frames scanned for echoes.
 *
 * Request bodies are scanned for placeholders and responses for the real values (an origin echoing
 * a credential back must not hand it to the cloister); both are cut at the first sighting. Response
 * headers are checked before they are relayed (a sighting refuses the response with 502), and a
 * compressed response body is decompressed for the scan and relayed decoded: the origin is only
 * offered the codings the guardian can decode (gzip, deflate, br), and a response in any other
 * coding is refused.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer as createHttp2Server, type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import { request as httpsRequest, type Agent as HttpsAgent, type RequestOptions } from "node:https";
import type { Socket } from "node:net";
import { Duplex, pipeline, PassThrough, type Readable, type Transform, type Writable } from "node:stream";
import { TLSSocket, type ConnectionOptions, type TLSSocketOptions } from "node:tls";
import { constants as zlib, createBrotliDecompress, createGunzip, createInflate } from "node:zlib";
import { formatAuthority, hostText, parseAuthority } from "../../policy/hosts.js";
import { rulesFor, sightingInRequest, swapCredentials, type ActiveRule, type Sighting } from "../../policy/injection.js";
import { MAX_EXCHANGES, type EgressContext } from "../proxy/context.js";
import { endToEnd, headerPairs, headerValues } from "../proxy/headers.js";
import { handedConnectionServer } from "../proxy/http.js";
import type { Admitted } from "../proxy/judge.js";
import type { TunnelResult } from "../proxy/native-relay.js";
import type { Interception } from "./broker.js";
import { discardRest, relayScanned, scanningStream, type Scan } from "./scanner.js";

type ClientRequest = IncomingMessage | Http2ServerRequest;

/** HTTP/2 streams open at once on one intercepted connection. */
const MAX_STREAMS = 100;

/** How much a client's socket buffers before writers wait (per direction; see intercept()). */
const SOCKET_BUFFER_BYTES = 256 * 1024;
type ClientResponse = ServerResponse | Http2ServerResponse;

/** One intercepted connection: who, where to, and with which rules. */
interface Intercepted {
  context: EgressContext;
  target: Admitted;
  /** The checked host name (interception is only ever for names). */
  name: string;
  plan: Interception;
}

/**
 * Terminates the client's TLS on `client` (the CONNECT or SOCKS reply has been sent) and serves its
 * requests until either side closes. Resolves with what went through, as a tunnel would.
 */
export function intercept(context: EgressContext, target: Admitted, plan: Interception, client: Socket, early: Buffer): Promise<TunnelResult> {
  const started = Date.now();
  const ix: Intercepted = { context, target, name: hostText(target.host), plan };
  const options: TLSSocketOptions & { highWaterMark: number } = {
    isServer: true,
    secureContext: plan.serverContext,
    ALPNProtocols: ["h2", "http/1.1"],
    // At the default 16 KiB a download stalled on backpressure after every TLS record (pause the
    // origin, wait for 'drain', resume): 0.42x a tunnel's throughput, 0.62x with this (bench
    // section 8). node hands stream options on to the socket; @types/node does not list them.
    highWaterMark: SOCKET_BUFFER_BYTES,
  };
  const secure = new TLSSocket(early.length > 0 ? withEarlyBytes(client, early) : client, options);
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
  // A request here writes a record only when it carries a credential (an injection, a placeholder
  // seen), and then at once, in exchange(): so it goes free while the cloister keeps to its audit
  // rate, and waits its turn once it has outrun it (proxy/record-pace.ts). A host only inspected,
  // whose requests write nothing, is not slowed by a pace it does not use.
  const handle = (req: ClientRequest, res: ClientResponse) => (ix.context.paced ? ix.context.onTurn(() => exchange(ix, req, res)) : exchange(ix, req, res));
  if (secure.alpnProtocol === "h2") {
    // One connection's streams are bounded as one cloister's connections are (proxy.max_connections):
    // each open stream may hold an origin request, and node's default is no limit at all.
    const server = createHttp2Server({ maxSessionMemory: 32, settings: { maxConcurrentStreams: MAX_STREAMS } }, handle);
    server.emit("connection", secure);
    return;
  }
  const server = handedConnectionServer(ix.context.settings, handle);
  // Its header-timeout timer lives until the server closes: with the connection it serves.
  secure.once("close", () => server.close());
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => upgrade(ix, req, socket, head));
  server.on("clientError", (_error, socket: Duplex) => socket.destroy());
  server.emit("connection", secure);
}

/** One request: check its authority, swap credentials, forward, stream the response back. */
function exchange(ix: Intercepted, req: ClientRequest, res: ClientResponse): void {
  if (!ix.context.admitExchange(res)) {
    return answer(res, 503, `cloister: more than ${MAX_EXCHANGES} requests of this cloister are in flight through the credential broker; retry when some have ended`);
  }
  const prepared = prepare(ix, req);
  if ("status" in prepared) return answer(res, prepared.status, prepared.message);
  let outgoing;
  try {
    outgoing = httpsRequest(upstreamOptions(ix, req, prepared.headers, ix.context.tlsUpstream));
  } catch (error) {
    // A request node's HTTP/1.1 client will not write (HTTP/2 allows some it refuses): refused, not thrown.
    return answer(res, 400, `cloister: the request cannot be forwarded to ${formatAuthority(ix.target.host, ix.target.port)}: ${(error as Error).message}`);
  }
  outgoing.setTimeout(ix.context.settings.idle_timeout, () => outgoing.destroy(new Error("idle timeout")));
  outgoing.on("response", (upstream) => {
    const relayed = relayable(ix, req.method, upstream);
    if ("refused" in relayed) {
      upstream.destroy();
      return answer(res, 502, relayed.refused);
    }
    try {
      res.writeHead(upstream.statusCode ?? 502, headerObject(relayed.headers));
      // Headers go out now, not with the first body chunk: a streamed response shows up at once.
      // (@types/node omits the HTTP/2 compatibility response's flushHeaders, which node has.)
      (res as ServerResponse).flushHeaders();
    } catch (error) {
      // node's HTTP/1.1 client accepts responses its HTTP/2 server refuses to write (a repeated
      // content-type or location, an http2-settings header, a status outside 200-599; HTTP/1.1: a
      // status below 100). The throw escaped into node's event loop and ended the guardian, and
      // every cloister's network with it: refuse the response instead.
      upstream.destroy();
      for (const name of res.getHeaderNames()) res.removeHeader(name);
      try {
        return answer(res, 502, `cloister: ${formatAuthority(ix.target.host, ix.target.port)} sent a response that cannot be relayed: ${(error as Error).message}`);
      } catch {
        return void res.destroy();
      }
    }
    relayBody(upstream, relayed.decoder, res as unknown as Writable, echoScan(ix), (error) => error && res.destroy());
  });
  outgoing.on("error", (error) => {
    if (!res.headersSent) answer(res, 502, `cloister: ${formatAuthority(ix.target.host, ix.target.port)}: ${error.message}`);
    else res.destroy();
  });
  const scan = placeholderScan(ix, (sighting) => {
    outgoing.destroy();
    if (!res.headersSent) answer(res, 403, blockedMessage(sighting, ix));
    discardRest(req);
  });
  relayScanned(req, outgoing, scan.needles, scan.found, () => undefined, "leave-source");
}

/** The forwarded headers, or why the request is refused. */
function prepare(ix: Intercepted, req: ClientRequest): { headers: string[] } | { status: number; message: string } {
  const stated = (req.headers[":authority"] ?? req.headers.host) as string | undefined;
  if (!sameAuthority(stated, ix)) {
    // The certificate shown was for the checked host: a request for another one on this connection
    // is not what policy decided on.
    return { status: 421, message: `cloister: this connection is for ${formatAuthority(ix.target.host, ix.target.port)}, not ${JSON.stringify(stated ?? "")}` };
  }
  const target = req.url ?? "";
  // Origin-form only (or `*` for OPTIONS): an absolute-form target (`GET https://other.example/`)
  // names its own authority, which an origin server or CDN routes by in preference to Host (RFC
  // 9112 3.2.2), so the value would go to whichever virtual host the URL names, not the checked one.
  if (!target.startsWith("/") && !(target === "*" && req.method === "OPTIONS")) {
    return { status: 400, message: `cloister: the request target must be a path on ${formatAuthority(ix.target.host, ix.target.port)} (origin-form, e.g. /v1/models), not ${JSON.stringify(target.slice(0, 100))}` };
  }
  const headers = endToEnd(req.rawHeaders, "host");
  if (headers.length / 2 > ix.context.settings.max_headers) return { status: 431, message: `cloister: more than ${ix.context.settings.max_headers} header lines` };
  const swap = swapCredentials(ix.plan.active, ix.name, ix.target.port, headerPairs(headers), target);
  if (!swap.ok) {
    if ("unavailable" in swap) return { status: 503, message: `cloister: the secret ${swap.unavailable} cannot be injected: the vault is locked (run \`cloister secret unlock\` on the host)` };
    recordSighting(ix, swap.sighting);
    return { status: 403, message: blockedMessage(swap.sighting, ix) };
  }
  for (const secret of swap.injected) {
    ix.context.record({ type: "credential.inject", name: secret, host: ix.name, port: ix.target.port, header: injectedHeader(ix, secret) });
  }
  if (swap.stripped.length > 0) ix.context.record({ type: "credential.strip", host: ix.name, port: ix.target.port, headers: swap.stripped.join(",") });
  const forwarded = decodableCodingsOnly(swap.headers);
  return { headers: ["Host", hostHeader(ix), ...forwarded.flat(), ...bodyFraming(req, forwarded)] };
}

/**
 * The framing the forwarded body needs when the headers kept do not give it. The client's
 * Transfer-Encoding is hop-by-hop (dropped), HTTP/2 has none, and a Content-Length the client named
 * in Connection is dropped too; node's client then writes the body of a GET, HEAD, DELETE or
 * OPTIONS as bare bytes, which the origin reads as the next request on the pooled connection: a
 * request no policy saw, whose Content-Length could swallow the next one, real credential and all
 * (red team). A request with a body is sent chunked unless its (checked) Content-Length stayed.
 */
function bodyFraming(req: ClientRequest, forwarded: ReadonlyArray<[string, string]>): string[] {
  const keepsLength = forwarded.some(([name]) => name.toLowerCase() === "content-length");
  return hasBody(req) && !keepsLength ? ["Transfer-Encoding", "chunked"] : [];
}

/** Whether a request carries a body: HTTP/1.1 says so by its framing headers, HTTP/2 by a stream its headers did not end. */
function hasBody(req: ClientRequest): boolean {
  if ("stream" in req) return !req.stream.endAfterHeaders;
  const length = req.headers["content-length"];
  return req.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0");
}

/**
 * A WebSocket (or other) upgrade over HTTP/1.1: the handshake is swapped like any request, then the
 * two connections are joined (joinUpgraded).
 */
function upgrade(ix: Intercepted, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const prepared = prepare(ix, req);
  if ("status" in prepared) return void socket.end(refusal(prepared.status, prepared.message));
  // The swap saw the end-to-end headers only; Upgrade is hop-by-hop but forwarded as given.
  const inUpgrade = sightingInRequest(ix.plan.active, [["upgrade", req.headers.upgrade ?? ""]], "/");
  if (inUpgrade) {
    recordSighting(ix, inUpgrade);
    return void socket.end(refusal(403, blockedMessage(inUpgrade, ix)));
  }
  // No permessage-deflate: the origin's frames must stay readable for the echo scan.
  const headers = headerPairs(prepared.headers).filter(([name]) => name.toLowerCase() !== "sec-websocket-extensions");
  const outgoing = httpsRequest(upstreamOptions(ix, req, [...headers.flat(), "Connection", "Upgrade", "Upgrade", req.headers.upgrade ?? ""], false));
  outgoing.on("upgrade", (response, upstream: Socket, upstreamHead: Buffer) => {
    const echoed = echoedIn(ix, [response.statusMessage ?? "", ...response.rawHeaders]);
    if (echoed) {
      upstream.destroy();
      return void socket.end(refusal(502, echoRefusal(ix, echoed)));
    }
    const lines = [`HTTP/1.1 101 ${response.statusMessage ?? "Switching Protocols"}`];
    for (let i = 0; i + 1 < response.rawHeaders.length; i += 2) lines.push(`${response.rawHeaders[i]}: ${response.rawHeaders[i + 1]}`);
    socket.write(`${lines.join("\r\n")}\r\n\r\n`);
    joinUpgraded(ix, socket, upstream, head, upstreamHead);
  });
  outgoing.on("response", (response) => {
    // The origin declined the upgrade: relay its answer (its body scanned like any other) and close.
    const relayed = relayable(ix, req.method, response);
    if ("refused" in relayed) {
      response.destroy();
      return void socket.end(refusal(502, relayed.refused));
    }
    const lines = [`HTTP/1.1 ${response.statusCode ?? 502} ${response.statusMessage ?? ""}`, "Connection: close"];
    for (let i = 0; i + 1 < relayed.headers.length; i += 2) {
      const name = relayed.headers[i] ?? "";
      // The body is relayed as it arrives (decoded), delimited by the close.
      if (!["content-length", "connection"].includes(name.toLowerCase())) lines.push(`${name}: ${relayed.headers[i + 1] ?? ""}`);
    }
    socket.write(`${lines.join("\r\n")}\r\n\r\n`);
    relayBody(response, relayed.decoder, socket, echoScan(ix), (error) => error && socket.destroy());
  });
  outgoing.on("error", () => socket.destroy());
  outgoing.end();
}

/**
 * The two sides of an upgraded connection, joined. The cloister's bytes go out as they are (a
 * WebSocket client masks its frames: there is nothing to scan for); the origin's come back scanned
 * for the real value of this host's secrets (server frames are not masked, and compression was not
 * offered), and the connection is cut at an echo. Either side closing, failing or idling closes both.
 */
function joinUpgraded(ix: Intercepted, client: Duplex, upstream: Socket, clientHead: Buffer, upstreamHead: Buffer): void {
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  for (const side of [client, upstream]) {
    side.on("error", close);
    side.on("close", close);
  }
  upstream.setTimeout(ix.context.settings.idle_timeout, close);
  if (clientHead.length > 0) upstream.write(clientHead);
  client.pipe(upstream);
  if (upstreamHead.length > 0) upstream.unshift(upstreamHead);
  const scan = echoScan(ix);
  relayScanned(upstream, client, scan.needles, scan.found, (error) => error && close());
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
function placeholderScan(ix: Intercepted, blocked: (sighting: Sighting) => void): Scan {
  const active = ix.plan.active;
  return {
    needles: active.map((a) => Buffer.from(a.placeholder)),
    found: (index) => {
      const sighting: Sighting = { secret: active[index]?.rule.secret ?? "?", where: "body" };
      recordSighting(ix, sighting);
      blocked(sighting);
    },
  };
}

/**
 * What an origin could echo of this host's secrets: each real value, and for basic auth also the
 * base64 of `user:value` (the header's value minus "Basic ", which contains no plain copy of it).
 */
function echoNeedles(ix: Intercepted): Array<{ secret: string; needle: string }> {
  return rulesFor(ix.plan.active, ix.name, ix.target.port).flatMap((a: ActiveRule) => {
    if (a.real === undefined || a.real === "") return [];
    const needles = [a.real];
    if (a.rule.present.kind === "basic") needles.push(Buffer.from(`${a.rule.present.user}:${a.real}`, "utf8").toString("base64"));
    return needles.map((needle) => ({ secret: a.rule.secret, needle }));
  });
}

/** Response bodies: cut at a real value of this host's secrets (an origin echoing the request back). */
function echoScan(ix: Intercepted): Scan {
  const needles = echoNeedles(ix);
  return {
    needles: needles.map((n) => Buffer.from(n.needle)),
    found: (index) => ix.context.record({ type: "credential.echo", name: needles[index]?.secret ?? "?", where: "body", host: ix.name, port: ix.target.port }),
  };
}

/** The secret whose real value appears in these texts (a status line, raw headers), audited; else undefined. */
function echoedIn(ix: Intercepted, texts: readonly string[]): string | undefined {
  const found = echoNeedles(ix).find(({ needle }) => texts.some((text) => text.includes(needle)));
  if (!found) return undefined;
  ix.context.record({ type: "credential.echo", name: found.secret, where: "header", host: ix.name, port: ix.target.port });
  return found.secret;
}

function echoRefusal(ix: Intercepted, secret: string): string {
  return `cloister: the response of ${formatAuthority(ix.target.host, ix.target.port)} was refused: its headers carry the credential of the secret ${secret}, which the guardian never hands to a cloister`;
}

/** Content codings the guardian decodes to scan a response body; flushed as data arrives (streams stay streams). */
const DECODERS: Record<string, () => Transform> = {
  gzip: () => createGunzip({ flush: zlib.Z_SYNC_FLUSH, finishFlush: zlib.Z_SYNC_FLUSH }),
  "x-gzip": () => createGunzip({ flush: zlib.Z_SYNC_FLUSH, finishFlush: zlib.Z_SYNC_FLUSH }),
  deflate: () => createInflate({ flush: zlib.Z_SYNC_FLUSH, finishFlush: zlib.Z_SYNC_FLUSH }),
  br: () => createBrotliDecompress({ flush: zlib.BROTLI_OPERATION_FLUSH, finishFlush: zlib.BROTLI_OPERATION_FLUSH }),
};

/**
 * The request's Accept-Encoding limited to codings the guardian can decode (and identity): a body
 * in another coding could hide an echoed credential from the scan. Several such headers become one.
 */
function decodableCodingsOnly(headers: ReadonlyArray<[string, string]>): Array<[string, string]> {
  const accepted = headers.filter(([name]) => name.toLowerCase() === "accept-encoding");
  if (accepted.length === 0) return [...headers];
  const kept = accepted
    .flatMap(([, value]) => value.split(","))
    .map((item) => item.trim())
    .filter((item) => {
      const coding = (item.split(";")[0] ?? "").trim().toLowerCase();
      return coding === "identity" || coding in DECODERS;
    });
  const others = headers.filter(([name]) => name.toLowerCase() !== "accept-encoding");
  return [...others, [accepted[0]?.[0] ?? "Accept-Encoding", kept.length > 0 ? kept.join(", ") : "identity"]];
}

/**
 * How an origin's response can be relayed: its end-to-end headers (without the credential of any
 * secret of this host: a response that echoes one there is refused) and the decoder its body needs
 * to be scanned, if any. A decoded body is relayed decoded, so its coding and length headers go.
 */
function relayable(ix: Intercepted, method: string | undefined, response: IncomingMessage): { headers: string[]; decoder: Transform[] } | { refused: string } {
  const echoed = echoedIn(ix, response.rawHeaders);
  if (echoed) return { refused: echoRefusal(ix, echoed) };
  const headers = endToEnd(response.rawHeaders);
  const codings = headerValues(headers, "content-encoding")
    .flatMap((value) => value.split(","))
    .map((coding) => coding.trim().toLowerCase())
    .filter((coding) => coding !== "" && coding !== "identity");
  const status = response.statusCode ?? 0;
  const bodiless = method === "HEAD" || status === 204 || status === 304 || (status >= 100 && status < 200) || headerValues(headers, "content-length")[0]?.trim() === "0";
  if (codings.length === 0 || bodiless || echoNeedles(ix).length === 0) return { headers, decoder: [] };
  const decoder = codings.length === 1 ? DECODERS[codings[0] ?? ""] : undefined;
  if (!decoder) {
    return { refused: `cloister: the response of ${formatAuthority(ix.target.host, ix.target.port)} was refused: its body is encoded as "${codings.join(", ")}", which the guardian cannot decode to check it for echoed credentials` };
  }
  const decodedHeaders: string[] = [];
  for (let i = 0; i + 1 < headers.length; i += 2) {
    const name = headers[i] ?? "";
    if (!["content-encoding", "content-length"].includes(name.toLowerCase())) decodedHeaders.push(name, headers[i + 1] ?? "");
  }
  return { headers: decodedHeaders, decoder: [decoder()] };
}

/**
 * Relays a body, scanned as it goes (a find cuts it there). An encoded response body is decoded
 * first, so the scan sees what the client will see; otherwise the chunks go straight through.
 */
function relayBody(from: Readable, decoders: Transform[], to: Writable, scan: Scan, done: (error: Error | null) => void): void {
  if (decoders.length === 0) return relayScanned(from, to, scan.needles, scan.found, done);
  pipeline([from, ...decoders, scanningStream(scan.needles, scan.found), to], (error) => done(error ?? null));
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

/** A refusal written straight to an HTTP/1.1 connection (the upgrade path has no response object). */
function refusal(status: number, message: string): string {
  return `HTTP/1.1 ${status} Refused\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: ${Buffer.byteLength(message) + 1}\r\n\r\n${message}\n`;
}

function answer(res: ClientResponse, status: number, message: string): void {
  const body = `${message}\n`;
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body) });
  res.end(body);
}
