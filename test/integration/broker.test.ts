/**
 * The credential broker end to end: real bubblewrap cloisters, the real guardian intercepting TLS
 * with its own CA, and recording HTTPS servers on loopback (certificates from a test CA the guardian
 * is told to trust upstream). The cloister holds a placeholder; the upstream receives the real value;
 * the placeholder anywhere else is blocked and audited.
 *
 * Each `cloister run` is a new cloister with its own placeholders, so every script prints its
 * placeholder first (`run` takes it off stdout): a test can then assert the bytes an upstream got.
 */
import assert from "node:assert/strict";
import { createHash, randomInt } from "node:crypto";
import { copyFileSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpsServer } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { createGzip, gzipSync } from "node:zlib";
import { after, before, describe, it } from "node:test";
import { createInstance, spawnCli, trustUpstreamCa, waitUntil, withConfig, type CliResult, type TestInstance } from "../helpers/cloister.js";
import { createTestCa, DEFAULT_UPSTREAM_BODY, startHttpsUpstream, startHttpUpstream, type HttpsUpstream, type RecordedRequest, type TestCa, type Upstream } from "../fixtures/upstreams.js";

const SECRET = `ghp_${"R3alS3cretValue".repeat(2)}abcdef`;
const WS_SECRET = `wsk-${"Fr4meS3cret".repeat(3)}`;
const GIT_SECRET = `glpat${"G1tPassw0rd".repeat(2)}`;

type AuditEntry = Record<string, unknown>;

function readAudit(t: TestInstance): AuditEntry[] {
  return readFileSync(join(t.home, "state", "audit", "audit.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as AuditEntry);
}

/** True when some entry has every field of `fields` (compared with ===). */
function hasEntry(entries: readonly AuditEntry[], fields: AuditEntry): boolean {
  return entries.some((entry) => Object.entries(fields).every(([key, value]) => entry[key] === value));
}

/** A cloister's output with its placeholder (the first line, `placeholder=...`) taken off. */
interface RunResult extends CliResult {
  placeholder: string;
}

function withPlaceholder(result: CliResult): RunResult {
  const match = /^placeholder=(\S*)\n/.exec(result.stdout);
  assert.ok(match, `the cloister did not print its placeholder: ${result.stdout}${result.stderr}`);
  return { ...result, stdout: result.stdout.slice(match[0].length), placeholder: match[1] ?? "" };
}

/** Every character as %XX: what a URL-encoding client could send instead of the placeholder. */
const PERCENT_ENCODE = `$(printf %s "$TOKEN" | od -An -tx1 | tr -d ' \\n' | sed 's/../%&/g')`;

/** The lines of the output that are HTTP status codes (what `curl -w '\\n%{http_code}'` adds). */
function statusCodes(output: string): string[] {
  return output.split("\n").filter((line) => /^\d{3}$/.test(line));
}

/** The requests an upstream saw for one path (each test uses paths of its own). */
function requestsTo(upstream: { requests: RecordedRequest[] }, path: string): RecordedRequest[] {
  return upstream.requests.filter((request) => request.url === path || request.url.startsWith(`${path}?`));
}

// ---------------------------------------------------------------------------------------------
// An HTTPS server the fixtures do not offer: on any loopback address and port (443 for a host in
// proxy.inspect), with WebSocket upgrades. Records requests like the fixtures do.

interface TlsServer {
  port: number;
  connections: number;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

async function startTlsServer(ca: TestCa, names: string[], options: { host?: string; port?: number; upgrade?: UpgradeHandler } = {}): Promise<TlsServer> {
  const leaf = ca.issue(names);
  const server = createHttpsServer({ key: leaf.keyPem, cert: leaf.certPem, requireHostHeader: false });
  const sockets = new Set<Socket>();
  const record = (req: IncomingMessage): RecordedRequest => {
    const recorded = { method: req.method ?? "", url: req.url ?? "", headers: { ...req.headers }, body: "" };
    result.requests.push(recorded);
    return recorded;
  };
  const result: TlsServer = {
    port: 0,
    connections: 0,
    requests: [],
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  server.on("connection", (socket: Socket) => {
    result.connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const recorded = record(req);
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      recorded.body = Buffer.concat(chunks).toString("utf8");
      res.writeHead(200, { "content-type": "text/plain; charset=utf-8" }).end(DEFAULT_UPSTREAM_BODY);
    });
  });
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    record(req);
    if (options.upgrade) options.upgrade(req, socket, head);
    else socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no TCP address");
  result.port = address.port;
  return result;
}

/**
 * A WebSocket endpoint that needs the real key: 101, then answers the client's first (masked, short)
 * text frame with an unmasked `echo:TEXT`, or, when the text is "leak", with the key it was given.
 */
function websocketEcho(expectedKey: string): UpgradeHandler {
  return (req, socket, head) => {
    if (req.headers["x-api-key"] !== expectedKey) return void socket.end("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    const accept = createHash("sha1").update(`${String(req.headers["sec-websocket-key"])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    let buffered = head;
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const length = (buffered[1] ?? 0) & 0x7f;
      if (buffered.length < 6 + length) return;
      socket.off("data", onData);
      const mask = buffered.subarray(2, 6);
      const text = Buffer.from(buffered.subarray(6, 6 + length).map((byte, i) => byte ^ (mask[i % 4] ?? 0))).toString();
      const reply = Buffer.from(text === "leak" ? `key:${String(req.headers["x-api-key"])}` : `echo:${text}`);
      socket.write(Buffer.concat([Buffer.from([0x81, reply.length]), reply]));
    };
    socket.on("data", onData);
    socket.on("error", () => socket.destroy());
    onData(Buffer.alloc(0));
  };
}

// ---------------------------------------------------------------------------------------------
// Clients run inside the cloister (the project is mounted at /work).

/**
 * `node /work/client.cjs MODE HOST:PORT PATH`: a CONNECT through $HTTPS_PROXY done by hand (node's
 * https and fetch do not use proxies), then TLS verified by NODE_EXTRA_CA_CERTS, then
 *   https: GET PATH with `Authorization: Bearer $TOKEN` over node's https; prints "STATUS BODY";
 *   ws:    a WebSocket handshake with `X-Api-Key: $WSKEY` (offering permessage-deflate); prints the
 *          status line, sends the text frame $WSTEXT (default "ping") and prints the answer frame as
 *          "frame TEXT"; "error closed" when the connection ends first.
 */
/**
 * A client that writes its whole request (a placeholder, then 16 MB) before it reads a byte of the
 * answer, as simple clients do: `node late-reader.cjs http|https HOST:PORT PATH`. A guardian that
 * closed the connection right after its 403 made its writes fail before it ever read the answer.
 */
const LATE_READER = String.raw`
const net = require("node:net"), tls = require("node:tls");
const [mode, target, path] = process.argv.slice(2);
const proxy = new URL(process.env.HTTP_PROXY);
const auth = "Basic " + Buffer.from(decodeURIComponent(proxy.username) + ":" + decodeURIComponent(proxy.password)).toString("base64");
const body = Buffer.concat([Buffer.from("t=" + process.env.TOKEN + "&pad="), Buffer.alloc(16 << 20, 97)]);
setTimeout(() => { console.log("error timeout"); process.exit(1); }, 20000).unref();
const head = (line, extra) => line + "\r\nHost: " + target + "\r\n" + extra + "Content-Length: " + body.length + "\r\n\r\n";
const send = (socket, request) => {
  socket.pause();
  socket.on("error", (e) => { console.log("error " + (e.code || e.message)); process.exit(1); });
  socket.write(request);
  socket.write(body, () => {
    let text = "";
    socket.setEncoding("latin1");
    socket.on("data", (d) => { text += d; const m = /^HTTP\/1\.1 (\d+)/.exec(text); if (m) { console.log("status " + m[1]); process.exit(0); } });
    socket.resume();
  });
};
const s = net.connect(Number(proxy.port), proxy.hostname, () => {
  if (mode === "http") return send(s, head("POST http://" + target + path + " HTTP/1.1", "Proxy-Authorization: " + auth + "\r\n"));
  s.write("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\nProxy-Authorization: " + auth + "\r\n\r\n");
  s.once("data", () => {
    const t = tls.connect({ socket: s, servername: target.split(":")[0], ALPNProtocols: ["http/1.1"] }, () => send(t, head("POST " + path + " HTTP/1.1", "")));
  });
});
`;

const NODE_CLIENT = String.raw`
const http = require("node:http"), https = require("node:https"), tls = require("node:tls"), crypto = require("node:crypto");
const [mode, target, path] = process.argv.slice(2);
const [host, port] = target.split(":");
const proxy = new URL(process.env.HTTPS_PROXY);
const auth = "Basic " + Buffer.from(decodeURIComponent(proxy.username) + ":" + decodeURIComponent(proxy.password)).toString("base64");
const fail = (what) => { console.log("error " + what); process.exit(1); };
setTimeout(() => fail("timeout"), 15000).unref();
const connect = http.request({ host: proxy.hostname, port: proxy.port, method: "CONNECT", path: target, headers: { host: target, "proxy-authorization": auth } });
connect.on("error", (e) => fail(e.message));
connect.on("connect", (res, socket) => {
  if (res.statusCode !== 200) fail("CONNECT " + res.statusCode);
  if (mode === "https") {
    // An agent whose one connection is the TLS session inside the tunnel (the default one would dial).
    const agent = new https.Agent();
    agent.createConnection = () => tls.connect({ socket, servername: host });
    const req = https.request({ host, port: Number(port), path, agent, headers: { authorization: "Bearer " + process.env.TOKEN } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (body += d));
      res.on("end", () => { console.log(res.statusCode + " " + body.trim()); process.exit(0); });
    });
    req.on("error", (e) => fail(e.message));
    return void req.end();
  }
  const s = tls.connect({ socket, servername: host, ALPNProtocols: ["http/1.1"] }, () => {
    s.write("GET " + path + " HTTP/1.1\r\nHost: " + target + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" +
      "Sec-WebSocket-Key: " + crypto.randomBytes(16).toString("base64") + "\r\nSec-WebSocket-Extensions: permessage-deflate\r\nX-Api-Key: " + process.env.WSKEY + "\r\n\r\n");
  });
  s.on("error", (e) => fail(e.message));
  s.on("close", () => fail("closed"));
  let buffered = Buffer.alloc(0), upgraded = false;
  s.on("data", (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    if (!upgraded) {
      const end = buffered.indexOf("\r\n\r\n");
      if (end < 0) return;
      console.log(buffered.subarray(0, buffered.indexOf("\r\n")).toString());
      if (!/^HTTP\/1\.1 101/.test(buffered.toString())) process.exit(1);
      buffered = buffered.subarray(end + 4);
      upgraded = true;
      const payload = Buffer.from(process.env.WSTEXT || "ping"), mask = crypto.randomBytes(4);
      s.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, payload.map((b, i) => b ^ mask[i % 4])]));
    }
    if (buffered.length >= 2 && buffered.length >= 2 + (buffered[1] & 0x7f)) {
      console.log("frame " + buffered.subarray(2, 2 + (buffered[1] & 0x7f)).toString());
      process.exit(0);
    }
  });
});
connect.end();
`;

/** A minimal smart-HTTP advertisement (protocol v0) of one branch: enough for `git ls-remote`. */
const GIT_SHA = "0123456789abcdef0123456789abcdef01234567";
function gitAdvertisement(): string {
  const pkt = (line: string) => `${(line.length + 4).toString(16).padStart(4, "0")}${line}`;
  return `${pkt("# service=git-upload-pack\n")}0000${pkt(`${GIT_SHA} HEAD\0symref=HEAD:refs/heads/main\n`)}${pkt(`${GIT_SHA} refs/heads/main\n`)}0000`;
}

// ---------------------------------------------------------------------------------------------

describe("credential broker: placeholders swapped on the way out", () => {
  let t: TestInstance;
  let ca: TestCa;
  let api: HttpsUpstream;
  let other: HttpsUpstream;
  let plain: Upstream;
  let ws: TlsServer;
  /** git.test: a smart-HTTP remote that asks for basic auth (its secret has a --basic rule). */
  let git: HttpsUpstream;
  /**
   * other.test on port 443 (the only port `proxy.inspect` covers), on a loopback address of its own;
   * or why it could not listen there (not root, say): the test that needs it is then skipped.
   */
  let inspected: TlsServer | Error;
  const inspectedAddress = `127.${randomInt(1, 255)}.${randomInt(0, 256)}.${randomInt(2, 255)}`;
  /** When api.test's /sse handler wrote each event (ms since the epoch). */
  const sseWritten: number[] = [];

  const session = () => [
    ...["api.test", "other.test", "plain.test", "ws.test", "git.test"].flatMap((name) => ["--resolve", `${name}=127.0.0.1`]),
    ...[`api.test:${api.port}`, `other.test:${other.port}`, `plain.test:${plain.port}`, `ws.test:${ws.port}`, `git.test:${git.port}`].flatMap((rule) => ["--allow-private", rule]),
    ...["TOKEN=gh", "WSKEY=wskey", "GITPW=gitpw"].flatMap((secret) => ["--secret", secret]),
  ];
  /** Runs the script in a new cloister; `extra` flags come last (a later --resolve wins). */
  const run = async (script: string, extra: string[] = []) => withPlaceholder(await t.cli(["run", ...session(), ...extra, "--", "sh", "-c", `echo "placeholder=$TOKEN"; ${script}`]));
  const audit = () => readAudit(t);
  const apiUrl = (path: string) => `https://api.test:${api.port}${path}`;
  const plainUrl = (path: string) => `http://plain.test:${plain.port}${path}`;
  /** curl with the placeholder presented as the rule says, printing the status code last. */
  const curlAuth = (flags: string) => `curl -sS -m 10 -w '\\n%{http_code}' -H "Authorization: Bearer $TOKEN" ${flags}`;

  /** api.test: routes for the redirect, streaming and git tests; the fixed reply otherwise. */
  const apiHandler = (req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? "/";
    if (path === "/redirect") return void res.writeHead(302, { location: plainUrl("/next"), "content-length": 0 }).end();
    if (path === "/sse" || path === "/sse-gzip") {
      // Three events half a second apart; gzip-compressed (flushed after each) on /sse-gzip.
      const gzip = path === "/sse-gzip" ? createGzip() : undefined;
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", ...(gzip ? { "content-encoding": "gzip" } : {}) });
      res.flushHeaders();
      gzip?.pipe(res);
      const out = gzip ?? res;
      sseWritten.length = 0;
      const send = (n: number) => {
        out.write(`data: event ${n}\n\n`);
        gzip?.flush();
        sseWritten.push(Date.now());
        if (n < 3) setTimeout(() => send(n + 1), 500);
        else out.end();
      };
      return void setTimeout(() => send(1), 100);
    }
    // An origin that reflects the request's credential back: in its body, or in a response header.
    if (path === "/echo-body") return void res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ headers: req.headers }));
    if (path === "/echo-header") return void res.writeHead(200, { "x-seen-authorization": req.headers.authorization ?? "" }).end(DEFAULT_UPSTREAM_BODY);
    // Compressed whatever the client asked for, as some origins do.
    if (path === "/echo-gzip") return void res.writeHead(200, { "content-type": "application/json", "content-encoding": "gzip" }).end(gzipSync(JSON.stringify({ headers: req.headers })));
    if (path === "/gzip") return void res.writeHead(200, { "content-type": "text/plain", "content-encoding": "gzip" }).end(gzipSync(DEFAULT_UPSTREAM_BODY));
    if (path.startsWith("/repo.git/info/refs")) {
      return void res.writeHead(200, { "content-type": "application/x-git-upload-pack-advertisement", "cache-control": "no-cache" }).end(gitAdvertisement());
    }
    res.writeHead(200, { "content-type": "text/plain; charset=utf-8" }).end(DEFAULT_UPSTREAM_BODY);
  };

  /** git.test: 401 with a basic challenge until a request brings credentials, then the advertisement. */
  const gitHandler = (req: IncomingMessage, res: ServerResponse) => {
    if (req.headers.authorization === undefined) return void res.writeHead(401, { "www-authenticate": 'Basic realm="git"', "content-length": 0 }).end();
    res.writeHead(200, { "content-type": "application/x-git-upload-pack-advertisement", "cache-control": "no-cache" }).end(gitAdvertisement());
  };

  before(async () => {
    t = createInstance("br");
    ca = createTestCa();
    [api, other, plain, ws, git] = await Promise.all([
      startHttpsUpstream(ca, ["api.test"], { handler: apiHandler }),
      startHttpsUpstream(ca, ["other.test"]),
      startHttpUpstream(),
      startTlsServer(ca, ["ws.test"], { upgrade: websocketEcho(WS_SECRET) }),
      startHttpsUpstream(ca, ["git.test"], { handler: gitHandler }),
    ]);
    inspected = await startTlsServer(ca, ["other.test"], { host: inspectedAddress, port: 443 }).catch((error: unknown) => (error instanceof Error ? error : new Error(String(error))));
    copyFileSync(ca.certFile, join(t.project, "test-ca.pem"));
    writeFileSync(join(t.project, "client.cjs"), NODE_CLIENT);
    writeFileSync(join(t.project, "late-reader.cjs"), LATE_READER);
    trustUpstreamCa(t.home, ca.certFile);
    for (const [name, value, flags] of [
      ["gh", SECRET, ["--host", `api.test:${api.port}`, "--header", "Authorization: Bearer {}"]],
      ["wskey", WS_SECRET, ["--host", `ws.test:${ws.port}`, "--header", "X-Api-Key: {}"]],
      ["gitpw", GIT_SECRET, ["--host", `git.test:${git.port}`, "--basic", "deploy"]],
      ["ruleless", "just-a-stored-value", []],
    ] as const) {
      const set = await t.cli(["secret", "set", name, ...flags], { input: value });
      assert.equal(set.code, 0, set.stderr);
    }
  });
  after(async () => {
    if (process.env.KEEP) console.log(t.home);
    else await t.teardown();
    await Promise.all([api, other, plain, ws, git, ...(inspected instanceof Error ? [] : [inspected])].map((u) => u.close()));
    rmSync(ca.dir, { recursive: true, force: true });
  });

  it("the upstream receives the real value; the cloister only ever had the placeholder", async () => {
    const r = await run(`curl -sS -m 10 -H "Authorization: Bearer $TOKEN" ${apiUrl("/user")}`);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.placeholder.startsWith("ghp_") && r.placeholder !== SECRET && r.placeholder.length === SECRET.length, r.placeholder);
    assert.match(r.stdout, /hello from upstream/);
    assert.equal(requestsTo(api, "/user").at(-1)?.headers.authorization, `Bearer ${SECRET}`);
    assert.ok(!r.stdout.includes(SECRET) && !r.stderr.includes(SECRET));
    await waitUntil("the injection is audited", () => audit().some((e) => e.type === "credential.inject" && e.name === "gh" && e.header === "authorization"));
    assert.ok(!JSON.stringify(audit()).includes(SECRET), "the audit log never holds the value");
  });

  it("injects over HTTP/1.1 and over HTTP/2 (negotiated by ALPN)", async () => {
    const r = await run(`for v in --http1.1 --http2; do curl -sS -m 10 -o /dev/null -w '%{http_version} %{http_code}\\n' $v -H "Authorization: Bearer $TOKEN" ${apiUrl("/version")}; done`);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n"), ["1.1 200", "2 200"]);
    const seen = requestsTo(api, "/version");
    assert.equal(seen.length, 2);
    for (const request of seen) assert.equal(request.headers.authorization, `Bearer ${SECRET}`);
  });

  it("strips a client's own value of the injection header: the upstream sees no Authorization at all", async () => {
    const r = await run(`curl -sS -m 10 -w '\\n%{http_code}' -H "Authorization: Bearer mine" ${apiUrl("/mine")}`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /hello from upstream\n\n?200$/);
    const seen = requestsTo(api, "/mine");
    assert.equal(seen.length, 1);
    assert.equal(seen[0]?.headers.authorization, undefined);
    await waitUntil("the strip is audited", () => hasEntry(audit(), { type: "credential.strip", host: "api.test", port: api.port, headers: "authorization" }));
  });

  it("over HTTPS to the secret's own host, refuses the placeholder in the URL (plain or percent-encoded) or the body; the upstream never gets its bytes", async () => {
    const before = api.requests.length;
    // Large bodies: the placeholder after 200 KB already on their way to the upstream, and at the
    // start of 3 MB still being sent when the guardian answers.
    const r = await run(
      [
        `${curlAuth(apiUrl("/q?token=$TOKEN"))}; echo`,
        `${curlAuth(`"${apiUrl("/q?token=")}${PERCENT_ENCODE}"`)}; echo`,
        `${curlAuth(`--data "token=$TOKEN" ${apiUrl("/post")}`)}; echo`,
        `${curlAuth(`--http1.1 --data "token=$TOKEN" ${apiUrl("/post")}`)}; echo`,
        `{ head -c 200000 /dev/zero | tr '\\0' a; printf %s "$TOKEN"; } > /tmp/big`,
        `${curlAuth(`--data-binary @/tmp/big ${apiUrl("/post-big")}`)}; echo`,
        `${curlAuth(`--http1.1 --data-binary @/tmp/big ${apiUrl("/post-big")}`)}; echo`,
        `{ printf %s "$TOKEN"; head -c 3000000 /dev/zero | tr '\\0' a; } > /tmp/early`,
        `${curlAuth(`--data-binary @/tmp/early ${apiUrl("/post-early")}`)}; echo`,
        `${curlAuth(`--http1.1 --data-binary @/tmp/early ${apiUrl("/post-early")}`)}; echo`,
      ].join("; "),
    );
    assert.deepEqual(statusCodes(r.stdout), Array(8).fill("403"), r.stdout + r.stderr);
    assert.match(r.stdout, /blocked: it carries the placeholder of the secret gh in the url/);
    assert.match(r.stdout, /blocked: it carries the placeholder of the secret gh in the body/);
    assert.equal(requestsTo(api, "/q").length, 0, "a refused URL is never sent on");
    assert.ok(!api.received.includes(r.placeholder), "the upstream never received the placeholder's bytes");
    assert.ok(api.requests.slice(before).every((request) => !request.body.includes(r.placeholder)));
    await waitUntil("both sightings are audited", () => {
      const entries = audit();
      return ["url", "body"].every((where) => hasEntry(entries, { type: "credential.exfiltration", name: "gh", where, host: "api.test", port: api.port, protocol: "https" }));
    });
  });

  it("a placeholder sent to an allowed host the secret does not belong to passes through the tunnel untouched: that host only ever gets the worthless placeholder", async () => {
    const r = await run(`${curlAuth(`--cacert /work/test-ca.pem https://other.test:${other.port}/elsewhere`)}`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /200$/);
    assert.equal(requestsTo(other, "/elsewhere").at(-1)?.headers.authorization, `Bearer ${r.placeholder}`, "not intercepted: the placeholder arrives as sent");
    assert.ok(!other.received.includes(SECRET), "never the real value");
  });

  it("with that host in proxy.inspect, the placeholder there is refused (403) and audited; the host sees no request, while clean requests still go through", async (context) => {
    if (inspected instanceof Error) return context.skip(`no server on ${inspectedAddress}:443: ${inspected.message}`);
    const server = inspected;
    const extra = ["--resolve", `other.test=${inspectedAddress}`, "--allow-private", "other.test:443"];
    await withConfig(
      t,
      (config) => config.replace(/^  inspect: \[\]$/m, "  inspect: [other.test]"),
      async () => {
        const r = await run(`${curlAuth("https://other.test/inspected")}; echo; curl -sS -m 10 -w '\\n%{http_code}' https://other.test/clean`, extra);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /blocked: it carries the placeholder of the secret gh in the authorization header/);
        assert.deepEqual(statusCodes(r.stdout), ["403", "200"], r.stdout);
        assert.equal(requestsTo(server, "/inspected").length, 0);
        assert.equal(requestsTo(server, "/clean").length, 1, "the clean request went through the guardian (which trusts the test CA upstream)");
        await waitUntil("the sighting is audited", () =>
          hasEntry(audit(), { type: "credential.exfiltration", name: "gh", where: "header", header: "authorization", host: "other.test", port: 443, protocol: "https" }),
        );
      },
    );
  });

  it("the placeholder of one secret sent to another secret's host is refused (403) and audited; that host sees no request", async () => {
    const r = await run(`curl -sS -m 10 -w '\\n%{http_code}' -H "X-Api-Key: $TOKEN" https://ws.test:${ws.port}/cross`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /403$/);
    assert.equal(requestsTo(ws, "/cross").length, 0);
    await waitUntil("the sighting is audited", () => hasEntry(audit(), { type: "credential.exfiltration", name: "gh", where: "header", header: "x-api-key", host: "ws.test", port: ws.port }));
  });

  it("over plain HTTP, refuses the placeholder in a header, the URL (also percent-encoded) and the body; the upstream never gets it", async () => {
    const r = await run(
      [
        `${curlAuth(plainUrl("/header"))}; echo`,
        `curl -sS -m 10 -w '\\n%{http_code}\\n' "${plainUrl("/url?t=")}$TOKEN"`,
        `curl -sS -m 10 -w '\\n%{http_code}\\n' "${plainUrl("/encoded?t=")}${PERCENT_ENCODE}"`,
        `curl -sS -m 10 -w '\\n%{http_code}\\n' --data "t=$TOKEN" ${plainUrl("/body")}`,
        // Large bodies: the placeholder at the start of 3 MB still being sent when the guardian
        // answers (the client must read the 403, not a reset), and after 200 KB already sent on.
        `{ printf %s "$TOKEN"; head -c 3000000 /dev/zero | tr '\\0' a; } > /tmp/early`,
        `curl -sS -m 10 -w '\\n%{http_code}\\n' --data-binary @/tmp/early ${plainUrl("/body-early")}`,
        `{ head -c 200000 /dev/zero | tr '\\0' a; printf %s "$TOKEN"; } > /tmp/big`,
        `curl -sS -m 10 -w '\\n%{http_code}\\n' --data-binary @/tmp/big ${plainUrl("/body-big")}`,
      ].join("; "),
    );
    assert.deepEqual(statusCodes(r.stdout), Array(6).fill("403"), r.stdout + r.stderr);
    for (const path of ["/header", "/url", "/encoded"]) assert.equal(requestsTo(plain, path).length, 0, path);
    for (const path of ["/body", "/body-early", "/body-big"]) assert.ok(requestsTo(plain, path).every((request) => !request.body.includes(r.placeholder)), path);
    assert.ok(!plain.received.includes(r.placeholder), "the upstream never received the placeholder's bytes");
    await waitUntil("every sighting is audited", () => {
      const entries = audit();
      const sighting = { type: "credential.exfiltration", name: "gh", host: "plain.test", port: plain.port, protocol: "http" };
      return hasEntry(entries, { ...sighting, where: "header", header: "authorization" }) && hasEntry(entries, { ...sighting, where: "url" }) && hasEntry(entries, { ...sighting, where: "body" });
    });
  });

  it("a refused body is answered even to a client that reads only after sending all of it: the guardian reads the rest and drops it", async () => {
    const r = await run(`node late-reader.cjs http plain.test:${plain.port} /late-plain; node late-reader.cjs https api.test:${api.port} /late-tls`);
    assert.deepEqual(r.stdout.split("\n").filter((line) => /^(status|error) /.test(line)), ["status 403", "status 403"], r.stdout + r.stderr);
    for (const [server, path] of [[plain, "/late-plain"], [api, "/late-tls"]] as const) {
      assert.ok(requestsTo(server, path).every((request) => !request.body.includes(r.placeholder)), path);
    }
    assert.ok(!plain.received.includes(r.placeholder) && !api.received.includes(r.placeholder), "an upstream received the placeholder's bytes");
  });

  it("an origin echoing the real value back in a response body does not hand it to the cloister: the response is cut and audited", async () => {
    const r = await run(`for v in --http1.1 --http2; do curl -sS -m 10 $v -H "Authorization: Bearer $TOKEN" ${apiUrl("/echo-body")}; echo " rc=$?"; done`);
    assert.equal(requestsTo(api, "/echo-body").length, 2);
    assert.ok(!r.stdout.includes(SECRET) && !r.stderr.includes(SECRET), r.stdout);
    assert.doesNotMatch(r.stdout, /rc=0/, "a cut response is not a complete one");
    await waitUntil("the echo is audited", () => hasEntry(audit(), { type: "credential.echo", name: "gh", host: "api.test", port: api.port }));
  });

  it("an origin echoing the real value back in a compressed body does not hand it to the cloister: the guardian decodes to scan", async () => {
    const r = await run(`for v in --http1.1 --http2; do curl -sS -m 10 --compressed $v -H "Authorization: Bearer $TOKEN" ${apiUrl("/echo-gzip")}; echo " rc=$?"; done`);
    assert.equal(requestsTo(api, "/echo-gzip").length, 2);
    assert.ok(!r.stdout.includes(SECRET) && !r.stderr.includes(SECRET), r.stdout);
    assert.doesNotMatch(r.stdout, /rc=0/, "a cut response is not a complete one");
  });

  it("a compressed response is relayed decoded; the origin is offered only the codings the guardian can decode", async () => {
    const r = await run(`curl -sS -m 10 --compressed -H "Authorization: Bearer $TOKEN" ${apiUrl("/gzip")}; curl -sS -m 10 -H "Authorization: Bearer $TOKEN" ${apiUrl("/gzip")}`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, DEFAULT_UPSTREAM_BODY.repeat(2));
    const [compressed, plainRequest] = requestsTo(api, "/gzip");
    assert.match(String(compressed?.headers["accept-encoding"]), /gzip/);
    assert.doesNotMatch(String(compressed?.headers["accept-encoding"]), /zstd/, "a coding the guardian cannot decode is not offered");
    assert.equal(plainRequest?.headers["accept-encoding"], undefined);
  });

  it("an origin echoing the real value back in a response header does not hand it to the cloister", async () => {
    const r = await run(`for v in --http1.1 --http2; do curl -sS -m 10 -i $v -H "Authorization: Bearer $TOKEN" ${apiUrl("/echo-header")}; echo " rc=$?"; done`);
    assert.equal(requestsTo(api, "/echo-header").length, 2);
    assert.ok(!r.stdout.includes(SECRET) && !r.stderr.includes(SECRET), r.stdout);
    assert.match(r.stdout, /HTTP\/1\.1 502[^]*HTTP\/2 502/, "refused, over both protocols");
    assert.match(r.stdout, /its headers carry the credential of the secret gh/);
    await waitUntil("the echo is audited", () => hasEntry(audit(), { type: "credential.echo", name: "gh", host: "api.test", port: api.port, where: "header" }));
  });

  it("a request on an intercepted connection for another authority is refused (421) and not sent on", async () => {
    const r = await run(`curl -sS -m 10 --http1.1 -w '\\n%{http_code}' -H "Host: other.test:${other.port}" -H "Authorization: Bearer $TOKEN" ${apiUrl("/misdirected")}`);
    assert.deepEqual(statusCodes(r.stdout), ["421"], r.stdout + r.stderr);
    assert.equal(requestsTo(api, "/misdirected").length, 0);
    assert.equal(requestsTo(other, "/misdirected").length, 0);
  });

  it("a redirect to plain HTTP that a client follows with the Authorization header is refused there; the plain upstream sees nothing", async () => {
    const r = await run(`curl -sS -m 10 -L --location-trusted -o /dev/null -w '%{num_redirects} %{http_code}' -H "Authorization: Bearer $TOKEN" ${apiUrl("/redirect")}`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "1 403");
    assert.equal(requestsTo(api, "/redirect").at(-1)?.headers.authorization, `Bearer ${SECRET}`, "the first hop was injected");
    assert.equal(requestsTo(plain, "/next").length, 0);
    assert.ok(!plain.received.includes(r.placeholder));
  });

  for (const [path, how, flags] of [
    ["/sse", "", ""],
    ["/sse-gzip", " (also when compressed: the guardian decodes as it goes)", "--compressed"],
  ] as const) {
    it(`streams a response: server-sent events reach the client as they are written, not when the response ends${how}`, async () => {
      const r = await run(`curl -sSN -m 20 ${flags} -H "Authorization: Bearer $TOKEN" ${apiUrl(path)} | while IFS= read -r line; do if [ -n "$line" ]; then echo "$(date +%s%3N) $line"; fi; done`);
      assert.equal(r.code, 0, r.stderr);
      const events = r.stdout
        .trim()
        .split("\n")
        .map((line) => /^(\d+) (.*)$/.exec(line) ?? assert.fail(`unexpected line ${line}`))
        .map(([, at, text]) => ({ at: Number(at), text }));
      assert.deepEqual(
        events.map((event) => event.text),
        ["data: event 1", "data: event 2", "data: event 3"],
      );
      assert.equal(sseWritten.length, 3);
      assert.equal(requestsTo(api, path).at(-1)?.headers.authorization, `Bearer ${SECRET}`);
      // The upstream wrote the third event a second after the first: a buffered relay would deliver
      // the first one only after that.
      assert.ok((events[0]?.at ?? Infinity) < (sseWritten[2] ?? 0), `first event at ${events[0]?.at}, third written at ${sseWritten[2]}`);
    });
  }

  it("a WebSocket upgrade gets the real key in its handshake; the 101 and the frames go through", async () => {
    const r = await run(`node /work/client.cjs ws ws.test:${ws.port} /chat`);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n"), ["HTTP/1.1 101 Switching Protocols", "frame echo:ping"]);
    const seen = requestsTo(ws, "/chat").at(-1);
    assert.equal(seen?.headers["x-api-key"], WS_SECRET);
    assert.equal(seen?.headers.upgrade, "websocket");
    assert.equal(seen?.headers["sec-websocket-extensions"], undefined, "compression is not offered: the origin's frames must stay scannable");
    await waitUntil("the injection is audited", () => hasEntry(audit(), { type: "credential.inject", name: "wskey", host: "ws.test", port: ws.port, header: "x-api-key" }));
  });

  it("an origin echoing the key back in a WebSocket frame does not hand it to the cloister: the connection is cut and audited", async () => {
    const r = await run(`WSTEXT=leak node /work/client.cjs ws ws.test:${ws.port} /leak; echo "rc=$?"`);
    assert.deepEqual(r.stdout.trim().split("\n"), ["HTTP/1.1 101 Switching Protocols", "error closed", "rc=1"], r.stderr);
    assert.ok(!r.stdout.includes(WS_SECRET) && !r.stderr.includes(WS_SECRET));
    assert.equal(requestsTo(ws, "/leak").at(-1)?.headers["x-api-key"], WS_SECRET, "the origin had the key");
    await waitUntil("the echo is audited", () => hasEntry(audit(), { type: "credential.echo", name: "wskey", where: "body" }));
  });

  it("a WebSocket upgrade the origin declines (no key: the client's empty one is stripped) relays the origin's answer", async () => {
    const r = await run(`WSKEY= node /work/client.cjs ws ws.test:${ws.port} /nokey; echo "rc=$?"`);
    assert.deepEqual(r.stdout.trim().split("\n"), ["HTTP/1.1 401 Unauthorized", "rc=1"], r.stderr);
    assert.equal(requestsTo(ws, "/nokey").at(-1)?.headers["x-api-key"], undefined);
  });

  it("injects for other clients: node https over a CONNECT of its own, python urllib, git over HTTPS", async () => {
    const r = await run(
      [
        `node /work/client.cjs https api.test:${api.port} /node`,
        `python3 -c 'import os, urllib.request as u; r = u.urlopen(u.Request("${apiUrl("/python")}", headers={"Authorization": "Bearer " + os.environ["TOKEN"]}), timeout=10); print(r.status, r.read().decode().strip())'`,
        // git's http.extraHeader sends the header as given, on every request (the Bearer rule).
        `git -c http.extraHeader="Authorization: Bearer $TOKEN" ls-remote ${apiUrl("/repo.git")}`,
      ].join(" && "),
    );
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n"), ["200 hello from upstream", "200 hello from upstream", `${GIT_SHA}\tHEAD`, `${GIT_SHA}\trefs/heads/main`]);
    for (const path of ["/node", "/python", "/repo.git/info/refs"]) {
      const seen = requestsTo(api, path);
      assert.ok(seen.length > 0, path);
      for (const request of seen) assert.equal(request.headers.authorization, `Bearer ${SECRET}`, path);
    }
  });

  it("a --basic rule: git with the placeholder as the password in the URL answers the server's challenge, and the server gets the real password", async () => {
    const r = await run(`git ls-remote "https://deploy:$GITPW@git.test:${git.port}/repo.git"; echo "rc=$?"`);
    assert.match(r.stdout, /rc=0/, r.stdout + r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n").slice(0, 2), [`${GIT_SHA}\tHEAD`, `${GIT_SHA}\trefs/heads/main`]);
    const authorized = git.requests.filter((request) => request.headers.authorization !== undefined);
    assert.ok(authorized.length > 0, "git answered the challenge");
    for (const request of authorized) assert.equal(request.headers.authorization, `Basic ${Buffer.from(`deploy:${GIT_SECRET}`).toString("base64")}`);
    assert.ok(!git.received.includes(Buffer.from(`deploy:${r.placeholder}`).toString("base64")), "never the placeholder");
    await waitUntil("the injection is audited", () => hasEntry(audit(), { type: "credential.inject", name: "gitpw", host: "git.test", port: git.port, header: "authorization" }));
  });

  it("injects on the SOCKS5 path too (curl through $ALL_PROXY)", async () => {
    const r = await run(`curl -sS -m 10 -x "$ALL_PROXY" -H "Authorization: Bearer $TOKEN" ${apiUrl("/socks")}`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, DEFAULT_UPSTREAM_BODY);
    assert.equal(requestsTo(api, "/socks").at(-1)?.headers.authorization, `Bearer ${SECRET}`);
  });

  it("a client that does not trust the cloister CA fails the handshake; the refusal is audited and the upstream sees no request", async () => {
    const mark = audit().length;
    const r = await run(`curl -sS -m 10 --cacert /work/test-ca.pem -H "Authorization: Bearer $TOKEN" ${apiUrl("/distrust")}; echo "rc=$?"`);
    assert.match(r.stdout, /rc=60/, r.stderr);
    assert.equal(requestsTo(api, "/distrust").length, 0);
    await waitUntil("the refused handshake is audited", () => hasEntry(audit().slice(mark), { type: "credential.tls-refused", host: "api.test", port: api.port }));
  });

  it("--secret refuses an unknown secret and one without an injection rule, before anything starts", async () => {
    const unknown = await t.cli(["run", "--secret", "X=nosuch", "--", "true"], { timeoutMs: 10_000 });
    assert.equal(unknown.code, 125);
    assert.match(unknown.stderr, /no secret named "nosuch"/);
    const ruleless = await t.cli(["run", "--secret", "X=ruleless", "--", "true"], { timeoutMs: 10_000 });
    assert.equal(ruleless.code, 125);
    assert.match(ruleless.stderr, /the secret ruleless has no injection rule/);
    assert.ok(!ruleless.stderr.includes("just-a-stored-value"));
  });
});

describe("credential broker: a locked vault", () => {
  const PASSPHRASE = "correct horse battery staple";
  let t: TestInstance;
  let ca: TestCa;
  let api: HttpsUpstream;

  before(async () => {
    t = createInstance("bl");
    ca = createTestCa();
    api = await startHttpsUpstream(ca, ["api.test"]);
    trustUpstreamCa(t.home, ca.certFile);
    const set = await t.cli(["secret", "set", "gh", "--host", `api.test:${api.port}`, "--header", "Authorization: Bearer {}"], { input: SECRET });
    assert.equal(set.code, 0, set.stderr);
    const passphrase = await t.cli(["secret", "passphrase"], { input: PASSPHRASE });
    assert.equal(passphrase.code, 0, passphrase.stderr);
  });
  after(async () => {
    if (process.env.KEEP) console.log(t.home);
    else await t.teardown();
    await api.close();
    rmSync(ca.dir, { recursive: true, force: true });
  });

  it("a placeholder presented while the vault is locked gets 503 (never sent without the value); after unlock it is injected again", async () => {
    // One cloister across lock and unlock: it requests whenever a go-N file appears in /work.
    const request = (n: number) => `while [ ! -e /work/go-${n} ]; do sleep 0.1; done; curl -sS -m 10 -w '\\n%{http_code}\\n' -H "Authorization: Bearer $TOKEN" https://api.test:${api.port}/locked-${n} 2>&1; echo "done-${n}"`;
    const live = spawnCli(t, [
      "run",
      ...["--resolve", "api.test=127.0.0.1", "--allow-private", `api.test:${api.port}`, "--secret", "TOKEN=gh", "--", "sh", "-c"],
      `echo ready; ${request(1)}; ${request(2)}`,
    ]);
    try {
      await live.waitFor("ready");
      const lock = await t.cli(["secret", "lock"]);
      assert.equal(lock.code, 0, lock.stderr);
      writeFileSync(join(t.project, "go-1"), "");
      await live.waitFor("done-1");
      assert.match(live.output(), /vault is locked[^\n]*\n\n?503\n/);
      assert.equal(requestsTo(api, "/locked-1").length, 0, "nothing was sent without the value");

      const unlock = await t.cli(["secret", "unlock"], { input: PASSPHRASE });
      assert.equal(unlock.code, 0, unlock.stderr);
      writeFileSync(join(t.project, "go-2"), "");
      await live.waitFor("done-2");
      assert.match(live.output(), /hello from upstream\n\n?200\n/);
      assert.equal(requestsTo(api, "/locked-2").at(-1)?.headers.authorization, `Bearer ${SECRET}`);
    } finally {
      live.child.kill("SIGTERM");
      await live.done;
    }
  });

  it("after a guardian restart the vault is locked: --secret says so instead of starting a cloister", async () => {
    const stop = await t.cli(["guardian", "stop"]);
    assert.equal(stop.code, 0, stop.stderr);
    const r = await t.cli(["run", "--secret", "TOKEN=gh", "--", "true"], { timeoutMs: 10_000 });
    assert.match(r.stderr, /locked/);
    assert.equal(r.code, 125);
  });
});
