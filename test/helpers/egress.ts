/**
 * In-process egress endpoints for proxy tests (no bubblewrap): a real EgressEndpoint on a unix
 * socket, judged by a policy built in the test, and raw clients that control every byte sent.
 */
import { mkdtempSync, rmSync } from "node:fs";
import type { Server as HttpServer } from "node:http";
import { connect, type Socket } from "node:net";
import type { AuditEvent } from "../../src/audit/log.js";
import { ProxySchema, type ProxySettings } from "../../src/config/schema.js";
import { EgressContext, type AskHuman } from "../../src/guardian/proxy/context.js";
import { EgressEndpoint } from "../../src/guardian/proxy/endpoint.js";
import { createHttpProxy } from "../../src/guardian/proxy/http.js";
import {
  encodeGreeting,
  encodeRequest,
  encodeUserPass,
  METHOD_USER_PASS,
  parseMethodChoice,
  parseReply,
  parseUserPassStatus,
  type Parsed,
  type SocksAddress,
  type SocksReplyMessage,
} from "../../src/guardian/proxy/socks5.js";
import { emptyPolicy, type Policy } from "../../src/policy/egress.js";
import { parseRule, type EgressRule } from "../../src/policy/rules.js";
import { HostResolver } from "../../src/guardian/proxy/host-resolver.js";

export const TOKEN = "tok-7d1e0c5b9a2f4e6b8c3d1a0f9e8d7c6b";
export const OTHER_TOKEN = "tok-0000ffff1111eeee2222dddd3333cccc";

/** Proxy settings as the schema's defaults, with whatever a test overrides. */
export function proxySettings(overrides: Partial<ProxySettings> = {}): ProxySettings {
  return { ...ProxySchema.parse(undefined), connect_timeout: 5_000, idle_timeout: 60_000, ...overrides };
}

export function rules(...texts: string[]): EgressRule[] {
  return texts.map((text) => parseRule(text));
}

export function privateRules(...texts: string[]): EgressRule[] {
  return texts.map((text) => parseRule(text, { private: true }));
}

export interface EndpointOptions {
  cloister?: string;
  token?: string;
  settings?: ProxySettings;
  allow?: EgressRule[];
  deny?: EgressRule[];
  /** Canonical name → address, as config `proxy.resolve` would give. */
  overrides?: Record<string, string>;
  /** Share one HTTP server between endpoints, as the guardian does; a function chooses one per connection (reloads). */
  httpServer?: HttpServer | (() => HttpServer);
  /** Make the policy lookup throw (a project whose policy failed to load). */
  policyError?: string;
  /** Asks about unlisted hosts (settings.unlisted must be "ask"); without it they are refused at once. */
  ask?: AskHuman;
}

export interface TestEndpoint {
  endpoint: EgressEndpoint;
  socketPath: string;
  settings: ProxySettings;
  audit: AuditEvent[];
  httpServer: HttpServer;
  close(): void;
}

export async function openEndpoint(options: EndpointOptions = {}): Promise<TestEndpoint> {
  const settings = options.settings ?? proxySettings();
  const policy: Policy = { ...emptyPolicy(), global: { allow: options.allow ?? [], deny: options.deny ?? [] } };
  const overrides = new Map(Object.entries(options.overrides ?? {}));
  const resolver = new HostResolver();
  const audit: AuditEvent[] = [];
  const cloister = options.cloister ?? "c1";
  const context = new EgressContext({
    cloister,
    project: "proj",
    token: options.token ?? TOKEN,
    settings: () => settings,
    policy: () => {
      if (options.policyError !== undefined) throw new Error(options.policyError);
      return { policy, overrides, project: "proj", cloister: "cl", lookup: (name: string) => resolver.lookup(name) };
    },
    audit: (event) => audit.push(event),
    ask: options.ask,
  });
  const given = options.httpServer ?? createHttpProxy(settings);
  const httpServer = typeof given === "function" ? given : () => given;
  const dir = mkdtempSync("/tmp/cp-");
  const endpoint = await EgressEndpoint.open(context, dir, httpServer);
  return {
    endpoint,
    socketPath: endpoint.socketPath,
    settings,
    audit,
    get httpServer() {
      return httpServer();
    },
    close() {
      endpoint.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function basic(token: string, user = "cloister"): string {
  return `Basic ${Buffer.from(`${user}:${token}`).toString("base64")}`;
}

// ---------------------------------------------------------------------------------------------
// A raw client: every byte is the test's, every byte received is kept.

export interface RawResponse {
  status: number;
  reason: string;
  /** Lower-cased names; repeated headers keep every value. */
  headers: Map<string, string[]>;
  body: string;
  /** The whole response as received (latin1). */
  raw: string;
}

/** Safety net only: a test that waits this long has failed (it is never the thing asserted). */
const WAIT_LIMIT_MS = 15_000;

export class RawClient {
  readonly socket: Socket;
  private buffered = Buffer.alloc(0);
  private ended = false;
  private closedFlag = false;
  private waiters: Array<() => void> = [];
  /** Both sides are done (the client has ended or destroyed its side too). */
  readonly closed: Promise<void>;
  /** The server has finished its side: end of stream, reset, or close. */
  readonly serverDone: Promise<void>;

  private constructor(path: string) {
    // Half-open, so a test sees what the server does when the client has finished sending.
    this.socket = connect({ path, allowHalfOpen: true });
    this.socket.on("data", (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      this.wake();
    });
    this.socket.on("end", () => {
      this.ended = true;
      this.wake();
    });
    this.socket.on("error", () => undefined);
    this.serverDone = new Promise((resolve) => {
      this.socket.once("end", () => resolve());
      this.socket.once("close", () => resolve());
    });
    this.closed = new Promise((resolve) =>
      this.socket.on("close", () => {
        this.closedFlag = true;
        this.ended = true;
        this.wake();
        resolve();
      }),
    );
  }

  static async open(path: string): Promise<RawClient> {
    const client = new RawClient(path);
    await new Promise<void>((resolve, reject) => {
      client.socket.once("connect", () => resolve());
      client.socket.once("error", reject);
    });
    return client;
  }

  get isClosed(): boolean {
    return this.closedFlag;
  }

  /** Everything received and not yet consumed. */
  get pending(): Buffer {
    return this.buffered;
  }

  write(data: string | Buffer): void {
    this.socket.write(typeof data === "string" ? Buffer.from(data, "latin1") : data);
  }

  end(data?: string | Buffer): void {
    if (data !== undefined) this.write(data);
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Waits until `take` finds a whole message in what was received, and consumes it. */
  async read<T>(take: (buf: Buffer, ended: boolean) => { value: T; used: number } | undefined, what: string): Promise<T> {
    const deadline = Date.now() + WAIT_LIMIT_MS;
    for (;;) {
      const got = take(this.buffered, this.ended);
      if (got) {
        this.buffered = this.buffered.subarray(got.used);
        return got.value;
      }
      if (this.ended) throw new Error(`connection ended before ${what}; received ${JSON.stringify(this.buffered.toString("latin1").slice(0, 300))}`);
      if (Date.now() > deadline) throw new Error(`no ${what} within ${WAIT_LIMIT_MS} ms; received ${JSON.stringify(this.buffered.toString("latin1").slice(0, 300))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  readResponse(): Promise<RawResponse> {
    return this.read(takeResponse, "an HTTP response");
  }

  /** Just a status line and headers (a CONNECT's 200 has no body and no length). */
  readHead(): Promise<{ status: number; raw: string }> {
    return this.read((buf) => {
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return undefined;
      const raw = buf.toString("latin1", 0, end + 4);
      return { value: { status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(raw)?.[1] ?? NaN), raw }, used: end + 4 };
    }, "an HTTP response head");
  }

  readBytes(count: number): Promise<Buffer> {
    return this.read((buf) => (buf.length >= count ? { value: Buffer.from(buf.subarray(0, count)), used: count } : undefined), `${count} bytes`);
  }

  readSocks<T>(parse: (buf: Buffer) => Parsed<T>, what: string): Promise<T> {
    return this.read((buf) => {
      const parsed = parse(buf);
      return parsed === "incomplete" ? undefined : parsed;
    }, what);
  }

  /** Resolves with everything received once the server has closed (or half-closed) its side. */
  async readToEnd(): Promise<Buffer> {
    return this.read((buf, ended) => (ended ? { value: Buffer.from(buf), used: buf.length } : undefined), "the end of the connection");
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

/** Parses one HTTP/1.1 response (Content-Length, chunked, or close-delimited) off the front of `buf`. */
export function takeResponse(buf: Buffer, ended: boolean): { value: RawResponse; used: number } | undefined {
  const headEnd = buf.indexOf("\r\n\r\n");
  if (headEnd < 0) return undefined;
  const head = buf.toString("latin1", 0, headEnd);
  const [statusLine = "", ...lines] = head.split("\r\n");
  const match = /^HTTP\/1\.[01] (\d{3}) ?(.*)$/.exec(statusLine);
  if (!match) throw new Error(`not an HTTP status line: ${JSON.stringify(statusLine)}`);
  const headers = new Map<string, string[]>();
  for (const line of lines) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).toLowerCase();
    headers.set(name, [...(headers.get(name) ?? []), line.slice(colon + 1).trim()]);
  }
  const status = Number(match[1]);
  const bodyStart = headEnd + 4;
  const respond = (body: Buffer, used: number) => ({ value: { status, reason: match[2] ?? "", headers, body: body.toString("utf8"), raw: buf.toString("latin1", 0, used) }, used });
  if (status === 204 || status === 304 || (status >= 100 && status < 200)) return respond(Buffer.alloc(0), bodyStart);
  const length = headers.get("content-length")?.[0];
  if (length !== undefined) {
    const end = bodyStart + Number(length);
    return buf.length >= end ? respond(buf.subarray(bodyStart, end), end) : undefined;
  }
  if (headers.get("transfer-encoding")?.[0]?.toLowerCase() === "chunked") {
    const parts: Buffer[] = [];
    let at = bodyStart;
    for (;;) {
      const lineEnd = buf.indexOf("\r\n", at);
      if (lineEnd < 0) return undefined;
      const size = parseInt(buf.toString("latin1", at, lineEnd), 16);
      if (size === 0) {
        const end = buf.indexOf("\r\n\r\n", lineEnd);
        return end < 0 ? undefined : respond(Buffer.concat(parts), end + 4);
      }
      if (buf.length < lineEnd + 2 + size + 2) return undefined;
      parts.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size));
      at = lineEnd + 2 + size + 2;
    }
  }
  return ended ? respond(buf.subarray(bodyStart), buf.length) : undefined;
}

/** One request on a fresh connection; the response and the client (still open unless the server closed it). */
export async function httpExchange(path: string, request: string | Buffer): Promise<{ response: RawResponse; client: RawClient }> {
  const client = await RawClient.open(path);
  client.write(request);
  const response = await client.readResponse();
  return { response, client };
}

/** A proxy request head; `headers` are written verbatim, in order, after the request line. */
export function requestHead(requestLine: string, headers: readonly string[]): string {
  return `${requestLine}\r\n${headers.map((h) => `${h}\r\n`).join("")}\r\n`;
}

// ---------------------------------------------------------------------------------------------
// SOCKS5

export interface SocksOutcome {
  client: RawClient;
  /** The server's method choice, then (if user/password was chosen) whether the token was accepted. */
  method: number;
  authOk?: boolean;
  reply?: SocksReplyMessage;
}

/**
 * Greeting, user/password and one request, each sent after the previous answer (or all at once
 * with `pipelined`), stopping at the first refusal.
 */
export async function socksConnect(
  path: string,
  target: { address: SocksAddress; port: number; command?: "connect" | "bind" | "udp-associate" },
  options: { token?: string | Buffer; methods?: number[]; pipelined?: boolean; early?: Buffer } = {},
): Promise<SocksOutcome> {
  const client = await RawClient.open(path);
  const greeting = encodeGreeting(options.methods ?? [METHOD_USER_PASS]);
  const auth = encodeUserPass("cloister", options.token ?? TOKEN);
  const request = encodeRequest({ command: target.command ?? "connect", address: target.address, port: target.port });
  const early = options.early ?? Buffer.alloc(0);
  if (options.pipelined) client.write(Buffer.concat([greeting, auth, request, early]));
  else client.write(greeting);
  const { method } = await client.readSocks(parseMethodChoice, "a SOCKS method choice");
  if (method !== METHOD_USER_PASS) return { client, method };
  if (!options.pipelined) client.write(auth);
  const { ok } = await client.readSocks(parseUserPassStatus, "a SOCKS auth status");
  if (!ok) return { client, method, authOk: false };
  if (!options.pipelined) client.write(Buffer.concat([request, early]));
  const reply = await client.readSocks(parseReply, "a SOCKS reply");
  return { client, method, authOk: true, reply };
}

export const domain = (name: string): SocksAddress => ({ kind: "domain", name });
export const ipv4 = (address: string): SocksAddress => ({ kind: "ipv4", address });
export const ipv6 = (address: string): SocksAddress => ({ kind: "ipv6", address });

// ---------------------------------------------------------------------------------------------
// Waiting without timing assertions

/** Polls until `check` holds; the limit only turns a hang into a failure. */
export async function eventually(check: () => boolean, what: string, limitMs = WAIT_LIMIT_MS): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Audit events of one type whose fields match `fields`. */
export function audited(audit: readonly AuditEvent[], type: string, fields: Record<string, string | number | null> = {}): AuditEvent[] {
  return audit.filter((e) => e.type === type && Object.entries(fields).every(([k, v]) => e[k] === v));
}
