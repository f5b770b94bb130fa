/**
 * The listener hand-over, both sides for real on the host (no namespace needed): the cloister's
 * bridge (`cloister-init relay PORT --hand-over SOCKET PATH`) offers its listening socket, and
 * the guardian's ListenerHandover (with the native addon) takes it. Connections then reach the
 * guardian's handler without the bridge; when the guardian's side closes, the bridge accepts
 * again, and offers anew. Hostile offers (sent by python3, which can pass descriptors) are
 * refused without leaking a descriptor. No timing assertions: only where connections arrive.
 */
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { ListenerHandover } from "../../src/guardian/proxy/listener-handover.js";
import { REPO_ROOT, waitUntil } from "../helpers/cloister.js";
import { HANDOVER_OFFER_PY } from "../helpers/handover.js";
import { freePort } from "../helpers/net-sinks.js";
import { NO_PYTHON } from "../helpers/oracles.js";

const execFileAsync = promisify(execFile);
const BIN = join(REPO_ROOT, "native", "build", "cloister-init");

let dir = "";
let port = 0;
let relay: ChildProcess;
/** The bridge's guardian socket: a connection arriving here came through the bridge. */
let bridged: Server;
let bridgedCount = 0;
/** Connections the guardian's handler got from the taken listener. */
let directCount = 0;
let handover: ListenerHandover | undefined;
/** Other guardian sides a test opened: closed at the end even when the test failed half-way. */
const extra: ListenerHandover[] = [];

const handoverPath = () => join(dir, "handover.sock");
const onDirect = (socket: Socket) => {
  directCount++;
  socket.on("error", () => undefined); // the hostile test's connected socket closes unread: a reset
  socket.resume(); // accepted paused, as the guardian's endpoint wants them
  socket.end("direct\n");
};

/** One connection to the cloister's port; resolves with what it was answered ("direct" or "bridged"). */
async function ask(): Promise<string> {
  const socket = connect({ host: "127.0.0.1", port });
  let text = "";
  socket.on("data", (chunk: Buffer) => (text += chunk.toString()));
  await once(socket, "close");
  return text.trim();
}

function openFds(): number {
  return readdirSync("/proc/self/fd").length;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "cloister-handover-"));
  port = await freePort();
  bridged = createServer((socket) => {
    bridgedCount++;
    socket.end("bridged\n");
  });
  bridged.listen(join(dir, "proxy.sock"));
  await once(bridged, "listening");
  handover = await ListenerHandover.open(handoverPath(), port, onDirect);
  relay = spawn(BIN, ["relay", String(port), "--hand-over", handoverPath(), join(dir, "proxy.sock")], { stdio: "ignore" });
});

after(async () => {
  handover?.close();
  for (const other of extra) other.close();
  relay.kill("SIGKILL");
  bridged.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("the listener hand-over", () => {
  it("the bridge offers its listener at start; the guardian takes it, and connections skip the bridge", async () => {
    await waitUntil("the guardian never took the listener", () => handover?.taken === true);
    const answers = await Promise.all(Array.from({ length: 20 }, () => ask()));
    assert.deepEqual(new Set(answers), new Set(["direct"]));
    assert.equal(bridgedCount, 0, "a connection went through the bridge after the hand-over");
  });

  it("when the guardian's side closes (guardian stopped or gone), the bridge accepts again at once: nothing is refused", async () => {
    handover?.close();
    handover = undefined;
    // The bridge hears the end on its next event; until then the guardian's listener is closed
    // and connections wait in the shared queue for the bridge to accept them.
    const answers = await Promise.all(Array.from({ length: 20 }, () => ask()));
    assert.deepEqual(new Set(answers), new Set(["bridged"]));
  });

  it("a guardian back at the same path gets the listener offered again, and takes it", async () => {
    handover = await ListenerHandover.open(handoverPath(), port, onDirect);
    await waitUntil("the listener was not offered again", () => handover?.taken === true);
    const before = directCount;
    assert.equal(await ask(), "direct");
    assert.equal(directCount, before + 1);
  });

  it("hostile offers are refused and leak no descriptor; a valid one is taken", { skip: NO_PYTHON }, async () => {
    const fdsBefore = openFds();
    // A guardian side with no offer taken, for a port Q the script listens on itself: so every
    // offer reaches the checks, and most bad ones differ from the valid offer in one thing only
    // (the magic, a second descriptor, the port, the address). The last offer is valid and taken;
    // then one more is refused because one is taken.
    const q = await freePort();
    const lone = await ListenerHandover.open(join(dir, "lone.sock"), q, onDirect);
    extra.push(lone);
    const script = String.raw`
import os, socket, sys
lone, q = sys.argv[1], int(sys.argv[2])
${HANDOVER_OFFER_PY}
def attempt(name, data, fds=(), keep=False):
    outcome, s = offer(lone, data, fds)
    print(name, outcome, flush=True)
    if keep:
        return s
    s.close()
def sock(family=socket.AF_INET, kind=socket.SOCK_STREAM, addr=("127.0.0.1", q), listen=True):
    s = socket.socket(family, kind)
    if family != socket.AF_UNIX:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if addr is not None:
        s.bind(addr)
    if listen:
        s.listen()
    return s
valid = sock()
other_port = sock(addr=("127.0.0.1", 0))
other_address = sock(addr=("127.0.0.2", q))
unix = sock(socket.AF_UNIX, addr="\0cloister-handover-test-%d" % os.getpid())
udp = sock(kind=socket.SOCK_DGRAM, listen=False)
try:
    v6 = sock(socket.AF_INET6, addr=("::1", q))
except OSError:
    v6 = sock(socket.AF_INET6, addr=None)
client = socket.create_connection(("127.0.0.1", q))
accepted, _ = valid.accept()
r, w = os.pipe()
attempt("garbage", b"GET / HTTP/1.1\r\n\r\n", [valid])
attempt("wrong-magic", b"cloister-listener 2\n", [valid])
attempt("no-descriptor", MAGIC)
attempt("two-descriptors", MAGIC, [valid, valid])
attempt("accepted-socket", MAGIC, [accepted])
attempt("udp", MAGIC, [udp])
attempt("ipv6", MAGIC, [v6])
attempt("other-port", MAGIC, [other_port])
attempt("other-address", MAGIC, [other_address])
attempt("unix", MAGIC, [unix])
attempt("pipe", MAGIC, [r])
attempt("silence", b"")
# The valid offer's connection stays open while the last one is made: closing it ends the hand-over.
taken = attempt("valid", MAGIC, [valid], keep=True)
attempt("while-taken", MAGIC, [valid])
taken.close()
`;
    // Not spawnSync: the guardian's side runs in this process, and must go on serving meanwhile.
    const result = await execFileAsync("python3", ["-c", script, join(dir, "lone.sock"), String(q)], { encoding: "utf8", timeout: 60_000 });
    const answers = new Map(
      result.stdout
        .trim()
        .split("\n")
        .map((line) => line.split(" ", 2) as [string, string]),
    );
    assert.equal(answers.size, 14, result.stdout);
    for (const [name, answer] of answers) {
      if (name === "valid") assert.equal(answer, "answer:1", "the valid offer was not taken");
      else assert.match(answer, /^(closed|ConnectionResetError|BrokenPipeError)$/, `${name}: ${answer}`);
    }
    // The script closed the valid offer's connection when it was done with it: that ends the hand-over.
    await waitUntil("the guardian let go of a listener whose offer closed", () => !lone.taken);
    lone.close();
    // The bridge's offer is still the one taken, and connections still skip the bridge.
    assert.equal(handover?.taken, true);
    assert.equal(await ask(), "direct");
    await waitUntil(`the guardian's side holds ${openFds() - fdsBefore} more descriptor(s) than before`, () => openFds() <= fdsBefore);
  });

  it("a bad relay command line (a missing or extra argument, an empty, relative or too long socket path) exits 125 with one line, listening on nothing", async () => {
    const long = `/tmp/${"x".repeat(200)}.sock`;
    // A free port: a command line taken as valid would listen there and run until the timeout.
    const free = String(await freePort());
    const bad = [
      ["relay", free, "--hand-over"],
      ["relay", free, "--hand-over", handoverPath()],
      ["relay", free, "--hand-over", "", join(dir, "proxy.sock")],
      ["relay", free, "--hand-over", "handover.sock", join(dir, "proxy.sock")],
      ["relay", free, "--hand-over", long, join(dir, "proxy.sock")],
      ["relay", free, "--hand-over", handoverPath(), join(dir, "proxy.sock"), "extra"],
      ["relay", "--fd", "x", "--hand-over", handoverPath(), join(dir, "proxy.sock")],
      ["relay", "--hand-over", handoverPath(), join(dir, "proxy.sock")],
    ];
    for (const args of bad) {
      const result = await execFileAsync(BIN, args, { timeout: 10_000 }).then(
        () => ({ code: 0, stderr: "" }),
        (error: { code?: number; stderr?: string }) => ({ code: error.code, stderr: error.stderr ?? "" }),
      );
      assert.equal(result.code, 125, `${args.join(" ")}: ${result.stderr}`);
      assert.match(result.stderr, /^cloister-init: (usage: cloister-init relay|relay: socket paths must be absolute|relay: \/tmp\/x+\.sock: File name too long)/, args.join(" "));
      assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
    }
  });

  it("the bridge gone (its process killed): the guardian lets go of the listener", async () => {
    relay.kill("SIGKILL");
    await once(relay, "exit");
    await waitUntil("the guardian still accepts on a dead bridge's listener", () => handover?.taken === false);
  });
});
