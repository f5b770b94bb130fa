/**
 * The proxy's side of approvals, in process: an unlisted destination holds the CONNECT, HTTP or
 * SOCKS request on a real endpoint while a real approval queue waits for an answer; the answer
 * releases it (or refuses it with a 403 that says who refused), and a client that leaves withdraws
 * the question. The destination sees nothing until a human allowed it.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ApprovalQueue, type DecisionKeeper } from "../../src/guardian/approvals/queue.js";
import type { Pending } from "../../src/guardian/approvals/types.js";
import { SocksReply } from "../../src/guardian/proxy/socks5.js";
import { approvalRule, offeredWildcard } from "../../src/policy/approval-rules.js";
import { startHttpUpstream, startTcpEcho, type Upstream } from "../fixtures/upstreams.js";
import { basic, domain, eventually, openEndpoint, proxySettings, RawClient, requestHead, socksConnect, TOKEN, type TestEndpoint } from "../helpers/egress.js";

const AUTH = `Proxy-Authorization: ${basic(TOKEN)}`;
const keeper: DecisionKeeper = { keep: async () => null, revoke: async () => undefined, recheck: () => undefined };

let web: Upstream;
let echo: Upstream;
let queue: ApprovalQueue;
let asking: TestEndpoint;
let refusing: TestEndpoint;

before(async () => {
  [web, echo] = await Promise.all([startHttpUpstream(), startTcpEcho()]);
  queue = new ApprovalQueue(keeper, () => undefined);
  const overrides = { "web.test": "127.0.0.1", "echo.test": "127.0.0.1" };
  asking = await openEndpoint({
    overrides,
    settings: proxySettings({ unlisted: "ask", approval_timeout: 30_000 }),
    ask: (host, port, signal) =>
      queue.askDomain({ cloister: "c1", project: "proj", branch: null, host: host.kind === "name" ? host.name : host.address, port, rule: approvalRule(host, port), wildcard: offeredWildcard(host, port) }, 30_000, signal),
  });
  refusing = await openEndpoint({ overrides, settings: proxySettings({ unlisted: "deny" }), ask: () => assert.fail("asked although unlisted is deny") });
});

after(async () => {
  queue.cancelAll();
  asking.close();
  refusing.close();
  await Promise.all([web.close(), echo.close()]);
});

async function held(host: string): Promise<Pending> {
  let found: Pending | undefined;
  await eventually(() => (found = queue.pending().find((p) => p.kind === "domain" && p.host === host)) !== undefined, `a question about ${host}`);
  return found as Pending;
}

describe("unlisted destinations held for a human", () => {
  it("CONNECT waits, then tunnels once allowed; the destination saw nothing before", async () => {
    const client = await RawClient.open(asking.socketPath);
    client.write(requestHead(`CONNECT echo.test:${echo.port} HTTP/1.1`, [`Host: echo.test:${echo.port}`, AUTH]));
    const request = await held("echo.test");
    assert.equal(echo.connections, 0);
    await queue.answer(request.id, { verdict: "allow", scope: "once", by: "test" });
    const head = await client.readHead();
    assert.equal(head.status, 200);
    client.write("ping\n");
    await eventually(() => echo.received.toString().includes("ping"), "the tunnel to carry data");
    client.destroy();
    const event = asking.audit.find((e) => e.type === "egress" && e.host === "echo.test");
    assert.equal(event?.decision, "allow");
    assert.equal(event?.approvalScope, "once");
    assert.equal(event?.approvedBy, "test");
  });

  it("plain HTTP waits, and a denial is a 403 that says a human denied it", async () => {
    const before = web.requests.length;
    const client = await RawClient.open(asking.socketPath);
    client.write(requestHead(`GET http://web.test:${web.port}/held HTTP/1.1`, [`Host: web.test:${web.port}`, AUTH]));
    await queue.answer((await held("web.test")).id, { verdict: "deny", scope: "once", by: "ui" });
    const response = await client.readResponse();
    assert.equal(response.status, 403);
    assert.match(response.body.toString(), /egress to web\.test:\d+ refused: it was denied by a human \(ui, scope once\)/);
    assert.equal(web.requests.length, before);
    client.destroy();
  });

  it("SOCKS5 waits too and succeeds once allowed", async () => {
    const outcome = socksConnect(asking.socketPath, { address: domain("echo.test"), port: echo.port });
    await queue.answer((await held("echo.test")).id, { verdict: "allow", scope: "once", by: "test" });
    const { reply, client } = await outcome;
    assert.equal(reply?.reply, SocksReply.Succeeded);
    client.destroy();
  });

  it("a plain HTTP client that gives up withdraws its question", async () => {
    const client = await RawClient.open(asking.socketPath);
    client.write(requestHead(`GET http://web.test:${web.port}/gone HTTP/1.1`, [`Host: web.test:${web.port}`, AUTH]));
    await held("web.test");
    client.destroy();
    await eventually(() => queue.pending().length === 0, "the question to be withdrawn");
  });

  it("a non-public IP literal is never put to a human (an approval would open the host's own services)", async () => {
    for (const target of [`127.0.0.1:${web.port}`, "10.0.0.5:80", "[::1]:9999", "169.254.169.254:80"]) {
      const client = await RawClient.open(asking.socketPath);
      client.write(requestHead(`CONNECT ${target} HTTP/1.1`, [`Host: ${target}`, AUTH]));
      const head = await client.readHead();
      assert.equal(head.status, 403, target);
      assert.deepEqual(queue.pending(), [], `${target} was asked`);
      client.destroy();
    }
    // The 403 says so, and its remedy is the deliberate opt-in (QA: `cloister allow 169.254.169.254:80`).
    const plain = await RawClient.open(asking.socketPath);
    plain.write(requestHead("GET http://169.254.169.254/latest/meta-data/ HTTP/1.1", ["Host: 169.254.169.254", AUTH]));
    const refused = await plain.readResponse();
    assert.equal(refused.status, 403);
    assert.match(refused.body.toString(), /169\.254\.169\.254 is not a public address \(metadata\), and such an address is never put to a human.*`--allow-private 169\.254\.169\.254:80`/);
    assert.deepEqual(queue.pending(), []);
    plain.destroy();
    // A public address is a destination like any name: it is asked about.
    const client = await RawClient.open(asking.socketPath);
    client.write(requestHead("CONNECT 203.0.113.7:443 HTTP/1.1", ["Host: 203.0.113.7:443", AUTH]));
    await eventually(() => queue.pending().some((p) => p.kind === "domain" && p.host === "203.0.113.7"), "a question about 203.0.113.7");
    client.destroy();
    queue.cancelAll();
  });

  it("with unlisted: deny nothing is asked and the 403 says how to allow the host", async () => {
    const client = await RawClient.open(refusing.socketPath);
    client.write(requestHead(`GET http://web.test:${web.port}/x HTTP/1.1`, [`Host: web.test:${web.port}`, AUTH]));
    const response = await client.readResponse();
    assert.equal(response.status, 403);
    assert.match(response.body.toString(), /not on any allowlist.*cloister allow web\.test:\d+/);
    client.destroy();
  });
});
