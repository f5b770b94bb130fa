import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { unenforceableLimits, type LimitMechanism, type Limits } from "../../src/sandbox/limits.js";

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
