/**
 * The client of the proxy section (bench/proxy.ts). It is bundled with esbuild into the bench's
 * throwaway project and run by plain node in three places: on the host (the direct baseline), inside
 * a cloister and under srt. Only node built-ins, so the same file runs unchanged in all three.
 *
 * One job per run, given as base64url JSON in argv[2]; the result is one JSON line on stdout. The
 * proxy, when the job goes through one, comes from $HTTP_PROXY (credentials included), exactly as a
 * tool inside would find it. Timings are taken here, with hrtime, around each request alone: process
 * start-up and the sandbox's start-up are not in them.
 *
 * `hold` talks to the bench while it runs: it prints `{"phase":"open",…}` once every tunnel is open
 * and echoed, then waits for a line on stdin before checking every tunnel once more and closing them.
 */
import { connect, type Socket } from "node:net";
import { createInterface } from "node:readline";

export type Via = "direct" | "http" | "connect";

export type Job =
  /** `count` small GETs one after another on one kept-alive connection (after `warmup` untimed ones). */
  | { kind: "keepalive"; via: Via; host: string; port: number; count: number; warmup: number }
  /** `count` times: a new connection, one GET, close. */
  | { kind: "newconn"; via: Via; host: string; port: number; count: number; warmup: number }
  /** One connection moving `bytes` from the server (download) or to it (upload). */
  | { kind: "download" | "upload"; via: "direct" | "connect"; host: string; port: number; bytes: number }
  /** `count` connections open at once (at most `window` being set up at a time), each echoing. */
  | { kind: "hold"; via: "direct" | "connect"; host: string; port: number; count: number; window: number };

export interface LatencyResult {
  /** Microseconds per timed request. */
  samples: number[];
  errors: string[];
}

export interface TransferResult {
  bytes: number;
  ms: number;
}

export interface HoldOpen {
  phase: "open";
  ok: number;
  failed: number;
  ms: number;
  errors: string[];
}

export interface HoldDone {
  phase: "done";
  recheckOk: number;
  recheckFailed: number;
  recheckMs: number;
  closeMs: number;
  errors: string[];
}

const OPEN_TIMEOUT_MS = 60_000;

function now(): number {
  return Number(process.hrtime.bigint()) / 1e3; // µs
}

interface Proxy {
  host: string;
  port: number;
  auth: string;
}

/** The proxy from $HTTP_PROXY, with its credentials as a Basic header value. */
function proxyFromEnv(): Proxy {
  const raw = process.env.HTTP_PROXY ?? process.env.http_proxy;
  if (!raw) throw new Error("HTTP_PROXY is not set");
  const url = new URL(raw);
  const user = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  // "localhost" may resolve to ::1 first; the bridges listen on IPv4.
  const host = url.hostname === "localhost" ? "127.0.0.1" : url.hostname.replace(/^\[|\]$/g, "");
  return { host, port: Number(url.port || 80), auth: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}` };
}

/**
 * A socket with a read buffer and one waiter: enough to read HTTP/1.1 responses with a
 * Content-Length, CONNECT replies, echoed lines and byte counts, without node's HTTP machinery
 * (the same few instructions per request everywhere, so differences are the path's).
 */
class Conn {
  private buf: Buffer = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  private failure: Error | undefined;
  /** When set, incoming bytes are counted and dropped instead of buffered. */
  private sink: { remaining: number; done: (error?: Error) => void } | undefined;

  private constructor(readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => {
      if (this.sink) {
        this.sink.remaining -= chunk.length;
        if (this.sink.remaining <= 0) {
          const done = this.sink.done;
          this.sink = undefined;
          done();
        }
        return;
      }
      this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
      this.waiter?.();
    });
    const fail = (error: Error): void => {
      this.failure ??= error;
      this.waiter?.();
      const sink = this.sink;
      this.sink = undefined;
      sink?.done(error);
    };
    socket.on("error", fail);
    socket.on("close", () => fail(new Error("connection closed")));
  }

  static open(host: string, port: number): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port });
      const timer = setTimeout(() => socket.destroy(new Error(`connect to ${host}:${port} timed out`)), OPEN_TIMEOUT_MS);
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.removeListener("error", reject);
        resolve(new Conn(socket));
      });
      socket.once("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
  }

  /** Waits until `ready` returns something (or throws, or the connection fails), and returns it. */
  private until<T>(ready: () => T | undefined): Promise<T> {
    return new Promise((resolve, reject) => {
      const settled = (): boolean => {
        try {
          const value = ready();
          if (value !== undefined) {
            resolve(value);
            return true;
          }
        } catch (error) {
          reject(error instanceof Error ? error : new Error(String(error)));
          return true;
        }
        if (this.failure === undefined) return false;
        reject(this.failure);
        return true;
      };
      if (!settled()) {
        this.waiter = () => {
          if (settled()) this.waiter = undefined;
        };
      }
    });
  }

  /** One response: status line, headers, and a Content-Length body. Returns the status. */
  response(): Promise<number> {
    return this.until(() => {
      const end = this.buf.indexOf("\r\n\r\n");
      if (end < 0) return undefined;
      const head = this.buf.toString("latin1", 0, end);
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      if (!length) throw new Error(`response without Content-Length: ${head.slice(0, 200)}`);
      const total = end + 4 + Number(length[1]);
      if (this.buf.length < total) return undefined;
      this.buf = this.buf.subarray(total);
      return Number(head.slice(9, 12));
    });
  }

  /** A CONNECT reply's header section (no body follows a 2xx). Returns the status. */
  head(): Promise<number> {
    return this.until(() => {
      const end = this.buf.indexOf("\r\n\r\n");
      if (end < 0) return undefined;
      const status = Number(this.buf.toString("latin1", 9, 12));
      this.buf = this.buf.subarray(end + 4);
      return status;
    });
  }

  /** The next line, without its newline. */
  line(): Promise<string> {
    return this.until(() => {
      const end = this.buf.indexOf("\n");
      if (end < 0) return undefined;
      const text = this.buf.toString("utf8", 0, end);
      this.buf = this.buf.subarray(end + 1);
      return text;
    });
  }

  /** Resolves once `bytes` more bytes have arrived (counted, not kept). */
  drain(bytes: number): Promise<void> {
    const remaining = bytes - this.buf.length;
    this.buf = Buffer.alloc(0);
    if (remaining <= 0) return Promise.resolve();
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const sink = { remaining, done: (error?: Error) => (error ? reject(new Error(`${error.message} after ${bytes - sink.remaining} of ${bytes} bytes`)) : resolve()) };
      this.sink = sink;
    });
  }

  write(data: string | Buffer): boolean {
    return this.socket.write(data);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Opens a connection that speaks to host:port: directly, or through the proxy (CONNECT or not). */
async function openTo(via: Via, host: string, port: number, proxy: Proxy | undefined): Promise<Conn> {
  if (via === "direct") return Conn.open(host, port);
  if (!proxy) throw new Error("no proxy");
  const conn = await Conn.open(proxy.host, proxy.port);
  if (via === "connect") {
    conn.write(`CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\nProxy-Authorization: ${proxy.auth}\r\n\r\n`);
    const status = await conn.head();
    if (status !== 200) {
      conn.close();
      throw new Error(`CONNECT ${host}:${port}: status ${status}`);
    }
  }
  return conn;
}

/** The bytes of one small GET in the form the path needs (absolute-form to a plain HTTP proxy). */
function getRequest(via: Via, host: string, port: number, proxy: Proxy | undefined): string {
  const authority = `${host}:${port}`;
  if (via === "http") return `GET http://${authority}/small HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: ${proxy?.auth ?? ""}\r\n\r\n`;
  return `GET /small HTTP/1.1\r\nHost: ${authority}\r\n\r\n`;
}

async function keepalive(job: Extract<Job, { kind: "keepalive" }>, proxy: Proxy | undefined): Promise<LatencyResult> {
  const request = getRequest(job.via, job.host, job.port, proxy);
  const conn = await openTo(job.via, job.host, job.port, proxy);
  const samples: number[] = [];
  try {
    for (let i = 0; i < job.warmup + job.count; i++) {
      const start = now();
      conn.write(request);
      const status = await conn.response();
      const us = now() - start;
      if (status !== 200) throw new Error(`request ${i}: status ${status}`);
      if (i >= job.warmup) samples.push(us);
    }
  } finally {
    conn.close();
  }
  return { samples, errors: [] };
}

async function newconn(job: Extract<Job, { kind: "newconn" }>, proxy: Proxy | undefined): Promise<LatencyResult> {
  const request = getRequest(job.via, job.host, job.port, proxy);
  const samples: number[] = [];
  const errors: string[] = [];
  for (let i = 0; i < job.warmup + job.count; i++) {
    const start = now();
    let conn: Conn | undefined;
    try {
      conn = await openTo(job.via, job.host, job.port, proxy);
      conn.write(request);
      const status = await conn.response();
      const us = now() - start;
      if (status !== 200) throw new Error(`status ${status}`);
      if (i >= job.warmup) samples.push(us);
    } catch (error) {
      errors.push(`connection ${i}: ${(error as Error).message}`);
      if (errors.length >= 20) break;
    } finally {
      conn?.close();
    }
  }
  return { samples, errors };
}

const CHUNK = Buffer.alloc(1024 * 1024, 0x61);

async function transfer(job: Extract<Job, { kind: "download" | "upload" }>, proxy: Proxy | undefined): Promise<TransferResult> {
  const conn = await openTo(job.via, job.host, job.port, proxy);
  try {
    const start = now();
    conn.write(`${job.kind === "download" ? "down" : "up"} ${job.bytes}\n`);
    if (job.kind === "download") {
      await conn.drain(job.bytes);
    } else {
      let left = job.bytes;
      while (left > 0) {
        const piece = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
        left -= piece.length;
        if (!conn.write(piece)) await new Promise<void>((resolve, reject) => {
          conn.socket.once("drain", resolve);
          conn.socket.once("close", () => reject(new Error("closed while uploading")));
        });
      }
      const answer = await conn.line();
      if (answer !== "ok") throw new Error(`upload: server said ${JSON.stringify(answer)}`);
    }
    return { bytes: job.bytes, ms: (now() - start) / 1000 };
  } finally {
    conn.close();
  }
}

async function pool(count: number, limit: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
}

/** Sends `text\n` on every connection and checks that exactly it comes back. */
async function echoAll(conns: (Conn | undefined)[], tag: string, errors: string[]): Promise<number> {
  let ok = 0;
  await Promise.all(
    conns.map(async (conn, i) => {
      if (!conn) return;
      try {
        conn.write(`${tag} ${i}\n`);
        const back = await withTimeout(conn.line(), OPEN_TIMEOUT_MS, "echo timed out");
        if (back !== `${tag} ${i}`) throw new Error(`echo mismatch: ${JSON.stringify(back.slice(0, 40))}`);
        ok++;
      } catch (error) {
        conns[i] = undefined;
        conn.close();
        if (errors.length < 20) errors.push(`tunnel ${i} (${tag}): ${(error as Error).message}`);
      }
    }),
  );
  return ok;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([promise, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(what)), ms)))]).finally(() => clearTimeout(timer));
}

async function hold(job: Extract<Job, { kind: "hold" }>, proxy: Proxy | undefined): Promise<HoldDone> {
  const conns: (Conn | undefined)[] = new Array<Conn | undefined>(job.count);
  const errors: string[] = [];
  let failed = 0;
  const start = now();
  await pool(job.count, job.window, async (i) => {
    try {
      const conn = await withTimeout(openTo(job.via, job.host, job.port, proxy), OPEN_TIMEOUT_MS, "open timed out");
      conns[i] = conn;
      conn.write(`open ${i}\n`);
      const back = await withTimeout(conn.line(), OPEN_TIMEOUT_MS, "echo timed out");
      if (back !== `open ${i}`) throw new Error(`echo mismatch: ${JSON.stringify(back.slice(0, 40))}`);
    } catch (error) {
      failed++;
      conns[i]?.close();
      conns[i] = undefined;
      if (errors.length < 20) errors.push(`tunnel ${i}: ${(error as Error).message}`);
    }
  });
  const opened: HoldOpen = { phase: "open", ok: job.count - failed, failed, ms: (now() - start) / 1000, errors };
  process.stdout.write(`${JSON.stringify(opened)}\n`);
  // Held until the bench has looked at the guardian and says so.
  const lines = createInterface({ input: process.stdin });
  await new Promise<void>((resolve) => {
    lines.once("line", () => resolve());
    lines.once("close", () => resolve());
  });
  lines.close();
  const recheckErrors: string[] = [];
  const recheckStart = now();
  const recheckOk = await echoAll(conns, "again", recheckErrors);
  const recheckMs = (now() - recheckStart) / 1000;
  const closeStart = now();
  await Promise.all(
    conns.map(
      (conn) =>
        new Promise<void>((resolve) => {
          if (!conn || conn.socket.destroyed) return resolve();
          conn.socket.once("close", () => resolve());
          conn.close();
        }),
    ),
  );
  return { phase: "done", recheckOk, recheckFailed: job.count - recheckOk, recheckMs, closeMs: (now() - closeStart) / 1000, errors: recheckErrors };
}

async function main(): Promise<void> {
  const job = JSON.parse(Buffer.from(process.argv[2] ?? "", "base64url").toString("utf8")) as Job;
  const proxy = job.via === "direct" ? undefined : proxyFromEnv();
  let result: LatencyResult | TransferResult | HoldDone;
  switch (job.kind) {
    case "keepalive":
      result = await keepalive(job, proxy);
      break;
    case "newconn":
      result = await newconn(job, proxy);
      break;
    case "download":
    case "upload":
      result = await transfer(job, proxy);
      break;
    case "hold":
      result = await hold(job, proxy);
      break;
  }
  // Waits for the write: stdout may be a pipe, and node drops what the pipe has not yet taken when
  // the process exits (main's caller exits at once), cutting the JSON at 64 KiB.
  await new Promise<void>((done) => process.stdout.write(`${JSON.stringify(result)}\n`, () => done()));
}

// Only when run as the client, not when bench/proxy.ts imports the types.
if (process.argv[1]?.endsWith(".bench-proxy-client.mjs")) {
  main().then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`proxy client: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(1);
    },
  );
}
