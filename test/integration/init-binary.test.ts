/**
 * The real cloister-init binary, keeper and init, exercised without bubblewrap: the keeper starts
 * `cloister-init init` directly, which inherits the listen socket as fd 3 (init then runs as an
 * ordinary process, not PID 1, and makes itself a child subreaper instead).
 */
import assert from "node:assert/strict";
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { PassThrough, Writable, type Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { execInCloister, type ExecIo, type ExecResult } from "../../src/sandbox/init-client.js";
import { encodeFrame, encodeRequest, FrameDecoder, FrameType, MAX_PAYLOAD, type ExecRequest, type Frame } from "../../src/sandbox/init-protocol.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const BIN = join(root, "native", "build", "cloister-init");
const ENV = { PATH: process.env.PATH ?? "/usr/bin:/bin" };
const DEADLINE_MS = 15_000;

// ---------------------------------------------------------------- helpers

const spawned: ChildProcess[] = [];
const tempDirs: string[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "cloister-init-test-"));
  tempDirs.push(dir);
  return dir;
}

/** Parent pid -> child pids, from /proc. */
function processTable(): Map<number, number[]> {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue;
    }
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
  }
  return children;
}

/** Every descendant of pid (zombies included). */
function descendants(pid: number): number[] {
  const children = processTable();
  const found: number[] = [];
  const todo = [pid];
  while (todo.length > 0) {
    for (const child of children.get(todo.pop() as number) ?? []) {
      found.push(child);
      todo.push(child);
    }
  }
  return found;
}

function kill(pid: number, signal: NodeJS.Signals = "SIGKILL"): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/**
 * Ends a keeper and everything under it without leaving zombies to the machine's PID 1: the
 * keeper's child (init, a subreaper) first reaps all its killed descendants, then dies itself,
 * and the keeper, having reaped it, exits.
 */
async function stopKeeper(keeper: ChildProcess): Promise<void> {
  const pid = keeper.pid;
  if (pid === undefined || keeper.exitCode !== null || keeper.signalCode !== null) return;
  for (const child of processTable().get(pid) ?? []) {
    try {
      await waitFor("init to reap what it started", () => {
        const rest = descendants(child);
        rest.forEach((p) => kill(p));
        return rest.length === 0;
      });
    } finally {
      kill(child);
    }
  }
  const timer = setTimeout(() => kill(pid), DEADLINE_MS);
  await exitOf(keeper);
  clearTimeout(timer);
}

/**
 * Resolves once pid runs `sleep` with exactly fds 0-2. Right after exec the dynamic loader briefly
 * holds fds of its own, so this waits for the set to settle; a leaked fd never goes away and times out.
 */
async function onlyStdFds(pid: number): Promise<void> {
  let seen: string[] = [];
  await waitFor(
    () => `pid ${pid} to run sleep with only fds 0-2 (has ${seen.join(",")})`,
    () => {
      seen = readdirSync(`/proc/${pid}/fd`).sort();
      return readlinkSync(`/proc/${pid}/exe`).endsWith("sleep") && seen.join(",") === "0,1,2";
    },
  );
}

/** This process's fds that a child would inherit (no O_CLOEXEC). */
function inheritableFds(): number[] {
  return readdirSync("/proc/self/fd")
    .map(Number)
    .filter((fd) => {
      try {
        const flags = /^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"))?.[1];
        return flags !== undefined && (parseInt(flags, 8) & 0o2000000) === 0;
      } catch {
        return false; // the directory's own fd, closed by now
      }
    });
}

function isAlive(pid: number): boolean {
  try {
    const state = readFileSync(`/proc/${pid}/stat`, "utf8");
    return state.slice(state.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

async function waitFor<T>(what: string | (() => string), probe: () => T | undefined | false): Promise<T> {
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === "string" ? what : what()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A Writable that keeps everything written to it. */
class Collector extends Writable {
  chunks: Buffer[] = [];
  override _write(chunk: Buffer, _encoding: string, callback: () => void): void {
    this.chunks.push(chunk);
    callback();
  }
  get text(): string {
    return Buffer.concat(this.chunks).toString("utf8");
  }
  get bytes(): number {
    return this.chunks.reduce((n, c) => n + c.length, 0);
  }
  waitFor(pattern: RegExp): Promise<RegExpExecArray> {
    return waitFor(() => `output matching ${pattern} (got ${JSON.stringify(this.text)})`, () => pattern.exec(this.text) ?? undefined);
  }
}

function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
}

function readAll(stream: Readable): Promise<string> {
  return new Promise((resolve) => {
    let text = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => (text += chunk));
    stream.on("end", () => resolve(text));
  });
}

/** Runs the keeper as the engine does; stdio beyond 2 as given (fd 3 is the status pipe by default). */
function spawnKeeper(args: string[], extraStdio: ("pipe" | "ignore")[] = ["pipe"]): ChildProcess {
  const child = spawn(BIN, ["keep", ...args], { stdio: ["ignore", "pipe", "pipe", ...extraStdio] });
  spawned.push(child);
  return child;
}

interface Cloister {
  keeper: ChildProcess;
  socket: string;
  dir: string;
  initPid: number;
}

async function startCloister(services: string[][] = []): Promise<Cloister> {
  const dir = tempDir();
  const socket = join(dir, "s.sock");
  const serviceArgs = services.length === 0 ? [] : ["--", ...services.flatMap((argv, i) => (i === 0 ? argv : [";;", ...argv]))];
  // With the lifeline, as the engine starts them: sessions must not hand it to their commands.
  const keeper = spawnKeeper(["--listen", socket, "--status-fd", "3", "--lifeline-fd", "7", "--", BIN, "init", "--lifeline-fd", "7", ...serviceArgs]);
  // The status pipe must reach EOF: neither the keeper nor init may keep it open.
  const status = await readAll(keeper.stdio[3] as Readable);
  const match = /^started (\d+)\n$/.exec(status);
  assert.ok(match, `status line, got ${JSON.stringify(status)}`);
  return { keeper, socket, dir, initPid: Number(match[1]) };
}

interface RunResult extends ExecResult {
  stdout: string;
  stderr: string;
}

async function run(socket: string, argv: string[], request: Partial<ExecRequest> = {}, stdin?: Readable): Promise<RunResult> {
  const stdout = new Collector();
  const stderr = new Collector();
  const io: ExecIo = { stdout, stderr, ...(stdin ? { stdin } : {}) };
  const result = await execInCloister(socket, { tty: false, cwd: "/", env: ENV, argv, ...request }, io).done;
  return { ...result, stdout: stdout.text, stderr: stderr.text };
}

/** A raw connection: sends bytes, returns the frames received until init closes it. */
function rawSession(socket: string, bytes: Buffer): Promise<{ frames: Frame[]; protocolError?: Error }> {
  return new Promise((resolve) => {
    const decoder = new FrameDecoder();
    const frames: Frame[] = [];
    let protocolError: Error | undefined;
    const conn = connect(socket, () => conn.write(bytes));
    conn.on("data", (chunk) => {
      try {
        frames.push(...decoder.push(chunk));
      } catch (error) {
        protocolError = error as Error;
      }
    });
    conn.on("error", () => {}); // a reset is as good as a close here
    conn.on("close", () => resolve({ frames, protocolError }));
  });
}

before(() => {
  execFileSync(process.execPath, [join(root, "scripts", "build-native.mjs")], { stdio: "inherit" });
});

after(async () => {
  for (const child of spawned) await stopKeeper(child);
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------- init sessions

describe("cloister-init init: sessions", { timeout: 60_000 }, () => {
  let c: Cloister;
  before(async () => {
    c = await startCloister();
  });

  it("runs a command, relays its stdout and reports pid and exit code 0", async () => {
    const r = await run(c.socket, ["echo", "hi"]);
    assert.equal(r.stdout, "hi\n");
    assert.equal(r.stderr, "");
    assert.equal(r.exitCode, 0);
    assert.ok(r.pid !== undefined && r.pid > 0);
  });

  it("relays stderr separately from stdout in pipe mode", async () => {
    const r = await run(c.socket, ["sh", "-c", "echo out; echo err >&2"]);
    assert.equal(r.stdout, "out\n");
    assert.equal(r.stderr, "err\n");
  });

  it("propagates the command's exit code", async () => {
    assert.equal((await run(c.socket, ["sh", "-c", "exit 7"])).exitCode, 7);
  });

  it("reports a command killed by a signal as 128 + the signal number", async () => {
    assert.equal((await run(c.socket, ["sh", "-c", "kill -9 $$"])).exitCode, 137);
  });

  it("answers a command that is not found with 127 and a message on stderr, and no pid", async () => {
    const r = await run(c.socket, ["no-such-command-xyz"]);
    assert.equal(r.exitCode, 127);
    assert.equal(r.stderr, "cloister: cannot run 'no-such-command-xyz': No such file or directory\n");
    assert.equal(r.pid, undefined);
  });

  it("answers a command that is not executable with 126", async () => {
    const file = join(tempDir(), "not-executable");
    writeFileSync(file, "#!/bin/sh\n", { mode: 0o644 });
    const r = await run(c.socket, [file]);
    assert.equal(r.exitCode, 126);
    assert.equal(r.stderr, `cloister: cannot run '${file}': Permission denied\n`);
  });

  it("names the working directory, not the command, when the directory does not exist (exit 125)", async () => {
    const r = await run(c.socket, ["true"], { cwd: "/no/such/dir" });
    assert.equal(r.exitCode, 125);
    assert.equal(r.stderr, "cloister: cannot enter the working directory '/no/such/dir': No such file or directory\n");
  });

  it("searches the PATH of the requested environment, not init's", async () => {
    const bin = tempDir();
    writeFileSync(join(bin, "only-here"), "#!/bin/sh\necho found me\n", { mode: 0o755 });
    const r = await run(c.socket, ["only-here"], { env: { PATH: `${bin}:/usr/bin:/bin` } });
    assert.equal(r.stdout, "found me\n");
  });

  it("pipes stdin to the command and ends it on STDIN_EOF", async () => {
    const stdin = new PassThrough();
    const pending = run(c.socket, ["cat"], {}, stdin);
    stdin.write("hello\n");
    stdin.end("world\n");
    const r = await pending;
    assert.equal(r.stdout, "hello\nworld\n");
    assert.equal(r.exitCode, 0);
  });

  it("gives a command run without stdin an immediate EOF", async () => {
    const r = await run(c.socket, ["cat"]);
    assert.equal(r.stdout, "");
    assert.equal(r.exitCode, 0);
  });

  it("moves several MiB through stdin and stdout intact, beyond every buffer and frame limit", async () => {
    const data = Buffer.alloc(3 * MAX_PAYLOAD + 12_345);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    const stdin = new PassThrough();
    const stdout = new Collector();
    const session = execInCloister(c.socket, { tty: false, cwd: "/", env: ENV, argv: ["cat"] }, { stdin, stdout });
    stdin.end(data);
    assert.equal((await session.done).exitCode, 0);
    assert.ok(Buffer.concat(stdout.chunks).equals(data));
  });

  it("gives the command exactly the environment that was sent", async () => {
    const env = { PATH: ENV.PATH, FOO: "bar", EMPTY: "", SPACED: "a b=c" };
    const r = await run(c.socket, ["env"], { env });
    assert.deepEqual(r.stdout.trimEnd().split("\n").sort(), Object.entries(env).map(([k, v]) => `${k}=${v}`).sort());
  });

  it("runs the command in the requested working directory", async () => {
    const dir = realpathSync(tempDir());
    assert.equal((await run(c.socket, ["pwd"], { cwd: dir })).stdout, `${dir}\n`);
  });

  it("gives a command only fds 0, 1 and 2", async () => {
    for (const tty of [false, true]) {
      const stdout = new Collector();
      const session = execInCloister(c.socket, { tty, rows: 24, cols: 80, cwd: "/", env: ENV, argv: ["sh", "-c", "echo pid=$$; exec sleep 1000"] }, { stdout });
      const pid = Number((await stdout.waitFor(/pid=(\d+)/))[1]);
      await onlyStdFds(pid);
      session.signal("SIGKILL");
      assert.equal((await session.done).exitCode, 137);
    }
  });

  it("delivers SIGNAL frames to the command's process group", async () => {
    const session = execInCloister(c.socket, { tty: false, cwd: "/", env: ENV, argv: ["sleep", "1000"] });
    session.signal("SIGTERM");
    assert.equal((await session.done).exitCode, 143);

    const stdout = new Collector();
    const trapped = execInCloister(c.socket, { tty: false, cwd: "/", env: ENV, argv: ["sh", "-c", "trap 'echo got USR1; exit 3' USR1; echo ready; while :; do sleep 0.05; done"] }, { stdout });
    await stdout.waitFor(/ready/);
    trapped.signal(10);
    assert.equal((await trapped.done).exitCode, 3);
    assert.match(stdout.text, /got USR1/);
  });

  it("sends EXIT even while a background process keeps the output open", async () => {
    const r = await run(c.socket, ["sh", "-c", "sleep 1000 & echo bg=$!"]);
    assert.equal(r.exitCode, 0);
    const bg = Number(/bg=(\d+)/.exec(r.stdout)?.[1]);
    assert.ok(isAlive(bg), "the background process is still running");
    process.kill(bg, "SIGKILL");
  });

  it("hangs up on the command when the client disconnects", async () => {
    const stdout = new Collector();
    const conn = connect(c.socket);
    const decoder = new FrameDecoder();
    conn.on("data", (chunk) => stdout.write(Buffer.concat(decoder.push(chunk).filter((f) => f.type === FrameType.Stdout).map((f) => f.payload))));
    conn.write(encodeRequest({ tty: false, cwd: "/", env: ENV, argv: ["sh", "-c", "echo pid=$$; exec sleep 1000"] }));
    const pid = Number((await stdout.waitFor(/pid=(\d+)/))[1]);
    conn.destroy();
    await waitFor("the command to be gone after the disconnect", () => !isAlive(pid));
  });

  it("serves several sessions at once", async () => {
    const sessions = Array.from({ length: 12 }, (_, i) => run(c.socket, ["sh", "-c", `sleep 0.2; echo session $0`, String(i)]));
    const results = await Promise.all(sessions);
    results.forEach((r, i) => {
      assert.equal(r.exitCode, 0);
      assert.equal(r.stdout, `session ${i}\n`);
    });
  });

  it("sessions that share an output add one error listener to it (node warns of a leak past ten), gone with the last of them", async () => {
    const shared = new Collector();
    const inputs = Array.from({ length: 12 }, () => new PassThrough());
    const sessions = inputs.map((stdin) => execInCloister(c.socket, { tty: false, cwd: "/", env: ENV, argv: ["cat"] }, { stdin, stdout: shared, stderr: shared }));
    assert.equal(shared.listenerCount("error"), 1);
    inputs.forEach((stdin, i) => stdin.end(`line ${i}\n`));
    for (const session of sessions) assert.equal((await session.done).exitCode, 0);
    assert.equal(shared.listenerCount("error"), 0);
    assert.equal(shared.text.split("\n").filter(Boolean).length, 12);
  });

  it("an output shared by sessions that fails ends each of their commands with SIGPIPE, and is still listened to after them", async () => {
    const shared = new Collector();
    const ready = Array.from({ length: 3 }, () => new Collector());
    const sessions = ready.map((stdout) => execInCloister(c.socket, { tty: false, cwd: "/", env: ENV, argv: ["sh", "-c", "echo ready; exec cat"] }, { stdin: new PassThrough(), stdout, stderr: shared }));
    for (const stdout of ready) await stdout.waitFor(/ready/);
    shared.destroy(new Error("EPIPE: the reader went away"));
    for (const session of sessions) assert.equal((await session.done).exitCode, 141);
    assert.equal(shared.listenerCount("error"), 1, "an error still on its way would end this process unheard");
  });
});

describe("cloister-init init: tty mode", { timeout: 60_000 }, () => {
  let c: Cloister;
  before(async () => {
    c = await startCloister();
  });

  it("runs the command on a fresh PTY as its controlling terminal", async () => {
    const r = await run(c.socket, ["tty"], { tty: true, rows: 24, cols: 80 });
    assert.match(r.stdout, /^\/dev\/pts\/\d+\r\n/);
    assert.equal(r.exitCode, 0);
  });

  it("sets the initial window size from the request", async () => {
    const r = await run(c.socket, ["stty", "size"], { tty: true, rows: 33, cols: 101 });
    assert.equal(r.stdout, "33 101\r\n");
  });

  it("sends the command's stderr to the PTY as STDOUT", async () => {
    const r = await run(c.socket, ["sh", "-c", "echo to-stderr >&2; exit 4"], { tty: true, rows: 24, cols: 80 });
    assert.equal(r.stdout, "to-stderr\r\n");
    assert.equal(r.stderr, "");
    assert.equal(r.exitCode, 4);
  });

  it("with a separate stderr, sends the command's stderr as STDERR through a pipe and keeps the PTY for the rest", async () => {
    const r = await run(c.socket, ["sh", "-c", "echo to-stderr >&2; tty; [ -t 2 ] || echo fd2-is-no-tty; exit 4"], { tty: true, separateStderr: true, rows: 24, cols: 80 });
    assert.match(r.stdout, /^\/dev\/pts\/\d+\r\nfd2-is-no-tty\r\n$/);
    assert.equal(r.stderr, "to-stderr\n");
    assert.equal(r.exitCode, 4);
    const missing = await run(c.socket, ["no-such-command-xyz"], { tty: true, separateStderr: true, rows: 24, cols: 80 });
    assert.equal(missing.exitCode, 127);
    assert.equal(missing.stderr, "cloister: cannot run 'no-such-command-xyz': No such file or directory\n");
  });

  it("applies RESIZE to an interactive shell's terminal", async () => {
    const stdin = new PassThrough();
    const stdout = new Collector();
    const session = execInCloister(c.socket, { tty: true, rows: 24, cols: 80, cwd: "/", env: { ...ENV, PS1: "$ " }, argv: ["sh", "-i"] }, { stdin, stdout });
    await stdout.waitFor(/\$ $/); // the prompt: the shell is reading its terminal
    stdin.write("stty size\n");
    await stdout.waitFor(/24 80\r\n/);
    session.resize(50, 132);
    stdin.write("stty size\n");
    await stdout.waitFor(/50 132\r\n/);
    stdin.write("exit 5\n");
    assert.equal((await session.done).exitCode, 5);
  });

  it("reports a command that cannot run on STDOUT in tty mode", async () => {
    const r = await run(c.socket, ["no-such-command-xyz"], { tty: true, rows: 24, cols: 80 });
    assert.equal(r.exitCode, 127);
    assert.equal(r.stdout, "cloister: cannot run 'no-such-command-xyz': No such file or directory\n");
  });
});

describe("cloister-init init: hostile clients", { timeout: 60_000 }, () => {
  let c: Cloister;
  before(async () => {
    c = await startCloister();
  });

  const cases: [string, Buffer, RegExp][] = [
    ["garbage", Buffer.from("GET / HTTP/1.1\r\n\r\n"), /unknown frame type/],
    ["an oversize length", Buffer.from([FrameType.Request, 0xff, 0xff, 0xff, 0x7f]), /exceeds/],
    ["a length of exactly 1 MiB + 1", Buffer.concat([Buffer.from([FrameType.Request]), Buffer.from(new Uint32Array([MAX_PAYLOAD + 1]).buffer)]), /exceeds/],
    ["a first frame that is not REQUEST", encodeFrame(FrameType.Stdin, Buffer.from("x")), /first frame must be REQUEST/],
    ["a REQUEST with argc = 0", encodeFrame(FrameType.Request, Buffer.concat([Buffer.alloc(13), Buffer.from("/\0")])), /argc/],
    [
      "a REQUEST whose counts exceed its length",
      encodeFrame(FrameType.Request, Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), Buffer.from("/\0")])),
      /counts exceed/,
    ],
    ["a REQUEST with an unterminated string", encodeFrame(FrameType.Request, Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]), Buffer.from("/\0ls")])), /NUL-terminated/],
    ["a second REQUEST", Buffer.concat([encodeRequest({ tty: false, cwd: "/", env: ENV, argv: ["sleep", "1000"] }), encodeRequest({ tty: false, cwd: "/", env: ENV, argv: ["true"] })]), /REQUEST sent twice/],
    ["a REQUEST with an unknown terminal mode", encodeFrame(FrameType.Request, Buffer.concat([Buffer.from([3, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]), Buffer.from("/\0true\0")])), /terminal mode/],
    ["a malformed RESIZE", Buffer.concat([encodeRequest({ tty: true, cwd: "/", env: ENV, argv: ["sleep", "1000"] }), encodeFrame(FrameType.Resize, Buffer.from([1]))]), /RESIZE/],
  ];
  for (const [what, bytes, message] of cases) {
    it(`answers ${what} with ERROR and closes, then serves the next client`, async () => {
      const { frames, protocolError } = await rawSession(c.socket, bytes);
      assert.equal(protocolError, undefined);
      const error = frames.find((f) => f.type === FrameType.Error);
      assert.ok(error, `an ERROR frame among ${JSON.stringify(frames.map((f) => f.type))}`);
      assert.match(error.payload.toString(), message);
      assert.equal(frames.at(-1), error, "ERROR is the last frame");
      assert.equal((await run(c.socket, ["echo", "still serving"])).stdout, "still serving\n");
    });
  }

  it("survives a client that connects and vanishes without a word", async () => {
    await new Promise<void>((resolve) => {
      const conn = connect(c.socket, () => conn.destroy());
      conn.on("close", () => resolve());
    });
    assert.equal((await run(c.socket, ["true"])).exitCode, 0);
  });
});

// ---------------------------------------------------------------- the client's failures

describe("execInCloister: failures", { timeout: 60_000 }, () => {
  /** A stand-in init that answers every connection with `reply`. */
  async function fakeInit(reply: Buffer): Promise<{ socket: string; close: () => Promise<void> }> {
    const socket = join(tempDir(), "fake.sock");
    const server = createServer((conn) => {
      conn.on("error", () => {});
      conn.resume(); // read (and drop) the request, or the client's close would never be seen
      conn.end(reply);
    });
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    return { socket, close: () => new Promise((resolve) => server.close(() => resolve())) };
  }

  it("rejects, saying the cloister is gone or not ready, when nothing listens at the socket", async () => {
    await assert.rejects(run(join(tempDir(), "nobody.sock"), ["true"]), /the cloister is gone or not ready \(cannot connect/);
  });

  it("rejects, saying the cloister is gone or not ready, when the connection ends without EXIT", async () => {
    const c = await startCloister();
    const stdout = new Collector();
    const session = execInCloister(c.socket, { tty: false, cwd: "/", env: ENV, argv: ["sh", "-c", "echo pid=$$; exec sleep 1000"] }, { stdout });
    const pid = Number((await stdout.waitFor(/pid=(\d+)/))[1]);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const handler = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    kill(handler); // the session handler dies: no EXIT will ever come
    await assert.rejects(session.done, /the cloister is gone or not ready \(its init closed the connection/);
    kill(pid);
  });

  it("rejects with init's message when init answers ERROR", async () => {
    const fake = await fakeInit(encodeFrame(FrameType.Error, Buffer.from("no such luck")));
    await assert.rejects(run(fake.socket, ["true"]), /refused the command: no such luck/);
    await fake.close();
  });

  it("rejects on a protocol error from init", async () => {
    const fake = await fakeInit(Buffer.from([0x42, 0, 0, 0, 0]));
    await assert.rejects(run(fake.socket, ["true"]), /protocol error.*unknown frame type 0x42/);
    await fake.close();
  });

  it("rejects an EXIT frame of the wrong size as a protocol error", async () => {
    const fake = await fakeInit(encodeFrame(FrameType.Exit, Buffer.from([1])));
    await assert.rejects(run(fake.socket, ["true"]), /protocol error.*EXIT payload/);
    await fake.close();
  });

  it("refuses an invalid request before connecting", () => {
    assert.throws(() => execInCloister(join(tempDir(), "unused.sock"), { tty: false, cwd: "/", env: ENV, argv: [] }), /argv must not be empty/);
  });
});

// ---------------------------------------------------------------- init services

describe("cloister-init init: services", { timeout: 60_000 }, () => {
  it("starts each service with stdin, stdout and stderr on /dev/null (never init's log, a host file) and only fds 0-2, and restarts it when it dies", async () => {
    const dir = tempDir();
    const a = join(dir, "a.pids");
    const b = join(dir, "b.pids");
    const c = await startCloister([
      ["sh", "-c", `echo $$ >> ${a}; exec sleep 1000`],
      ["sh", "-c", `echo $$ >> ${b}; exec sleep 1000`],
    ]);
    const pidsOf = (file: string): number[] => (existsSync(file) ? readFileSync(file, "utf8").trim().split("\n").filter(Boolean).map(Number) : []);
    const [first] = await waitFor("service a to start", () => (pidsOf(a).length === 1 ? pidsOf(a) : undefined));
    await waitFor("service b to start", () => pidsOf(b).length === 1);
    assert.ok(first);
    await onlyStdFds(first);
    for (const fd of [0, 1, 2]) assert.equal(readlinkSync(`/proc/${first}/fd/${fd}`), "/dev/null", `fd ${fd}`);

    process.kill(first, "SIGKILL");
    const restarted = await waitFor("service a to be restarted", () => (pidsOf(a).length === 2 ? pidsOf(a)[1] : undefined));
    assert.notEqual(restarted, first);
    assert.equal(pidsOf(b).length, 1, "the other service was left alone");
    assert.equal((await run(c.socket, ["echo", "ok"])).stdout, "ok\n");
  });

  it("keeps retrying a service that cannot start, without stopping to serve", async () => {
    const c = await startCloister([["no-such-service-xyz"]]);
    assert.equal((await run(c.socket, ["echo", "ok"])).stdout, "ok\n");
  });
});

// ---------------------------------------------------------------- keeper

describe("cloister-init keep", { timeout: 60_000 }, () => {
  it("exits with the child's exit code", async () => {
    const keeper = spawnKeeper(["--", "sh", "-c", "exit 3"], []);
    assert.deepEqual(await exitOf(keeper), { code: 3, signal: null });
  });

  it("--program-fd: runs the NUL-separated argv read from the fd, once it is complete", async () => {
    const keeper = spawnKeeper(["--status-fd", "3", "--program-fd", "4"], ["pipe", "pipe"]);
    const status = readAll(keeper.stdio[3] as Readable);
    const stdout = readAll(keeper.stdout as Readable);
    const program = keeper.stdio[4] as Writable;
    // Arguments with spaces, newlines and an empty one arrive as they were.
    program.write("sh\0-c\0printf '[%s]' \"$@\"\0");
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(keeper.exitCode, null, "waits for the end of the fd");
    program.end("x\0a b\0two\nlines\0\0");
    assert.deepEqual(await exitOf(keeper), { code: 0, signal: null });
    assert.match(await status, /^started \d+\n$/);
    assert.equal(await stdout, "[a b][two\nlines][]");
  });

  it("--program-fd: an empty fd calls the launch off (125, nothing run, no status line); junk is refused", async () => {
    const marker = join(tempDir(), "ran");
    for (const [input, why] of [["", /no program on --program-fd/], [`touch\0${marker}`, /not NUL-terminated/]] as const) {
      const keeper = spawnKeeper(["--status-fd", "3", "--program-fd", "4"], ["pipe", "pipe"]);
      const status = readAll(keeper.stdio[3] as Readable);
      const stderr = readAll(keeper.stderr as Readable);
      (keeper.stdio[4] as Writable).end(input);
      assert.deepEqual(await exitOf(keeper), { code: 125, signal: null });
      assert.equal(await status, "");
      assert.match(await stderr, why);
    }
    const both = spawnKeeper(["--program-fd", "3", "--", "touch", marker]);
    const bothStderr = readAll(both.stderr as Readable);
    assert.equal((await exitOf(both)).code, 125);
    assert.match(await bothStderr, /--program-fd and '-- PROGRAM' both given/);
    assert.equal(existsSync(marker), false);
  });

  it("--lifeline-fd: init ends when its keeper is killed, where one without the lifeline lives on orphaned", async () => {
    // What the lifeline is for: a keeper killed before bwrap's child has armed its parent-death
    // signal would leave that child, the sandbox's PID 1, running. Here init is the keeper's child
    // directly and arms nothing, so only the lifeline can end it.
    const start = async (lifeline: boolean): Promise<{ keeper: ChildProcess; initPid: number }> => {
      const fd = lifeline ? ["--lifeline-fd", "7"] : [];
      const keeper = spawnKeeper(["--listen", join(tempDir(), "s.sock"), "--status-fd", "3", ...fd, "--", BIN, "init", ...fd]);
      const status = await readAll(keeper.stdio[3] as Readable);
      const initPid = Number(/^started (\d+)\n$/.exec(status)?.[1]);
      assert.ok(initPid > 0, `status line, got ${JSON.stringify(status)}`);
      return { keeper, initPid };
    };
    const withLifeline = await start(true);
    const without = await start(false);
    try {
      // init holds the read end at fd 7, close-on-exec; the keeper holds only the write end.
      const fdinfo = readFileSync(`/proc/${withLifeline.initPid}/fdinfo/7`, "utf8");
      assert.ok((parseInt(/^flags:\s*([0-7]+)$/m.exec(fdinfo)?.[1] ?? "0", 8) & 0o2000000) !== 0, "init's lifeline is not close-on-exec");
      assert.match(readlinkSync(`/proc/${withLifeline.initPid}/fd/7`), /^pipe:/);
      kill(withLifeline.keeper.pid ?? 0);
      kill(without.keeper.pid ?? 0);
      await waitFor("init to end after its keeper was killed", () => !isAlive(withLifeline.initPid));
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.ok(isAlive(without.initPid), "an init without a lifeline ended too: this test no longer shows what the lifeline does");
    } finally {
      kill(without.initPid);
      kill(withLifeline.initPid);
    }
  });

  it("--lifeline-fd: a taken or reserved fd, or junk, is refused before anything runs (125)", async () => {
    const marker = join(tempDir(), "ran");
    const cases: [string[], ("pipe" | "ignore")[], RegExp][] = [
      [["--lifeline-fd", "7"], ["pipe", "pipe", "pipe", "pipe", "pipe"], /--lifeline-fd: fd 7 is already open/],
      [["--lifeline-fd", "4"], [], /--lifeline-fd '4' \(want a number from 5\)/],
      [["--lifeline-fd", "x"], [], /--lifeline-fd 'x'/],
    ];
    for (const [args, stdio, why] of cases) {
      const keeper = spawnKeeper([...args, "--", "touch", marker], stdio);
      const stderr = readAll(keeper.stderr as Readable);
      assert.deepEqual(await exitOf(keeper), { code: 125, signal: null }, args.join(" "));
      assert.match(await stderr, why);
    }
    for (const bad of ["3", "4", "2", "x"]) {
      const init = spawn(BIN, ["init", "--lifeline-fd", bad], { stdio: ["ignore", "ignore", "pipe"] });
      spawned.push(init);
      const stderr = readAll(init.stderr as Readable);
      assert.deepEqual(await exitOf(init), { code: 125, signal: null }, `init --lifeline-fd ${bad}`);
      assert.match(await stderr, /init: --lifeline-fd/);
    }
    assert.equal(existsSync(marker), false);
  });

  it("exits with 128 + n when the child is killed by signal n", async () => {
    const keeper = spawnKeeper(["--", "sh", "-c", "kill -9 $$"], []);
    assert.deepEqual(await exitOf(keeper), { code: 137, signal: null });
  });

  it("forwards SIGTERM to the child", async () => {
    const keeper = spawnKeeper(["--status-fd", "3", "--", "sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done"]);
    const stdout = new Collector();
    (keeper.stdout as Readable).pipe(stdout);
    await stdout.waitFor(/ready/);
    keeper.kill("SIGTERM");
    assert.deepEqual(await exitOf(keeper), { code: 42, signal: null });
  });

  it("--mark holds an abstract socket name for its whole life, which its program does not inherit; a taken name fails it", async () => {
    const name = `cloister-test-mark-${process.pid}-${Date.now()}`;
    // "Num RefCount Protocol Flags Type St Inode Path": the mark's inode, or undefined.
    const markInode = () => readFileSync("/proc/net/unix", "utf8").split("\n").find((line) => line.endsWith(` @${name}`))?.trim().split(/\s+/)[6];
    const keeper = spawnKeeper(["--mark", name, "--status-fd", "3", "--", "sh", "-c", "for fd in /proc/$$/fd/*; do readlink $fd; done; echo ready; exec sleep 30"]);
    const stdout = new Collector();
    (keeper.stdout as Readable).pipe(stdout);
    await stdout.waitFor(/ready/);
    const inode = markInode();
    assert.ok(inode, "the mark is not bound");
    assert.doesNotMatch(stdout.text, new RegExp(`socket:\\[${inode}\\]`));

    const second = spawnKeeper(["--mark", name, "--", "true"], []);
    const stderr = readAll(second.stderr as Readable);
    assert.deepEqual(await exitOf(second), { code: 125, signal: null });
    assert.match(await stderr, new RegExp(`^cloister-init: --mark ${name}: Address already in use\\n$`));

    keeper.kill("SIGKILL");
    await exitOf(keeper);
    assert.equal(markInode(), undefined);
  });

  it("ends with its init when the cloister is killed through it", async () => {
    const c = await startCloister();
    c.keeper.kill("SIGTERM"); // init is not PID 1 here, so SIGTERM kills it
    assert.deepEqual(await exitOf(c.keeper), { code: 143, signal: null });
  });

  it("exits 125 with a one-line message when the listen path is invalid, running nothing", async () => {
    const dir = tempDir();
    const marker = join(dir, "ran");
    const keeper = spawnKeeper(["--listen", join(dir, "missing", "s.sock"), "--", "touch", marker], []);
    const stderr = readAll(keeper.stderr as Readable);
    assert.deepEqual(await exitOf(keeper), { code: 125, signal: null });
    assert.match(await stderr, /^cloister-init: bind .*missing\/s\.sock: No such file or directory\n$/);
    assert.equal(existsSync(marker), false);
  });

  it("refuses to replace a listen path that is not a socket", async () => {
    const dir = tempDir();
    const file = join(dir, "s.sock");
    writeFileSync(file, "precious");
    const keeper = spawnKeeper(["--listen", file, "--", "true"], []);
    const stderr = readAll(keeper.stderr as Readable);
    assert.equal((await exitOf(keeper)).code, 125);
    assert.match(await stderr, /^cloister-init: .*not a socket.*\n$/);
    assert.equal(readFileSync(file, "utf8"), "precious");
  });

  it("replaces a stale socket at the listen path", async () => {
    const first = await startCloister();
    await stopKeeper(first.keeper);
    const keeper = spawnKeeper(["--listen", first.socket, "--status-fd", "3", "--", BIN, "init"]);
    assert.match(await readAll(keeper.stdio[3] as Readable), /^started \d+\n$/);
    assert.equal((await run(first.socket, ["echo", "again"])).stdout, "again\n");
  });

  it("exits 125 when fd 3 is taken by something other than the status fd", async () => {
    const keeper = spawnKeeper(["--listen", join(tempDir(), "s.sock"), "--", "true"], ["pipe"]);
    const stderr = readAll(keeper.stderr as Readable);
    assert.equal((await exitOf(keeper)).code, 125);
    assert.match(await stderr, /fd 3 is already open/);
  });

  it("exits 125 when PROGRAM cannot be executed, closing the status fd without a line", async () => {
    const keeper = spawnKeeper(["--status-fd", "3", "--", "no-such-program-xyz"]);
    const status = readAll(keeper.stdio[3] as Readable);
    const stderr = readAll(keeper.stderr as Readable);
    assert.equal((await exitOf(keeper)).code, 125);
    assert.equal(await status, "");
    assert.match(await stderr, /^cloister-init: exec no-such-program-xyz: No such file or directory\n$/);
  });

  it("passes other inherited fds through untouched, gives PROGRAM the listen socket at fd 3 and keeps the status fd to itself", async () => {
    const socket = join(tempDir(), "s.sock");
    const keeper = spawnKeeper(["--listen", socket, "--status-fd", "3", "--", "sh", "-c", "ls /proc/$$/fd; readlink /proc/$$/fd/3"], ["pipe", "pipe"]);
    const status = readAll(keeper.stdio[3] as Readable);
    const stdout = readAll(keeper.stdout as Readable);
    assert.equal((await exitOf(keeper)).code, 0);
    assert.match(await status, /^started \d+\n$/);
    // whatever this test process itself inherited (fds without O_CLOEXEC) must get through as well
    const expected = ["0", "1", "2", "3", "4", ...inheritableFds().filter((fd) => fd > 4).map(String)].sort();
    const lines = (await stdout).trimEnd().split("\n");
    assert.match(lines.pop() ?? "", /^socket:\[\d+\]$/);
    assert.deepEqual(lines.sort(), expected);
  });

  it("applies rlimits, nice and oom_score_adj to PROGRAM", async () => {
    const keeper = spawnKeeper(["--rlimit", "nofile=64", "--rlimit", "core=0", "--nice", "3", "--oom-score-adj", "500", "--", "sh", "-c", "ulimit -n; ulimit -c; cat /proc/$$/oom_score_adj; cut -d' ' -f19 /proc/$$/stat"], []);
    const stdout = readAll(keeper.stdout as Readable);
    assert.equal((await exitOf(keeper)).code, 0);
    assert.equal(await stdout, "64\n0\n500\n3\n");
  });

  it("rejects unknown options and bad values with 125", async () => {
    for (const args of [["--bogus", "--", "true"], ["--rlimit", "stack=1", "--", "true"], ["--nice", "x", "--", "true"], ["--listen"], ["--setsid"]]) {
      const keeper = spawnKeeper(args, []);
      const stderr = readAll(keeper.stderr as Readable);
      assert.equal((await exitOf(keeper)).code, 125, args.join(" "));
      assert.match(await stderr, /^cloister-init: .+\n$/);
    }
  });
});
