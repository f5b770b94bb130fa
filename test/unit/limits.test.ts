import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { applyLimits, memoryLimitReached, oomKills, unenforceableLimits, type LimitMechanism, type Limits } from "../../src/sandbox/limits.js";

const ALL: Limits = { memoryBytes: 1 << 30, pids: 100, cpuPercent: 50 };
const limitsOf = (mechanism: LimitMechanism, limits: Limits = ALL) => unenforceableLimits(mechanism, limits).map((gap) => gap.limit);

describe("unenforceableLimits", () => {
  it("without any cgroup, names memory and CPU caps (the process limit is an rlimit), each with the reason", () => {
    const gaps = unenforceableLimits({ kind: "rlimit" }, ALL);
    assert.deepEqual(gaps.map((gap) => gap.limit), ["memory", "cpu"]);
    for (const gap of gaps) assert.match(gap.why, /no cgroup this user may write/);
  });

  it("names only the limits asked for", () => {
    assert.deepEqual(limitsOf({ kind: "rlimit" }, { pids: 100 }), []);
    assert.deepEqual(limitsOf({ kind: "rlimit" }, { cpuPercent: 50 }), ["cpu"]);
  });

  it("cgroup v1: a limit whose hierarchy is not writable", () => {
    assert.deepEqual(limitsOf({ kind: "cgroup1", parents: { memory: "/m", pids: "/p", cpu: "/c" } }), []);
    assert.deepEqual(limitsOf({ kind: "cgroup1", parents: { pids: "/p", cpu: "/c" } }), ["memory"]);
    assert.deepEqual(limitsOf({ kind: "cgroup1", parents: { memory: "/m", pids: "/p" } }), ["cpu"]);
  });

  it("cgroup v2: a CPU cap without the cpu controller delegated", () => {
    assert.deepEqual(limitsOf({ kind: "cgroup2", parent: "/g", cpu: true }), []);
    const [gap] = unenforceableLimits({ kind: "cgroup2", parent: "/g", cpu: false }, ALL);
    assert.deepEqual(gap, { limit: "cpu", why: "the cpu controller is not delegated to /g" });
  });
});

describe("applyLimits: the process cap", () => {
  const base = mkdtempSync(join(tmpdir(), "limits-apply-"));
  after(() => rmSync(base, { recursive: true, force: true }));
  const parent = (name: string): string => {
    const dir = join(base, name);
    mkdirSync(dir);
    return dir;
  };

  it("is an rlimit set by init where no pids cgroup holds it: without cgroups, and on cgroup v1 without a writable pids hierarchy (it was dropped)", () => {
    assert.deepEqual(applyLimits({ kind: "rlimit" }, "a1", { pids: 64 }).initArgs, ["--nproc", "64"]);
    const v1 = applyLimits({ kind: "cgroup1", parents: { memory: parent("m1"), cpu: parent("c1") } }, "a2", { pids: 64, memoryBytes: 1 << 30 });
    assert.deepEqual(v1.initArgs, ["--nproc", "64"]);
    assert.equal(v1.cgroupDirs.length, 2);
  });

  it("is the pids cgroup's where there is one, and no rlimit then", () => {
    const pids = parent("p2");
    const v1 = applyLimits({ kind: "cgroup1", parents: { pids } }, "a3", { pids: 64 });
    assert.equal(v1.initArgs, undefined);
    assert.equal(readFileSync(join(pids, "cloister-a3", "pids.max"), "utf8"), "64");
  });
});

describe("memoryLimitReached", () => {
  const base = mkdtempSync(join(tmpdir(), "limits-"));
  after(() => rmSync(base, { recursive: true, force: true }));
  /** A fake cgroup dir holding these files. */
  const cgroup = (name: string, files: Record<string, string>): string => {
    const dir = join(base, name);
    mkdirSync(dir);
    for (const [file, text] of Object.entries(files)) writeFileSync(join(dir, file), text);
    return dir;
  };
  const v2Events = (oom: number, kills: number) => `low 0\nhigh 0\nmax 12\noom ${oom}\noom_kill ${kills}\noom_group_kill 0\n`;
  const v1Control = (kills: number) => `oom_kill_disable 0\nunder_oom 0\noom_kill ${kills}\n`;

  it("cgroup v2: the limit, once a process was killed for reaching it", () => {
    assert.equal(memoryLimitReached([cgroup("v2-killed", { "memory.events": v2Events(1, 1), "memory.max": "20971520\n" })]), 20 << 20);
    assert.equal(memoryLimitReached([cgroup("v2-reclaimed", { "memory.events": v2Events(0, 0), "memory.max": "20971520\n" })]), undefined);
    assert.equal(memoryLimitReached([cgroup("v2-machine-oom", { "memory.events": v2Events(0, 1), "memory.max": "max\n" })]), undefined);
  });

  it("cgroup v1: the memory hierarchy's limit, found among the cloister's dirs, once a kill followed reaching it", () => {
    const pids = cgroup("v1-pids", { "pids.max": "max\n" });
    const memory = cgroup("v1-killed", { "memory.oom_control": v1Control(2), "memory.failcnt": "7\n", "memory.limit_in_bytes": "268435456\n" });
    assert.equal(memoryLimitReached([pids, memory]), 256 << 20);
    assert.equal(memoryLimitReached([cgroup("v1-machine-oom", { "memory.oom_control": v1Control(1), "memory.failcnt": "0\n", "memory.limit_in_bytes": "9223372036854771712\n" })]), undefined);
    assert.equal(memoryLimitReached([]), undefined);
  });

  it("counts only the kills since a command began (a persistent cloister's counters keep earlier ones)", () => {
    const dirs = [cgroup("v1-pids-again", { "pids.max": "max\n" }), cgroup("v2-earlier", { "memory.events": v2Events(3, 2), "memory.max": "20971520\n" })];
    assert.equal(oomKills(dirs), 2);
    assert.equal(memoryLimitReached(dirs, 2), undefined, "no kill since");
    assert.equal(memoryLimitReached(dirs, 1), 20 << 20);
    assert.equal(oomKills([]), 0);
  });
});
