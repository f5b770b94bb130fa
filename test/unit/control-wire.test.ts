import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { CloisterPaths } from "../../src/config/paths.js";
import { CloisterError } from "../../src/errors.js";
import { guardianCall } from "../../src/guardian/control-client.js";
import { decodeControlAnswer, encodeControlRequest, MAX_ANSWER_BYTES } from "../../src/guardian/control-wire.js";

const answer = (text: string) => decodeControlAnswer(Buffer.from(text, "latin1"));

describe("control wire: the request", () => {
  it("is one HTTP/1.1 request that asks the server to close, with the JSON body's length in bytes", () => {
    assert.equal(
      encodeControlRequest("POST", "/v1/cloisters", '{"name":"é"}'),
      'POST /v1/cloisters HTTP/1.1\r\nHost: guardian\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{"name":"é"}',
    );
    assert.equal(encodeControlRequest("GET", "/v1/status"), "GET /v1/status HTTP/1.1\r\nHost: guardian\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
  });

  it("refuses a path or method that could split the request (CR, LF, space, non-ASCII)", () => {
    for (const path of ["/v1/x\r\nX-Evil: 1", "/v1/a b", "/v1/é", "v1/status", ""]) assert.throws(() => encodeControlRequest("GET", path), /invalid control request/, path);
    assert.throws(() => encodeControlRequest("GET /x HTTP/1.1\r\n", "/v1/status"), /invalid control request/);
  });
});

describe("control wire: the answer", () => {
  it("takes exactly Content-Length bytes of body", () => {
    assert.deepEqual(answer('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}'), { status: 200, body: '{"a":1}' });
    assert.deepEqual(answer("HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}trailing"), { status: 404, body: "{}" });
  });

  it("decodes a chunked body (what node's server sends without a Content-Length, e.g. an older guardian)", () => {
    const raw = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n3;ext=1\r\n:1}\r\n0\r\n\r\n';
    assert.deepEqual(answer(raw), { status: 200, body: '{"a":1}' });
  });

  it("keeps UTF-8 whole across chunk boundaries", () => {
    const body = Buffer.from('{"name":"é"}');
    const split = 10; // inside the two bytes of é
    const raw = Buffer.concat([
      Buffer.from(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${split.toString(16)}\r\n`),
      body.subarray(0, split),
      Buffer.from(`\r\n${(body.length - split).toString(16)}\r\n`),
      body.subarray(split),
      Buffer.from("\r\n0\r\n\r\n"),
    ]);
    assert.equal(decodeControlAnswer(raw).body, '{"name":"é"}');
  });

  it("reads to the end when there is neither (the server closed after it)", () => {
    assert.deepEqual(answer("HTTP/1.0 200 OK\r\n\r\n{}"), { status: 200, body: "{}" });
  });

  it("names what is wrong with a broken answer", () => {
    const cases: [string, RegExp][] = [
      ["", /ended before its headers/],
      ["HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", /ended before its headers/],
      ["SSH-2.0-OpenSSH\r\n\r\n", /status line is "SSH-2.0-OpenSSH"/],
      ["HTTP/1.1 99 Odd\r\n\r\n", /status line/],
      ["HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", /header line is "no colon here"/],
      ["HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", /Content-Length is "-1"/],
      ["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", /cut short \(2 of 10 bytes\)/],
      ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{}", /cut short inside its chunked body/],
      ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", /chunk size is "zz"/],
      ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{}\r\n0\r\n\r\n", /does not end where its size says/],
      ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n", /cut short inside its chunked body/],
    ];
    for (const [raw, why] of cases) assert.throws(() => answer(raw), why, JSON.stringify(raw));
  });
});

describe("control wire: guardianCall against real servers on a unix socket", () => {
  let dir: string;
  let servers: { close(): unknown }[] = [];
  const pathsFor = (socket: string) => ({ guardianSocket: join(dir, socket) }) as CloisterPaths;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "cw-"));
    const listen = (server: Server | ReturnType<typeof createNetServer>, name: string) =>
      new Promise<void>((resolve) => {
        servers.push(server);
        server.listen(join(dir, name), () => resolve());
      });
    // node's HTTP server, answering as the guardian does (or did: chunked) and echoing what it got.
    await listen(
      createServer((req, res) => {
        let body = "";
        req.setEncoding("utf8");
        req.on("data", (chunk: string) => (body += chunk));
        req.on("end", () => {
          const echo = JSON.stringify({ method: req.method, url: req.url, type: req.headers["content-type"] ?? null, body });
          if (req.url === "/chunked") {
            res.writeHead(200, { "content-type": "application/json" });
            res.write(echo.slice(0, 5));
            res.end(echo.slice(5));
          } else if (req.url === "/refused") {
            res.writeHead(400, { "content-type": "application/json" });
            res.end(JSON.stringify({ error: "no such cloister", hint: "see `cloister list`" }));
          } else {
            res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(echo) });
            res.end(echo);
          }
        });
      }),
      "http.sock",
    );
    // A peer that hangs up half-way through its answer, and one that is not HTTP at all.
    await listen(createNetServer((socket) => socket.end("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")), "short.sock");
    await listen(createNetServer((socket) => socket.end("hello\r\n\r\n")), "junk.sock");
    // A guardian that takes the request and never answers (stopped, or hung).
    await listen(createNetServer((socket) => socket.on("error", () => undefined)), "silent.sock");
    // One that never stops talking: the answer is cut off at MAX_ANSWER_BYTES, not buffered on.
    await listen(
      createNetServer((socket) => {
        socket.on("error", () => undefined);
        const chunk = Buffer.alloc(1 << 20, 0x20);
        const more = () => {
          while (!socket.destroyed && socket.write(chunk));
          if (!socket.destroyed) socket.once("drain", more);
        };
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${MAX_ANSWER_BYTES * 2}\r\n\r\n`);
        more();
      }),
      "huge.sock",
    );
  });
  after(() => {
    for (const server of servers) server.close();
    servers = [];
    rmSync(dir, { recursive: true, force: true });
  });

  it("sends the JSON body, says when the request is out, and parses the answer", async () => {
    let sent = false;
    const got = await guardianCall<Record<string, unknown>>(pathsFor("http.sock"), "POST", "/v1/cloisters", { name: "p-run-1" }, { onSent: () => (sent = true) });
    assert.equal(sent, true);
    assert.deepEqual(got, { method: "POST", url: "/v1/cloisters", type: "application/json", body: '{"name":"p-run-1"}' });
    assert.deepEqual(await guardianCall(pathsFor("http.sock"), "GET", "/v1/status"), { method: "GET", url: "/v1/status", type: null, body: "" });
  });

  it("reads a chunked answer", async () => {
    assert.deepEqual(await guardianCall(pathsFor("http.sock"), "GET", "/chunked"), { method: "GET", url: "/chunked", type: null, body: "" });
  });

  it("turns an error status into a CloisterError with the guardian's message and hint", async () => {
    await assert.rejects(guardianCall(pathsFor("http.sock"), "GET", "/refused"), (error: unknown) => {
      assert.ok(error instanceof CloisterError);
      assert.equal(error.oneLine(), "no such cloister (see `cloister list`)");
      return true;
    });
  });

  it("fails with the socket's own error code when nothing listens (the caller then starts a guardian)", async () => {
    await assert.rejects(guardianCall(pathsFor("none.sock"), "GET", "/v1/status"), { code: "ENOENT" });
  });

  it("fails clearly on an answer cut short or one that is not HTTP", async () => {
    await assert.rejects(guardianCall(pathsFor("short.sock"), "GET", "/v1/status"), /cut short \(1 of 100 bytes\)/);
    await assert.rejects(guardianCall(pathsFor("junk.sock"), "GET", "/v1/status"), /ended before its headers|status line is "hello"/);
  });

  it("gives up on a guardian that does not answer by the deadline, saying so (no pid known here: none is named)", async () => {
    const paths = { ...pathsFor("silent.sock"), guardianInfoFile: join(dir, "none.json"), guardianLog: join(dir, "guardian.log") };
    await assert.rejects(guardianCall(paths, "GET", "/v1/status", undefined, { deadlineMs: 50 }), (error: unknown) => {
      assert.ok(error instanceof CloisterError);
      assert.equal(error.oneLine(), `the guardian did not answer within 50ms (see its log, ${join(dir, "guardian.log")})`);
      return true;
    });
  });

  it("ends the wait when its signal aborts, with the signal's reason", async () => {
    const controller = new AbortController();
    const call = guardianCall(pathsFor("silent.sock"), "POST", "/v1/cloisters", {}, { signal: controller.signal });
    controller.abort(new CloisterError("interrupted (SIGTERM) while starting"));
    await assert.rejects(call, /^CloisterError: interrupted \(SIGTERM\) while starting$/);
    await assert.rejects(guardianCall(pathsFor("http.sock"), "GET", "/v1/status", undefined, { signal: controller.signal }), /interrupted/, "aborted before it starts: not sent");
  });

  it("refuses an answer larger than MAX_ANSWER_BYTES instead of buffering it", async () => {
    await assert.rejects(guardianCall(pathsFor("huge.sock"), "GET", "/v1/status"), /answer to GET \/v1\/status is larger than/);
  });
});
