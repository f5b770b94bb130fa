// The real hostexec binary against a fake guardian: a TCP server in this process that speaks the
// guardian's side of the wire protocol with src/guardian/hostexec/wire.ts. No sandbox needed.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, realpathSync, rmSync } from "node:fs";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import {
  encodeFrame,
  exitFrame,
  FrameDecoder,
  FrameType,
  MAX_GUARDIAN_PAYLOAD,
  outputFrame,
  parseRequest,
  pendingFrame,
  type HostexecRequest,
} from "../../src/guardian/hostexec/wire.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const TOKEN = "0123456789abcdef".repeat(4);

let hostexec = "";
const servers: Server[] = [];
const tempDirs: string[] = [];

before(async () => {
  // A computed specifier: the build script is plain JavaScript without type declarations.
  const script = pathToFileURL(join(root, "scripts", "build-native.mjs")).href;
  const native = (await import(script)) as { buildNative(): string; HOSTEXEC_BINARY: string };
  native.buildNative();
  hostexec = native.HOSTEXEC_BINARY;
});

after(() => {
  for (const server of servers) server.close();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** One connection as the fake guardian sees it, from its R frame on. */
interface Session {
  request: HostexecRequest;
  socket: Socket;
  /** Resolves when a C frame arrives. */
  cancelled: Promise<void>;
  sawCancel: boolean;
}

/** The fake guardian: hands each request to `serve` and records every session. */
async function startGuardian(serve: (session: Session) => void | Promise<void>): Promise<{ port: number; sessions: Session[] }> {
  const sessions: Session[] = [];
  const server = createServer((socket) => {
    const decoder = new FrameDecoder({ expectMagic: true });
    let session: Session | undefined;
    let onCancel = (): void => {};
    socket.on("error", () => {}); // a client that left is the test's subject, not a failure here
    socket.on("data", (chunk) => {
      for (const frame of decoder.push(chunk)) {
        if (frame.type === FrameType.Request) {
          const cancelled = new Promise<void>((resolve) => (onCancel = resolve));
          session = { request: parseRequest(frame.payload), socket, cancelled, sawCancel: false };
          sessions.push(session);
          void serve(session);
        } else if (session) {
          session.sawCancel = true;
          onCancel();
        }
      }
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: (server.address() as AddressInfo).port, sessions };
}

function proxyUrl(port: number): string {
  return `http://cloister:${TOKEN}@127.0.0.1:${port}`;
}

interface Result {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

interface Run {
  child: ChildProcess;
  done: Promise<Result>;
  /** Resolves once stderr contains text. */
  stderrHas(text: string): Promise<void>;
}

/** Runs `file args` with nothing in its environment but `env`. */
function spawnWith(file: string, args: string[], env: Record<string, string>, cwd = root): Run {
  const child = spawn(file, args, { env, cwd, stdio: ["ignore", "pipe", "pipe"] });
  const out: Buffer[] = [];
  let stderr = "";
  const waiters: { text: string; resolve(): void }[] = [];
  child.stdout?.on("data", (chunk: Buffer) => out.push(chunk));
  child.stdout?.on("error", () => {});
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
    for (const w of waiters) if (stderr.includes(w.text)) w.resolve();
  });
  const done = new Promise<Result>((resolve) =>
    child.on("close", (code) => resolve({ code, stdout: Buffer.concat(out), stderr })),
  );
  const stderrHas = (text: string): Promise<void> =>
    new Promise((resolve) => (stderr.includes(text) ? resolve() : waiters.push({ text, resolve })));
  return { child, done, stderrHas };
}

function runHostexec(port: number, args: string[], cwd?: string): Run {
  return spawnWith(hostexec, args, { CLOISTER_PROXY: proxyUrl(port) }, cwd);
}

/** A guardian that runs nothing: it answers every request with `frames`, then closes. */
async function replying(...frames: Buffer[]): Promise<{ port: number; sessions: Session[] }> {
  return startGuardian(({ socket }) => {
    socket.end(Buffer.concat(frames));
  });
}

const exited = (exitCode: number, message?: string): Buffer => exitFrame({ status: "exited", exitCode, message });

describe("hostexec client: the request", { timeout: 30_000 }, () => {
  it("sends the token, its working directory and argv byte-exactly", async () => {
    const g = await replying(exited(0));
    const argv = ["printf", "%s\n", "with space", `"double" 'single'`, "new\nline", "", "tab\there", "é 🎉 \u0001 \\ /", "--", "-x"];
    const cwd = mkdtempSync(join(tmpdir(), "hostexec-cwd-"));
    tempDirs.push(cwd);
    const r = await runHostexec(g.port, argv, cwd).done;
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(g.sessions[0]?.request, { token: TOKEN, argv, cwd: realpathSync(cwd) });
  });

  it("passes 1000 arguments and one of 100 KiB", async () => {
    const g = await replying(exited(0));
    const many = Array.from({ length: 1000 }, (_, i) => `arg-${i}`);
    const big = "x".repeat(50 * 1024) + "é".repeat(25 * 1024);
    assert.equal((await runHostexec(g.port, ["echo", ...many]).done).code, 0);
    assert.equal((await runHostexec(g.port, ["echo", big]).done).code, 0);
    assert.deepEqual(g.sessions[0]?.request.argv, ["echo", ...many]);
    assert.equal(g.sessions[1]?.request.argv[1], big);
  });

  it("takes a leading -- as the end of its options", async () => {
    const g = await replying(exited(0));
    assert.equal((await runHostexec(g.port, ["--", "--help"]).done).code, 0);
    assert.deepEqual(g.sessions[0]?.request.argv, ["--help"]);
  });

  it("refuses an argument that is not UTF-8 with exit 2, without connecting", async () => {
    const g = await replying(exited(0));
    // Node can't put raw bytes into argv; the shell's printf can.
    const r = await spawnWith("/bin/sh", ["-c", `exec "$0" ls "$(printf 'a\\377b')"`, hostexec], {
      CLOISTER_PROXY: proxyUrl(g.port),
    }).done;
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^hostexec: argument 1 is not valid UTF-8 \(byte 0xff at offset 1\)/);
    assert.equal(g.sessions.length, 0);
  });

  it("refuses a command line over the request limit with exit 2", async () => {
    const g = await replying(exited(0));
    const r = await runHostexec(g.port, ["echo", ...Array.from({ length: 9 }, () => "y".repeat(120 * 1024))]).done;
    assert.equal(r.code, 2);
    assert.match(r.stderr, /command line is too long/);
    assert.equal(g.sessions.length, 0);
  });
});

describe("hostexec client: replies", { timeout: 30_000 }, () => {
  it("prints each pending notice and streams stdout and stderr byte-exactly", async () => {
    const binary = Buffer.from([0, 0xff, 0x0a, 0xc3]);
    const g = await replying(
      pendingFrame("r1", "waiting for a human"),
      pendingFrame("r1", "still waiting"),
      outputFrame("O", Buffer.from("out ")),
      outputFrame("E", Buffer.from("err\n")),
      outputFrame("O", binary),
      encodeFrame(FrameType.Stdout),
      exited(0),
    );
    const r = await runHostexec(g.port, ["x"]).done;
    assert.equal(r.code, 0);
    assert.deepEqual(r.stdout, Buffer.concat([Buffer.from("out "), binary]));
    assert.equal(r.stderr, "hostexec: waiting for a human\nhostexec: still waiting\nerr\n");
  });

  it("writes output as it arrives, before the exit frame", async () => {
    let outputSeen = (): void => {};
    const seen = new Promise<void>((resolve) => (outputSeen = resolve));
    const g = await startGuardian(async ({ socket }) => {
      socket.write(outputFrame("O", Buffer.from("early")));
      await seen;
      socket.end(exited(0));
    });
    const run = runHostexec(g.port, ["x"]);
    run.child.stdout?.once("data", () => outputSeen());
    assert.equal((await run.done).stdout.toString(), "early");
  });

  for (const [given, expected] of [
    [0, 0],
    [1, 1],
    [42, 42],
    [255, 255],
    [300, 255],
    [-1, 0],
  ] as const) {
    it(`exits ${expected} for exit code ${given}`, async () => {
      const g = await replying(exited(given));
      const r = await runHostexec(g.port, ["x"]).done;
      assert.equal(r.code, expected);
      assert.equal(r.stderr, "");
    });
  }

  it("prints the exit frame's message", async () => {
    const g = await replying(exitFrame({ status: "denied", exitCode: 126, message: "denied: `x` is not allowed\u00e9" }));
    const r = await runHostexec(g.port, ["x"]).done;
    assert.equal(r.code, 126);
    assert.equal(r.stderr, "hostexec: denied: `x` is not allowed\u00e9\n");
  });

  it("reads the exit frame's JSON whatever its spacing, escapes and extra fields", async () => {
    const json = ' { "extra" : [1, {"a": [true, false, null]}, -0.5e3, "\\"]"], "message": "a\\u00e9\\ud83c\\udf89\\n\\tb", "exitCode" : 7.0 } ';
    const g = await replying(encodeFrame(FrameType.Exit, json));
    const r = await runHostexec(g.port, ["x"]).done;
    assert.equal(r.code, 7);
    assert.equal(r.stderr, "hostexec: a\u00e9\u{1f389}\n\tb\n");
  });
});

describe("hostexec client: failures", { timeout: 30_000 }, () => {
  const failures: [string, Buffer, RegExp][] = [
    ["the connection closes before the exit frame", outputFrame("O", Buffer.from("partial")), /closed the connection before the command finished/],
    ["the connection closes mid-frame", Buffer.concat([Buffer.from([0x4f, 0, 0, 0, 9]), Buffer.from("abc")]), /in the middle of a frame/],
    ["an unknown frame type", Buffer.from("HTTP/1.1 200 OK\r\n\r\n"), /unexpected frame type 0x48/],
    ["an oversized frame", Buffer.from([0x4f, 1, 0, 0, 1]), new RegExp(`16777217 bytes .* exceeds the ${MAX_GUARDIAN_PAYLOAD}-byte limit`)],
    ["an exit frame that is not JSON", encodeFrame(FrameType.Exit, "{exitCode: 1}"), /malformed exit status/],
    ["an exit frame without exitCode", encodeFrame(FrameType.Exit, { status: "exited" }), /malformed exit status/],
    ["an exitCode that is a string", encodeFrame(FrameType.Exit, '{"exitCode":"1"}'), /malformed exit status/],
    ["an exitCode in hex", encodeFrame(FrameType.Exit, '{"exitCode":0x10}'), /malformed exit status/],
    ["trailing bytes after the exit JSON", encodeFrame(FrameType.Exit, '{"exitCode":1} x'), /malformed exit status/],
    ["a deeply nested exit frame", encodeFrame(FrameType.Exit, `{"a":${"[".repeat(100000)}`), /malformed exit status/],
    ["a pending notice without a message", encodeFrame(FrameType.Pending, { id: "1" }), /malformed pending notice/],
  ];
  for (const [what, reply, message] of failures) {
    it(`exits 125 when ${what}`, async () => {
      const g = await replying(reply);
      const r = await runHostexec(g.port, ["x"]).done;
      assert.equal(r.code, 125);
      assert.match(r.stderr, /^hostexec: /m);
      assert.match(r.stderr, message);
    });
  }

  it("exits 125 when nothing listens", async () => {
    const g = await replying();
    const port = g.port;
    await new Promise<void>((resolve) => servers.pop()?.close(() => resolve()));
    const r = await runHostexec(port, ["x"]).done;
    assert.equal(r.code, 125);
    assert.match(r.stderr, new RegExp(`^hostexec: cannot reach the guardian at 127\\.0\\.0\\.1:${port}: Connection refused\\n$`));
  });

  it("exits 125 without CLOISTER_PROXY", async () => {
    const r = await spawnWith(hostexec, ["ls"], {}).done;
    assert.equal(r.code, 125);
    assert.equal(r.stderr, "hostexec: not inside a cloister with network access (CLOISTER_PROXY is not set)\n");
  });

  for (const [url, why] of [
    [`https://cloister:${TOKEN}@127.0.0.1:3128`, /does not start with http:\/\//],
    [`http://127.0.0.1:3128`, /no USER:TOKEN@/],
    [`http://cloister@127.0.0.1:3128`, /no USER:TOKEN@/],
    [`http://cloister:${TOKEN.slice(1)}@127.0.0.1:3128`, /token is not 64 hexadecimal digits/],
    [`http://cloister:${TOKEN}0@127.0.0.1:3128`, /token is not 64 hexadecimal digits/],
    [`http://cloister:${TOKEN.slice(1)}g@127.0.0.1:3128`, /token is not 64 hexadecimal digits/],
    [`http://cloister:${TOKEN}@127.0.0.1`, /no HOST:PORT/],
    [`http://cloister:${TOKEN}@guardian.example:3128`, /no HOST:PORT/],
    [`http://cloister:${TOKEN}@127.1:3128`, /host is not an IPv4 address/],
    [`http://cloister:${TOKEN}@127.0.0.1:0`, /port is not a number/],
    [`http://cloister:${TOKEN}@127.0.0.1:65536`, /port is not a number/],
    [`http://cloister:${TOKEN}@127.0.0.1:3128/x`, /port is not a number/],
    [`http://cloister:${TOKEN}@127.0.0.1:+3128`, /port is not a number/],
  ] as const) {
    it(`exits 125 for CLOISTER_PROXY=${url.replace(TOKEN, "<token>")}`, async () => {
      const r = await spawnWith(hostexec, ["ls"], { CLOISTER_PROXY: url }).done;
      assert.equal(r.code, 125);
      assert.match(r.stderr, /^hostexec: CLOISTER_PROXY is malformed: /);
      assert.match(r.stderr, why);
      assert.ok(!r.stderr.includes(TOKEN.slice(0, 20)), "the token is never printed");
    });
  }

  it("accepts localhost and a trailing slash", async () => {
    const g = await replying(exited(3));
    const r = await spawnWith(hostexec, ["ls"], { CLOISTER_PROXY: `http://u:${TOKEN.toUpperCase()}@localhost:${g.port}/` }).done;
    assert.equal(r.code, 3, r.stderr);
    assert.equal(g.sessions[0]?.request.token, TOKEN.toUpperCase());
  });
});

describe("hostexec client: usage", { timeout: 30_000 }, () => {
  it("exits 2 with a usage line without a command", async () => {
    for (const args of [[], ["--"]]) {
      const r = await spawnWith(hostexec, args, {}).done;
      assert.equal(r.code, 2);
      assert.match(r.stderr, /^hostexec: no command given\nUsage: hostexec \[--\] COMMAND/);
    }
  });

  it("exits 2 for an unknown option", async () => {
    const r = await spawnWith(hostexec, ["--frobnicate", "x"], {}).done;
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown option '--frobnicate'/);
  });

  it("prints help and its version, exit 0, even outside a cloister", async () => {
    for (const flag of ["--help", "-h"]) {
      const r = await spawnWith(hostexec, [flag], {}).done;
      assert.equal(r.code, 0);
      assert.match(r.stdout.toString(), /^Usage: hostexec/);
      assert.match(r.stdout.toString(), /on the host/);
      assert.match(r.stdout.toString(), /125 +hostexec itself failed/);
    }
    const v = await spawnWith(hostexec, ["--version"], {}).done;
    assert.equal(v.stdout.toString(), "hostexec (cloister) 1\n");
  });
});

describe("hostexec client: cancelling", { timeout: 30_000 }, () => {
  /** Waits for the human (forever), answers a cancel as the guardian does unless told to ignore it. */
  function waitingGuardian(answerCancel: boolean): Promise<{ port: number; sessions: Session[] }> {
    return startGuardian(async ({ socket, cancelled }) => {
      socket.write(pendingFrame("r1", "waiting for a human"));
      await cancelled;
      if (answerCancel) socket.end(exitFrame({ status: "cancelled", exitCode: 130, message: "cancelled" }));
    });
  }

  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    it(`sends a cancel frame on ${signal} and exits 130 with the guardian's answer`, async () => {
      const g = await waitingGuardian(true);
      const run = runHostexec(g.port, ["sleep", "100"]);
      await run.stderrHas("waiting for a human\n");
      run.child.kill(signal);
      const r = await run.done;
      assert.equal(r.code, 130);
      assert.equal(g.sessions[0]?.sawCancel, true);
      assert.equal(r.stderr, "hostexec: waiting for a human\nhostexec: cancelled\n");
    });
  }

  it("leaves at once with 130 on a second signal", async () => {
    const g = await waitingGuardian(false);
    const run = runHostexec(g.port, ["sleep", "100"]);
    await run.stderrHas("waiting for a human\n");
    run.child.kill("SIGINT");
    await g.sessions[0]?.cancelled;
    run.child.kill("SIGINT");
    const r = await run.done;
    assert.equal(r.code, 130);
  });

  it("cancels when its stdout is closed and exits 141, like SIGPIPE", async () => {
    const g = await startGuardian(async ({ socket, cancelled }) => {
      let stop = false;
      void cancelled.then(() => (stop = true));
      socket.write(outputFrame("O", Buffer.from("first line\n")));
      // Output keeps coming, as from `yes`, until the client cancels.
      while (!stop) {
        socket.write(outputFrame("O", Buffer.alloc(4096, "y")));
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      socket.end(exitFrame({ status: "cancelled", exitCode: 130, message: "cancelled" }));
    });
    const run = runHostexec(g.port, ["yes"]);
    run.child.stdout?.once("data", () => run.child.stdout?.destroy());
    const r = await run.done;
    assert.equal(r.code, 141);
    assert.equal(g.sessions[0]?.sawCancel, true);
    assert.equal(r.stderr, "", "a reader that left gets no epilogue");
  });
});
