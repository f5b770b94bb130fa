/**
 * Escape suite, IPC section of SECURITY.md: no host unix socket (path or abstract) is reachable from
 * a cloister, socket-bearing variables are unset, the IPC namespace is empty, and the only channel to
 * the guardian is the cloister's own proxy socket (read-only inside) behind 127.0.0.1:3128.
 * Real listeners are created on the host where an attacker would look; each must see zero connections.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmdirSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createInstance, type CliResult, type TestInstance } from "../helpers/cloister.js";
import {
  assertLive,
  assertNoCanaryAnywhere,
  assertRefused,
  diffSnapshots,
  hostSensitiveSnapshot,
  NO_PYTHON,
  parseSteps,
  PY_PRELUDE,
  PYTHON,
  SH_PRELUDE,
  stepsWithPrefix,
  type Snapshot,
} from "../helpers/oracles.js";

const UID = process.getuid?.() ?? 0;
const TAG = randomBytes(4).toString("hex");

function python(body: string): string {
  return `${PYTHON} - <<'PYEOF'\n${PY_PRELUDE}\n${body}\nPYEOF\n`;
}

async function attack(t: Pick<TestInstance, "cli">, script: string): Promise<CliResult> {
  const r = await t.cli(["run", "--", "sh", "-c", SH_PRELUDE + script]);
  if (process.env.ESCAPE_DEBUG) process.stderr.write(`--- attack (exit ${r.code})\n${r.stdout}${r.stderr}`);
  return r;
}

/** A listening unix socket on the host that counts the connections it gets. */
interface HostListener {
  label: string;
  /** Filesystem path, or "\0name" for an abstract socket. */
  address: string;
  server: Server;
  connections: number;
}

function listen(label: string, address: string): Promise<HostListener> {
  return new Promise((resolve, reject) => {
    const listener: HostListener = { label, address, server: createServer(), connections: 0 };
    listener.server.on("connection", (socket) => {
      listener.connections++;
      socket.destroy();
    });
    listener.server.once("error", reject);
    listener.server.listen(address, () => resolve(listener));
  });
}

/** Makes `dir` (and records it for removal) unless it exists; false when that is not possible. */
function ensureDir(dir: string, mode: number, created: string[]): boolean {
  if (existsSync(dir)) return true;
  try {
    mkdirSync(dir, { mode });
    chmodSync(dir, mode);
    created.unshift(dir);
    return true;
  } catch {
    return false;
  }
}

/** Unix sockets that already listen on the host (paths and abstract names), from /proc/net/unix. */
function existingHostSockets(limit: number): string[] {
  const found = new Set<string>();
  for (const line of readFileSync("/proc/net/unix", "utf8").split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    // Flags 00010000 = __SO_ACCEPTCON: a listening socket.
    if (fields.length >= 8 && fields[3] === "00010000" && fields[7]) found.add(fields[7].startsWith("@") ? `\0${fields[7].slice(1)}` : fields[7]);
  }
  return [...found].slice(0, limit);
}

describe("escape/ipc", { skip: NO_PYTHON }, () => {
  let t: TestInstance;
  let hostBefore: Snapshot;
  const listeners: HostListener[] = [];
  const createdDirs: string[] = [];
  const ipcObjects: { kind: "m" | "q" | "s"; id: string; key: string }[] = [];
  let probeResult: Promise<CliResult> | undefined;

  before(async () => {
    t = createInstance("ipc");
    // Where an attacker looks: the agent socket SSH_AUTH_SOCK names, a D-Bus session bus in HOME,
    // an X11 display socket, the user's runtime dir (Wayland, systemd, pipewire), a system socket in
    // /run (docker.sock, the system bus), and an abstract socket (not a file: only the network
    // namespace separates it).
    listeners.push(await listen("ssh-agent", join(t.hostHome, "agent.sock")));
    listeners.push(await listen("dbus-session", join(t.hostHome, "bus")));
    if (ensureDir("/tmp/.X11-unix", 0o1777, createdDirs)) listeners.push(await listen("x11", `/tmp/.X11-unix/X${90 + (randomBytes(1)[0] ?? 0) % 9}`));
    const runtimeDir = `/run/user/${UID}`;
    if (ensureDir("/run/user", 0o755, createdDirs) && ensureDir(runtimeDir, 0o700, createdDirs)) {
      listeners.push(await listen("wayland", join(runtimeDir, `wayland-ct${TAG}`)));
      listeners.push(await listen("runtime-dir", join(runtimeDir, `ct-${TAG}.sock`)));
    }
    try {
      listeners.push(await listen("run", `/run/ct-${TAG}.sock`));
    } catch {
      // /run not writable for this user: the other sockets stand in.
    }
    listeners.push(await listen("abstract", `\0cloister-test-${TAG}`));
    const x11 = listeners.find((l) => l.label === "x11");
    Object.assign(t.env, {
      DBUS_SESSION_BUS_ADDRESS: `unix:path=${join(t.hostHome, "bus")}`,
      DBUS_SYSTEM_BUS_ADDRESS: `unix:path=/run/ct-${TAG}.sock`,
      DISPLAY: x11 ? `:${x11.address.slice("/tmp/.X11-unix/X".length)}` : ":99",
      WAYLAND_DISPLAY: `wayland-ct${TAG}`,
      XDG_RUNTIME_DIR: runtimeDir,
      DOCKER_HOST: `unix:///run/ct-${TAG}.sock`,
      PULSE_SERVER: `unix:${runtimeDir}/pulse/native`,
      GPG_AGENT_INFO: `${t.hostHome}/.gnupg/S.gpg-agent:0:1`,
    });
    // System V IPC objects on the host, in the host's IPC namespace.
    for (const [kind, args] of [["m", ["-M", "4096"]], ["q", ["-Q"]], ["s", ["-S", "1"]]] as const) {
      const r = spawnSync("ipcmk", args, { encoding: "utf8" });
      const id = /id: (\d+)/.exec(r.stdout)?.[1];
      if (id === undefined) continue;
      const table = { m: "shm", q: "msg", s: "sem" }[kind];
      const row = readFileSync(`/proc/sysvipc/${table}`, "utf8")
        .split("\n")
        .map((l) => l.trim().split(/\s+/))
        .find((f) => f[1] === id);
      ipcObjects.push({ kind, id, key: row?.[0] ?? "0" });
      assert.notEqual(row?.[0] ?? "0", "0", `sanity: ipcmk made an object with a key (${table} ${id})`);
    }
    hostBefore = hostSensitiveSnapshot(t);
  });

  after(async () => {
    for (const l of listeners) await new Promise<void>((resolve) => l.server.close(() => resolve()));
    for (const l of listeners) if (!l.address.startsWith("\0")) rmSync(l.address, { force: true });
    for (const o of ipcObjects) spawnSync("ipcrm", [`-${o.kind}`, o.id]);
    for (const dir of createdDirs) {
      try {
        rmdirSync(dir);
      } catch {
        // Someone else uses it now.
      }
    }
    await t?.teardown();
  });

  /** One cloister run probes every socket, variable and listener; the cases below read its steps. */
  function probe(): Promise<CliResult> {
    const targets = [
      ...listeners.map((l) => [l.label, l.address] as const),
      ...existingHostSockets(40).map((address, i) => [`host-existing-${i}`, address] as const),
      ["guardian-control", join(t.home, "run", "guardian.sock")] as const,
      ["docker", "/var/run/docker.sock"] as const,
      ["system-bus", "/run/dbus/system_bus_socket"] as const,
      ["systemd-private", "/run/systemd/private"] as const,
      ["gpg-agent", join(t.hostHome, ".gnupg", "S.gpg-agent")] as const,
    ];
    probeResult ??= attack(
      t,
      `
for v in SSH_AUTH_SOCK DBUS_SESSION_BUS_ADDRESS DBUS_SYSTEM_BUS_ADDRESS DISPLAY WAYLAND_DISPLAY XDG_RUNTIME_DIR DOCKER_HOST PULSE_SERVER GPG_AGENT_INFO; do
  eval "val=\\\${$v-unset}"; echo "STEP env:$v $val"
done
# Socket files anywhere (system trees without runtime sockets are skipped for speed).
find / \\( -path /proc -o -path /sys -o -path /usr -o -path /opt -o -path /nix \\) -prune -o -type s -print 2>/dev/null | sed 's/^/STEP socket-file:/; s/$/ present/'
find / \\( -path /proc -o -path /sys -o -path /usr -o -path /opt \\) -prune -o -name 'guardian.sock' -print 2>/dev/null | sed 's/^/STEP guardian-sock-file:/; s/$/ present/'
awk 'FNR > 1 && $4 == "0A" { print "STEP tcp-listen:" $2 " present" }' /proc/net/tcp /proc/net/tcp6
awk 'FNR > 1 { print "STEP udp:" $2 " present" }' /proc/net/udp /proc/net/udp6
${python(`
targets = ${JSON.stringify(targets)}
def connect(address, kind):
    s = socket.socket(socket.AF_UNIX, kind)
    s.settimeout(5)
    try:
        s.connect(address)
    finally:
        s.close()
for label, address in targets:
    step("connect:" + label, lambda a=address: connect(a, socket.SOCK_STREAM))
    step("connect-seqpacket:" + label, lambda a=address: connect(a, socket.SOCK_SEQPACKET))
`)}`,
    );
    return probeResult;
  }

  it("no host unix socket is reachable (ssh-agent, D-Bus, X11, Wayland, runtime dir, /run, abstract, existing host sockets); host listeners see zero connections", async () => {
    const r = await probe();
    const steps = parseSteps(r.stdout);
    const connects = [...stepsWithPrefix(steps, "connect:"), ...stepsWithPrefix(steps, "connect-seqpacket:")];
    assert.ok(connects.length >= 2 * (listeners.length + 5), `probe did not run:\n${r.stdout}\n${r.stderr}`);
    // Files are absent (ENOENT); abstract names live in the cloister's own network namespace (ECONNREFUSED).
    assertRefused(steps, connects, ["ENOENT", "ECONNREFUSED"]);
    assert.equal(steps.get("connect:abstract"), "ECONNREFUSED");
    assert.deepEqual(
      listeners.filter((l) => l.connections > 0).map((l) => `${l.label}: ${l.connections}`),
      [],
      "a host listener was reached from inside",
    );
  });

  it("SSH_AUTH_SOCK, DBUS_SESSION_BUS_ADDRESS, DISPLAY, WAYLAND_DISPLAY and other socket variables are unset inside although set on the host", async () => {
    const steps = parseSteps((await probe()).stdout);
    const vars = stepsWithPrefix(steps, "env:");
    assert.equal(vars.length, 9);
    assertRefused(steps, vars, ["unset"]);
  });

  it("the only socket files inside are the cloister's proxy and hand-over sockets, the only listener 127.0.0.1:3128; the guardian's control socket is not visible", async () => {
    const r = await probe();
    const steps = parseSteps(r.stdout);
    assert.ok(existsSync(join(t.home, "run", "guardian.sock")), "sanity: the guardian's control socket exists on the host");
    assert.deepEqual(stepsWithPrefix(steps, "socket-file:").sort(), ["socket-file:/run/cloister/guardian/handover.sock", "socket-file:/run/cloister/guardian/proxy.sock"], r.stderr);
    assert.deepEqual(stepsWithPrefix(steps, "guardian-sock-file:"), []);
    assert.equal(steps.get("connect:guardian-control"), "ENOENT");
    assert.deepEqual(stepsWithPrefix(steps, "tcp-listen:"), ["tcp-listen:0100007F:0C38"]);
    assert.deepEqual(stepsWithPrefix(steps, "udp:"), []);
  });

  it("the IPC namespace is empty: the host's System V objects are not listed and cannot be opened by key", async () => {
    const r = await attack(
      t,
      `ipcs -a | grep -c '^0x' | sed 's/^/STEP ipcs-entries /'
${python(`
for table in ("shm", "msg", "sem"):
    rows = open("/proc/sysvipc/" + table).read().strip().split("\\n")[1:]
    print("STEP sysvipc:%s %d" % (table, len(rows)))
libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
objects = ${JSON.stringify(ipcObjects)}
for o in objects:
    key = int(o["key"])
    if o["kind"] == "m":
        step("shmget:" + o["id"], lambda key=key: check(libc.shmget(key, 0, 0)))
        step("shmat:" + o["id"], lambda i=int(o["id"]): check(ctypes.c_long(libc.shmat(i, None, 0)).value))
    elif o["kind"] == "q":
        step("msgget:" + o["id"], lambda key=key: check(libc.msgget(key, 0)))
    else:
        step("semget:" + o["id"], lambda key=key: check(libc.semget(key, 0, 0)))
`)}`,
    );
    const steps = parseSteps(r.stdout);
    assert.equal(steps.get("ipcs-entries"), "0", r.stderr);
    for (const table of ["shm", "msg", "sem"]) assert.equal(steps.get(`sysvipc:${table}`), "0", table);
    const opens = [...steps.keys()].filter((k) => /^(shm|msg|sem)(get|at):/.test(k));
    assert.equal(opens.length, ipcObjects.length + ipcObjects.filter((o) => o.kind === "m").length);
    assertRefused(steps, opens, ["ENOENT", "EINVAL", "EIDRM", "EACCES"]);
  });

  it("the proxy and hand-over sockets cannot be removed, replaced, re-bound or unmounted; the channel still answers afterwards", async () => {
    const sockets = { proxy: "/run/cloister/guardian/proxy.sock", handover: "/run/cloister/guardian/handover.sock" };
    const r = await attack(
      t,
      `
step umount-guardian umount /run/cloister/guardian
step mount-over mount -t tmpfs x /run/cloister/guardian
${python(`
import time
SOCKETS = ${JSON.stringify(sockets)}
def rebind(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(path)
        s.listen(1)
    finally:
        s.close()
for name, path in SOCKETS.items():
    step("unlink:" + name, lambda p=path: os.unlink(p))
    step("rename:" + name, lambda p=path: os.rename(p, p + ".old"))
    step("chmod:" + name, lambda p=path: os.chmod(p, 0o777))
    step("symlink-over:" + name, lambda p=path: os.symlink("/tmp/evil.sock", p))
    step("bind-same-path:" + name, lambda p=path: rebind(p))
step("rename-dir", lambda: os.rename("/run/cloister/guardian", "/run/cloister/guardian.old"))
step("rmdir-dir", lambda: os.rmdir("/run/cloister/guardian"))
step("create-in-dir", lambda: os.close(os.open("/run/cloister/guardian/evil.sock", os.O_CREAT | os.O_WRONLY, 0o600)))
step("umount2", lambda: check(libc.umount2(b"/run/cloister/guardian", 2)))
def http_via_port():
    s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
    try:
        s.sendall(b"GET http://example.com/ HTTP/1.1\\r\\nHost: example.com\\r\\n\\r\\n")
        return s.recv(200).split(b"\\r\\n")[0].decode()
    finally:
        s.close()
step("still-answers", http_via_port)
`)}`,
    );
    const steps = parseSteps(r.stdout);
    assertRefused(steps, ["umount-guardian", "mount-over"], ["FAIL"], r.stderr);
    const perSocket = ["unlink", "rename", "chmod", "symlink-over", "bind-same-path"].flatMap((step) => [`${step}:proxy`, `${step}:handover`]);
    assertRefused(steps, [...perSocket, "rename-dir", "rmdir-dir", "create-in-dir", "umount2"], [
      "EROFS",
      "EBUSY",
      "EEXIST",
      "EADDRINUSE",
      "EPERM",
      "EACCES",
    ]);
    // The guardian, not something planted inside, answers on the cloister's proxy port.
    assert.match(steps.get("still-answers") ?? "", /^OK HTTP\/1\.[01] \d{3}/);
  });

  it("afterwards: host files unchanged, no canary in output, project or logs, and a second cloister runs", async () => {
    const r = await probe();
    assert.deepEqual(diffSnapshots(hostBefore, hostSensitiveSnapshot(t)), []);
    assertNoCanaryAnywhere(t, r.stdout, r.stderr);
    await assertLive(t);
    assert.deepEqual(listeners.filter((l) => l.connections > 0).map((l) => l.label), []);
  });
});
