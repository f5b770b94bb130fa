/**
 * Audit pacing (guardian/proxy/record-pace.ts): a cloister that floods the proxy gets its new work
 * held back to the audit rate, and every decision still gets its record. The pure bucket runs on
 * a fake clock; the proxy cases run real endpoints on unix sockets, and bound the records only from
 * above (a slow machine writes fewer, never more), so they hold however loaded the machine is.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RecordPace } from "../../src/guardian/proxy/record-pace.js";
import { audited, eventually, openEndpoint, proxySettings, RawClient, requestHead, rules, basic, TOKEN, type TestEndpoint } from "../helpers/egress.js";

function fakeClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 0;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

describe("RecordPace", () => {
  it("gives a burst of turns at once, then one per 1/rate seconds", () => {
    const clock = fakeClock();
    const pace = new RecordPace(() => ({ rate: 10, burst: 3 }), clock.now);
    for (let i = 0; i < 3; i++) {
      assert.equal(pace.tryTurn(), true, `turn ${i + 1} of the burst`);
      pace.spend();
    }
    assert.equal(pace.paced, true);
    assert.equal(pace.tryTurn(), false);
    clock.advance(99);
    assert.equal(pace.tryTurn(), false, "not before 1/rate has passed");
    clock.advance(1);
    assert.equal(pace.tryTurn(), true);
  });

  it("a turn prepays its record: the record that follows costs nothing more", () => {
    const clock = fakeClock();
    const pace = new RecordPace(() => ({ rate: 1, burst: 2 }), clock.now);
    assert.equal(pace.tryTurn(), true);
    pace.spend();
    assert.equal(pace.tryTurn(), true, "one token is left after one turn and its record");
  });

  it("records without a turn go into debt, and no turn is given until the rate has paid it", () => {
    const clock = fakeClock();
    const pace = new RecordPace(() => ({ rate: 10, burst: 5 }), clock.now);
    for (let i = 0; i < 25; i++) pace.spend();
    assert.equal(pace.paced, true);
    clock.advance(2_000);
    assert.equal(pace.paced, true, "20 tokens owed, 20 paid back, none free yet");
    clock.advance(100);
    assert.equal(pace.tryTurn(), true);
  });

  it("refills up to the burst and no further, however long it was quiet", () => {
    const clock = fakeClock();
    const pace = new RecordPace(() => ({ rate: 1000, burst: 2 }), clock.now);
    clock.advance(60_000);
    assert.equal(pace.tryTurn(), true);
    assert.equal(pace.tryTurn(), true);
    assert.equal(pace.tryTurn(), false);
  });

  it("reads its limits on every use: a reload applies to the next turn", () => {
    const clock = fakeClock();
    let limits = { rate: 1, burst: 1 };
    const pace = new RecordPace(() => limits, clock.now);
    assert.equal(pace.tryTurn(), true);
    assert.equal(pace.tryTurn(), false);
    limits = { rate: 1000, burst: 10 };
    clock.advance(5);
    assert.equal(pace.tryTurn(), true);
  });

  it("waiting work goes first come, first served, and none is left waiting when the cloister closes", async () => {
    const pace = new RecordPace(() => ({ rate: 200, burst: 1 }));
    assert.equal(pace.tryTurn(), true);
    const order: number[] = [];
    const turns = [1, 2, 3].map((n) => pace.turn().then(() => order.push(n)));
    assert.equal(pace.tryTurn(), false, "work that comes later queues behind the waiting");
    await Promise.all(turns);
    assert.deepEqual(order, [1, 2, 3]);
    const stuck = new RecordPace(() => ({ rate: 1, burst: 1 }));
    stuck.tryTurn();
    const held = stuck.turn();
    stuck.close();
    await held;
  });
});

/** A CONNECT to a denied host with the token: refused by policy with a 403, one record. */
async function refusedConnect(t: TestEndpoint): Promise<number> {
  const client = await RawClient.open(t.socketPath);
  client.write(requestHead("CONNECT evil.test:443 HTTP/1.1", ["Host: evil.test:443", `Proxy-Authorization: ${basic(TOKEN)}`]));
  const head = await client.readHead();
  client.destroy();
  return head.status;
}

describe("a cloister flooding the proxy", () => {
  it("has its connections held to the audit rate; each one is still answered and audited", async () => {
    const RATE = 40;
    const BURST = 10;
    const t = await openEndpoint({ settings: proxySettings({ audit_rate: RATE, audit_burst: BURST }), deny: rules("evil.test") });
    try {
      const started = performance.now();
      let overshoot = 0;
      const watch = setInterval(() => {
        const allowed = BURST + (RATE * (performance.now() - started)) / 1000;
        overshoot = Math.max(overshoot, t.audit.length - allowed);
      }, 5);
      const statuses = await Promise.all(Array.from({ length: 60 }, () => refusedConnect(t)));
      clearInterval(watch);
      const seconds = (performance.now() - started) / 1000;
      assert.deepEqual(new Set(statuses), new Set([403]), "every connection gets its answer");
      assert.equal(audited(t.audit, "egress", { decision: "denied" }).length, 60, "and its record");
      // An upper bound only: the records never ran ahead of burst + rate × time (with slack for the
      // sampling and the one egress.paced record), and the 50 past the burst took at least 50 / rate seconds.
      assert.ok(overshoot <= 2, `records ran ${overshoot} ahead of the rate`);
      const paced = audited(t.audit, "egress.paced");
      assert.equal(paced.length, 1, "the audit says once that the cloister is being paced");
      assert.match(String(paced[0]?.detail), /outran proxy\.audit_rate \(40 records a second after a burst of 10\)/);
      assert.ok(seconds >= (60 - BURST - 1) / RATE, `60 refusals in ${seconds} s`);
    } finally {
      t.close();
    }
  });

  it("each further request on a kept-alive connection waits its turn too", async () => {
    const t = await openEndpoint({ settings: proxySettings({ audit_rate: 20, audit_burst: 2 }), deny: rules("evil.test") });
    try {
      const client = await RawClient.open(t.socketPath);
      const started = performance.now();
      for (let i = 0; i < 6; i++) {
        client.write(requestHead("GET http://evil.test/ HTTP/1.1", ["Host: evil.test", `Proxy-Authorization: ${basic(TOKEN)}`]));
        assert.equal((await client.readResponse()).status, 403);
      }
      const seconds = (performance.now() - started) / 1000;
      assert.equal(audited(t.audit, "egress", { decision: "denied" }).length, 6);
      assert.ok(seconds >= (6 - 2 - 1) / 20, `6 requests in ${seconds} s: the 4 past the burst were not paced`);
      client.destroy();
    } finally {
      t.close();
    }
  });

  it("connections over the cap while paced are closed unread and audited together, with their count", async () => {
    const t = await openEndpoint({ settings: proxySettings({ audit_rate: 5, audit_burst: 2, max_connections: 4 }), deny: rules("evil.test") });
    const clients: RawClient[] = [];
    try {
      // Two refusals spend the burst; four silent connections then fill the cap, waiting their turn.
      assert.equal(await refusedConnect(t), 403);
      assert.equal(await refusedConnect(t), 403);
      for (let i = 0; i < 4; i++) clients.push(await RawClient.open(t.socketPath));
      await eventually(() => t.endpoint.openConnections === 4, "the cap filled");
      const extra = await Promise.all(Array.from({ length: 30 }, () => RawClient.open(t.socketPath)));
      await Promise.all(extra.map((c) => c.serverDone));
      for (const c of extra) c.destroy();
      await eventually(() => audited(t.audit, "egress", { decision: "over-limit" }).length > 0, "the summary record");
      const overLimit = audited(t.audit, "egress", { decision: "over-limit" });
      const closed = overLimit.reduce((sum, e) => sum + (typeof e.connections === "number" ? e.connections : 1), 0);
      assert.equal(closed, 30, "every connection over the cap is accounted for");
      assert.ok(overLimit.length < 30, `${overLimit.length} records for 30 connections: they were not audited one by one`);
      assert.match(String(overLimit[0]?.detail), /more than 4 connections open; closed unread while the cloister was over proxy\.audit_rate/);
    } finally {
      for (const c of clients) c.destroy();
      t.close();
    }
  });
});
