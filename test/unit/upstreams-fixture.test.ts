import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { Agent, request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest, type RequestOptions } from "node:https";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import {
  createTestCa,
  DEFAULT_UPSTREAM_BODY,
  startHttpsUpstream,
  startHttpUpstream,
  startTcpEcho,
  withUpstreams,
  type TestCa,
} from "../fixtures/upstreams.js";

interface Reply {
  status: number;
  body: string;
}

/** Sends one request (node's own http or https client) and reads the whole reply. */
function send(client: typeof httpRequest | typeof httpsRequest, options: RequestOptions, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = client(options, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** A raw TCP client: writes `data` (one byte per char), ends its side, collects everything until the server ends. */
function talk(port: number, data: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("end", () => resolve(Buffer.concat(chunks).toString("latin1")));
    socket.on("error", reject);
    socket.end(Buffer.from(data, "latin1"));
  });
}

describe("fixture: HTTP upstream", () => {
  it("records every request on a kept-alive connection and answers the default body", async () => {
    const upstream = await startHttpUpstream();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const base = { host: upstream.host, port: upstream.port, agent, headers: { host: "web.example.test" } };
      assert.deepEqual(await send(httpRequest, { ...base, path: "/first" }), { status: 200, body: DEFAULT_UPSTREAM_BODY });
      assert.deepEqual(await send(httpRequest, { ...base, method: "POST", path: "/submit?x=1" }, "payload"), { status: 200, body: DEFAULT_UPSTREAM_BODY });
      assert.equal(upstream.connections, 1, "both requests shared one connection");
      assert.deepEqual(
        upstream.requests.map((r) => [r.method, r.url, r.headers.host, r.body]),
        [
          ["GET", "/first", "web.example.test", ""],
          ["POST", "/submit?x=1", "web.example.test", "payload"],
        ],
      );
      const raw = upstream.received.toString("latin1");
      assert.match(raw, /^GET \/first HTTP\/1\.1\r\n/);
      assert.match(raw, /POST \/submit\?x=1 HTTP\/1\.1\r\n[^]*\r\n\r\npayload$/);
    } finally {
      agent.destroy();
      await upstream.close();
    }
  });

  it("answers the configured status and body, or hands the request to a handler", async () => {
    await withUpstreams(async (track) => {
      const fixed = await track(startHttpUpstream({ status: 418, body: "teapot\n" }));
      assert.deepEqual(await send(httpRequest, { host: fixed.host, port: fixed.port, path: "/" }), { status: 418, body: "teapot\n" });
      const custom = await track(
        startHttpUpstream({
          handler: (req, res, body) => {
            res.writeHead(201, { "content-type": "text/plain" });
            res.end(`${req.method} ${req.url} ${body}`);
          },
        }),
      );
      assert.deepEqual(await send(httpRequest, { host: custom.host, port: custom.port, method: "PUT", path: "/thing" }, "data"), { status: 201, body: "PUT /thing data" });
      assert.equal(custom.requests[0]?.body, "data");
    });
  });

  it("records what a proxy might forward without a Host header instead of refusing it", async () => {
    await withUpstreams(async (track) => {
      const upstream = await track(startHttpUpstream());
      const reply = await talk(upstream.port, "GET /bare HTTP/1.1\r\nConnection: close\r\n\r\n");
      assert.match(reply, /^HTTP\/1\.1 200 /);
      assert.equal(upstream.requests[0]?.url, "/bare");
      assert.equal(upstream.requests[0]?.headers.host, undefined);
    });
  });
});

describe("fixture: test CA and HTTPS upstream", () => {
  let ca: TestCa;
  before(() => {
    ca = createTestCa();
  });
  after(() => rmSync(ca.dir, { recursive: true, force: true }));

  it("makes a CA certificate and leaf certificates with DNS and IP names", () => {
    const caCert = new X509Certificate(ca.certPem);
    assert.equal(caCert.ca, true);
    assert.equal(readFileSync(ca.certFile, "utf8"), ca.certPem);
    const leaf = new X509Certificate(ca.issue(["api.example.test", "*.wild.example.test", "127.0.0.1", "::1"]).certPem);
    assert.equal(leaf.ca, false);
    assert.ok(leaf.checkIssued(caCert) && leaf.verify(caCert.publicKey), "signed by the test CA");
    assert.equal(leaf.subjectAltName, "DNS:api.example.test, DNS:*.wild.example.test, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1");
    assert.equal(leaf.checkHost("x.wild.example.test"), "*.wild.example.test");
    assert.equal(leaf.checkHost("other.example.test"), undefined);
  });

  it("refuses names that would smuggle text into the openssl config", () => {
    for (const name of ["a.test, DNS:evil.test", "a.test\nbasicConstraints=CA:TRUE", "", "-a.test", "a b"]) {
      assert.throws(() => ca.issue([name]), /neither a DNS name nor an IP address/, JSON.stringify(name));
    }
  });

  it("serves HTTPS that verifies against the test CA for the certificate's names", async () => {
    await withUpstreams(async (track) => {
      const upstream = await track(startHttpsUpstream(ca, ["api.example.test", "127.0.0.1"], { body: "secure\n" }));
      const base = { host: upstream.host, port: upstream.port, ca: ca.certPem, agent: false as const };
      const byName = await send(httpsRequest, { ...base, servername: "api.example.test", path: "/v1", headers: { host: "api.example.test" } });
      assert.deepEqual(byName, { status: 200, body: "secure\n" });
      // An IP host: node verifies against the IP SAN and sends no SNI.
      assert.deepEqual(await send(httpsRequest, { ...base, path: "/by-ip" }), { status: 200, body: "secure\n" });
      assert.deepEqual(upstream.servernames, ["api.example.test", false]);
      assert.deepEqual(upstream.requests.map((r) => [r.url, r.headers.host]), [["/v1", "api.example.test"], ["/by-ip", `127.0.0.1:${upstream.port}`]]);
      assert.match(upstream.received.toString("latin1"), /^GET \/v1 HTTP\/1\.1\r\n/, "received holds the decrypted bytes");
    });
  });

  it("fails verification for another name or without the CA, after the TCP connection was counted", async () => {
    await withUpstreams(async (track) => {
      const upstream = await track(startHttpsUpstream(ca, ["api.example.test"]));
      const base = { host: upstream.host, port: upstream.port, path: "/", agent: false as const };
      await assert.rejects(send(httpsRequest, { ...base, ca: ca.certPem, servername: "other.example.test" }), { code: "ERR_TLS_CERT_ALTNAME_INVALID" });
      await assert.rejects(send(httpsRequest, { ...base, servername: "api.example.test" }), { code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" });
      assert.equal(upstream.connections, 2);
      assert.equal(upstream.requests.length, 0);
      assert.equal(upstream.received.length, 0);
    });
  });
});

describe("fixture: TCP echo", () => {
  it("sends its banner, echoes and records every byte, and counts connections", async () => {
    await withUpstreams(async (track) => {
      const echo = await track(startTcpEcho({ banner: "SSH-2.0-fake\r\n" }));
      assert.equal(await talk(echo.port, "SSH-2.0-client\r\n"), "SSH-2.0-fake\r\nSSH-2.0-client\r\n");
      assert.equal(await talk(echo.port, "\x00\xff binary"), "SSH-2.0-fake\r\n\x00\xff binary");
      assert.equal(echo.connections, 2);
      assert.equal(echo.received.toString("latin1"), "SSH-2.0-client\r\n\x00\xff binary");
      assert.deepEqual(echo.requests, []);
    });
  });

  it("echoes without a banner", async () => {
    await withUpstreams(async (track) => {
      const echo = await track(startTcpEcho());
      assert.equal(await talk(echo.port, "ping"), "ping");
    });
  });
});

describe("fixture: withUpstreams", () => {
  it("closes every upstream it started, also when the body throws", async () => {
    let port = 0;
    await assert.rejects(
      withUpstreams(async (track) => {
        port = (await track(startTcpEcho())).port;
        assert.equal(await talk(port, "x"), "x");
        throw new Error("test body failed");
      }),
      /test body failed/,
    );
    await assert.rejects(talk(port, "y"), { code: "ECONNREFUSED" });
  });

  it("closes an upstream even while a client keeps a connection open", async () => {
    const upstream = await startHttpUpstream();
    const agent = new Agent({ keepAlive: true });
    await send(httpRequest, { host: upstream.host, port: upstream.port, path: "/", agent });
    await upstream.close(); // would hang on the idle kept-alive socket if close() did not destroy it
    agent.destroy();
  });
});
