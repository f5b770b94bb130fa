/**
 * Escape suite, "Resources" section of SECURITY.md: a fork bomb, a memory hog, a tmpfs fill, an
 * output flood, CPU spinners and a proxy flood are contained per cloister; meanwhile the host, the
 * guardian and other cloisters keep working (a bystander cloister, a fresh `run`, `guardian status`).
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, realpathSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { resolvePaths } from "../../src/config/paths.js";
import { listRecords, type CloisterRecord } from "../../src/sandbox/records.js";
import { asUserSkipReason, createUserInstance, type UserInstance } from "../helpers/as-user.js";
import { CLI, createInstance, spawnCli, waitUntil, withConfig, type TestInstance } from "../helpers/cloister.js";
import { hostProcessTable, hostTree, readOr } from "../helpers/host-processes.js";

const MiB = 1024 * 1024;
const TIME_BIN = "/usr/bin/time";
/** The bomb, the hog and the flood are python3 scripts, run from the host's /usr inside. */
const NO_PYTHON = ["/usr/bin/python3", "/usr/local/bin/python3"].some((p) => existsSync(p)) ? false : "python3 is not installed";

/** The cloister records of the instance, read as the guardian reads them. */
function records(t: TestInstance): CloisterRecord[] {
  return listRecords(resolvePaths({ CLOISTER_HOME: t.home }));
}

/** The record of the one `run` cloister in progress (waits for it to have a keeper). */
async function runRecord(t: TestInstance): Promise<CloisterRecord> {
  let found: CloisterRecord | undefined;
  await waitUntil("the run's cloister record", () => {
    found = records(t).find((r) => !r.persistent && r.keeperPid !== undefined);
    return found !== undefined;
  }, 30_000);
  assert.ok(found);
  return found;
}

/** A cgroup file of a cloister (v1: the first of its dirs holding that file; v2: its one dir). */
function cgroupFile(record: CloisterRecord, file: string): string | undefined {
  return record.cgroupDirs.map((dir) => join(dir, file)).find((path) => existsSync(path));
}

describe("escape: resources", () => {
  let t: TestInstance;
  /** How this host applies limits (cgroup2, cgroup1 or rlimit), from a live cloister's record. */
  let mechanism = "";
  let guardianPid = 0;

  before(async () => {
    t = createInstance("res");
    const r = await t.cli(["start", "-d", "--name", "bystander"]);
    assert.equal(r.code, 0, r.stderr);
    mechanism = records(t).find((rec) => rec.name === "bystander")?.limitMechanism ?? "";
    guardianPid = (await guardianStatus()).pid ?? 0;
  });
  after(async () => t.teardown());

  async function guardianStatus(): Promise<{ running: boolean; pid?: number }> {
    const r = await t.cli(["guardian", "status", "--json"]);
    return JSON.parse(r.stdout) as { running: boolean; pid?: number };
  }

  /** Liveness: a fresh cloister runs, the bystander answers, the guardian is the same process. */
  async function assertHostFine(context: string): Promise<void> {
    const [run, bystander, status] = await Promise.all([
      t.cli(["run", "--", "true"]),
      t.cli(["exec", "bystander", "--", "echo", "alive"]),
      guardianStatus(),
    ]);
    assert.equal(run.code, 0, `${context}: a second cloister did not run: ${run.stderr}`);
    assert.equal(bystander.stdout.trim(), "alive", `${context}: the bystander cloister stopped answering: ${bystander.stderr}`);
    assert.equal(status.running, true, `${context}: the guardian is down`);
    assert.equal(status.pid, guardianPid, `${context}: the guardian died and was restarted`);
  }

  it("contains a fork bomb under --pids 64 until --timeout ends it", { skip: NO_PYTHON }, async () => {
    // Python rather than bash's `:(){ :|:& };:`: bash gives up after a few failed fork retries, so
    // that bomb may fizzle out before the timeout; this one keeps pressing on the limit until killed.
    const bomb = [
      "import os, time",
      'print("bomb", flush=True)',
      "while True:",
      "    try:",
      "        os.fork()",
      "    except OSError:",
      "        time.sleep(0.05)",
    ].join("\n");
    const run = spawnCli(t, ["run", "--pids", "64", "--timeout", "20s", "--", "python3", "-c", bomb]);
    await run.waitFor("bomb");
    const record = await runRecord(t);
    const pids = cgroupFile(record, "pids.current");
    if (pids) {
      // The bomb is really running at its cap while the rest of the host is checked.
      await waitUntil("the bomb to reach its cap", () => Number(readOr(pids, "0")) >= 60, 30_000);
      assert.ok(Number(readOr(pids, "0")) <= 64, "the pids limit did not hold");
    }
    await assertHostFine("during a fork bomb");
    const result = await run.done;
    assert.equal(result.code, 124, `the bomb's cloister did not end by its timeout: ${result.stderr}`);
    assert.ok(!records(t).some((r) => r.name === record.name), "the bomb's cloister record is left behind");
    await assertHostFine("after a fork bomb");
  });

  it("kills a memory hog under --memory 256M, and only it", async (ctx) => {
    if (NO_PYTHON) return ctx.skip(NO_PYTHON);
    if (mechanism === "rlimit") return ctx.skip("no cgroups on this host: memory is not capped (the OOM killer picks the cloister first)");
    const hog = ["a = []", "for i in range(20):", '    a.append(b"\\x01" * (100 << 20))', '    print("chunk", i, flush=True)'].join("\n");
    const r = await t.cli(["run", "--memory", "256M", "--", "python3", "-c", hog]);
    assert.notEqual(r.code, 0, "the hog got its 2 GiB");
    assert.doesNotMatch(r.stdout, /chunk 19/);
    assert.equal(r.code, 137, `expected death by SIGKILL (OOM): ${r.stderr}`);
    // Said, where a bare 137 was all (QA); and not for a command that failed otherwise.
    assert.equal(r.stderr, "cloister: killed: the cloister's memory limit (256MiB) was reached; raise it with --memory\n");
    const failed = await t.cli(["run", "--memory", "256M", "--", "sh", "-c", "kill -9 $$"]);
    assert.deepEqual([failed.code, failed.stderr], [137, ""]);
    await assertHostFine("after a memory hog");
  });

  it("says so when exec's command in a running cloister dies of its memory limit, and only for that command", async (ctx) => {
    if (NO_PYTHON) return ctx.skip(NO_PYTHON);
    if (mechanism === "rlimit") return ctx.skip("no cgroups on this host: memory is not capped");
    const hog = 'a = []\nwhile True: a.append(b"\\x01" * (50 << 20))';
    assert.equal((await t.cli(["start", "-d", "--name", "hogged", "--memory", "256M"])).code, 0);
    try {
      const r = await t.cli(["exec", "hogged", "--", "python3", "-c", hog]);
      assert.equal(r.code, 137, r.stderr);
      assert.equal(r.stderr, "cloister: killed: the cloister's memory limit (256MiB) was reached; the cloister keeps running; for a larger limit, stop it (cloister stop hogged) and start it again with --memory\n");
      // The cloister's counters keep that kill: a later command that fails otherwise is not blamed on it.
      const failed = await t.cli(["exec", "hogged", "--", "sh", "-c", "kill -9 $$"]);
      assert.deepEqual([failed.code, failed.stderr], [137, ""]);
    } finally {
      await t.cli(["stop", "hogged"]);
    }
    await assertHostFine("after a memory hog in a running cloister");
  });

  it("stops a tmpfs fill at the configured cap (ENOSPC)", async () => {
    // Project config: CLOISTER_HOME/config/projects/<project dir's basename>.yaml; keep its `path:`.
    const file = join(t.home, "config", "projects", "proj.yaml");
    const original = readOr(file, `path: ${realpathSync(t.project)}\n`);
    assert.match(original, /^path: /m, "the project is not registered under the name proj");
    writeFileSync(file, `${original.trimEnd()}\nlimits:\n  tmpfs: 64MiB\n`);
    try {
      const r = await t.cli(["run", "--", "sh", "-c", "dd if=/dev/zero of=/tmp/fill bs=1M count=4000 2>&1; echo dd=$?; echo size=$(stat -c %s /tmp/fill)"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /No space left on device/);
      assert.match(r.stdout, /^dd=[1-9]\d*$/m);
      const size = Number(/^size=(\d+)$/m.exec(r.stdout)?.[1]);
      assert.ok(size > 0 && size <= 64 * MiB, `wrote ${size} bytes past a 64 MiB cap`);
    } finally {
      writeFileSync(file, original);
    }
    await assertHostFine("after a tmpfs fill");
  });

  it("streams an output flood through without buffering it", async () => {
    const measure = existsSync(TIME_BIN);
    const argv = [process.execPath, CLI, "run", "--", "sh", "-c", "yes | head -c 200M"];
    const child = measure ? spawn(TIME_BIN, ["-v", ...argv], { cwd: t.project, env: t.env }) : spawn(argv[0] ?? "", argv.slice(1), { cwd: t.project, env: t.env });
    let bytes = 0;
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (bytes += d.length));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    clearTimeout(timer);
    assert.equal(code, 0, stderr);
    assert.equal(bytes, 200 * MiB);
    if (measure) {
      const rssKiB = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(stderr)?.[1]);
      assert.ok(rssKiB > 0, `no RSS in /usr/bin/time output: ${stderr}`);
      assert.ok(rssKiB * 1024 < 150 * MiB, `the CLI grew to ${Math.round(rssKiB / 1024)} MiB while 200 MiB went through`);
    }
  });

  /**
   * Two CPU spinners in a `run` given `flags`: `check` inspects the cloister's CPU settings while
   * they spin, and the host must stay fine meanwhile.
   */
  async function withSpinners(flags: string[], context: string, check: (record: CloisterRecord) => void): Promise<void> {
    const run = spawnCli(t, ["run", ...flags, "--", "sh", "-c", "yes >/dev/null & yes >/dev/null & echo spinning; read x; exit 0"]);
    await run.waitFor("spinning");
    try {
      check(await runRecord(t));
      await assertHostFine(context);
    } finally {
      run.endInput();
    }
    const result = await run.done;
    assert.equal(result.code, 0, result.stderr);
  }

  it("keeps the host responsive while CPU spinners run under --cpu 50%", async () => {
    await withSpinners(["--cpu", "50%"], "while CPU spinners run", (record) => {
      const v1 = cgroupFile(record, "cpu.cfs_quota_us");
      const v2 = cgroupFile(record, "cpu.max");
      if (v1) assert.equal(readOr(v1).trim(), "50000");
      else if (v2) assert.equal(readOr(v2).trim(), "50000 100000");
      // A burst of at most one period's quota (where the kernel has bursts): the average stays at the limit.
      const burst = cgroupFile(record, v1 ? "cpu.cfs_burst_us" : "cpu.max.burst");
      if (burst) assert.equal(readOr(burst).trim(), "50000");
    });
  });

  it("runs CPU spinners uncapped by default, at background priority, with the host responsive", async () => {
    await withSpinners([], "while uncapped CPU spinners run", (record) => {
      const shares = cgroupFile(record, "cpu.shares");
      const weightNice = cgroupFile(record, "cpu.weight.nice");
      if (shares) {
        // cgroup v1: nice 10's weight (sched_prio_to_weight), and no quota.
        assert.equal(readOr(shares).trim(), "110");
        assert.equal(readOr(cgroupFile(record, "cpu.cfs_quota_us") ?? "").trim(), "-1");
      } else if (weightNice) {
        assert.equal(readOr(weightNice).trim(), "10");
        assert.match(readOr(cgroupFile(record, "cpu.max") ?? ""), /^max /);
      } else {
        // No CPU cgroup: the keeper itself runs at nice 10, and its descendants inherit it.
        const keeper = hostProcessTable().get(record.keeperPid ?? 0);
        assert.equal(keeper?.nice, "10", `the keeper is not at nice 10: ${JSON.stringify(keeper)}`);
      }
    });
  });

  it("answers another cloister's proxy request while 200 connections flood one bridge", { skip: NO_PYTHON }, async () => {
    const flood = [
      "import socket, sys",
      "held = []",
      "for i in range(200):",
      '    s = socket.create_connection(("127.0.0.1", 3128), timeout=30)',
      '    s.sendall(b"CONNECT example.com:443 HTTP/1.1\\r\\nHost: exa")  # never finished',
      "    held.append(s)",
      'print("flooding", len(held), flush=True)',
      "sys.stdin.read()",
    ].join("\n");
    const run = spawnCli(t, ["run", "--", "python3", "-c", flood]);
    try {
      await run.waitFor("flooding 200", 60_000);
      const r = await t.cli(["run", "--", "sh", "-c", `curl -s -w ' status=%{http_code}' -x "$HTTP_PROXY" http://example.com/`]);
      assert.match(r.stdout, /egress to example\.com:80 refused/, r.stdout + r.stderr);
      assert.match(r.stdout, /status=403$/);
      const status = await guardianStatus();
      assert.equal(status.pid, guardianPid, "the guardian died under the flood");
    } finally {
      run.endInput();
    }
    const result = await run.done;
    assert.equal(result.code, 0, result.stderr);
  });
});

// ---------------------------------------------------------------------------------------------

const USER_SKIP = asUserSkipReason();

describe("escape: resources, as a non-root user (no cgroup: RLIMIT_NPROC)", { skip: USER_SKIP || NO_PYTHON }, () => {
  let t: UserInstance;
  let hostSleepers: ChildProcess | undefined;
  before(() => {
    t = createUserInstance("cr");
  });
  after(async () => {
    hostSleepers?.kill("SIGKILL");
    await t.teardown();
  });

  it("--pids caps the cloister's own processes, not the user's processes on the host", async () => {
    // 40 processes of the user on the host, outside any cloister: counted by the host's limit only.
    hostSleepers = spawn("runuser", ["-u", t.user.name, "--", "sh", "-c", "for i in $(seq 40); do sleep 120 & done; wait"], { stdio: "ignore" });
    const leader = hostSleepers.pid ?? 0;
    await waitUntil("the user's host processes", () => hostTree(leader).length > 40, 10_000);
    // Forks until refused (bash would retry a refused fork for seconds): how many did the cap allow?
    const forks = "import os, time\nkids = []\nfor _ in range(60):\n    try:\n        pid = os.fork()\n    except OSError:\n        break\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n    kids.append(pid)\nprint(len(kids))\nfor pid in kids:\n    os.kill(pid, 9)\n";
    const r = await t.cli(["run", "--pids", "40", "--", "python3", "-c", forks]);
    assert.equal(r.code, 0, r.stderr);
    const started = Number(r.stdout.trim());
    assert.ok(started >= 20, `only ${started} processes could start inside under --pids 40 while the user had 40 on the host`);
    assert.ok(started < 40, `the cap did not hold: ${started} processes started besides init and the relay`);
  });

  it("refuses --memory and --cpu it cannot enforce, and warns of configured ones at each launch (QA: silently ignored)", async (ctx) => {
    const probe = await t.cli(["start", "-d", "--name", "probe"]);
    assert.equal(probe.code, 0, probe.stderr);
    const mechanism = records(t).find((rec) => rec.name === "probe")?.limitMechanism;
    assert.equal((await t.cli(["stop", "probe"])).code, 0);
    if (mechanism !== "rlimit") return ctx.skip(`this user has cgroups here (${mechanism ?? "?"}): its limits are enforced`);

    for (const [flag, value, what] of [["--memory", "100M", "a memory limit"], ["--cpu", "20%", "a CPU cap"]] as const) {
      const r = await t.cli(["run", flag, value, "--", "touch", "/work/ran"]);
      assert.equal(r.code, 125, r.stderr);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`^cloister: ${flag}: ${what} cannot be enforced here: no cgroup this user may write .*systemd-run --user --scope -p Delegate=yes cloister .* or run cloister as root; or leave ${flag} out`));
      assert.equal(existsSync(join(t.project, "ran")), false, `${flag}: the command ran`);
      assert.deepEqual(records(t), [], `${flag}: the refused launch left a record`);
    }

    // The built-in default (limits.memory 8GiB) goes without a word: doctor says it.
    const plain = await t.cli(["run", "--", "true"]);
    assert.deepEqual([plain.code, plain.stderr], [0, ""]);

    const configured = (config: string) => config.replace(/^  memory: 8GiB$/m, "  memory: 1GiB").replace(/^  cpu: none$/m, "  cpu: 50%");
    const warned = await withConfig(t, configured, () => t.cli(["run", "--", "true"]));
    assert.equal(warned.code, 0, warned.stderr);
    assert.match(warned.stderr, /^cloister: limits\.memory 1GiB \(from the configuration\) is not enforced: no cgroup this user may write .*; this cloister runs without a memory limit \(.*or set limits\.memory: none to silence this\)$/m);
    assert.match(warned.stderr, /^cloister: limits\.cpu 50% \(from the configuration\) is not enforced: .*; this cloister runs without a CPU cap \(.*or set limits\.cpu: none to silence this\)$/m);
  });
});
