/**
 * Fuzzes the egress endpoint's parsers (HTTP request line and headers, CONNECT targets, SOCKS5
 * greeting, sub-negotiation and request) through a real endpoint socket with random and mutated
 * inputs delivered in random pieces. Oracles: nothing is thrown out of the guardian's code, every
 * answer is HTTP or SOCKS, a denied sink sees no connection, whatever reached the allowed upstream
 * carries the checked Host and no proxy credentials, no connection is left open, and afterwards
 * the endpoint still serves valid requests on every protocol.
 *
 * Seeded: FUZZ_SEED=<n> replays a run; the seed is printed on every failure. FUZZ_SCALE=<x>
 * multiplies the case counts; FUZZ_BUDGET_MS=<ms> sets each phase's time budget (default 5 s).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { mulberry32 } from "../helpers/prng.js";
import { encodeGreeting, encodeRequest, encodeUserPass, METHOD_NO_AUTH, METHOD_USER_PASS, SocksReply } from "../../src/guardian/proxy/socks5.js";
import { startHttpUpstream, startTcpEcho, type Upstream } from "../fixtures/upstreams.js";
import { basic, domain, eventually, httpExchange, openEndpoint, proxySettings, RawClient, requestHead, rules, socksConnect, TOKEN, type TestEndpoint } from "../helpers/egress.js";

const SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) >>> 0 : (Date.now() ^ (process.pid << 16)) >>> 0;
const SCALE = Number(process.env.FUZZ_SCALE ?? "1") || 1;
/** Per phase: stop at this many cases or this much time, whichever comes first (FUZZ_BUDGET_MS for long runs). */
const PHASE_BUDGET_MS = Number(process.env.FUZZ_BUDGET_MS ?? "5000") || 5_000;
const CONCURRENCY = 48;
/** After the client has sent everything and ended: the server closes within its idle timeout. */
const CASE_CLOSE_LIMIT_MS = 8_000;

// ---------------------------------------------------------------------------------------------
// A small seeded PRNG (mulberry32): the same seed gives the same inputs.

class Random {
  private readonly next01: () => number;
  constructor(seed: number) {
    this.next01 = mulberry32(seed);
  }
  next(): number {
    return this.next01();
  }

  int(below: number): number {
    return Math.floor(this.next() * below);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    const item = items[this.int(items.length)];
    if (item === undefined) throw new Error("pick from an empty list");
    return item;
  }
  bytes(length: number): Buffer {
    return Buffer.from(Array.from({ length }, () => this.int(256)));
  }
}

/** Bytes and strings that parsers treat specially. */
const INTERESTING_BYTES = [0x00, 0x09, 0x0a, 0x0d, 0x20, 0x22, 0x23, 0x25, 0x2e, 0x2f, 0x30, 0x3a, 0x3f, 0x40, 0x5b, 0x5c, 0x5d, 0x7f, 0x80, 0xff, 0x05, 0x01, 0x03, 0x04];
const INTERESTING_TEXT = [
  "\r\n",
  "\r\n\r\n",
  "\n",
  "\r",
  ":",
  " ",
  "@evil.test",
  "user:pw@",
  ":0",
  ":65536",
  ":99999999",
  ":-1",
  "[::1]",
  "[::ffff:127.0.0.1]",
  "127.1",
  "0x7f.0.0.1",
  "2130706433",
  "localhost",
  "evil.test",
  "Host: evil.test\r\n",
  "Host: api.test\r\n",
  "Transfer-Encoding: chunked\r\n",
  "Content-Length: 5\r\n",
  "Content-Length: -1\r\n",
  "Connection: close, Host\r\n",
  "Proxy-Authorization: Basic Og==\r\n",
  "Expect: 100-continue\r\n",
  "Upgrade: websocket\r\nConnection: upgrade\r\n",
  "%00",
  "%2e",
  "http://",
  "https://",
  "CONNECT ",
  "GET ",
  " HTTP/1.1",
  " HTTP/1.0",
  " HTTP/2.0",
  "0\r\n\r\n",
  "ffffffffffffffff\r\n",
  "\u00e9",
  "\u0130",
  "xn--",
  "*.",
  "..",
];

function mutate(random: Random, input: Buffer): Buffer {
  let buf = Buffer.from(input);
  // Mostly one change, so many inputs stay close enough to valid to reach the deeper checks.
  const rounds = random.chance(0.6) ? 1 : 2 + random.int(3);
  for (let round = 0; round < rounds; round++) {
    const at = random.int(buf.length + 1);
    switch (random.int(9)) {
      case 0: {
        // flip a bit
        const i = Math.min(at, buf.length - 1);
        if (buf.length > 0) buf[i] = (buf[i] ?? 0) ^ (1 << random.int(8));
        break;
      }
      case 1: // any byte
        if (buf.length > 0) buf[Math.min(at, buf.length - 1)] = random.int(256);
        break;
      case 2: // a byte parsers care about
        if (buf.length > 0) buf[Math.min(at, buf.length - 1)] = random.pick(INTERESTING_BYTES);
        break;
      case 3: // insert text parsers care about
        buf = Buffer.concat([buf.subarray(0, at), Buffer.from(random.pick(INTERESTING_TEXT), "latin1"), buf.subarray(at)]);
        break;
      case 4: {
        // delete a slice
        const length = 1 + random.int(16);
        buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at + length)]);
        break;
      }
      case 5: {
        // duplicate a slice somewhere else
        const from = random.int(buf.length + 1);
        const slice = buf.subarray(from, from + 1 + random.int(32));
        buf = Buffer.concat([buf.subarray(0, at), slice, buf.subarray(at)]);
        break;
      }
      case 6: // truncate
        buf = buf.subarray(0, at);
        break;
      case 7: {
        // a long run (length fields, header size limits)
        const run = Buffer.alloc(random.pick([64, 255, 256, 1024, 5000, 40_000]), random.pick([0x41, 0x00, 0x3a, 0x2e, 0x0a]));
        buf = Buffer.concat([buf.subarray(0, at), run, buf.subarray(at)]);
        break;
      }
      default: // random bytes
        buf = Buffer.concat([buf.subarray(0, at), random.bytes(1 + random.int(8)), buf.subarray(at)]);
    }
  }
  return buf;
}

/** Splits `input` into 1-4 pieces, so the parsers see messages cut at every kind of boundary. */
function pieces(random: Random, input: Buffer): Buffer[] {
  const cuts = Array.from({ length: random.int(4) }, () => random.int(input.length + 1)).sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const cut of [...cuts, input.length]) {
    out.push(input.subarray(from, cut));
    from = cut;
  }
  return out.filter((p) => p.length > 0);
}

// ---------------------------------------------------------------------------------------------

let api: Upstream; // plain-HTTP requests only: every request it sees was rebuilt by the proxy
let tun: Upstream; // HTTP spoken through CONNECT and SOCKS tunnels: the client's own bytes
let echo: Upstream;
let sink: Upstream;
let t: TestEndpoint;
const thrown: unknown[] = [];
const onThrown = (error: unknown) => void thrown.push(error);

before(async () => {
  process.on("uncaughtException", onThrown);
  process.on("unhandledRejection", onThrown);
  api = await startHttpUpstream();
  tun = await startHttpUpstream();
  echo = await startTcpEcho();
  sink = await startHttpUpstream({ body: "THE SINK WAS REACHED\n" });
  t = await openEndpoint({
    settings: proxySettings({ connect_timeout: 2_000, idle_timeout: 2_000, max_connections: 256 }),
    allow: rules(`api.test:${api.port}`, `tun.test:${tun.port}`, `echo.test:${echo.port}`),
    deny: rules(`evil.test:${sink.port}`, `*.evil.test:${sink.port}`),
    overrides: { "api.test": "127.0.0.1", "tun.test": "127.0.0.1", "echo.test": "127.0.0.1", "evil.test": "127.0.0.1", "other.test": "127.0.0.1" },
  });
});

after(async () => {
  t.close();
  await Promise.all([api, tun, echo, sink].map((u) => u.close()));
  process.off("uncaughtException", onThrown);
  process.off("unhandledRejection", onThrown);
});

interface CaseResult {
  received: Buffer;
  /** The connection was not closed within CASE_CLOSE_LIMIT_MS of the client finishing. */
  stuck: boolean;
}

/**
 * One fuzz case on a fresh connection: sends the pieces, gives the server a moment to answer, ends
 * the client's side, and waits for the server to close.
 */
async function runCase(random: Random, input: Buffer): Promise<CaseResult> {
  const client = await RawClient.open(t.socketPath);
  for (const piece of pieces(random, input)) {
    if (client.isClosed) break;
    client.write(piece);
    await new Promise((resolve) => setImmediate(resolve));
  }
  // Until the server answers or closes (so refusals and forwarded responses are seen, and the
  // forwarding path runs to the end), or briefly if it waits for more (an unfinished request).
  const answered = new Promise<void>((resolve) => (client.pending.length > 0 ? resolve() : client.socket.once("data", () => resolve())));
  await within(Promise.race([client.serverDone, answered]), 150);
  client.end();
  const closed = await within(client.closed, CASE_CLOSE_LIMIT_MS);
  client.destroy();
  return { received: Buffer.from(client.pending), stuck: !closed };
}

/** Whether `promise` settled within `ms` (the timer is cleared either way, so none outlives the test). */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true as const), expired]);
  } finally {
    clearTimeout(timer);
  }
}

interface PhaseReport {
  cases: number;
  stuck: number;
  answers: Map<string, number>;
}

/** Runs `make` cases, CONCURRENCY at a time, until `count` or the time budget is reached. */
async function phase(name: string, count: number, make: (random: Random) => Buffer): Promise<PhaseReport> {
  const random = new Random(SEED ^ hash(name));
  const deadline = Date.now() + PHASE_BUDGET_MS;
  const report: PhaseReport = { cases: 0, stuck: 0, answers: new Map() };
  const bad: string[] = [];
  const worker = async () => {
    while (report.cases < count && Date.now() < deadline) {
      const index = report.cases++;
      const input = make(random);
      const result = await runCase(random, input);
      if (result.stuck) report.stuck++;
      const kind = answerKind(result.received);
      report.answers.set(kind, (report.answers.get(kind) ?? 0) + 1);
      if (kind === "other") bad.push(`case ${index}: sent ${JSON.stringify(input.toString("latin1").slice(0, 200))}, got ${JSON.stringify(result.received.toString("latin1").slice(0, 200))}`);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  assert.deepEqual(bad, [], `${name}: answers that are neither HTTP nor SOCKS (FUZZ_SEED=${SEED})`);
  return report;
}

/** What kind of answer the server gave: the first bytes of an HTTP response or a SOCKS message. */
function answerKind(received: Buffer): string {
  if (received.length === 0) return "nothing";
  const text = received.toString("latin1", 0, 13);
  const status = /^HTTP\/1\.1 (\d{3}) /.exec(text)?.[1];
  if (status) return `http ${status}`;
  if (received[0] === 0x05 && received.length >= 2) {
    // Method choice, then the auth status, then the reply to the request.
    if (received[1] !== METHOD_USER_PASS) return `socks method ${received[1]}`;
    if (received.length < 4) return "socks method 2, then closed";
    if (received[2] !== 0x01) return "other";
    if (received[3] !== 0x00) return "socks auth refused";
    if (received.length < 6) return "socks auth ok, then closed";
    return received[4] === 0x05 ? `socks reply ${received[5]}` : "other";
  }
  return "other";
}

function hash(text: string): number {
  let h = 2166136261;
  for (const c of text) h = Math.imul(h ^ (c.codePointAt(0) ?? 0), 16777619) >>> 0;
  return h;
}

function describeReport(name: string, report: PhaseReport): string {
  const answers = [...report.answers].sort((a, b) => b[1] - a[1]).map(([kind, n]) => `${kind}: ${n}`);
  return `${name}: ${report.cases} cases (seed ${SEED}); ${answers.join(", ")}`;
}

// ---------------------------------------------------------------------------------------------
// Inputs

function httpTemplates(): string[] {
  const auth = `Proxy-Authorization: ${basic(TOKEN)}`;
  const host = `api.test:${api.port}`;
  return [
    requestHead(`GET http://${host}/path?x=1 HTTP/1.1`, [`Host: ${host}`, auth, "User-Agent: fuzz", "Accept: */*"]),
    requestHead(`GET http://${host}/ HTTP/1.1`, [`Host: ${host}`, auth, "Connection: keep-alive"]) + requestHead(`GET http://${host}/second HTTP/1.1`, [`Host: ${host}`, auth]),
    requestHead(`POST http://${host}/upload HTTP/1.1`, [`Host: ${host}`, auth, "Content-Length: 11", "Content-Type: text/plain"]) + "hello world",
    requestHead(`POST http://${host}/chunks HTTP/1.1`, [`Host: ${host}`, auth, "Transfer-Encoding: chunked"]) + "5\r\nhello\r\n0\r\n\r\n",
    requestHead(`CONNECT tun.test:${tun.port} HTTP/1.1`, [`Host: tun.test:${tun.port}`, auth]) + "GET / HTTP/1.1\r\nHost: tun.test\r\n\r\n",
    requestHead(`CONNECT echo.test:${echo.port} HTTP/1.1`, [`Host: echo.test:${echo.port}`, auth]) + "payload",
    requestHead(`GET http://evil.test:${sink.port}/ HTTP/1.1`, [`Host: evil.test:${sink.port}`, auth]),
    requestHead(`CONNECT evil.test:${sink.port} HTTP/1.1`, [auth]),
    requestHead(`GET http://other.test:${sink.port}/ HTTP/1.0`, [auth, "Proxy-Connection: keep-alive"]),
    requestHead(`GET http://[::1]:${sink.port}/ HTTP/1.1`, [`Host: [::1]:${sink.port}`, auth]),
  ];
}

/**
 * A request assembled from parts that are each valid, odd or hostile (authority spellings, ports,
 * schemes, duplicated and conflicting headers, framing), so combinations reach the policy and the
 * forwarding path rather than only the parser's first error.
 */
function structuredHttp(random: Random): Buffer {
  const auth = `Proxy-Authorization: ${basic(TOKEN)}`;
  // Each part is usually valid and sometimes hostile, so whole requests often get past the parser.
  const usually = <T,>(valid: T, hostile: readonly T[]): T => (random.chance(0.9) ? valid : random.pick(hostile));
  const method = usually(random.pick(["GET", "GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH", "CONNECT"]), ["TRACE", "get", "PRI", "CONNECT"]);
  const host = usually(random.pick(["api.test", "api.test", "API.Test.", "evil.test", "x.evil.test", "other.test", "127.1"]), [
    "API.Test.",
    "tun.test",
    "evil.test",
    "x.evil.test",
    "other.test",
    "127.1",
    "0x7f.0.0.1",
    "2130706433",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "localhost",
    "",
    "api..test",
    "*.test",
    "xn--nxasmq6b.test",
    "api.test%2e",
    "api.test.evil.test",
    "evil.test#api.test",
  ]);
  const port = usually(host.includes("evil") || host.includes("other") || host.includes("127") ? `:${sink.port}` : `:${api.port}`, [`:${tun.port}`, `:${sink.port}`, "", ":0", ":65536", `:0${api.port}`, ":80", ":", `:${api.port}:${api.port}`]);
  const authority = `${host}${port}`;
  const target =
    method === "CONNECT"
      ? random.pick([authority.replace(/^api\.test/i, "tun.test"), `tun.test:${tun.port}`, `echo.test:${echo.port}`])
      : `${usually("http://", ["HTTP://", "https://", "", "ftp://", "http:/"])}${usually("", ["u@", "u:p@"])}${authority}${usually(random.pick(["/", "/p?q=1", "", "?x"]), ["/#f", "/%2e%2e/", "//x", "/a b"])}`;
  const version = usually(random.pick(["HTTP/1.1", "HTTP/1.0"]), ["HTTP/1.2", "HTTP/2.0", "HTTP/1.1 x", "HTTP/0.9"]);
  const headers: string[] = [];
  const hostHeader = usually(`Host: ${authority}`, ["", `Host: evil.test:${sink.port}`, `Host: ${authority}\r\nHost: ${authority}`, "Host: ", `Host: api.test:${api.port}`, `Host: ${authority.toUpperCase()}`]);
  if (hostHeader) headers.push(hostHeader);
  const credentials = usually(auth, ["", `${auth}\r\n${auth}`, `Proxy-Authorization: ${basic("wrong")}`, `Proxy-Authorization: Basic ${"A".repeat(random.int(300))}`]);
  if (credentials) headers.push(credentials);
  const harmless = [
    "Connection: keep-alive",
    "Connection: close",
    "Connection: X-Secret, Host",
    "X-Secret: hop",
    "Proxy-Connection: keep-alive",
    "Keep-Alive: timeout=1",
    "TE: trailers",
    "Authorization: Basic dTpw",
    "X-Empty:",
    "X-Tab:\tvalue",
    "Accept: */*",
  ];
  const hostile = [
    "Transfer-Encoding: chunked",
    "Transfer-Encoding: gzip, chunked",
    "Content-Length: 3",
    "Content-Length: 0",
    "Content-Length: -3",
    "Content-Length: 3, 3",
    "Expect: 100-continue",
    "Upgrade: websocket",
    "Upgrade: websocket\r\nConnection: upgrade",
    `X-Long: ${"v".repeat(random.pick([1000, 40_000]))}`,
  ];
  for (let i = random.int(4); i > 0; i--) headers.push(usually(random.pick(harmless), hostile));
  const body = random.pick(["", "", "abc", "x".repeat(random.int(100))]);
  if (body) headers.push(usually(random.pick([`Content-Length: ${body.length}`, "Transfer-Encoding: chunked"]), ["", `Content-Length: ${body.length + 1}`]));
  const framed = headers.at(-1) === "Transfer-Encoding: chunked" ? `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n` : body;
  const request = Buffer.from(`${method} ${target} ${version}\r\n${headers.map((h) => `${h}\r\n`).join("")}\r\n${framed}`, "latin1");
  return random.chance(0.2) ? mutate(random, request) : request;
}

function socksStages(random: Random): Buffer[] {
  const target = random.pick([
    { address: domain("tun.test"), port: tun.port },
    { address: domain("echo.test"), port: echo.port },
    { address: domain("evil.test"), port: sink.port },
    { address: domain("x.evil.test"), port: sink.port },
    { address: domain("other.test"), port: sink.port },
    { address: { kind: "ipv4", address: "127.0.0.1" } as const, port: sink.port },
    { address: { kind: "ipv6", address: "::ffff:127.0.0.1" } as const, port: sink.port },
  ]);
  const command = random.pick(["connect", "connect", "connect", "bind", "udp-associate"] as const);
  return [
    encodeGreeting(random.pick([[METHOD_USER_PASS], [METHOD_NO_AUTH, METHOD_USER_PASS], [METHOD_NO_AUTH]])),
    encodeUserPass(random.pick(["cloister", "", "u"]), TOKEN),
    encodeRequest({ command, address: target.address, port: target.port }),
    Buffer.from(random.pick(["", "GET / HTTP/1.1\r\nHost: tun.test\r\n\r\n", "ping"])),
  ];
}

// ---------------------------------------------------------------------------------------------

describe("fuzzing the endpoint's parsers", { concurrency: false }, () => {
  it("HTTP request lines, headers and CONNECT targets: mutated valid requests and hostile combinations", async (ctx) => {
    const templates = httpTemplates();
    const report = await phase("http", Math.round(3000 * SCALE), (random) =>
      random.chance(0.5) ? structuredHttp(random) : mutate(random, Buffer.from(random.pick(templates), "latin1")),
    );
    ctx.diagnostic(describeReport("http", report));
    assert.equal(report.stuck, 0, `connections left open (FUZZ_SEED=${SEED})`);
  });

  it("SOCKS5 greetings, credentials and requests: one stage mutated, the ones before it valid", async (ctx) => {
    const report = await phase("socks", Math.round(3000 * SCALE), (random) => {
      const stages = socksStages(random);
      const broken = random.int(stages.length);
      const kept = stages.slice(0, broken + 1);
      kept[broken] = mutate(random, kept[broken] ?? Buffer.alloc(0));
      // Sometimes the whole pipelined handshake is mutated as one buffer instead.
      return random.chance(0.2) ? mutate(random, Buffer.concat(stages)) : Buffer.concat(kept);
    });
    ctx.diagnostic(describeReport("socks", report));
    assert.equal(report.stuck, 0, `connections left open (FUZZ_SEED=${SEED})`);
  });

  it("random bytes, half of them starting like SOCKS5", async (ctx) => {
    const report = await phase("random", Math.round(1500 * SCALE), (random) => {
      const body = random.bytes(random.int(600));
      if (body.length > 0 && random.chance(0.5)) body[0] = 0x05;
      return body;
    });
    ctx.diagnostic(describeReport("random", report));
    assert.equal(report.stuck, 0, `connections left open (FUZZ_SEED=${SEED})`);
  });

  it("after the fuzz: nothing thrown, the sink untouched, the upstream saw only checked requests, and every protocol still works", async () => {
    assert.deepEqual(thrown, [], `the guardian's code threw during the fuzz (FUZZ_SEED=${SEED})`);
    assert.equal(sink.connections, 0, `the denied sink was reached (FUZZ_SEED=${SEED})`);
    // Only plain-HTTP templates name api.test, so every request it saw was rebuilt by the proxy:
    // the checked authority as Host, and no proxy credentials or proxy hop headers.
    assert.ok(api.requests.length > 0, "no fuzzed request was forwarded; the mutations are too destructive");
    for (const request of api.requests) {
      const seen = JSON.stringify(request.headers);
      assert.equal(request.headers.host, `api.test:${api.port}`, `a forwarded request's Host: ${seen} (FUZZ_SEED=${SEED})`);
      assert.equal(request.headers["proxy-authorization"], undefined, `proxy credentials reached the upstream: ${seen} (FUZZ_SEED=${SEED})`);
      assert.equal(request.headers["proxy-connection"], undefined, `Proxy-Connection reached the upstream: ${seen} (FUZZ_SEED=${SEED})`);
    }
    await eventually(() => t.endpoint.openConnections === 0, "every fuzz connection to be closed", 10_000);

    const host = `api.test:${api.port}`;
    const { response, client } = await httpExchange(t.socketPath, requestHead(`GET http://${host}/after-fuzz HTTP/1.1`, [`Host: ${host}`, `Proxy-Authorization: ${basic(TOKEN)}`]));
    assert.equal(response.status, 200);
    assert.equal(response.body, "hello from upstream\n");
    client.destroy();
    assert.equal(api.requests.at(-1)?.headers.host, host);

    const tunnel = await RawClient.open(t.socketPath);
    tunnel.write(requestHead(`CONNECT echo.test:${echo.port} HTTP/1.1`, [`Proxy-Authorization: ${basic(TOKEN)}`]));
    assert.equal((await tunnel.readHead()).status, 200);
    tunnel.write("echo after fuzz");
    assert.equal((await tunnel.readBytes(15)).toString(), "echo after fuzz");
    tunnel.destroy();

    const socks = await socksConnect(t.socketPath, { address: domain("echo.test"), port: echo.port });
    assert.equal(socks.reply?.reply, SocksReply.Succeeded);
    socks.client.write("socks after fuzz");
    assert.equal((await socks.client.readBytes(16)).toString(), "socks after fuzz");
    socks.client.destroy();

    const denied = await httpExchange(t.socketPath, requestHead(`GET http://evil.test:${sink.port}/ HTTP/1.1`, [`Host: evil.test:${sink.port}`, `Proxy-Authorization: ${basic(TOKEN)}`]));
    assert.equal(denied.response.status, 403);
    denied.client.destroy();
    assert.equal(sink.connections, 0);
    assert.deepEqual(thrown, [], `the guardian's code threw (FUZZ_SEED=${SEED})`);
  });
});
