import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, rmSync, statSync } from "node:fs";
import { userInfo } from "node:os";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { cloisterRuntimeDir, type CloisterPaths } from "../config/paths.js";
import { ensurePrivateDir } from "../config/atomic-write.js";
import { CloisterError } from "../errors.js";
import { bwrapArgv } from "./bwrap/argv.js";
import { procReadOnly, systemEntries, type HiddenPaths } from "./bwrap/host-facts.js";
import { KEEPER_LOG, keeperLogTail } from "./init-client.js";
import { GUARDIAN_SOCKET_DIR, INIT_PATH, planMounts, SYSTEM_TRUST_FILES } from "./bwrap/mounts.js";
import { buildSeccompFilter } from "./bwrap/seccomp.js";
import { applyLimits, detectLimitMechanism, plannedCgroupDirs, releaseLimits, type Limits } from "./limits.js";
import { findTool, hostexecBinaryPath, initBinaryPath } from "./native.js";
import { identityToSeed, seedGitIdentity } from "./git-identity.js";
import { plannedLinkedGitPlaceholders, prepareLinkedGitView, type LinkedGitDirs } from "./linked-git.js";
import { claimHome } from "./home-owner.js";
import { entryKind, pinnedPathList, prepareProtectedPaths, protectedPathList, protectedPlaceholders, removePlaceholders } from "./protected-paths.js";
import { deleteRecord, isRunningProcess, listRecords, processStartTime, writeRecord, type CloisterRecord, type SessionRules } from "./records.js";

/** The TCP port on 127.0.0.1 inside every cloister that reaches the cloister's guardian socket. */
export const PROXY_PORT = 3128;

export interface LaunchSpec {
  name: string;
  project: string;
  projectRoot: string;
  isGit: boolean;
  persistent: boolean;
  network: boolean;
  limits: Limits;
  tmpfsBytes: number;
  protect: readonly string[];
  refs: { name: string; hostPath: string }[];
  extraMounts: { src: string; dest: string }[];
  /** Egress rules for this cloister alone; the guardian applies them, the record keeps them. */
  session?: SessionRules;
  /** The environment the cloister was started with (`--env`, `--secret`): the record keeps it for every later command. */
  env?: Record<string, string>;
  /** For a worktree cloister: the worktree's git dirs, mounted at their host paths (linked-git.ts). */
  linkedGit?: LinkedGitDirs;
  /** An agent to set up before anything runs inside (see agents/launch.ts). */
  agent?: AgentLaunchSpec;
}

/** What the guardian hands a launching cloister (POST /v1/cloisters). */
export interface LaunchGrant {
  /** With network: the cloister's proxy token and the directory of its egress socket. */
  token?: string;
  socketDir?: string;
  /** The system roots plus the guardian's interception CA: what the cloister's TLS clients trust. */
  trustBundle?: string;
  /** The CA and any system root node lacks: what NODE_EXTRA_CA_CERTS names in the cloister. */
  nodeTrustFile?: string;
  /** Secrets to cover in the system view (the guardian scans /etc for root: see hiddenPaths). */
  hidden: HiddenPaths;
  /** The build of the guardian that granted it (see cloisterBuild). */
  build?: string;
}

/** A grant requested from the guardian and not yet answered. */
export interface PendingGrant {
  /** Resolves once the request has left this process, or could not be sent (never rejects). */
  sent: Promise<void>;
  granted: Promise<LaunchGrant>;
}

export interface AgentLaunchSpec {
  /** Host paths of the agent's install, bound read-only at the same path. */
  mounts: string[];
  /**
   * Writes the agent's config into the cloister's HOME and its launcher into `binDir` (bound
   * read-only at AGENT_BIN_PATH). Runs before bwrap starts, so nothing inside can race it.
   */
  prepare(dirs: { homeDir: string; runtimeDir: string; binDir: string }): void | Promise<void>;
}

/**
 * Starts a cloister: the keeper (host) → bwrap → init (PID 1 inside). Returns once bwrap has been
 * started; commands then run through the init socket. On any failure everything created so far is
 * removed and nothing runs (fail closed).
 *
 * The grant is still on its way: the guardian's part of a launch (its /etc scan, the egress socket)
 * and the host-side preparation here (placeholders, cgroups) run side by side; the grant is needed
 * from the mount plan on. `signal` aborts the launch while it is under way (see CloisterOptions).
 */
export async function launchCloister(paths: CloisterPaths, spec: LaunchSpec, grant: PendingGrant, id = randomBytes(4).toString("hex"), signal?: AbortSignal): Promise<CloisterRecord> {
  throwIfAborted(signal);
  // The waits on others (the guardian, the keeper) end early when `signal` aborts, and the catch
  // below undoes it all; local writes are left to finish, so that nothing lands after the undo.
  const step = <T>(promise: Promise<T>): Promise<T> => untilAborted(promise, signal);
  const bwrap = findTool("bwrap");
  if (!bwrap) throw new CloisterError("bubblewrap (bwrap) is not installed", "install it with `sudo apt-get install -y bubblewrap`, then run `cloister doctor`");
  const initBinary = initBinaryPath();

  const runtimeDir = cloisterRuntimeDir(paths, id);
  const homeDir = spec.persistent ? join(paths.homesDir, spec.name) : join(paths.homesDir, `.run-${id}`);
  const record: CloisterRecord = {
    name: spec.name,
    id,
    project: spec.project,
    projectRoot: spec.projectRoot,
    persistent: spec.persistent,
    network: spec.network,
    createdAt: new Date().toISOString(),
    initSocket: join(runtimeDir, "init.sock"),
    runtimeDir,
    homeDir,
    ephemeralHome: !spec.persistent,
    cgroupDirs: [],
    placeholders: [],
    limitMechanism: "none",
    session: spec.session,
    env: spec.env,
  };
  const cleanups: (() => void | Promise<void>)[] = [];
  try {
    // Recorded before anything is made, and again before the placeholders are: what the launch is
    // about to create (runtime dir, HOME, cgroups, then placeholders in the project) and who is
    // launching. A launcher killed outright (SIGKILL) at any moment after this leaves a record whose
    // launcher is gone, and the guardian's sweep removes what it lists.
    const mechanism = detectLimitMechanism();
    record.cgroupDirs = plannedCgroupDirs(mechanism, id);
    record.limitMechanism = mechanism.kind;
    record.launcherPid = process.pid;
    record.launcherStartTime = processStartTime(process.pid);
    writeRecord(paths, record);
    cleanups.push(() => deleteRecord(paths, record.name));

    ensurePrivateDir(runtimeDir);
    cleanups.push(() => rmSync(runtimeDir, { recursive: true, force: true }));
    ensurePrivateDir(paths.homesDir);
    if (spec.persistent) claimHome(homeDir, spec.name, spec.projectRoot);
    mkdirSync(homeDir, { recursive: true, mode: 0o700 });
    if (record.ephemeralHome) cleanups.push(() => rmSync(homeDir, { recursive: true, force: true }));

    // The keeper first: it joins the cgroups (the first cgroup v1 migration of a launch waits ~15 ms
    // for the kernel) while the rest is prepared, then runs bwrap once given its argv.
    const limits = applyLimits(mechanism, id, spec.limits);
    cleanups.push(() => releaseLimits(limits.cgroupDirs));
    const keeper = spawnKeeper(
      initBinary,
      ["keep", "--listen", record.initSocket, "--status-fd", String(STATUS_FD), "--program-fd", String(PROGRAM_FD), "--lifeline-fd", String(LIFELINE_FD), ...(spec.persistent ? ["--setsid"] : ["--die-with-parent"]), ...limits.keeperArgs],
      join(runtimeDir, KEEPER_LOG),
      spec.persistent,
    );
    cleanups.push(() => keeper.callOff());
    if (keeper.pid !== undefined) {
      // Recorded with the placeholders, before the keeper is handed bwrap's argv.
      record.spawnedKeeperPid = keeper.pid;
      record.spawnedKeeperStartTime = processStartTime(keeper.pid);
    }
    // The rest runs without a break, and the guardian can only start on its part once the request
    // has left this process: the keeper first (its wait above is the longest), then the request.
    await step(grant.sent);

    const agentBinDir = spec.agent ? join(runtimeDir, "agent-bin") : undefined;
    if (spec.agent && agentBinDir) {
      mkdirSync(agentBinDir, { mode: 0o700 });
      await step(Promise.resolve(spec.agent.prepare({ homeDir, runtimeDir, binDir: agentBinDir })));
    }

    // The placeholders missing in the project, found without writing anything (a symlinked protected
    // path is refused here, before any exists), are recorded; then made. Removing one that was planned
    // but never made, or that another launch made first, is safe: only what is still an empty
    // directory or a neutral file goes, and only with the project's last cloister.
    const protect = protectedPathList(spec.protect, spec.isGit, spec.projectRoot);
    const pins = pinnedPathList(spec.isGit, spec.projectRoot);
    const others = otherCloistersOfProject(paths, record).flatMap((r) => r.placeholders);
    const planned = [
      ...prepareProtectedPaths(spec.projectRoot, protect.paths, pins, "plan", protect.heldByFile).placeholders,
      ...(spec.linkedGit ? plannedLinkedGitPlaceholders(spec.projectRoot, spec.linkedGit) : []),
    ];
    record.placeholders = [...new Set([...planned, ...others])];
    writeRecord(paths, record);
    cleanups.push(() => releasePlaceholders(paths, record));
    const prepared = prepareProtectedPaths(spec.projectRoot, protect.paths, pins, "create", protect.heldByFile);
    record.protectedFiles = prepared.paths.map((rel) => join(spec.projectRoot, rel)).filter((path) => entryKind(path) === "file");
    const gitView = spec.linkedGit ? prepareLinkedGitView(spec.projectRoot, spec.linkedGit, runtimeDir, protectedPlaceholders(prepared, [...prepared.placeholders, ...others])) : undefined;
    // What was made is what the record keeps from its last write on.
    record.placeholders = [...new Set([...prepared.placeholders, ...(gitView?.placeholders ?? []), ...others])];

    // Read by a git process while the grant is awaited, written into HOME before bwrap starts (a
    // persistent HOME has it already). Not before the placeholders are made: git fails on the
    // repository while one in its git dir is still being written (an empty .git/commondir).
    const gitIdentity = identityToSeed(homeDir, spec.projectRoot);
    const granted = await step(grant.granted);
    seedGitIdentity(homeDir, await step(gitIdentity));
    record.proxyToken = granted.token;
    if (spec.network) {
      record.trustBundle = granted.trustBundle;
      record.nodeTrustFile = granted.nodeTrustFile;
    }

    const user = userInfo();
    const mounts = planMounts({
      systemEntries: systemEntries(),
      hiddenFiles: granted.hidden.files,
      hiddenDirs: granted.hidden.dirs,
      procReadOnly: procReadOnly(),
      projectRoot: spec.projectRoot,
      homeSource: homeDir,
      homeDest: sandboxHome(),
      pinnedAncestors: prepared.ancestors,
      gitMounts: gitView?.mounts ?? [],
      protectedPaths: prepared.paths,
      refs: spec.refs,
      extraMounts: spec.extraMounts,
      guardianSocketDir: spec.network ? granted.socketDir : undefined,
      initBinary,
      hostexecBinary: spec.network ? hostexecBinaryPath() : undefined,
      // The record's: already none without network.
      trustBundle: record.trustBundle,
      nodeTrustFile: record.nodeTrustFile,
      systemTrustFiles: SYSTEM_TRUST_FILES.filter(isFileFollowingLinks),
      agentMounts: spec.agent?.mounts ?? [],
      agentBinDir,
      tmpfsBytes: spec.tmpfsBytes,
    });
    // init binds the port before it serves the first command (no race with the relay starting), then
    // hands it to the relay, which joins each connection to this cloister's guardian socket, and
    // offers the port to the guardian to accept on directly (guardian/proxy/listener-handover.ts).
    const bridge = spec.network
      ? ["--tcp-listen", String(PROXY_PORT), "--", INIT_PATH, "relay", "--fd", "4", "--hand-over", `${GUARDIAN_SOCKET_DIR}/handover.sock`, `${GUARDIAN_SOCKET_DIR}/proxy.sock`]
      : [];
    const argv = bwrapArgv({
      hostname: spec.name,
      uid: user.uid,
      gid: user.gid,
      mounts,
      seccompFd: SECCOMP_FD,
      runningAsRoot: user.uid === 0,
      command: [INIT_PATH, "init", "--lifeline-fd", String(LIFELINE_FD), ...(limits.initArgs ?? []), ...bridge],
    });
    const keeperPid = await step(keeper.run([bwrap, ...argv]));
    record.keeperPid = keeperPid;
    record.keeperStartTime = processStartTime(keeperPid);
    delete record.spawnedKeeperPid;
    delete record.spawnedKeeperStartTime;
    writeRecord(paths, record);
    return record;
  } catch (error) {
    // Each one runs whatever the others do; what none could remove, the guardian's sweep does.
    for (const cleanup of cleanups.reverse()) await Promise.resolve().then(cleanup).catch(() => undefined);
    throw error;
  }
}

/** The launch was aborted: its signal's reason when that is an error, else a plain one. */
function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new CloisterError("the launch was aborted");
}

/** Throws the abort's error when `signal` has aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}

/** `promise`, or a rejection as soon as `signal` aborts, whichever comes first. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  throwIfAborted(signal);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortError(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error as Error);
      },
    );
  });
}

// fd 3 is where the keeper puts the init socket; the status line, the seccomp program and the
// keeper's program come after it. The keeper makes the lifeline (the pipe that tells init the keeper
// is gone: docs/internals/init-protocol.md) at the next one, for bwrap to pass on to init.
const STATUS_FD = 4;
const SECCOMP_FD = 5;
const PROGRAM_FD = 6;
const LIFELINE_FD = 7;

/** A keeper spawned with `--program-fd`: it has joined its cgroups, or is joining them, and waits. */
interface WaitingKeeper {
  /** Undefined when it could not be spawned (run() then fails). */
  pid: number | undefined;
  /** Hands the keeper its program (bwrap and its argv); resolves with the keeper's pid once it started it. */
  run(program: readonly string[]): Promise<number>;
  /** The launch failed: the keeper exits without running anything. */
  callOff(): void;
}

/** Spawns the keeper and hands bwrap's seccomp program to it; the program to run comes later (run). */
function spawnKeeper(initBinary: string, args: string[], logFile: string, detached: boolean): WaitingKeeper {
  const log = openSync(logFile, "a", 0o600);
  const child = spawn(initBinary, args, {
    stdio: ["ignore", log, log, "ignore", "pipe", "pipe", "pipe"],
    detached,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
  });
  closeSync(log);
  // Node types stdio as a 5-tuple; extra pipes beyond index 4 exist at run time all the same.
  const stdio = child.stdio as unknown as (Readable | Writable | null)[];
  const status = stdio[STATUS_FD] as Readable;
  const seccomp = stdio[SECCOMP_FD] as Writable;
  const program = stdio[PROGRAM_FD] as Writable;
  // Once written, close our end: the keeper keeps its copy of the fd for bwrap, and a socket we
  // still hold open would keep a detached CLI (`start -d`) alive forever.
  seccomp.end(buildSeccompFilter(), () => seccomp.destroy());
  // A keeper that dies before run() (its cgroups refused it) fails the launch at run().
  program.on("error", () => undefined);
  const started = new Promise<number>((resolve, reject) => {
    let text = "";
    status.setEncoding("utf8");
    status.on("data", (chunk: string) => (text += chunk));
    const fail = (why: string) => reject(new CloisterError(`the cloister could not start: ${why}`, `see ${logFile}`));
    child.on("error", (error) => fail(error.message));
    status.on("end", () => {
      const pid = Number(/^started (\d+)/.exec(text)?.[1]);
      if (pid > 0) {
        if (detached) child.unref();
        resolve(child.pid ?? pid);
      } else {
        fail(keeperLogTail(logFile) ?? "the keeper exited before starting bwrap");
      }
    });
  });
  started.catch(() => undefined); // reported by run(); a launch called off never asks
  return {
    pid: child.pid,
    run: (argv) => {
      program.end(Buffer.from(argv.map((arg) => `${arg}\0`).join("")), () => program.destroy());
      return started;
    },
    callOff: () => {
      program.destroy();
      child.kill("SIGKILL");
    },
  };
}

/** The cloister's HOME inside: one fixed place, whatever the host's HOME is. */
export function sandboxHome(): string {
  const name = userInfo().username;
  return `/home/${name.replace(/[^A-Za-z0-9._-]/g, "_") || "user"}`;
}

/**
 * Ends a cloister: kills the keeper (bwrap dies with its parent and takes the whole PID namespace
 * with it, daemons included), then removes what the cloister owned.
 */
export async function destroyCloister(paths: CloisterPaths, record: CloisterRecord): Promise<void> {
  // A launch killed midway has no keeperPid yet, but may have a keeper that already started bwrap.
  const keeper = record.keeperPid !== undefined ? { pid: record.keeperPid, startTime: record.keeperStartTime } : record.spawnedKeeperPid !== undefined ? { pid: record.spawnedKeeperPid, startTime: record.spawnedKeeperStartTime } : undefined;
  if (keeper && isRunningProcess(keeper.pid, keeper.startTime)) {
    try {
      process.kill(keeper.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
    await waitForExit(keeper.pid, keeper.startTime);
  }
  await releaseLimits(record.cgroupDirs);
  rmSync(record.runtimeDir, { recursive: true, force: true });
  if (record.ephemeralHome) rmSync(record.homeDir, { recursive: true, force: true });
  deleteRecord(paths, record.name);
  releasePlaceholders(paths, record);
}

function otherCloistersOfProject(paths: CloisterPaths, record: CloisterRecord): CloisterRecord[] {
  return listRecords(paths).filter((r) => r.name !== record.name && r.projectRoot === record.projectRoot);
}

/**
 * Placeholders are shared by every cloister of a project (each one's mounts sit on them), so each
 * record carries the placeholders of all cloisters of its project, and only the last to go removes them.
 */
function releasePlaceholders(paths: CloisterPaths, record: CloisterRecord): void {
  if (otherCloistersOfProject(paths, record).length === 0) removePlaceholders(record.projectRoot, record.placeholders);
}

async function waitForExit(pid: number, startTime: string | undefined): Promise<void> {
  for (let i = 0; i < 200 && isRunningProcess(pid, startTime); i++) {
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** A system CA bundle may be a link (Fedora's points into /etc/pki/ca-trust): binding over it covers its target. */
function isFileFollowingLinks(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
