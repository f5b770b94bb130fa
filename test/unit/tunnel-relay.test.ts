/**
 * The guardian's tunnel relay (native/tunnel-relay.c through src/guardian/proxy/native-relay.ts),
 * on real loopback sockets: a "client" connection and a "server" connection are accepted the way
 * the guardian holds them, handed to the relay, and the far ends check every byte, half-close,
 * reset, idle cut and byte count.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { createServer, connect, type Server, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { loadTunnelRelay, relayTunnel } from "../../src/guardian/proxy/native-relay.js";

let server: Server;
/** Accepted sockets by the port of their far end, and who waits for which: connections pair up by port. */
const accepted = new Map<number, Socket>();
const waiting = new Map<number, (socket: Socket) => void>();

before(async () => {
  server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
    const port = socket.remotePort ?? 0;
    const take = waiting.get(port);
    waiting.delete(port);
    if (take) take(socket);
    else accepted.set(port, socket);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
});
after(() => server.close());

/** One TCP connection: the far end (what a cloister's program or an origin holds) and the near end (the guardian's). */
async function connection(): Promise<{ far: Socket; near: Socket }> {
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("no port");
  const far = connect({ port: address.port, host: "127.0.0.1", allowHalfOpen: true });
  await once(far, "connect");
  const port = far.localPort ?? 0;
  const near = accepted.get(port) ?? (await new Promise<Socket>((resolve) => waiting.set(port, resolve)));
  accepted.delete(port);
  return { far, near };
}

/** Everything a socket receives until its end. */
async function received(socket: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on("data", (chunk: Buffer) => chunks.push(chunk));
  await once(socket, "end");
  return Buffer.concat(chunks);
}

const sha = (buffer: Buffer) => createHash("sha256").update(buffer).digest("hex");

describe("the guardian's tunnel relay", () => {
  it("delivers what either side sent before the hand-over (pipelined request bytes, a server's banner) first, and counts it", async () => {
    const client = await connection();
    const origin = await connection();
    origin.far.write("SSH-2.0-banner\r\n");
    client.far.write("pipelined");
    // node reads ahead on the guardian's side: those bytes must go along, not be lost.
    client.near.resume();
    client.near.pause();
    await new Promise((resolve) => setTimeout(resolve, 50));
    const relayed = await relayTunnel(client.near, origin.near, 10_000, Buffer.from("early:"));
    const atOrigin = received(origin.far);
    const atClient = received(client.far);
    client.far.end("-last");
    origin.far.end("bye");
    assert.equal((await atOrigin).toString(), "early:pipelined-last");
    assert.equal((await atClient).toString(), "SSH-2.0-banner\r\nbye");
    const result = await relayed.done;
    assert.equal(result.end, "closed");
    assert.equal(result.bytesUp, "early:pipelined-last".length);
    assert.equal(result.bytesDown, "SSH-2.0-banner\r\nbye".length);
  });

  it("moves 32 MiB each way at once to a reader that takes its time, intact and counted exactly", async () => {
    const client = await connection();
    const origin = await connection();
    const up = randomBytes(32 << 20);
    const down = randomBytes(32 << 20);
    const relayed = await relayTunnel(client.near, origin.near, 10_000, Buffer.alloc(0));
    const atOrigin = received(origin.far);
    // The client reads slowly at first: the relay must hold back, not buffer without bound.
    client.far.pause();
    const atClient = new Promise<Buffer>((resolve) =>
      setTimeout(() => {
        resolve(received(client.far));
        client.far.resume(); // a 'data' listener alone does not restart a paused stream
      }, 300),
    );
    client.far.end(up);
    origin.far.end(down);
    assert.equal(sha(await atOrigin), sha(up));
    assert.equal(sha(await atClient), sha(down));
    const result = await relayed.done;
    assert.deepEqual([result.bytesUp, result.bytesDown, result.end], [up.length, down.length, "closed"]);
  });

  it("passes a half-close on both ways independently", async () => {
    const client = await connection();
    const origin = await connection();
    const relayed = await relayTunnel(client.near, origin.near, 10_000, Buffer.alloc(0));
    const atOrigin = received(origin.far);
    client.far.end("question");
    assert.equal((await atOrigin).toString(), "question");
    // The client has finished sending; the answer still comes back.
    const atClient = received(client.far);
    origin.far.end("answer");
    assert.equal((await atClient).toString(), "answer");
    assert.equal((await relayed.done).end, "closed");
  });

  it("ends as an error when the origin resets, and the client's connection closes", async () => {
    const client = await connection();
    const origin = await connection();
    const relayed = await relayTunnel(client.near, origin.near, 10_000, Buffer.alloc(0));
    client.far.on("error", () => undefined);
    const ended = once(client.far, "end");
    client.far.resume();
    client.far.write("x");
    await once(origin.far, "data");
    origin.far.resetAndDestroy();
    await ended;
    assert.equal((await relayed.done).end, "error");
  });

  it("cuts a tunnel nothing moves through for the idle timeout, and not one that keeps moving", async () => {
    const quiet = { client: await connection(), origin: await connection() };
    const busy = { client: await connection(), origin: await connection() };
    const quietRelay = await relayTunnel(quiet.client.near, quiet.origin.near, 150, Buffer.alloc(0));
    const busyRelay = await relayTunnel(busy.client.near, busy.origin.near, 150, Buffer.alloc(0));
    busy.origin.far.resume();
    const ticks = setInterval(() => busy.client.far.write("."), 30);
    const quietEnd = await quietRelay.done;
    assert.equal(quietEnd.end, "idle");
    assert.ok(quietEnd.durationMs >= 140, `cut after ${quietEnd.durationMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    clearInterval(ticks);
    assert.equal(busy.client.far.destroyed, false, "a tunnel with traffic was cut");
    assert.equal((await busyRelay.done).end, "idle"); // and once the traffic stops, it goes too
  });

  it("ends at once when cut, closing both connections", async () => {
    const client = await connection();
    const origin = await connection();
    const relayed = await relayTunnel(client.near, origin.near, 60_000, Buffer.alloc(0));
    const closed = [once(client.far, "end"), once(origin.far, "end")];
    client.far.resume();
    origin.far.resume();
    relayed.cut();
    assert.equal((await relayed.done).end, "closed");
    await Promise.all(closed);
  });

  it("holds many tunnels at once, each with its own bytes", async () => {
    const pairs = await Promise.all(Array.from({ length: 200 }, async () => ({ client: await connection(), origin: await connection() })));
    const relays = await Promise.all(pairs.map((p) => relayTunnel(p.client.near, p.origin.near, 10_000, Buffer.alloc(0))));
    const echoed = pairs.map((p, i) => {
      p.origin.far.on("data", (chunk: Buffer) => p.origin.far.write(chunk));
      p.origin.far.on("end", () => p.origin.far.end());
      const back = received(p.client.far);
      p.client.far.end(`tunnel ${i}`);
      return back;
    });
    assert.deepEqual((await Promise.all(echoed)).map(String), pairs.map((_, i) => `tunnel ${i}`));
    assert.ok((await Promise.all(relays.map((r) => r.done))).every((r) => r.end === "closed"));
  });

  it("refuses bad arguments and a second init with an error, not a crash", () => {
    const relay = loadTunnelRelay();
    assert.throws(() => relay.start(-1, 0, 1000), TypeError);
    assert.throws(() => relay.start(0, 0, 0), TypeError);
    assert.throws(() => relay.start(0, 0, 1000, "not a buffer" as unknown as Buffer), TypeError);
    assert.throws(() => relay.init(() => undefined), /called already/);
    assert.throws(() => relay.cut("x" as unknown as number), TypeError);
  });
});
