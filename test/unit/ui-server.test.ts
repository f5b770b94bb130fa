/**
 * The approval UI's HTTP server against an in-memory approval service, over real loopback HTTP:
 * login, Host and Origin checks, the secret on every route, headers, the event stream and the JSON API.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request, type IncomingHttpHeaders, type OutgoingHttpHeaders } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, beforeEach, describe, it, mock } from "node:test";
import { ApprovalError, type ApprovalEvent } from "../../src/guardian/approvals/types.js";
import { SECURITY_HEADERS } from "../../src/guardian/ui/respond.js";
import { UiServer } from "../../src/guardian/ui/server.js";
import { commandRequest, domainRequest, FakeApprovals } from "../helpers/fake-approvals.js";

const assetsDir = mkdtempSync(join(tmpdir(), "cui-"));
writeFileSync(join(assetsDir, "index.html"), "<!doctype html><title>Cloister approvals</title>");
writeFileSync(join(assetsDir, "app.js"), "console.log('app');");
writeFileSync(join(assetsDir, "style.css"), "body {}");
after(() => rmSync(assetsDir, { recursive: true, force: true }));

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

interface CallOptions {
  method?: string;
  /** `host: null` sends no Host header at all. */
  headers?: Record<string, string | null>;
  body?: string | Buffer;
}

const HOSTILE = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>\u001b[31mred\u001b[0m\u202Etxt.exe\u200B\n";

describe("approval UI server", () => {
  let service: FakeApprovals;
  let ui: UiServer;
  let port: number;
  const logged: string[] = [];

  beforeEach(async () => {
    service = new FakeApprovals();
    logged.length = 0;
    ui = await UiServer.start({ service, port: 0, assetsDir, log: (message) => logged.push(message) });
    port = Number(new URL(ui.url).port);
  });
  afterEach(() => ui.close());

  /** One HTTP request with full control over Host (node's fetch would not allow that). */
  function call(path: string, options: CallOptions = {}): Promise<Reply> {
    const headers: OutgoingHttpHeaders = { host: `127.0.0.1:${port}` };
    for (const [name, value] of Object.entries(options.headers ?? {})) {
      if (value === null) delete headers[name];
      else headers[name] = value;
    }
    return new Promise((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, path, method: options.method ?? "GET", headers, setHost: false, agent: false }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      req.on("error", reject);
      req.end(options.body);
    });
  }

  const bearer = () => ({ authorization: `Bearer ${ui.apiToken}` });
  const ownOrigin = () => `http://127.0.0.1:${port}`;

  /** A fresh session, as the `cookie` header value a browser would send. */
  async function signIn(): Promise<string> {
    const reply = await call(loginPath());
    assert.equal(reply.status, 303);
    return reply.headers["set-cookie"]?.[0]?.split(";")[0] ?? "";
  }

  function postJson(path: string, value: unknown, headers: Record<string, string | null>): Promise<Reply> {
    return call(path, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(value) });
  }

  function loginPath(): string {
    const url = new URL(ui.loginUrl());
    return url.pathname + url.search;
  }

  describe("login", () => {
    it("exchanges a login token once for a session cookie and a redirect to /", async () => {
      const path = loginPath();
      const reply = await call(path);
      assert.equal(reply.status, 303);
      assert.equal(reply.headers.location, "/");
      const cookie = reply.headers["set-cookie"];
      assert.equal(cookie?.length, 1);
      assert.match(cookie[0] ?? "", /^cloister_ui=[0-9a-f]{64}; HttpOnly; SameSite=Strict; Path=\/$/);
      assert.doesNotMatch(cookie[0] ?? "", /Max-Age|Expires|Domain/i);
      const session = cookie[0]?.split(";")[0] ?? "";
      assert.equal((await call("/api/pending", { headers: { cookie: session } })).status, 200);
      assert.equal((await call("/", { headers: { cookie: session } })).status, 200);

      const again = await call(path);
      assert.equal(again.status, 401);
      assert.equal(again.headers["set-cookie"], undefined);
      assert.match(again.body, /cloister ui/);
    });

    it("refuses unknown tokens and tokens older than two minutes", async (t) => {
      assert.equal((await call("/login")).status, 401);
      assert.equal((await call(`/login?token=${"0".repeat(64)}`)).status, 401);

      t.mock.timers.enable({ apis: ["Date"], now: Date.now() });
      const fresh = loginPath();
      const stale = loginPath();
      t.mock.timers.tick(119_000);
      assert.equal((await call(fresh)).status, 303);
      t.mock.timers.tick(1_000);
      assert.equal((await call(stale)).status, 401);
    });

    it("keeps each login link's token apart: one cannot be spent through another", async () => {
      const first = loginPath();
      const second = loginPath();
      assert.notEqual(first, second);
      assert.equal((await call(second)).status, 303);
      assert.equal((await call(first)).status, 303);
    });
  });

  describe("Host (DNS rebinding)", () => {
    for (const host of ["evil.example:PORT", "127.0.0.1.evil.example", "127.0.0.1.evil.example:PORT", "127.0.0.1", "127.0.0.1:1", "[::1]:PORT", "LOCALHOST.:PORT", null]) {
      it(`answers 421 and nothing else for Host ${String(host)}`, async () => {
        service.add(domainRequest());
        const reply = await call("/api/pending", { headers: { ...bearer(), host: host?.replace("PORT", String(port)) ?? null } });
        assert.equal(reply.status, 421);
        assert.doesNotMatch(reply.body, /requests|example/);
      });
    }

    it("does not spend a login token sent under a foreign Host", async () => {
      const path = loginPath();
      assert.equal((await call(path, { headers: { host: `evil.example:${port}` } })).status, 421);
      assert.equal((await call(path)).status, 303);
    });

    it("accepts localhost:PORT as well as 127.0.0.1:PORT", async () => {
      assert.equal((await call("/api/pending", { headers: { ...bearer(), host: `localhost:${port}` } })).status, 200);
    });
  });

  describe("the secret", () => {
    const answerPath = () => `/api/requests/${"a".repeat(32)}/answer`;
    const undoPath = () => `/api/decisions/${"b".repeat(32)}/undo`;
    const routes = (): [string, string][] => [
      ["GET", "/api/pending"],
      ["GET", "/api/recent"],
      ["GET", "/api/events"],
      ["POST", answerPath()],
      ["POST", undoPath()],
    ];

    for (const [label, credentials] of [
      ["no secret", {}],
      ["a wrong cookie", { cookie: `cloister_ui=${"f".repeat(64)}` }],
      ["a wrong bearer token", { authorization: `Bearer ${"f".repeat(64)}` }],
      ["a malformed Authorization header", { authorization: "Basic YTpi" }],
    ] as const) {
      it(`refuses ${label} on every API route, the event stream included`, async () => {
        for (const [method, path] of routes()) {
          const reply = await call(path, { method, headers: { ...credentials, origin: ownOrigin(), "content-type": "application/json" }, body: method === "POST" ? '{"verdict":"allow","scope":"once"}' : undefined });
          assert.equal(reply.status, 401, `${method} ${path}`);
          assert.match(reply.headers["content-type"] ?? "", /^application\/json/);
          assert.equal(typeof JSON.parse(reply.body).error, "string");
        }
        assert.equal(service.answers.length + service.undos.length, 0);
      });
    }

    it("shows a signed-out browser a page that says how to get a link", async () => {
      const reply = await call("/", { headers: { accept: "text/html" } });
      assert.equal(reply.status, 401);
      assert.match(reply.headers["content-type"] ?? "", /^text\/html/);
      assert.match(reply.body, /run <code>cloister ui<\/code>/);
    });

    it("does not let a wrong bearer token fall back to a valid cookie", async () => {
      const session = await signIn();
      assert.equal((await call("/api/pending", { headers: { cookie: session, authorization: "Bearer 00" } })).status, 401);
    });

    it("accepts the session among other cookies of the same name", async () => {
      const session = await signIn();
      assert.equal((await call("/api/pending", { headers: { cookie: `cloister_ui=planted; other=1; ${session}` } })).status, 200);
    });

    it("serves the static assets without a secret", async () => {
      const script = await call("/assets/app.js");
      assert.equal(script.status, 200);
      assert.match(script.headers["content-type"] ?? "", /^text\/javascript/);
      assert.match((await call("/assets/style.css")).headers["content-type"] ?? "", /^text\/css/);
    });
  });

  describe("writes", () => {
    it("refuses a cookie write from another origin, without one, or from an opaque origin", async () => {
      const session = await signIn();
      const request = service.add(domainRequest());
      for (const origin of ["http://evil.example", `http://127.0.0.1:${port + 1}`, `https://127.0.0.1:${port}`, "null", null]) {
        const reply = await postJson(`/api/requests/${request.id}/answer`, { verdict: "allow", scope: "once" }, { cookie: session, origin });
        assert.equal(reply.status, 403, String(origin));
      }
      assert.deepEqual(service.answers, []);
    });

    it("refuses the content types a cross-site form or simple fetch can send", async () => {
      const session = await signIn();
      const request = service.add(domainRequest());
      for (const type of ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", null]) {
        const reply = await call(`/api/requests/${request.id}/answer`, { method: "POST", headers: { cookie: session, origin: ownOrigin(), "content-type": type }, body: '{"verdict":"allow","scope":"once"}' });
        assert.equal(reply.status, 415, String(type));
      }
      assert.deepEqual(service.answers, []);
    });

    it("takes an answer from the UI's own origin and records it as by the UI", async () => {
      const session = await signIn();
      const request = service.add(domainRequest());
      const reply = await postJson(`/api/requests/${request.id}/answer`, { verdict: "allow", scope: "project", wildcard: true }, { cookie: session, origin: `http://localhost:${port}`, "content-type": "application/json; charset=utf-8" });
      assert.equal(reply.status, 200);
      assert.equal(JSON.parse(reply.body).rule, "*.example.com");
      assert.deepEqual(service.answers, [{ id: request.id, input: { verdict: "allow", scope: "project", wildcard: true, by: "ui" } }]);
    });

    it("takes a bearer write without Origin as by the API, but not with a foreign Origin", async () => {
      const first = service.add(commandRequest());
      const second = service.add(commandRequest());
      assert.equal((await postJson(`/api/requests/${first.id}/answer`, { verdict: "deny", scope: "session" }, bearer())).status, 200);
      assert.equal((await postJson(`/api/requests/${second.id}/answer`, { verdict: "allow", scope: "once" }, { ...bearer(), origin: "http://evil.example" })).status, 403);
      assert.deepEqual(service.answers, [{ id: first.id, input: { verdict: "deny", scope: "session", by: "api" } }]);
    });

    it("undoes a decision by its id", async () => {
      const request = service.add(domainRequest());
      const decision = JSON.parse((await postJson(`/api/requests/${request.id}/answer`, { verdict: "allow", scope: "global" }, bearer())).body);
      const reply = await postJson(`/api/decisions/${decision.id}/undo`, {}, bearer());
      assert.equal(reply.status, 200);
      assert.equal(JSON.parse(reply.body).undone, true);
      assert.deepEqual(service.undos, [{ id: decision.id, by: "api" }]);
    });

    it("refuses bodies over 16 KiB, declared or streamed", async () => {
      const request = service.add(domainRequest());
      const big = JSON.stringify({ verdict: "allow", scope: "once", padding: "x".repeat(17 * 1024) });
      assert.equal((await call(`/api/requests/${request.id}/answer`, { method: "POST", headers: { ...bearer(), "content-type": "application/json" }, body: big })).status, 413);
      const chunked = await call(`/api/requests/${request.id}/answer`, { method: "POST", headers: { ...bearer(), "content-type": "application/json", "transfer-encoding": "chunked" }, body: big });
      assert.equal(chunked.status, 413);
      assert.deepEqual(service.answers, []);
    });

    for (const [label, body, message] of [
      ["malformed JSON", "{verdict: allow}", /not valid JSON/],
      ["invalid UTF-8", Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]), /UTF-8/],
      ["an array", "[]", /JSON object/],
      ["null", "null", /JSON object/],
      ["an unknown field", '{"verdict":"allow","scope":"once","by":"cli"}', /unknown field "by"/],
      ["a missing verdict", '{"scope":"once"}', /verdict/],
      ["a bad verdict", '{"verdict":"maybe","scope":"once"}', /verdict/],
      ["a bad scope", '{"verdict":"allow","scope":"forever"}', /scope/],
      ["a non-boolean wildcard", '{"verdict":"allow","scope":"once","wildcard":"*.com"}', /wildcard/],
    ] as const) {
      it(`answers 400 with a message for ${label}`, async () => {
        const request = service.add(domainRequest());
        const reply = await call(`/api/requests/${request.id}/answer`, { method: "POST", headers: { ...bearer(), "content-type": "application/json" }, body });
        assert.equal(reply.status, 400);
        assert.match(JSON.parse(reply.body).error, message);
        assert.deepEqual(service.answers, []);
      });
    }

    it("wants {} as an undo's body", async () => {
      const reply = await postJson(`/api/decisions/${"c".repeat(32)}/undo`, { force: true }, bearer());
      assert.equal(reply.status, 400);
      assert.deepEqual(service.undos, []);
    });

    it("passes the service's refusals on with their status and message", async () => {
      const missing = await postJson(`/api/requests/${"d".repeat(32)}/answer`, { verdict: "allow", scope: "once" }, bearer());
      assert.equal(missing.status, 404);
      assert.deepEqual(JSON.parse(missing.body), { error: "no such pending request" });

      const command = service.add(commandRequest());
      const wildcard = await postJson(`/api/requests/${command.id}/answer`, { verdict: "allow", scope: "once", wildcard: true }, bearer());
      assert.equal(wildcard.status, 400);
      assert.deepEqual(JSON.parse(wildcard.body), { error: "no wildcard is offered for this request" });

      service.failNext = new ApprovalError("already undone", 409);
      const conflict = await postJson(`/api/decisions/${"e".repeat(32)}/undo`, {}, bearer());
      assert.equal(conflict.status, 409);
      assert.deepEqual(JSON.parse(conflict.body), { error: "already undone" });
    });

    it("hides other failures behind 500 and logs them", async () => {
      const request = service.add(domainRequest());
      service.failNext = new Error("disk full at /home/dev/.config");
      const reply = await postJson(`/api/requests/${request.id}/answer`, { verdict: "allow", scope: "project" }, bearer());
      assert.equal(reply.status, 500);
      assert.deepEqual(JSON.parse(reply.body), { error: "internal error" });
      assert.ok(logged.some((line) => line.includes("disk full")));
    });
  });

  describe("routes and headers", () => {
    it("answers 404 for unknown routes, wrong methods and ids that are not ids", async () => {
      for (const [method, path] of [
        ["GET", "/nope"],
        ["GET", "/assets/../index.html"],
        ["GET", "/assets/app.js/"],
        ["GET", "//api/pending"],
        ["GET", "/api/requests/abc/answer"],
        ["DELETE", "/api/pending"],
        ["OPTIONS", "/api/requests/abc/answer"],
        ["POST", "/api/requests/a%2Fb/answer"],
        ["POST", "/api/requests/../answer"],
      ] as const) {
        assert.equal((await call(path, { method, headers: bearer() })).status, 404, `${method} ${path}`);
      }
    });

    it("sends the security headers on every response and never a CORS header", async () => {
      const session = await signIn();
      const request = service.add(domainRequest());
      const replies = [
        await call("/", { headers: { cookie: session } }),
        await call("/"),
        await call("/assets/app.js"),
        await call("/assets/style.css"),
        await call(loginPath()),
        await call("/login?token=bad"),
        await call("/api/pending", { headers: { cookie: session, origin: "http://evil.example" } }),
        await call("/api/recent", { headers: bearer() }),
        await call("/api/pending"),
        await call("/api/pending", { headers: { host: "evil.example" } }),
        await call("/missing"),
        await call("/api/pending", { method: "OPTIONS", headers: { origin: "http://evil.example", "access-control-request-method": "POST" } }),
        await postJson(`/api/requests/${request.id}/answer`, { verdict: "allow", scope: "once" }, { cookie: session, origin: "http://evil.example" }),
        await postJson(`/api/requests/${request.id}/answer`, { verdict: "x" }, bearer()),
        await postJson(`/api/requests/${"f".repeat(32)}/answer`, { verdict: "allow", scope: "once" }, bearer()),
        await call(`/api/requests/${request.id}/answer`, { method: "POST", headers: { ...bearer(), "content-type": "application/json" }, body: "x".repeat(20_000) }),
      ];
      const stream = await openStream({ cookie: session });
      for (const { status, headers } of [...replies, { status: stream.status, headers: stream.headers }]) {
        for (const [name, value] of Object.entries(SECURITY_HEADERS)) assert.equal(headers[name], value, `${name} on a ${status}`);
        assert.deepEqual(
          Object.keys(headers).filter((name) => name.startsWith("access-control-")),
          [],
          `CORS headers on a ${status}`,
        );
      }
      assert.equal(SECURITY_HEADERS["content-security-policy"], "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
      stream.close();
    });

    it("returns agent-controlled strings intact in JSON (escaping is the page's job)", async () => {
      const domain = service.add(domainRequest({ host: HOSTILE, cloister: HOSTILE, project: HOSTILE, branch: HOSTILE, rule: HOSTILE, wildcard: HOSTILE }));
      const command = service.add(commandRequest({ argv: [HOSTILE, "--", "\u2066x\u2069", ""], cwd: HOSTILE, rule: HOSTILE }));
      const reply = await call("/api/pending", { headers: bearer() });
      assert.match(reply.headers["content-type"] ?? "", /^application\/json/);
      assert.deepEqual(JSON.parse(reply.body), { requests: [domain, command] });
    });
  });

  /** An event stream read frame by frame. */
  interface Stream {
    status: number;
    headers: IncomingHttpHeaders;
    next(): Promise<{ event: string; data: unknown }>;
    /** Everything received so far, comments included. */
    raw(): string;
    /** Resolves when the server ends the stream. */
    ended: Promise<void>;
    close(): void;
  }

  function openStream(headers: Record<string, string>): Promise<Stream> {
    return new Promise((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, path: "/api/events", agent: false, headers: { host: `127.0.0.1:${port}`, ...headers } }, (res) => {
        let buffer = "";
        let raw = "";
        const frames: { event: string; data: unknown }[] = [];
        const waiters: ((frame: { event: string; data: unknown }) => void)[] = [];
        const ended = new Promise<void>((done) => res.once("close", done));
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          raw += chunk;
          buffer += chunk;
          for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const event = /^event: (.*)$/m.exec(block)?.[1];
            const data = /^data: (.*)$/m.exec(block)?.[1];
            if (event === undefined) continue;
            const frame = { event, data: JSON.parse(data ?? "null") as unknown };
            const waiter = waiters.shift();
            if (waiter) waiter(frame);
            else frames.push(frame);
          }
        });
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          next: () => {
            const frame = frames.shift();
            return frame ? Promise.resolve(frame) : new Promise((done) => waiters.push(done));
          },
          raw: () => raw,
          ended,
          close: () => req.destroy(),
        });
      });
      req.on("error", reject);
      req.end();
    });
  }

  describe("event stream", () => {
    it("starts with a snapshot, then carries added, removed and decided events", async () => {
      const early = service.add(domainRequest());
      const stream = await openStream(bearer());
      assert.equal(stream.status, 200);
      assert.match(stream.headers["content-type"] ?? "", /^text\/event-stream/);
      assert.deepEqual(await stream.next(), { event: "snapshot", data: { pending: [early], recent: [] } });

      const request = service.add(commandRequest({ argv: [HOSTILE] }));
      assert.deepEqual(await stream.next(), { event: "added", data: { type: "added", request } });
      await postJson(`/api/requests/${request.id}/answer`, { verdict: "deny", scope: "once" }, bearer());
      assert.deepEqual(await stream.next(), { event: "removed", data: { type: "removed", id: request.id, outcome: "deny" } });
      const decided = (await stream.next()) as { event: string; data: Extract<ApprovalEvent, { type: "decided" }> };
      assert.equal(decided.event, "decided");
      assert.equal(decided.data.decision.requestId, request.id);
      stream.close();
    });

    it("takes a session cookie as well as the bearer token", async () => {
      const stream = await openStream({ cookie: await signIn() });
      assert.equal((await stream.next()).event, "snapshot");
      stream.close();
    });

    it("refuses a 33rd concurrent stream with 503 and takes a new one when a slot frees", async () => {
      const streams = await Promise.all(Array.from({ length: 32 }, () => openStream(bearer())));
      assert.ok(streams.every((stream) => stream.status === 200));
      const refused = await call("/api/events", { headers: bearer() });
      assert.equal(refused.status, 503);
      assert.equal(typeof JSON.parse(refused.body).error, "string");
      streams[0]?.close();
      await waitFor(async () => {
        const retry = await openStream(bearer());
        streams.push(retry);
        return retry.status === 200;
      });
      for (const stream of streams) stream.close();
    });

    it("drops a client that stops reading instead of buffering for it", async () => {
      const stream = await new Promise<{ received: () => number; resume: () => void; closed: Promise<void> }>((resolve, reject) => {
        const req = request({ host: "127.0.0.1", port, path: "/api/events", agent: false, headers: { host: `127.0.0.1:${port}`, ...bearer() } }, (res) => {
          let received = 0;
          res.on("data", (chunk: Buffer) => (received += chunk.length));
          res.pause();
          const closed = new Promise<void>((done) => {
            res.once("close", done);
            res.once("error", () => done());
          });
          resolve({ received: () => received, resume: () => res.resume(), closed });
        });
        req.on("error", () => {});
        req.once("error", reject);
        req.end();
      });
      const reader = await openStream(bearer());
      await reader.next();
      const argv = ["x".repeat(64 * 1024)];
      const events = 200;
      // A client that keeps reading gets every event; the stalled one is cut off.
      for (let i = 0; i < events; i++) {
        service.add(commandRequest({ argv }));
        assert.equal((await reader.next()).event, "added");
      }
      reader.close();
      stream.resume();
      await stream.closed;
      assert.ok(stream.received() < (events * argv[0]!.length) / 2, `received ${stream.received()} bytes`);
    });

    it("ends open streams when the server closes", async () => {
      const stream = await openStream(bearer());
      await stream.next();
      await ui.close();
      await stream.ended;
      assert.equal(service.listenerCount, 0);
      ui = await UiServer.start({ service, port: 0, assetsDir });
    });
  });

  describe("keepalive", () => {
    before(() => mock.timers.enable({ apis: ["setInterval"] }));
    after(() => mock.timers.reset());

    it("sends a keepalive comment every 15 seconds", async () => {
      const stream = await openStream(bearer());
      await stream.next();
      mock.timers.tick(14_999);
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.doesNotMatch(stream.raw(), /keepalive/);
      mock.timers.tick(1);
      await waitFor(async () => stream.raw().endsWith("\n\n: keepalive\n\n"));
      stream.close();
    });
  });

  describe("start", () => {
    it("names the port and the ui.port key when the port is taken", async () => {
      await assert.rejects(UiServer.start({ service, port, assetsDir }), (error: Error & { hint?: string }) => {
        assert.match(`${error.message} ${error.hint}`, new RegExp(`127\\.0\\.0\\.1:${port}.*in use.*ui\\.port`));
        return true;
      });
    });

    it("refuses to start without the built assets", async () => {
      await assert.rejects(UiServer.start({ service, port: 0, assetsDir: join(assetsDir, "missing") }), /index\.html is missing/);
    });

    it("listens on 127.0.0.1 only", () => {
      assert.match(ui.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.match(ui.apiToken, /^[0-9a-f]{64}$/);
    });
  });
});

async function waitFor(condition: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
