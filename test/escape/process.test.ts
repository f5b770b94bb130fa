/**
 * Escape suite, "Process" section of SECURITY.md: only the cloister's own processes are visible and
 * PID 1 is its init; no secret in any visible process's environment or argv; every process inside
 * (init and the network relay included) runs without capabilities, with no_new_privs and a seccomp
 * filter; setuid binaries gain nothing; terminal injection, other ABIs and io_uring are refused;
 * ptrace and signals reach nothing outside; nothing outlives `stop`, the end of `run`, a timeout or a
 * guardian crash (double-forked daemons included), checked on the HOST's process table.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createCloister } from "../../src/cloister.js";
import { resolvePaths } from "../../src/config/paths.js";
import { detectLimitMechanism } from "../../src/sandbox/limits.js";
import { listRecords, type CloisterRecord } from "../../src/sandbox/records.js";
import { fileURLToPath } from "node:url";
import { createInstance, leakedCanaries, spawnCli, waitUntil, type CliResult, type TestInstance } from "../helpers/cloister.js";
import { commandLine, hostProcessesNaming, hostTree, isAlive, readOr, survivors, waitGone, type HostProc } from "../helpers/host-processes.js";

const PROBE_SOURCE = fileURLToPath(new URL("../fixtures/syscall-probe.c", import.meta.url));
const SIGSYS = 31;
/** Attacker scripts use python3 from the host's /usr (bound read-only inside). */
const NO_PYTHON = ["/usr/bin/python3", "/usr/local/bin/python3"].some((p) => existsSync(p)) ? false : "python3 is not installed";
const EPERM = 1;
const ESRCH = 3;

// ---------------------------------------------------------------------------------------------
// Host-side process bookkeeping: a cloister's host processes are its keeper and every descendant.

/** The cloister records of the instance, read as the guardian reads them. */
function records(t: TestInstance): CloisterRecord[] {
  return listRecords(resolvePaths({ CLOISTER_HOME: t.home }));
}

function keeperOf(t: TestInstance, name: string): number {
  const record = records(t).find((r) => r.name === name);
  assert.ok(record?.keeperPid, `no record with a keeper for ${name}`);
  return record.keeperPid;
}

/** Host processes (pid and command) whose mount table names `fragment`: a cloister's, by its HOME directory's name. */
function processesMounting(fragment: string): string[] {
  return readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry) && readOr(`/proc/${entry}/mountinfo`).includes(fragment))
    .map((pid) => `${pid} ${commandLine(Number(pid))}`);
}

// ---------------------------------------------------------------------------------------------
// CLI helpers

interface GuardianStatusJson {
  running: boolean;
  pid?: number;
}

async function guardianStatus(t: TestInstance): Promise<GuardianStatusJson> {
  const r = await t.cli(["guardian", "status", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as GuardianStatusJson;
}

async function execIn(t: TestInstance, name: string, script: string): Promise<CliResult> {
  return t.cli(["exec", name, "--", "sh", "-c", script]);
}

/**
 * A double-forked daemon: the middle shell is a new session, the sleep is orphaned to PID 1 inside.
 * Its pid (inside) lands in /tmp/daemon.pid; the script waits until it is there.
 */
const DAEMON =
  `sh -c 'setsid sh -c "sleep 300 & echo \\$! > /tmp/daemon.pid" </dev/null >/dev/null 2>&1 &'; ` +
  `i=0; while [ ! -s /tmp/daemon.pid ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; cat /tmp/daemon.pid; `;

function hasDaemon(procs: readonly HostProc[]): boolean {
  return procs.some((p) => p.cmd === "sleep 300");
}

// ---------------------------------------------------------------------------------------------
// In-sandbox views of /proc

interface ProcView {
  pid: number;
  ppid: number;
  cmdline: string | null;
  environ: string | null;
  status: string;
}

const PROC_DUMP = String.raw`
import json, os
out = []
for entry in os.listdir("/proc"):
    if not entry.isdigit():
        continue
    view = {"pid": int(entry)}
    for name in ("cmdline", "environ", "status"):
        try:
            with open("/proc/%s/%s" % (entry, name), "rb") as f:
                view[name] = f.read().decode("utf-8", "replace").replace("\0", " ").strip()
        except OSError:
            view[name] = None
    if view["status"] is None:
        continue  # gone meanwhile
    ppid = [l for l in view["status"].splitlines() if l.startswith("PPid:")]
    view["ppid"] = int(ppid[0].split()[1]) if ppid else -1
    out.append(view)
print(json.dumps(out))
`;

async function procViews(t: TestInstance, name: string): Promise<ProcView[]> {
  const r = await t.cli(["exec", name, "--", "python3", "-c", PROC_DUMP]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as ProcView[];
}

function statusField(status: string, key: string): string | undefined {
  return new RegExp(`^${key}:\\s*(.*)$`, "m").exec(status)?.[1]?.trim();
}

function hasCommand(name: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${name}`]).status === 0;
}

// ---------------------------------------------------------------------------------------------

describe("escape: processes", () => {
  let t: TestInstance;
  let guardianPid = 0;
  /** A host process that no cloister may see, signal or trace. */
  let marker: ChildProcess;
  let probe: string | undefined;
  const probeSkip = hasCommand("cc") ? false : "cc is not installed";
  const x86Skip = process.arch === "x64" ? probeSkip : "x86_64 only";

  before(async () => {
    t = createInstance("proc");
    marker = spawn("sleep", ["987.654"], { stdio: "ignore" });
    for (const name of ["pa", "pb"]) {
      const r = await t.cli(["start", "-d", "--name", name]);
      assert.equal(r.code, 0, r.stderr);
    }
    const status = await guardianStatus(t);
    assert.ok(status.running && status.pid);
    guardianPid = status.pid;
    if (!probeSkip) {
      // Inside the project, so the cloister sees it under /work.
      const dir = mkdtempSync(join(t.project, ".probe-"));
      const built = spawnSync("cc", ["-O1", "-pthread", "-o", join(dir, "syscall-probe"), PROBE_SOURCE], { encoding: "utf8" });
      assert.equal(built.status, 0, built.stderr);
      probe = `/work/${basename(dir)}/syscall-probe`;
    }
  });

  after(async () => {
    marker.kill("SIGKILL");
    await t.teardown();
  });

  async function runProbe(name: string, probes: string[]): Promise<Map<string, string>> {
    assert.ok(probe);
    const r = await t.cli(["exec", name, "--", probe, ...probes]);
    assert.equal(r.code, 0, r.stderr);
    const results = new Map<string, string>();
    for (const line of r.stdout.trim().split("\n")) {
      const [probeName, ...rest] = line.split(" ");
      if (probeName) results.set(probeName, rest.join(" "));
    }
    return results;
  }

  it("shows only the cloister's own processes, with its init as PID 1", { skip: NO_PYTHON }, async () => {
    const views = await procViews(t, "pa");
    const init = views.find((v) => v.pid === 1);
    assert.ok(init, "no PID 1");
    assert.equal(init.ppid, 0);
    assert.ok(init.cmdline?.startsWith("/run/cloister/init init"), `PID 1 is ${init.cmdline}`);
    assert.ok(views.some((v) => v.cmdline?.startsWith("/run/cloister/init relay ") ?? false), "the network relay is not visible");
    for (const v of views) {
      const cmd = v.cmdline ?? "";
      // init, its session handlers, the bridge, and this very command: nothing else.
      assert.match(cmd, /^(\/run\/cloister\/init (init|relay )|python3 -c )/, `unexpected process ${v.pid}: ${cmd}`);
      assert.doesNotMatch(cmd, /bwrap|daemon\.js|cloister-init keep|987\.654|node /, `host process visible: ${cmd}`);
    }
    // A process of the other cloister (its bridge, its init) is not among them: same count of inits.
    assert.ok(views.length <= 6, `too many processes visible: ${views.map((v) => `${v.pid} ${v.cmdline ?? "?"}`).join("; ")}`);
  });

  it("leaks no secret through any visible process's environment or argv", { skip: NO_PYTHON }, async () => {
    const views = await procViews(t, "pa");
    const text = views.map((v) => `${v.cmdline ?? ""}\n${v.environ ?? ""}`).join("\n");
    assert.ok(views.some((v) => v.environ !== null && v.environ.includes("PATH=")), "no environment was readable: the check would prove nothing");
    assert.deepEqual(leakedCanaries(t, text), []);
    assert.doesNotMatch(text, /GITHUB_TOKEN|ANTHROPIC_API_KEY|SSH_AUTH_SOCK/);
    // Host paths of the instance (CLOISTER_HOME, fake HOME, project path) and the guardian's pid.
    const base = dirname(t.home);
    assert.ok(!text.includes(base), `a host path (${base}) is visible inside`);
    assert.doesNotMatch(text, new RegExp(`(^|[^0-9A-Za-z])${guardianPid}([^0-9A-Za-z]|$)`), "the guardian's pid is visible inside");
    assert.ok(!views.some((v) => v.pid === guardianPid && (v.cmdline ?? "").includes("daemon.js")));
  });

  it("shows none of the host user's kernel keys, nor the host's timers: nothing of /proc/keys and friends can be read (red team: key descriptions were listed)", async () => {
    const hostKeys = existsSync("/proc/keys") ? readFileSync("/proc/keys", "utf8") : "";
    const r = await t.cli(["exec", "pa", "--", "sh", "-c", "for f in keys key-users timer_list sched_debug; do [ -e /proc/$f ] && echo \"$f $(cat /proc/$f 2>/dev/null | wc -c)\"; done; true"]);
    assert.equal(r.code, 0, r.stderr);
    const sizes = new Map(r.stdout.trim().split("\n").filter(Boolean).map((line) => line.split(" ") as [string, string]));
    if (hostKeys !== "") assert.equal(sizes.get("keys"), "0", `the host lists keys (${hostKeys.split("\n").length - 1}); inside: ${r.stdout}`);
    for (const [file, size] of sizes) assert.equal(size, "0", `/proc/${file} shows ${size} bytes`);
  });

  it("runs every process inside (init and the bridge included) without capabilities, with no_new_privs and seccomp", { skip: NO_PYTHON }, async () => {
    const views = await procViews(t, "pa");
    assert.ok(views.some((v) => v.pid === 1));
    assert.ok(views.some((v) => v.cmdline?.startsWith("/run/cloister/init relay ") ?? false));
    for (const v of views) {
      const who = `${v.pid} (${v.cmdline ?? "?"})`;
      for (const key of ["CapEff", "CapPrm", "CapAmb"]) assert.equal(statusField(v.status, key), "0000000000000000", `${key} of ${who}`);
      assert.equal(statusField(v.status, "NoNewPrivs"), "1", `NoNewPrivs of ${who}`);
      assert.equal(statusField(v.status, "Seccomp"), "2", `Seccomp of ${who}`);
    }
  });

  it("gives setuid binaries nothing: mount, su fail; a setuid copy runs without privilege", async () => {
    const r = await execIn(
      t,
      "pa",
      [
        "mkdir -p /tmp/x",
        "/usr/bin/mount -t tmpfs none /tmp/x >/dev/null 2>&1; echo mount=$?",
        "grep -c ' /tmp/x ' /proc/self/mountinfo | sed 's/^/mounted=/'",
        "su root -c 'touch /tmp/su-ran' </dev/null >/dev/null 2>&1; echo su=$?",
        "[ -e /tmp/su-ran ] && echo su-ran=yes || echo su-ran=no",
        "passwd --help >/dev/null 2>&1; echo passwd=$?",
        "cp /usr/bin/grep /tmp/suidgrep && chmod 4755 /tmp/suidgrep && /tmp/suidgrep -E '^(CapEff|CapPrm|CapAmb|NoNewPrivs):' /proc/self/status",
      ].join("; "),
    );
    assert.match(r.stdout, /^mount=[1-9]\d*$/m, r.stdout + r.stderr);
    assert.match(r.stdout, /^mounted=0$/m);
    assert.match(r.stdout, /^su=[1-9]\d*$/m);
    assert.match(r.stdout, /^su-ran=no$/m);
    assert.match(r.stdout, /^passwd=\d+$/m); // runs (or not): either way, nothing gained
    assert.match(r.stdout, /^CapEff:\s+0000000000000000$/m);
    assert.match(r.stdout, /^CapPrm:\s+0000000000000000$/m);
    assert.match(r.stdout, /^CapAmb:\s+0000000000000000$/m);
    assert.match(r.stdout, /^NoNewPrivs:\s+1$/m);
  });

  it("refuses terminal injection (TIOCSTI, high bits set, TIOCLINUX) but not ordinary tty ioctls", { skip: probeSkip }, async () => {
    const results = await runProbe("pa", ["tiocsti", "tiocsti-hibits", "tioclinux", "tcgets"]);
    assert.equal(results.get("tiocsti"), `errno=${EPERM}`);
    assert.equal(results.get("tiocsti-hibits"), `errno=${EPERM}`);
    assert.equal(results.get("tioclinux"), `errno=${EPERM}`);
    assert.equal(results.get("tcgets"), "ok");
  });

  it("kills a process making i386 (int 0x80) or x32 syscalls", { skip: x86Skip }, async () => {
    const results = await runProbe("pa", ["i386", "x32", "x32-thread"]);
    assert.equal(results.get("i386"), `signal=${SIGSYS}`);
    assert.equal(results.get("x32"), `signal=${SIGSYS}`);
    assert.equal(results.get("x32-thread"), `signal=${SIGSYS}`);
    // The workload process itself, not only a forked probe.
    const r = await execIn(t, "pa", `${probe ?? ""} --direct i386; echo "i386=$?"; ${probe ?? ""} --direct x32; echo "x32=$?"`);
    assert.match(r.stdout, new RegExp(`^i386=${128 + SIGSYS}$`, "m"), r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`^x32=${128 + SIGSYS}$`, "m"));
  });

  it("has no io_uring", { skip: probeSkip }, async () => {
    const results = await runProbe("pa", ["io_uring_setup"]);
    assert.match(results.get("io_uring_setup") ?? "", /^errno=\d+$/);
  });

  it("lets ptrace reach the workload's own child and nothing else", { skip: probeSkip || NO_PYTHON }, async () => {
    const results = await runProbe("pa", ["ptrace"]);
    assert.equal(results.get("ptrace"), "ok");
    const keeper = keeperOf(t, "pa");
    const targets = { init: 1, guardian: guardianPid, marker: marker.pid ?? 0, keeper };
    const script = String.raw`
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
for arg in sys.argv[1:]:
    label, pid = arg.split("=")
    pid = int(pid)
    seen = os.path.exists("/proc/%d" % pid)
    r = libc.ptrace(16, pid, None, None)  # PTRACE_ATTACH
    e = ctypes.get_errno()
    if r == 0:
        libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
    print("%s %s %s" % (label, "visible" if seen else "invisible", "ok" if r == 0 else "errno=%d" % e))
`;
    const r = await t.cli(["exec", "pa", "--", "python3", "-c", script, ...Object.entries(targets).map(([k, v]) => `${k}=${v}`)]);
    assert.equal(r.code, 0, r.stderr);
    const lines = new Map(r.stdout.trim().split("\n").map((l) => [l.split(" ")[0], l.split(" ").slice(1).join(" ")] as const));
    // Init is non-dumpable: not even the cloister's own workload may attach to it.
    assert.equal(lines.get("init"), `visible errno=${EPERM}`);
    for (const label of ["guardian", "marker", "keeper"]) {
      const pid = targets[label as keyof typeof targets];
      if (pid <= 64 && lines.get(label)?.startsWith("visible")) continue; // a small host pid that names an inside process
      assert.equal(lines.get(label), `invisible errno=${ESRCH}`, `${label} (host pid ${pid})`);
    }
  });

  it("keeps the network relay's descriptors out of the workload's reach: its log on the host cannot be written, truncated or chmodded", async () => {
    const record = listRecords(resolvePaths({ CLOISTER_HOME: t.home })).find((r) => r.name === "pa");
    assert.ok(record);
    const log = join(record.runtimeDir, "cloister.log");
    const before = statSync(log);
    const r = await execIn(
      t,
      "pa",
      `for p in /proc/[0-9]*; do
  case "$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)" in
    "/run/cloister/init relay"*)
      echo "relay $p"
      (echo INJECTED >> $p/fd/1) 2>/dev/null && echo "write ok" || echo "write denied"
      chmod 777 $p/fd/1 2>/dev/null && echo "chmod ok" || echo "chmod denied"
      truncate -s 1G $p/fd/1 2>/dev/null && echo "truncate ok" || echo "truncate denied";;
  esac
done`,
    );
    assert.match(r.stdout, /^relay /m, `no relay found inside:\n${r.stdout}${r.stderr}`);
    assert.doesNotMatch(r.stdout, / ok$/m, r.stdout);
    const after = statSync(log);
    assert.deepEqual([after.size, after.mode], [before.size, before.mode], "the relay's host log was changed from inside");
    assert.doesNotMatch(readFileSync(log, "utf8"), /INJECTED/);
  });

  it("delivers `kill -9 -1` inside only to the cloister's processes", async () => {
    await execIn(t, "pa", "kill -9 -1; echo survived"); // the command's own session handler dies with the rest
    assert.ok(marker.pid && isAlive(marker.pid) && marker.signalCode === null, "the host marker process was killed");
    const status = await guardianStatus(t);
    assert.equal(status.running, true);
    assert.equal(status.pid, guardianPid, "the guardian was restarted: it died");
    const other = await execIn(t, "pb", "echo alive");
    assert.equal(other.stdout.trim(), "alive", `another cloister died: ${other.stderr}`);
    const same = await execIn(t, "pa", "echo alive");
    assert.equal(same.stdout.trim(), "alive", `the cloister's init died: ${same.stderr}`);
  });

  it("leaves no process on the host after `stop`, double-forked daemons included", async () => {
    const started = await t.cli(["start", "-d", "--name", "pd"]);
    assert.equal(started.code, 0, started.stderr);
    const r = await execIn(t, "pd", DAEMON);
    assert.match(r.stdout.trim(), /^\d+$/, r.stderr);
    const procs = hostTree(keeperOf(t, "pd"));
    assert.ok(hasDaemon(procs), `the daemon is not among the cloister's host processes: ${JSON.stringify(procs)}`);
    const stopped = await t.cli(["stop", "pd"]);
    assert.equal(stopped.code, 0, stopped.stderr);
    await waitGone(procs, "stop");
  });

  it("leaves no process on the host when stopped while it is still starting (create, then stop at once)", async () => {
    // bwrap's child may not have armed its parent-death signal yet when the keeper dies; that PID 1
    // lived on, orphaned. Now init sees its lifeline hang up and ends (with or without cgroups), and
    // stop also sweeps the cloister's cgroups.
    const paths = resolvePaths({ CLOISTER_HOME: t.home });
    for (const network of [false, true, false, true]) {
      const cloister = await createCloister({ project: t.project, paths, network }, false);
      const { id } = cloister.record;
      await cloister.stop();
      // A dying PID namespace takes a moment to empty: wait for it, then name whatever is left.
      await waitUntil(`cloister ${id} to leave nothing`, () => processesMounting(`.run-${id}`).length === 0, 5_000).catch(() => undefined);
      assert.deepEqual(processesMounting(`.run-${id}`), [], `processes of cloister ${id} (network ${network}) outlived stop`);
    }
  });

  it("a launch called off after its keeper was spawned (the guardian refuses a session rule) leaves no process, cgroup or placeholder", async () => {
    // The keeper is spawned, joins the cloister's cgroups and waits for its program while the
    // guardian works on the grant; here the grant fails, so the launch is called off.
    const paths = resolvePaths({ CLOISTER_HOME: t.home });
    const mechanism = detectLimitMechanism();
    const parents = mechanism.kind === "cgroup2" ? [mechanism.parent] : mechanism.kind === "cgroup1" ? Object.values(mechanism.parents).filter((p) => p !== undefined) : [];
    const cgroups = () => parents.flatMap((parent) => readdirSync(parent).filter((name) => name.startsWith("cloister-")).map((name) => join(parent, name)));
    const keepers = () => hostProcessesNaming(join(t.home, "run", "c"));
    const before = { cgroups: cgroups(), keepers: keepers(), project: readdirSync(t.project).sort() };
    for (const network of [true, true, true]) {
      await assert.rejects(createCloister({ project: t.project, paths, network, allow: ["*.com"] }, false), /top-level domain/);
    }
    await waitUntil("the called-off keepers to exit", () => keepers().length <= before.keepers.length, 5_000).catch(() => undefined);
    assert.deepEqual(keepers(), before.keepers, "keepers of called-off launches are left");
    assert.deepEqual(cgroups(), before.cgroups, "cgroups of called-off launches are left");
    assert.deepEqual(readdirSync(t.project).sort(), before.project, "placeholders are left in the project");
  });

  it("leaves no process on the host after `run` ends", async () => {
    const run = spawnCli(t, ["run", "--", "sh", "-c", `${DAEMON} echo ready; read x; exit 0`]);
    await run.waitFor("ready");
    const record = records(t).find((rec) => !rec.persistent && rec.keeperPid !== undefined);
    assert.ok(record?.keeperPid, "no record of the run's cloister");
    const procs = hostTree(record.keeperPid);
    assert.ok(hasDaemon(procs), `the daemon is not among the cloister's host processes: ${JSON.stringify(procs)}`);
    run.endInput();
    const result = await run.done;
    assert.equal(result.code, 0, result.stderr);
    await waitGone(procs, "the end of run");
    assert.ok(!records(t).some((rec) => rec.name === record.name), "the run's record is left behind");
  });

  it("leaves no process on the host after a --timeout", async () => {
    const run = spawnCli(t, ["run", "--timeout", "3s", "--", "sh", "-c", `${DAEMON} echo ready; sleep 60`]);
    await run.waitFor("ready");
    const record = records(t).find((rec) => !rec.persistent && rec.keeperPid !== undefined);
    assert.ok(record?.keeperPid, "no record of the run's cloister");
    const procs = hostTree(record.keeperPid);
    assert.ok(hasDaemon(procs));
    const result = await run.done;
    assert.equal(result.code, 124, result.stderr);
    await waitGone(procs, "--timeout");
  });

  it("survives a guardian crash, which the next CLI call repairs; `stop` then leaves nothing", async () => {
    const started = await t.cli(["start", "-d", "--name", "pg"]);
    assert.equal(started.code, 0, started.stderr);
    const egress = `curl -s -x "$HTTP_PROXY" http://example.com/; echo " curl=$?"`;
    const before403 = await execIn(t, "pg", egress);
    assert.match(before403.stdout, /egress to example\.com:80 refused.* curl=0/s, before403.stdout + before403.stderr);
    await execIn(t, "pg", DAEMON);
    // The exec's own session handler (a fork of init) may still be ending: it is not the cloister.
    const keeper = keeperOf(t, "pg");
    const sessionEnded = () => hostTree(keeper).filter((p) => p.cmd?.startsWith("/run/cloister/init init") || p.cmd === "").length === 1;
    await waitUntil("the exec's session to end", sessionEnded, 10_000);
    const procs = hostTree(keeper);
    assert.ok(hasDaemon(procs));

    const old = await guardianStatus(t);
    assert.ok(old.pid);
    process.kill(old.pid, "SIGKILL");
    await waitUntil("the guardian to die", () => !isAlive(old.pid ?? 0));
    assert.deepEqual(survivors(procs).map((p) => p.pid).sort(), procs.map((p) => p.pid).sort(), `the cloister died with its guardian: ${JSON.stringify(procs.map((p) => [p.pid, p.cmd?.slice(0, 40)]))}`);

    // The cloister still answers; this call also brings the guardian back.
    const alive = await execIn(t, "pg", "echo alive");
    assert.equal(alive.stdout.trim(), "alive", alive.stderr);
    const restarted = await guardianStatus(t);
    assert.equal(restarted.running, true, "the next CLI call did not restart the guardian");
    assert.notEqual(restarted.pid, old.pid);
    guardianPid = restarted.pid ?? 0;
    const list = await t.cli(["list", "--json"]);
    const entries = JSON.parse(list.stdout) as { name: string; running: boolean }[];
    assert.deepEqual(entries.find((e) => e.name === "pg")?.running, true, "the cloister was lost");
    // The restarted guardian re-created the cloister's egress socket.
    const after403 = await execIn(t, "pg", egress);
    assert.match(after403.stdout, /egress to example\.com:80 refused.* curl=0/s, after403.stdout + after403.stderr);

    const stopped = await t.cli(["stop", "pg"]);
    assert.equal(stopped.code, 0, stopped.stderr);
    await waitGone(procs, "stop after a guardian crash");
  });
});
