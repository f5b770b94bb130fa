import { accessSync, constants, existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";

/** Resource limits of one cloister; undefined = no limit of that kind. */
export interface Limits {
  memoryBytes?: number;
  pids?: number;
  /** Percent of one CPU (200 = two cores). */
  cpuPercent?: number;
}

/**
 * How limits are applied on this host, best first:
 * - cgroup2: a delegated cgroup v2 subtree (systemd `Delegate=yes`), one child cgroup per cloister;
 * - cgroup1: the v1 memory/pids/cpu hierarchies when we may write them (root on hybrid hosts);
 * - rlimit: no cgroup at all. The process limit is RLIMIT_NPROC, which the kernel counts per user
 *   namespace (Linux >= 5.14): set by init inside the cloister's namespace, it caps this cloister
 *   without counting, or starving, the host user's own processes; memory is
 *   not capped, but oom_score_adj 1000 has the OOM killer sacrifice the cloister first.
 *
 * Every cloister also runs at a background CPU priority, whatever its `limits.cpu` (see
 * BACKGROUND_NICE), so a busy cloister cannot starve the guardian or the host's own work.
 */
export type LimitMechanism =
  | { kind: "cgroup2"; parent: string; cpu: boolean }
  | { kind: "cgroup1"; parents: { memory?: string; pids?: string; cpu?: string } }
  | { kind: "rlimit" };

export interface AppliedLimits {
  /** Options for the keeper (`cloister-init keep`). */
  keeperArgs: string[];
  /** Options for the cloister's init, which applies them inside its namespaces. */
  initArgs?: string[];
  /** Directories created for this cloister, removed by releaseLimits. */
  cgroupDirs: string[];
  mechanism: LimitMechanism["kind"];
}

export function detectLimitMechanism(): LimitMechanism {
  const own = processCgroups();
  const v2 = own.get("");
  const v2Root = cgroup2MountPoint();
  if (v2 !== undefined && v2Root) {
    const dir = join(v2Root, v2);
    const enabled = readOr(join(dir, "cgroup.subtree_control"), "").split(/\s+/);
    if (enabled.includes("memory") && enabled.includes("pids") && writable(dir)) return { kind: "cgroup2", parent: dir, cpu: enabled.includes("cpu") };
  }
  const v1 = (controller: string): string | undefined => {
    const rel = own.get(controller);
    const dir = rel === undefined ? undefined : join("/sys/fs/cgroup", controller, rel);
    return dir && writable(dir) ? dir : undefined;
  };
  const parents = { memory: v1("memory"), pids: v1("pids"), cpu: v1("cpu") };
  if (parents.memory || parents.pids) return { kind: "cgroup1", parents };
  return { kind: "rlimit" };
}

/** The limits only a cgroup enforces. */
export type CgroupOnlyLimit = "memory" | "cpu";

/**
 * The limits asked for in `limits` that `mechanism` cannot enforce, each with the reason: a memory
 * cap and a CPU cap need a cgroup with that controller, and without one applyLimits leaves them out.
 * No rlimit stands in for them: RLIMIT_AS, the only memory one, counts reserved address space,
 * which V8, Go and Java reserve by the gigabyte, so it breaks them long before memory runs out.
 */
export function unenforceableLimits(mechanism: LimitMechanism, limits: Limits): { limit: CgroupOnlyLimit; why: string }[] {
  const gaps: { limit: CgroupOnlyLimit; why: string }[] = [];
  const noCgroup = "no cgroup this user may write (cgroup v2 not delegated to it; cgroup v1 is writable by root only)";
  if (limits.memoryBytes !== undefined) {
    if (mechanism.kind === "rlimit") gaps.push({ limit: "memory", why: noCgroup });
    else if (mechanism.kind === "cgroup1" && !mechanism.parents.memory) gaps.push({ limit: "memory", why: "the cgroup v1 memory hierarchy is not writable" });
  }
  if (limits.cpuPercent !== undefined) {
    if (mechanism.kind === "rlimit") gaps.push({ limit: "cpu", why: noCgroup });
    else if (mechanism.kind === "cgroup1" && !mechanism.parents.cpu) gaps.push({ limit: "cpu", why: "the cgroup v1 cpu hierarchy is not writable" });
    else if (mechanism.kind === "cgroup2" && !mechanism.cpu) gaps.push({ limit: "cpu", why: `the cpu controller is not delegated to ${mechanism.parent}` });
  }
  return gaps;
}

/**
 * The process cap as an rlimit (RLIMIT_NPROC), where no pids cgroup can hold it. Set by init inside
 * the cloister's user namespace: from the keeper it would count the host user's processes too.
 */
function nprocArgs(limits: Limits): string[] {
  return limits.pids === undefined ? [] : ["--nproc", String(limits.pids)];
}

/**
 * The cgroups applyLimits makes for this cloister, known before any exists: a launch records them
 * first, so a launcher killed while making them leaves nothing the guardian's sweep cannot find.
 */
export function plannedCgroupDirs(mechanism: LimitMechanism, cloisterId: string): string[] {
  const parents = mechanism.kind === "cgroup2" ? [mechanism.parent] : mechanism.kind === "cgroup1" ? [mechanism.parents.memory, mechanism.parents.pids, mechanism.parents.cpu] : [];
  return parents.filter((parent) => parent !== undefined).map((parent) => cgroupDir(parent, cloisterId));
}

function cgroupDir(parent: string, cloisterId: string): string {
  return join(parent, `cloister-${cloisterId}`);
}

/** Creates the cloister's cgroups (if any) and returns how the keeper must apply the limits. */
export function applyLimits(mechanism: LimitMechanism, cloisterId: string, limits: Limits): AppliedLimits {
  const base = ["--oom-score-adj", "1000"];
  /** Background priority for a cloister without a CPU cgroup: its processes' own nice value. */
  const niced = ["--nice", String(BACKGROUND_NICE)];
  switch (mechanism.kind) {
    case "cgroup2": {
      const dir = cgroupDir(mechanism.parent, cloisterId);
      mkdirSync(dir);
      if (limits.memoryBytes !== undefined) writeFileSync(join(dir, "memory.max"), String(limits.memoryBytes));
      if (limits.pids !== undefined) writeFileSync(join(dir, "pids.max"), String(limits.pids));
      // The cpu controller may not be delegated: then the background priority falls back to nice,
      // and a cap cannot be applied (a launch refuses or drops it first: unenforceableLimits; one
      // that did not would fail on the write).
      const cpuControlled = mechanism.cpu;
      if (cpuControlled) writeFileSync(join(dir, "cpu.weight.nice"), String(BACKGROUND_NICE));
      if (limits.cpuPercent !== undefined) {
        writeFileSync(join(dir, "cpu.max"), `${cpuQuota(limits.cpuPercent)} ${CPU_PERIOD_US}`);
        allowBurst(join(dir, "cpu.max.burst"), limits.cpuPercent);
      }
      return { keeperArgs: [...base, ...(cpuControlled ? [] : niced), "--cgroup", dir], cgroupDirs: [dir], mechanism: "cgroup2" };
    }
    case "cgroup1": {
      const dirs: string[] = [];
      const make = (parent: string | undefined, settings: Record<string, string | undefined>): string | undefined => {
        if (!parent) return undefined;
        const dir = cgroupDir(parent, cloisterId);
        mkdirSync(dir);
        dirs.push(dir);
        for (const [file, value] of Object.entries(settings)) if (value !== undefined) writeFileSync(join(dir, file), value);
        return dir;
      };
      make(mechanism.parents.memory, { "memory.limit_in_bytes": limits.memoryBytes?.toString() });
      const pidsDir = make(mechanism.parents.pids, { "pids.max": limits.pids?.toString() });
      const quota = limits.cpuPercent === undefined ? undefined : String(cpuQuota(limits.cpuPercent));
      const cpuDir = make(mechanism.parents.cpu, {
        "cpu.shares": String(BACKGROUND_CPU_SHARES),
        "cpu.cfs_period_us": quota && String(CPU_PERIOD_US),
        "cpu.cfs_quota_us": quota,
      });
      // After the quota: the kernel takes no burst larger than the quota in force.
      if (cpuDir && limits.cpuPercent !== undefined) allowBurst(join(cpuDir, "cpu.cfs_burst_us"), limits.cpuPercent);
      return {
        keeperArgs: [...base, ...(cpuDir ? [] : niced), ...dirs.flatMap((d) => ["--cgroup", d])],
        // Without a writable pids hierarchy, the process cap is the rlimit one (it was dropped).
        initArgs: pidsDir ? undefined : nprocArgs(limits),
        cgroupDirs: dirs,
        mechanism: "cgroup1",
      };
    }
    case "rlimit":
      return {
        keeperArgs: [...base, ...niced],
        initArgs: nprocArgs(limits),
        cgroupDirs: [],
        mechanism: "rlimit",
      };
  }
}

/**
 * The CPU priority of every cloister: that of nice 10. Under contention the scheduler gives the
 * guardian and the host's own processes (nice 0) about ten times a cloister's share; on an idle
 * machine a cloister still gets every core. This, not a hard cap, is what keeps a CPU spinner from
 * starving the guardian by default: a cap (`limits.cpu`) throttles short multi-threaded spikes
 * too (Claude Code's start, at a one-core cap on two cores: throttled in 36 of 58 periods, ~80 ms
 * per start), and leaves cores idle that nobody else wants. cgroup v2 takes the nice value itself
 * (cpu.weight.nice); v1 takes the weight the kernel gives nice 10 (sched_prio_to_weight: 110 of
 * nice 0's 1024) as cpu.shares; without a CPU cgroup the keeper sets the processes' nice value.
 */
const BACKGROUND_NICE = 10;
const BACKGROUND_CPU_SHARES = 110;

const CPU_PERIOD_US = 100_000;

/**
 * CPU time per period (µs) for a percentage of one core. The kernel takes whole microseconds and no
 * quota under 1 ms (`--cpu 33.3333%` failed with a bare EINVAL): rounded, and at least 1%.
 */
function cpuQuota(cpuPercent: number): number {
  return Math.max(1000, Math.round(cpuPercent * (CPU_PERIOD_US / 100)));
}

/**
 * Lets a cloister spend CPU time it left unused earlier, up to one more period's quota, above its
 * limit (CFS burst, Linux >= 5.14): starting a program is a short spike across several threads
 * (Claude Code's start took 0.55-0.63 s throttled at 100% of a core, 0.45-0.55 s with the burst, as
 * without any limit), while the average over time stays at the limit, so a spinner or a fork bomb is
 * held as before. Best effort: older kernels have no such file.
 */
function allowBurst(file: string, cpuPercent: number): void {
  if (!existsSync(file)) return;
  try {
    writeFileSync(file, String(cpuQuota(cpuPercent)));
  } catch {
    // Refused (a kernel with other bounds): the limit itself is in force, only the burst is lost.
  }
}

/**
 * Removes the cloister's cgroups, first killing whatever is still in them (the kernel refuses to
 * remove a cgroup while any process remains). Killing the keeper normally ends everything: bwrap
 * dies with it, and the sandbox's PID 1 with bwrap. But a keeper killed while bwrap is still setting
 * up (a stop right after a start) can take bwrap down before its child has armed its own parent-death
 * signal (bubblewrap 0.8 does not check for that), and that PID 1 lived on, orphaned, with its relay
 * (init now also ends by itself when its keeper's lifeline hangs up: cloister-init's keep_lifeline).
 */
export async function releaseLimits(cgroupDirs: readonly string[]): Promise<void> {
  const deadline = Date.now() + RELEASE_TIMEOUT_MS;
  for (const dir of cgroupDirs) {
    while (existsSync(dir) && Date.now() < deadline) {
      try {
        rmdirSync(dir);
      } catch {
        killMembers(dir);
        await new Promise((resolve) => setTimeout(resolve, RELEASE_POLL_MS));
      }
    }
  }
}

/**
 * How often a cgroup still in use is tried again, and for how long in all. Killed processes are
 * gone within a millisecond or two, and every stop (every `run`) waits here once, for the sandbox's
 * PID 1 and relay to follow the keeper: a 5 ms poll cost each `run` ~4 ms.
 */
const RELEASE_POLL_MS = 1;
export const RELEASE_TIMEOUT_MS = 2_000;

/** SIGKILL for every process in the cgroup: at once through cgroup.kill (v2, Linux >= 5.14), else one by one. */
export function killMembers(dir: string): void {
  try {
    writeFileSync(join(dir, "cgroup.kill"), "1");
    return;
  } catch {
    // cgroup v1, or an older kernel: by pid.
  }
  for (const pid of readOr(join(dir, "cgroup.procs"), "").split("\n").map(Number).filter((n) => n > 0)) killQuietly(pid);
}

/**
 * The memory limit of a cloister's cgroups, in bytes, when the OOM killer has killed a process in
 * them because that limit was reached since `killsBefore` (oomKills, read when the command began:
 * a persistent cloister's counters hold its earlier kills too); else undefined (no memory cgroup, no
 * kill, or a kill of the machine's own OOM, which counts in oom_kill too). cgroup v2: memory.events'
 * `oom` (the limit reached) and `oom_kill`; v1: memory.failcnt and memory.oom_control's `oom_kill`
 * (Linux >= 4.13). Read while the cloister's cgroups are still there, before its stop removes them.
 */
export function memoryLimitReached(cgroupDirs: readonly string[], killsBefore = 0): number | undefined {
  if (oomKills(cgroupDirs) <= killsBefore) return undefined;
  for (const dir of cgroupDirs) {
    const counters = memoryCounters(dir);
    if (counters === undefined || !counters.limitReached || counters.kills === 0) continue;
    const limit = Number(readOr(join(dir, counters.v2 ? "memory.max" : "memory.limit_in_bytes"), "").trim());
    // v2 says "max" for none, v1 a number near 2^63.
    if (Number.isSafeInteger(limit)) return limit;
  }
  return undefined;
}

/** How many processes the OOM killer has killed in a cloister's memory cgroup so far. */
export function oomKills(cgroupDirs: readonly string[]): number {
  return cgroupDirs.reduce((sum, dir) => sum + (memoryCounters(dir)?.kills ?? 0), 0);
}

function memoryCounters(dir: string): { v2: boolean; limitReached: boolean; kills: number } | undefined {
  const count = (text: string, key: string): number => Number(new RegExp(`^${key} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
  const v2 = readOr(join(dir, "memory.events"), "");
  const v1 = readOr(join(dir, "memory.oom_control"), "");
  if (!v2 && !v1) return undefined;
  const limitReached = v2 ? count(v2, "oom") > 0 : Number(readOr(join(dir, "memory.failcnt"), "0")) > 0;
  return { v2: v2 !== "", limitReached, kills: count(v2 || v1, "oom_kill") };
}

/** SIGKILL for a process that may be gone already. */
export function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // Gone already.
  }
}

/**
 * The cgroups of cloister `cloisterId` that process `pid` is in: a keeper joins its cloister's, so
 * they are found from it even where the guardian's own cgroups (plannedCgroupDirs) lie elsewhere.
 */
export function cgroupDirsOfProcess(pid: number, cloisterId: string): string[] {
  const dirs: string[] = [];
  for (const [controller, path] of processCgroups(String(pid))) {
    if (basename(path) !== `cloister-${cloisterId}`) continue;
    const root = controller === "" ? cgroup2MountPoint() : join("/sys/fs/cgroup", controller);
    if (root) dirs.push(join(root, path));
  }
  return dirs;
}

/** Maps controller name ("" for cgroup v2) to a process's cgroup path, from /proc/PID/cgroup. */
function processCgroups(pid = "self"): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of readOr(`/proc/${pid}/cgroup`, "").split("\n")) {
    const [, controllers, path] = line.match(/^\d+:([^:]*):(.*)$/) ?? [];
    if (controllers === undefined || path === undefined) continue;
    for (const c of controllers.split(",")) map.set(c, path);
  }
  return map;
}

function cgroup2MountPoint(): string | undefined {
  for (const line of readOr("/proc/self/mountinfo", "").split("\n")) {
    const fields = line.split(" ");
    const sep = fields.indexOf("-");
    if (sep > 0 && fields[sep + 1] === "cgroup2") return fields[4];
  }
  return undefined;
}

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return fallback;
  }
}

function writable(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}
