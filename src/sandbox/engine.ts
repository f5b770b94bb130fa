import { spawn } from "node:child_process";
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { dirname, isAbsolute, join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { cloisterRuntimeDir, type CloisterPaths } from "../config/paths.js";
import { ensurePrivateDir } from "../config/atomic-write.js";
import { untilAborted } from "../abort.js";
import { CloisterError } from "../errors.js";
import { bwrapArgv } from "./bwrap/argv.js";
import { procHidden, procReadOnly, systemEntries, type HiddenPaths } from "./bwrap/host-facts.js";
import { KEEPER_LOG, keeperLogTail, STOP_MARK_TTL_MS, stopMarkOf, waitForInit } from "./init-client.js";
import { GUARDIAN_SOCKET_DIR, INIT_PATH, planMounts, SYSTEM_TRUST_FILES } from "./bwrap/mounts.js";
import { buildSeccompFilter } from "./bwrap/seccomp.js";
import { applyLimits, killMembers, killQuietly, plannedCgroupDirs, releaseLimits, type LimitMechanism, type Limits } from "./limits.js";
import { bwrapPath, hostexecBinaryPath, initBinaryPath } from "./native.js";
import { identityToSeed, seedGitIdentity } from "./git-identity.js";
import { plannedLinkedGitPlaceholders, prepareLinkedGitView, type LinkedGitDirs } from "./linked-git.js";
import { claimHome } from "./home-owner.js";
import { coveredInside } from "./host-exposure.js";
import { realPath } from "./git-dirs.js";
import { removeNewGitSymlinks } from "./git-symlinks.js";
import { entryKind, pinnedPathList, prepareProtectedPaths, protectedPathList, protectedPlaceholders } from "./protected-paths.js";
import { holdLauncherMark, markName, projectKey } from "./project-marks.js";
import { placeholdersListed, projectKeyIfThere, releasePlaceholders } from "./placeholder-release.js";
import { deleteRecord, holdsName, isRunningProcess, listRecords, processStartTime, readRecord, writeRecord, type CloisterRecord, type SessionRules } from "./records.js";
import { withRecordsLock } from "./records-lock.js";
import { removeTree } from "./remove-tree.js";

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
  /** With network: why the configuration does not load, while it does not (all egress is refused then). */
  policyError?: string;
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

/** A name claimed for a launch (claimCloister): its first record, and how its limits will be applied. */
export interface ClaimedName {
  record: CloisterRecord;
  mechanism: LimitMechanism;
}

/**
 * The name is held by a running cloister, or by a launch under way (claimCloister). Only a library
 * caller sees it (`start` joins the holder instead), so the hint is in the library's words.
 */
export class NameTaken extends CloisterError {
  constructor(readonly holder: CloisterRecord) {
    const starting = holder.keeperPid === undefined;
    super(
      `cloister ${holder.name} is already ${starting ? "starting" : "running"} (project ${holder.project} at ${holder.projectRoot})`,
      `use it${starting ? " once it runs" : ""}: findCloister(${JSON.stringify(holder.name)}), or give options.name another name`,
    );
  }
}

/**
 * Claims `spec.name` for a launch with id `id`: its record is written, under the records lock, only
 * if no record of that name exists, before anything else is made (the guardian's grant included), so
 * two launches of one name can never both make a cloister. A running cloister or a launch under way
 * keeps its name (NameTaken); a dead one's record and leftovers are removed first, as the guardian's
 * sweep would. The record lists what the launch is about to create (runtime dir, HOME, cgroups) and
 * who launches: a launcher killed outright (SIGKILL) at any moment after this leaves a record whose
 * launcher is gone, and the sweep removes what it lists. releaseRecord gives the name back.
 * `mechanism` is how this host applies limits (detectLimitMechanism), which the caller has checked
 * `spec.limits` against (unenforceableLimits).
 */
export async function claimCloister(paths: CloisterPaths, spec: LaunchSpec, id: string, mechanism: LimitMechanism): Promise<ClaimedName> {
  const runtimeDir = cloisterRuntimeDir(paths, id);
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
    homeDir: spec.persistent ? join(paths.homesDir, spec.name) : join(paths.homesDir, `.run-${id}`),
    ephemeralHome: !spec.persistent,
    cgroupDirs: plannedCgroupDirs(mechanism, id),
    placeholders: [],
    limitMechanism: mechanism.kind,
    launcherPid: process.pid,
    launcherStartTime: processStartTime(process.pid),
    session: spec.session,
    env: spec.env,
  };
  for (let attempt = 1; ; attempt++) {
    const holder = await withRecordsLock(paths, () => claimOrHolder(paths, record));
    if (!holder) return { record, mechanism };
    // Removed by now, unless something re-creates it as fast: then it counts as taken.
    if (holdsName(holder) || attempt === 3) throw new NameTaken(holder);
    await destroyCloister(paths, holder);
  }
}

/** Under the records lock: the record kept under `record`'s name, or none, and then `record` is written. */
function claimOrHolder(paths: CloisterPaths, record: CloisterRecord): CloisterRecord | undefined {
  const holder = readRecord(paths, record.name);
  if (!holder) writeRecord(paths, record);
  return holder;
}

/** Rewrites a launch's record, which must still be its own: one stopped meanwhile fails the launch. */
function updateRecord(paths: CloisterPaths, record: CloisterRecord): void {
  if (readRecord(paths, record.name)?.id !== record.id) throw new CloisterError(`cloister ${record.name} was stopped while it was starting`);
  writeRecord(paths, record);
}

/**
 * Starts the cloister whose name `claim` holds: the keeper (host) → bwrap → init (PID 1 inside).
 * Returns once bwrap has been started (a persistent cloister: once its init serves); commands then
 * run through the init socket. On any failure everything created so far is removed, the claim
 * included, and nothing runs (fail closed).
 *
 * The grant is still on its way: the guardian's part of a launch (its /etc scan, the egress socket)
 * and the host-side preparation here (placeholders, cgroups) run side by side; the grant is needed
 * from the mount plan on. `signal` aborts the launch while it is under way (see CloisterOptions).
 */
export async function launchCloister(paths: CloisterPaths, spec: LaunchSpec, claim: ClaimedName, grant: PendingGrant, signal?: AbortSignal): Promise<CloisterRecord> {
  const { record, mechanism } = claim;
  const { id, runtimeDir, homeDir } = record;
  const cleanups: (() => void | Promise<void>)[] = [() => releaseRecord(paths, record)];
  try {
    signal?.throwIfAborted();
    // The waits on others (the guardian, the keeper) end early when `signal` aborts, and the catch
    // below undoes it all; local writes are left to finish, so that nothing lands after the undo.
    const step = <T>(promise: Promise<T>): Promise<T> => untilAborted(promise, signal);
    const bwrap = bwrapPath();
    if (!bwrap) throw new CloisterError("bubblewrap (bwrap) is not installed", "install it with `sudo apt-get install -y bubblewrap`, then run `cloister doctor`");
    const initBinary = initBinaryPath();

    ensurePrivateDir(runtimeDir);
    cleanups.push(() => rmSync(runtimeDir, { recursive: true, force: true }));
    ensurePrivateDir(paths.homesDir);
    // A failure takes back what this launch made of the HOME, and only that: a persistent HOME that
    // was there before (an earlier session's shell history, agent logins) stays, with its owner.
    // Nothing else touches it meanwhile: `cloister rm` and other launches see this launch's record.
    const claimedOwner = spec.persistent ? claimHome(homeDir, spec.name, spec.projectRoot) : undefined;
    if (claimedOwner) cleanups.push(() => rmSync(claimedOwner, { force: true }));
    if (!lstatSync(homeDir, { throwIfNoEntry: false })) cleanups.push(() => removeTree(homeDir));
    mkdirSync(homeDir, { recursive: true, mode: 0o700 });

    // Marked before the placeholders are looked at until the end, first by this launcher, then by
    // the keeper, so that another instance's cloister of the project ending meanwhile leaves the
    // placeholders this one will find or make (project-marks.ts). Bound while the keeper starts.
    const key = projectKey(spec.projectRoot);
    const marking = holdLauncherMark(key, id);
    // Also when a wait is cut off first: a mark left held would keep the project's placeholders.
    cleanups.push(() => marking.then((mark) => void mark.close(), () => undefined));

    // The keeper first: it joins the cgroups (the first cgroup v1 migration of a launch waits ~15 ms
    // for the kernel) while the rest is prepared, then runs bwrap once given its argv.
    // The planned dirs, not those applyLimits returns: a limit the kernel refuses fails it midway.
    cleanups.push(() => releaseLimits(record.cgroupDirs));
    const limits = applyLimits(mechanism, id, spec.limits);
    const keeper = spawnKeeper(
      initBinary,
      ["keep", "--listen", record.initSocket, "--mark", markName(key, id), "--status-fd", String(STATUS_FD), "--program-fd", String(PROGRAM_FD), "--lifeline-fd", String(LIFELINE_FD), ...(spec.persistent ? ["--setsid"] : ["--die-with-parent"]), ...limits.keeperArgs],
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

    // Under the records lock, so that no other launch makes or records placeholders of the project,
    // and none ending removes them, in between: the placeholders missing in the project, found
    // without writing anything (a symlinked protected path is refused here, before any exists), are
    // recorded, with those the project's other cloisters recorded (this one's mounts sit on them
    // too), then made. The list never shrinks: one planned but found made meanwhile stays listed, so
    // that some record always lists it (only what is still an empty directory or a neutral file is
    // removed, and only once no record lists it).
    const protect = protectedPathList(spec.protect, spec.isGit, spec.projectRoot);
    const pins = pinnedPathList(spec.isGit, spec.projectRoot);
    const launcherMark = await step(marking);
    const { prepared, gitView } = await withRecordsLock(paths, () => {
      const others = otherCloistersOfProject(paths, record).flatMap((r) => r.placeholders);
      const planned = [
        ...prepareProtectedPaths(spec.projectRoot, protect.paths, pins, "plan", protect.heldByFile).placeholders,
        ...(spec.linkedGit ? plannedLinkedGitPlaceholders(spec.projectRoot, spec.linkedGit) : []),
      ];
      record.placeholders = [...new Set([...planned, ...others])];
      updateRecord(paths, record);
      const made = prepareProtectedPaths(spec.projectRoot, protect.paths, pins, "create", protect.heldByFile);
      const view = spec.linkedGit ? prepareLinkedGitView(spec.projectRoot, spec.linkedGit, runtimeDir, protectedPlaceholders(made, [...made.placeholders, ...others])) : undefined;
      record.placeholders = [...new Set([...record.placeholders, ...made.placeholders, ...(view?.placeholders ?? [])])];
      return { prepared: made, gitView: view };
    }, key);
    record.protectedFiles = prepared.paths.map((rel) => join(spec.projectRoot, rel)).filter((path) => entryKind(path) === "file");

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

    refuseCoveredSources(spec, [...granted.hidden.files, ...granted.hidden.dirs]);
    const user = userInfo();
    const mounts = planMounts({
      systemEntries: systemEntries(),
      hiddenFiles: granted.hidden.files,
      hiddenDirs: granted.hidden.dirs,
      procReadOnly: procReadOnly(),
      procHidden: procHidden(),
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
    launcherMark.close(); // the keeper holds its own mark from before it started bwrap
    record.keeperPid = keeperPid;
    record.keeperStartTime = processStartTime(keeperPid);
    delete record.spawnedKeeperPid;
    delete record.spawnedKeeperStartTime;
    // bwrap runs, and can still fail (no user namespaces, a mount it cannot make). A persistent
    // cloister is reported started once its init serves, or `start -d` says "Started" of a dead
    // one: the wait is bwrap's own set-up (~10-20 ms), begun before the record's update. A fresh
    // cloister's command, sent at once, fails with the same words.
    const serving = spec.persistent ? waitForInit(record.initSocket, INIT_ANSWER_MS) : undefined;
    serving?.catch(() => undefined); // awaited below, unless the update fails first
    await withRecordsLock(paths, () => updateRecord(paths, record));
    await step(serving ?? Promise.resolve());
    return record;
  } catch (error) {
    // Each one runs whatever the others do; what none could remove, the guardian's sweep does.
    for (const cleanup of cleanups.reverse()) await Promise.resolve().then(cleanup).catch(() => undefined);
    throw error;
  }
}

// fd 3 is where the keeper puts the init socket; the status line, the seccomp program and the
// keeper's program come after it. The keeper makes the lifeline (the pipe that tells init the keeper
// is gone: docs/internals/init-protocol.md) at the next one, for bwrap to pass on to init.
const STATUS_FD = 4;
const SECCOMP_FD = 5;
const PROGRAM_FD = 6;
const LIFELINE_FD = 7;

/** How long a persistent cloister's init may take to serve once bwrap runs: its set-up takes milliseconds; a hung one is given up on. */
const INIT_ANSWER_MS = 30_000;

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
  // A keeper that dies before run() (its cgroups refused it, its socket path was too long) fails
  // the launch at run(), with its log's last line; the EPIPE of writing to it must not crash the
  // caller (unheard, it killed a library user's whole process).
  seccomp.on("error", () => undefined);
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
        // Neither keeper is a reason for this process to stay: a persistent one outlives it (its own
        // session), a fresh one dies with it (--die-with-parent), and the guardian sweeps what it
        // leaves. Held, it kept a library user's process alive for good after a createCloister it
        // never stopped (QA library-cli L3); the commands that run in it hold their own sockets.
        child.unref();
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
export async function destroyCloister(paths: CloisterPaths, record: CloisterRecord, by = "", removedLink: RemovedLink = warnRemovedLink): Promise<void> {
  const keeper = liveKeeper(record);
  if (keeper) {
    markStopping(record, by);
    killQuietly(keeper.pid);
    await waitForExit(keeper.pid, keeper.startTime);
  }
  await releaseLimits(record.cgroupDirs);
  // In slices (remove-tree.ts): the guardian, which stops cloisters, goes on answering and proxying
  // meanwhile, also while a `run`'s HOME of 200k files goes. The record, and with it the name, is
  // given back only once all of it is gone, as the caller's answer is.
  await removeTree(record.runtimeDir);
  pruneStopMarks(dirname(stopMarkOf(record.runtimeDir)));
  if (record.ephemeralHome) await removeTree(record.homeDir);
  await releaseRecord(paths, record, removedLink);
}

/**
 * Refs and configured mounts that hold what the system view covers (known once the guardian has
 * scanned /etc: see hiddenPaths) are refused: a ref of /etc/ssh gave root's cloister the host's SSH
 * keys that /etc/ssh itself hides (found by QA).
 */
function refuseCoveredSources(spec: LaunchSpec, covered: readonly string[]): void {
  const sources = [...spec.refs.map((ref) => ({ entry: `refs.${ref.name}`, path: ref.hostPath })), ...spec.extraMounts.map((mount) => ({ entry: `sandbox.mounts (for ${mount.dest})`, path: mount.src }))];
  for (const { entry, path } of sources) {
    const secret = coveredInside(realPath(path) ?? path, covered);
    if (secret !== undefined) {
      throw new CloisterError(`${entry} names ${path}, which a cloister must not see: it holds ${secret}, which cloisters' view of the system hides`, "name a directory that holds only what the cloister needs");
    }
  }
}

/**
 * Kills every process of a cloister at once, ahead of its orderly removal (destroyCloister), for when
 * each moment it runs on counts: a protection it lost. Its cgroups' members go first (cgroup.kill, or
 * pid by pid on cgroup v1), then the keeper, whose end takes bwrap and the sandbox's PID 1 with it
 * where there are no cgroups. Synchronous: nothing else runs in between.
 */
export function killCloisterNow(record: CloisterRecord, by: string): void {
  const keeper = liveKeeper(record);
  if (!keeper) return;
  markStopping(record, by);
  for (const dir of record.cgroupDirs) killMembers(dir);
  killQuietly(keeper.pid);
}

/** The keeper of a record if it still runs; a launch killed midway has no keeperPid yet, but may have a keeper that started bwrap. */
function liveKeeper(record: CloisterRecord): { pid: number; startTime: string | undefined } | undefined {
  const keeper = record.keeperPid !== undefined ? { pid: record.keeperPid, startTime: record.keeperStartTime } : record.spawnedKeeperPid !== undefined ? { pid: record.spawnedKeeperPid, startTime: record.spawnedKeeperStartTime } : undefined;
  return keeper && isRunningProcess(keeper.pid, keeper.startTime) ? keeper : undefined;
}

/**
 * Before a cloister is killed: a command running in it (`cloister run`) then says that it was
 * stopped, and by whom (`by`, in words; "" when unknown), not that it failed. A mark written first
 * (killCloisterNow's) keeps its words.
 */
function markStopping(record: CloisterRecord, by: string): void {
  // No runtime dir: no command can be connected to it.
  if (!existsSync(record.runtimeDir)) return;
  const mark = stopMarkOf(record.runtimeDir);
  try {
    mkdirSync(dirname(mark), { recursive: true, mode: 0o700 });
    writeFileSync(mark, by, { flag: "wx", mode: 0o600 });
  } catch {
    // A mark there already says it. Either way the stop goes on.
  }
}

/**
 * Removes the stop marks older than STOP_MARK_TTL_MS from `dir`: every command that could read them
 * has. Done once the cloister is removed, not beside the mark: killCloisterNow's path must be short.
 */
function pruneStopMarks(dir: string): void {
  const before = Date.now() - STOP_MARK_TTL_MS;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return; // no cloister was ever marked stopping here
  }
  for (const name of names) {
    const mark = join(dir, name);
    if ((lstatSync(mark, { throwIfNoEntry: false })?.mtimeMs ?? Infinity) < before) rmSync(mark, { force: true });
  }
}

function otherCloistersOfProject(paths: CloisterPaths, record: CloisterRecord): CloisterRecord[] {
  return listRecords(paths).filter((r) => r.name !== record.name && r.projectRoot === record.projectRoot);
}

/**
 * Gives a cloister's name back: deletes its record, if that is still this cloister's (a name claimed
 * again since is not), and removes the placeholders it lists that no other record of the project
 * lists. Placeholders are shared by the project's cloisters (each one's mounts sit on those it
 * lists), so each goes with the last cloister that lists it. Under the records lock: two cloisters
 * ending at once cannot both still see the other, and no launch records or makes placeholders midway.
 */
export async function releaseRecord(paths: CloisterPaths, record: CloisterRecord, removedLink: RemovedLink = warnRemovedLink): Promise<void> {
  removeLinksOfCloister(record, removedLink);
  const key = projectKeyIfThere(record.projectRoot);
  await withRecordsLock(paths, () => {
    const current = readRecord(paths, record.name);
    if (current?.id !== record.id) return;
    deleteRecord(paths, record.name);
    const others = listRecords(paths);
    const needed = placeholdersListed(others, record.projectRoot);
    const listed = new Set([...current.placeholders, ...record.placeholders]);
    releasePlaceholders(paths, key, record.projectRoot, [...listed].filter((relPath) => !needed.has(relPath)), record.id, others);
  }, key);
}

/** Told of each symlink an ending cloister left in its git dirs (removeNewGitSymlinks), and whether it is gone. */
export type RemovedLink = (record: CloisterRecord, path: string, error: string | undefined) => void;

/** Where no guardian records it (a launch failing in the CLI or a library): a warning on stderr. */
function warnRemovedLink(record: CloisterRecord, path: string, error: string | undefined): void {
  process.stderr.write(`cloister: ${removedLinkWords(record, path, error)}\n`);
}

/** What a removed (or stubborn) link of an ended cloister is called in a warning or the guardian's log. */
export function removedLinkWords(record: CloisterRecord, path: string, error: string | undefined): string {
  const what = `the symbolic link ${path}, made in the git dir while cloister ${record.name} ran (the host's git would write through it, outside the project)`;
  return error === undefined ? `removed ${what}` : `could not remove ${what}: ${error}; remove it before running git there`;
}

/**
 * The end of a cloister, whoever ends it and whether a guardian watched it or not: the symlinks made
 * in its git dirs since it started go (sandbox/git-symlinks.ts). Its processes are gone by now (or,
 * for a launch that failed, never ran); nothing that fails here keeps the rest of the end from running.
 */
function removeLinksOfCloister(record: CloisterRecord, removedLink: RemovedLink): void {
  const since = Date.parse(record.createdAt);
  // A record put together for a cloister whose record was unreadable names no project (orphans.ts).
  if (!isAbsolute(record.projectRoot) || !Number.isFinite(since)) return;
  try {
    removeNewGitSymlinks(record.projectRoot, since, (path, error) => removedLink(record, path, error));
  } catch (error) {
    process.stderr.write(`cloister: the git dirs of ${record.projectRoot} could not be looked through for symbolic links cloister ${record.name} made: ${String((error as Error)?.message ?? error)}\n`);
  }
}

/**
 * Waits up to ~400 ms for a killed keeper to be gone. It is within a millisecond or so, and every
 * stop (every `run`) waits here once: polled every 1 ms, as releaseLimits polls the cgroups.
 */
async function waitForExit(pid: number, startTime: string | undefined): Promise<void> {
  for (let i = 0; i < 400 && isRunningProcess(pid, startTime); i++) {
    await new Promise((resolve) => setTimeout(resolve, 1));
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
