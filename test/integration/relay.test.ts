/**
 * `cloister-init relay PORT PATH`, the cloister's network bridge, run directly on the host: it
 * needs no namespace. The test plays both the client (TCP to 127.0.0.1:PORT) and the guardian (a
 * node unix socket server at PATH). No timing assertions: only bytes, ends, closes and processes.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { REPO_ROOT } from "../helpers/cloister.js";
import { hostTree, readOr, waitGone } from "../helpers/host-processes.js";
import { freePort } from "../helpers/net-sinks.js";

// RELAY_TEST_BIN runs the suite against another build (e.g. one with -fsanitize=address,undefined).
const BIN = process.env.RELAY_TEST_BIN ?? join(REPO_ROOT, "native", "build", "cloister-init");
const MiB = 1024 * 1024;

// ---------------------------------------------------------------- helpers

interface Relay {
  proc: ChildProcess;
  port: number;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

interface Guardian {
  server: Server;
  /** Every connection the guardian accepted, in order. */
  accepted: Socket[];
  close: () => Promise<void>;
}

const relays: Relay[] = [];
const guardians: Guardian[] = [];
let dir = "";

const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function tryConnect(port: number, allowHalfOpen = true): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port, allowHalfOpen });
    socket.once("connect", () => {
      socket.off("error", reject);
      resolve(socket);
    });
    socket.once("error", reject);
  });
}

/** Whether something listens on 127.0.0.1:port, from /proc/net/tcp (state 0A = LISTEN). Asking
 * this way makes no connection, which would reach the guardian and disturb what a test counts. */
function listening(port: number): boolean {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  return readOr("/proc/net/tcp")
    .split("\n")
    .some((line) => {
      const f = line.trim().split(/\s+/);
      return f[1] === local && f[3] === "0A";
    });
}

/** Starts the relay and waits until it listens. */
async function startRelay(socketPath: string, port?: number): Promise<Relay> {
  const p = port ?? (await freePort());
  const proc = spawn(BIN, ["relay", String(p), socketPath], { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  proc.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const relay: Relay = { proc, port: p, stderr: () => err, exited };
  relays.push(relay);
  for (let i = 0; i < 400 && !listening(p); i++) {
    if (proc.exitCode !== null) break;
    await sleep(25);
  }
  assert.ok(listening(p), `relay not listening (exit ${proc.exitCode}): ${err}`);
  return relay;
}

/** A stand-in for the guardian: a unix socket server; `onConnection` decides what it does. */
async function startGuardian(path: string, onConnection: (s: Socket) => void): Promise<Guardian> {
  rmSync(path, { force: true });
  const accepted: Socket[] = [];
  const server = createServer({ allowHalfOpen: true }, (s) => {
    accepted.push(s);
    s.on("error", () => undefined); // resets are part of several tests
    onConnection(s);
  });
  server.maxConnections = 100_000;
  await new Promise<void>((resolve) => server.listen({ path, backlog: 4096 }, resolve));
  const g: Guardian = {
    server,
    accepted,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of accepted) s.destroy();
        server.close(() => resolve());
      }),
  };
  guardians.push(g);
  return g;
}

/** Everything the socket receives until its end; resolves on 'end' or 'close', whichever is first.
 * (A socket nobody reads still reads ahead, and emits 'end' at once if nothing came before EOF.) */
function collect(socket: Socket): Promise<Buffer> {
  return new Promise((resolve) => {
    if (socket.readableEnded || socket.destroyed) return resolve(Buffer.alloc(0));
    const chunks: Buffer[] = [];
    socket.on("data", (d: Buffer) => chunks.push(d));
    const done = () => resolve(Buffer.concat(chunks));
    socket.once("end", done);
    socket.once("close", done);
    socket.on("error", () => undefined);
  });
}

function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve();
    socket.once("close", () => resolve());
  });
}

/** Open fds of a process (for leak checks: the relay must be back where it started). */
function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

async function waitFds(pid: number, expected: number, what: string): Promise<void> {
  for (let i = 0; i < 400 && fdCount(pid) !== expected; i++) await sleep(25);
  assert.equal(fdCount(pid), expected, `relay fds after ${what}`);
}

/** "VmRSS 1234 kB, Pss 567 kB" for diagnostics. */
function memory(pid: number): string {
  const rss = /VmRSS:\s+(\d+) kB/.exec(readOr(`/proc/${pid}/status`))?.[1];
  const pss = /Pss:\s+(\d+) kB/.exec(readOr(`/proc/${pid}/smaps_rollup`))?.[1];
  return `RSS ${rss ?? "?"} kB, PSS ${pss ?? "?"} kB`;
}

function rssKb(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readOr(`/proc/${pid}/status`))?.[1] ?? NaN);
}

// ---------------------------------------------------------------- tests

describe("cloister-init relay", () => {
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "cloister-relay-test-"));
  });

  afterEach(async () => {
    for (const g of guardians.splice(0)) await g.close();
    for (const r of relays.splice(0)) {
      const wasRunning = r.proc.exitCode === null && r.proc.signalCode === null;
      r.proc.kill("SIGKILL");
      await r.exited;
      // It has nothing to say while it works (a sanitizer build would report here).
      assert.equal(r.stderr(), "", "relay stderr");
      assert.ok(wasRunning, "the relay was still running at the end of the test");
    }
  });

  after(() => rmSync(dir, { recursive: true, force: true }));

  it("relays 1 MiB of random bytes each way, at the same time, intact", async () => {
    const path = join(dir, "both.sock");
    const up = randomBytes(MiB);
    const down = randomBytes(MiB);
    let guardianGot: Promise<Buffer> | undefined;
    await startGuardian(path, (s) => {
      guardianGot = collect(s);
      s.end(down);
    });
    const relay = await startRelay(path);
    const baseline = fdCount(relay.proc.pid as number);

    const client = await tryConnect(relay.port);
    const clientGot = collect(client);
    client.end(up);
    assert.equal(sha(await clientGot), sha(down), "guardian -> client");
    assert.ok(guardianGot);
    assert.equal(sha(await guardianGot), sha(up), "client -> guardian");
    client.destroy();
    await waitFds(relay.proc.pid as number, baseline, "the connection ended");
  });

  it("passes a half-close on: the client stops sending, the guardian sees the end and still replies", async () => {
    const path = join(dir, "half.sock");
    const events: string[] = [];
    await startGuardian(path, (s) => {
      const chunks: Buffer[] = [];
      s.on("data", (d: Buffer) => chunks.push(d));
      s.once("end", () => {
        events.push(`guardian end after ${Buffer.concat(chunks).toString()}`);
        // Still writable after the client's half-close; the reply is spread over a moment.
        s.write("pong-1 ");
        setTimeout(() => s.end("pong-2"), 100);
      });
    });
    const relay = await startRelay(path);
    const client = await tryConnect(relay.port);
    const got = collect(client);
    client.end("ping");
    assert.equal((await got).toString(), "pong-1 pong-2");
    assert.deepEqual(events, ["guardian end after ping"]);
  });

  it("the other way round: the guardian ends its side, the client can still send, then both close", async () => {
    const path = join(dir, "half2.sock");
    let guardianGot: Promise<Buffer> | undefined;
    await startGuardian(path, (s) => {
      guardianGot = collect(s);
      s.end("bye");
    });
    const relay = await startRelay(path);
    const baseline = fdCount(relay.proc.pid as number);
    const client = await tryConnect(relay.port);
    const got = await collect(client); // 'end' from the guardian's half-close
    assert.equal(got.toString(), "bye");
    client.end("late words");
    assert.ok(guardianGot);
    assert.equal((await guardianGot).toString(), "late words");
    await closed(client);
    await waitFds(relay.proc.pid as number, baseline, "both directions ended");
  });

  it("the guardian closes the connection: the client sees it closed, even without sending anything", async () => {
    const path = join(dir, "close.sock");
    await startGuardian(path, (s) => {
      s.write("407 go away\n");
      s.destroy(); // a full close, as when the guardian ends an idle connection
    });
    const relay = await startRelay(path);
    const baseline = fdCount(relay.proc.pid as number);
    const client = await tryConnect(relay.port);
    const got = await collect(client);
    assert.equal(got.toString(), "407 go away\n");
    // The relay closed its side of the TCP connection completely, not only half.
    await waitFds(relay.proc.pid as number, baseline, "the guardian closed");
    client.destroy();
  });

  it("the guardian's socket is missing: the client's connection is closed; once it is back, the next one works", async () => {
    const path = join(dir, "later.sock");
    rmSync(path, { force: true });
    const relay = await startRelay(path);
    const baseline = fdCount(relay.proc.pid as number);

    for (let i = 0; i < 3; i++) {
      const client = await tryConnect(relay.port);
      const got = await collect(client);
      assert.equal(got.length, 0);
      await closed(client.destroy());
    }
    await waitFds(relay.proc.pid as number, baseline, "refused connections");

    // The guardian comes up (as after a restart: a new socket at the same path).
    const g1 = await startGuardian(path, (s) => s.end("hello from guardian 1"));
    let client = await tryConnect(relay.port);
    assert.equal((await collect(client)).toString(), "hello from guardian 1");
    client.destroy();

    // It goes away again, then a new one appears at the same path.
    await g1.close();
    rmSync(path, { force: true });
    client = await tryConnect(relay.port);
    assert.equal((await collect(client)).length, 0);
    client.destroy();
    await startGuardian(path, (s) => s.end("hello from guardian 2"));
    client = await tryConnect(relay.port);
    assert.equal((await collect(client)).toString(), "hello from guardian 2");
    client.destroy();
  });

  it("relays 1,000 concurrent connections, each its own bytes", async (t) => {
    const path = join(dir, "many.sock");
    const N = 1000;
    // Echo server that reports how many connections were open at once.
    let open = 0;
    let peak = 0;
    await startGuardian(path, (s) => {
      open++;
      peak = Math.max(peak, open);
      s.on("close", () => open--);
      s.pipe(s);
    });
    const relay = await startRelay(path);
    const pid = relay.proc.pid as number;
    const baseline = fdCount(pid);
    t.diagnostic(`relay idle: ${memory(pid)}, ${baseline} fds`);

    const clients = await Promise.all(Array.from({ length: N }, () => tryConnect(relay.port)));
    const payloads = clients.map((_, i) => Buffer.concat([Buffer.from(`connection ${i}:`), randomBytes(4096)]));
    // Each client sends its bytes and waits for the echo, keeping the connection open.
    await Promise.all(
      clients.map(
        (c, i) =>
          new Promise<void>((resolve, reject) => {
            const want = payloads[i] as Buffer;
            const chunks: Buffer[] = [];
            let have = 0;
            c.on("data", (d: Buffer) => {
              chunks.push(d);
              have += d.length;
              if (have >= want.length) {
                if (Buffer.concat(chunks).equals(want)) resolve();
                else reject(new Error(`connection ${i}: echo differs`));
              }
            });
            c.once("error", reject);
            c.write(want);
          }),
      ),
    );
    assert.equal(peak, N, "all connections open at the guardian at once");
    assert.equal(fdCount(pid), baseline + 2 * N, "two fds per connection");
    t.diagnostic(`relay with ${N} open connections: ${memory(pid)}`);

    for (const c of clients) c.end();
    await Promise.all(clients.map(closed));
    await waitFds(pid, baseline, `${N} connections ended`);
    t.diagnostic(`relay after they ended: ${memory(pid)}`);
  });

  it("holds connections back while the guardian's backlog is full, and drops none", async () => {
    // A guardian in another process, listening with a backlog of 1, that stops accepting for a
    // while: the relay's unix connects fail with EAGAIN, and it must wait, not close them.
    const path = join(dir, "busy.sock");
    rmSync(path, { force: true });
    const script = `
      const net = require("node:net");
      const server = net.createServer((s) => s.pipe(s));
      server.listen({ path: ${JSON.stringify(path)}, backlog: 1 }, () => process.stdout.write("ready\\n"));
      process.stdin.once("data", () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500));`;
    const guardian = spawn(process.execPath, ["-e", script], { stdio: ["pipe", "pipe", "inherit"] });
    try {
      await new Promise((resolve) => guardian.stdout.once("data", resolve));
      const relay = await startRelay(path);
      guardian.stdin.write("block\n");
      await sleep(100);
      const N = 50;
      const echoed = await Promise.all(
        Array.from(
          { length: N },
          (_, i) =>
            new Promise<boolean>((resolve) => {
              const want = `hello ${i}`;
              let got = "";
              const c = connect({ host: "127.0.0.1", port: relay.port }, () => c.write(want));
              c.on("data", (d: Buffer) => {
                got += d.toString();
                if (got === want) {
                  c.destroy();
                  resolve(true);
                }
              });
              c.on("close", () => resolve(got === want));
              c.on("error", () => undefined);
            }),
        ),
      );
      assert.equal(echoed.filter(Boolean).length, N);
    } finally {
      guardian.kill("SIGKILL");
    }
  });

  it("applies back-pressure: a guardian that does not read makes the client wait, the relay does not hoard", async () => {
    const path = join(dir, "slow.sock");
    const total = 64 * MiB;
    let guardian: Socket | undefined;
    await startGuardian(path, (s) => {
      guardian = s;
      s.pause(); // reads nothing for now
    });
    const relay = await startRelay(path);
    const pid = relay.proc.pid as number;
    const before = rssKb(pid);

    const data = randomBytes(total);
    const client = await tryConnect(relay.port);
    client.on("error", () => undefined);
    client.end(data);
    // Give the bytes time to pile up wherever they pile up.
    for (let i = 0; i < 40 && !guardian; i++) await sleep(25);
    await sleep(500);
    assert.ok(guardian, "the guardian got the connection");
    assert.ok(client.writableLength > 0, "the client still holds unsent bytes: it is being held back");
    const grown = rssKb(pid) - before;
    assert.ok(grown < 4096, `relay RSS grew by ${grown} kB while the guardian did not read`);

    const got = collect(guardian);
    guardian.resume();
    const received = await got;
    assert.equal(received.length, total);
    assert.equal(sha(received), sha(data));
  });

  it("exits with a clear message when it cannot listen", async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const { port } = taken.address() as AddressInfo;
    try {
      const proc = spawn(BIN, ["relay", String(port), join(dir, "x.sock")], { stdio: ["ignore", "ignore", "pipe"] });
      let err = "";
      proc.stderr.on("data", (d: Buffer) => (err += d.toString()));
      const code = await new Promise<number | null>((resolve) => proc.once("exit", (c) => resolve(c)));
      assert.notEqual(code, 0);
      assert.match(err, new RegExp(`cloister-init: relay: cannot listen on 127\\.0\\.0\\.1:${port}: Address already in use`));
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  it("killed, it leaves nothing behind: no process, no listener, every connection closed", async () => {
    const path = join(dir, "kill.sock");
    const g = await startGuardian(path, () => undefined);
    const relay = await startRelay(path);
    const pid = relay.proc.pid as number;
    const clients = await Promise.all(Array.from({ length: 20 }, () => tryConnect(relay.port)));
    for (let i = 0; i < 200 && g.accepted.length < 20; i++) await sleep(25);
    assert.equal(g.accepted.length, 20);
    const tree = hostTree(pid);
    assert.equal(tree.length, 1, "the relay is a single process");

    const clientSides = Promise.all(clients.map(collect));
    const guardianSides = Promise.all(g.accepted.map(collect));
    relay.proc.kill("SIGKILL");
    await relay.exited;
    relays.splice(relays.indexOf(relay), 1); // killed on purpose: not for afterEach to check
    assert.equal(relay.stderr(), "");
    await waitGone(tree, "the relay");
    // Both ends of every relayed connection see it end (half-open sockets get 'end', not 'close').
    assert.deepEqual(
      (await clientSides).map((b) => b.length),
      clients.map(() => 0),
    );
    await guardianSides;
    await assert.rejects(tryConnect(relay.port), /ECONNREFUSED/);
  });
});
