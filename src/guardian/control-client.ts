import { spawn } from "node:child_process";
import { openSync, closeSync, fstatSync, mkdirSync, readFileSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../package-root.js";
import { connect } from "node:net";
import { fileURLToPath } from "node:url";
import { checkSocketRoom, instanceEnv, type CloisterPaths } from "../config/paths.js";
import { ensurePrivateDir } from "../config/atomic-write.js";
import { receivedProblems, type ConfigProblem } from "../config/config-error.js";
import { CloisterError } from "../errors.js";
import { isRunningProcess, isStoppedProcess, type SessionRules } from "../sandbox/records.js";
import { onAbort } from "../abort.js";
import type { LaunchGrant, PendingGrant } from "../sandbox/engine.js";
import { formatDuration } from "../config/units.js";
import { foreignInstanceError, isPermissionDenied } from "../config/foreign-instance.js";
import { VERSION } from "../version.js";
import { errorFromReply } from "./control-errors.js";
import { decodeControlAnswer, encodeControlRequest, MAX_ANSWER_BYTES } from "./control-wire.js";
import type { AgentCredential } from "./vault/agent-credentials.js";

/**
 * How long the guardian has to answer a control request before the CLI gives up on it. It answers in
 * milliseconds; a loaded machine (CI running test suites on two cores) has been seen to hold it up
 * for a second or two. Ten seconds is well past such a stall, and short enough that a person at the
 * terminal hears what is wrong (a guardian stopped with SIGSTOP, or hung) before giving up themselves.
 */
export const ANSWER_DEADLINE_MS = 10_000;

/**
 * For the requests that stop cloisters (`stop`, `guardian stop`): the guardian answers once their
 * processes have ended, their cgroups are released and their files removed, and an ephemeral HOME
 * may hold gigabytes. The deadline only ends a wait on a guardian that went quiet; a stop that
 * outlasts it goes on in the guardian all the same.
 */
export const STOP_DEADLINE_MS = 5 * 60_000;

/**
 * For the requests that may need the vault's key (secrets, an agent's credential, placeholders): the
 * guardian may wait for the OS keyring (up to 5 s, see key-source.ts) and run scrypt, which at the
 * costliest parameters a vault file may name takes tens of seconds.
 */
export const VAULT_DEADLINE_MS = 60_000;

export interface CallOptions {
  /**
   * Runs once the request has been handed to the kernel: a launch lets its grant request leave before
   * it busies this thread with its own preparation.
   */
  onSent?: () => void;
  /** How long the guardian has to answer: ANSWER_DEADLINE_MS unless the request's work takes longer. */
  deadlineMs?: number;
  /** Ends the wait at once, with the signal's reason (a launch cut off by Ctrl-C). */
  signal?: AbortSignal;
}

/** A JSON call to the guardian's control API (HTTP over its 0600 unix socket; see control-wire.ts). */
export function guardianCall<T>(paths: CloisterPaths, method: string, path: string, body?: unknown, options: CallOptions = {}): Promise<T> {
  const { onSent, deadlineMs = ANSWER_DEADLINE_MS, signal } = options;
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const request = encodeControlRequest(method, path, body === undefined ? undefined : JSON.stringify(body));
    const socket = connect(paths.guardianSocket);
    const deadline = setTimeout(() => socket.destroy(guardianUnanswered(paths, deadlineMs)), deadlineMs);
    // The reason as given, an Error or not: the socket's own error would be one of node's.
    const forgetAbort = signal
      ? onAbort(signal, () => {
          reject(signal.reason);
          socket.destroy();
        })
      : undefined;
    socket.on("close", () => {
      clearTimeout(deadline);
      forgetAbort?.();
    });
    const chunks: Buffer[] = [];
    let received = 0;
    socket.on("data", (chunk: Buffer) => {
      received += chunk.length;
      if (received > MAX_ANSWER_BYTES) socket.destroy(new Error(`the guardian's answer to ${method} ${path} is larger than ${MAX_ANSWER_BYTES} bytes`));
      else chunks.push(chunk);
    });
    socket.on("error", (error: NodeJS.ErrnoException) => reject(isPermissionDenied(error) ? foreignInstanceError("reach the guardian", paths.guardianSocket) : error));
    socket.on("end", () => {
      try {
        const answer = decodeControlAnswer(Buffer.concat(chunks));
        const parsed: unknown = answer.body ? JSON.parse(answer.body) : {};
        if (answer.status >= 400) reject(errorFromReply(answer.status, parsed));
        else resolve(parsed as T);
      } catch (error) {
        reject(error as Error);
      }
    });
    socket.write(request, () => onSent?.());
  });
}

/**
 * The guardian took longer than `deadlineMs` to answer: said with its pid (only when its info file
 * names the process that runs, so that no other process is named for a kill) and what to do.
 */
export function guardianUnanswered(paths: CloisterPaths, deadlineMs: number): CloisterError {
  const info = readGuardianInfo(paths);
  const pid = processRuns(info) ? info.pid : undefined;
  const within = `within ${formatDuration(deadlineMs)}`;
  if (pid === undefined) return new CloisterError(`the guardian did not answer ${within}`, `see its log, ${paths.guardianLog}`);
  if (isStoppedProcess(pid)) return new CloisterError(`the guardian (pid ${pid}) is stopped and did not answer ${within}`, `resume it with \`kill -CONT ${pid}\``);
  return new CloisterError(
    `the guardian (pid ${pid}) did not answer ${within}`,
    `it may be hung (its log: ${paths.guardianLog}); \`kill ${pid}\` ends it, and the next cloister command starts one that takes over the running cloisters`,
  );
}

export interface GuardianStatus {
  pid: number;
  startedAt: string;
  version: string;
  cloisters: number;
  controlSocket: string;
  /** Set when the configuration does not load: all egress is refused until it is fixed. */
  policyError: string | null;
  /**
   * Every problem of that configuration, when problems are why (policyError is the first); null
   * otherwise, and from guardians older than the field.
   */
  policyProblems: ConfigProblem[] | null;
  /** When the policy in force was loaded; null while there is none, and from guardians older than the field. */
  policyLoadedAt: string | null;
  /**
   * Set when a reload failed since (the files no longer load) while the policy loaded before stays
   * in force; with its problems as policyProblems has them. Null otherwise, and from older guardians.
   */
  reloadError: string | null;
  reloadProblems: ConfigProblem[] | null;
  openConnections: number;
  /** Cloisters whose proxy port the guardian accepts on itself (their bridge handed it over). */
  directListeners: number;
  auditDir: string;
  /** The approval UI's address, or why it is not served. */
  ui: string | null;
  uiError: string | null;
  pendingApprovals: number;
  /** See cloisterBuild (fixed when the guardian started); absent from guardians older than the check. */
  build?: string;
}

/**
 * The guardian's status; undefined when none runs (no socket, nobody listening, or one that went away
 * while answering). A guardian that does not answer in time, or one the caller may not reach (another
 * user's instance), is said as such (a CloisterError), not taken for none: "not running" was wrong.
 */
export async function guardianStatus(paths: CloisterPaths): Promise<GuardianStatus | undefined> {
  try {
    const status = await guardianCall<GuardianStatus>(paths, "GET", "/v1/status");
    return {
      ...status,
      policyProblems: receivedProblems(status.policyProblems) ?? null,
      policyLoadedAt: status.policyLoadedAt ?? null,
      reloadError: status.reloadError ?? null,
      reloadProblems: receivedProblems(status.reloadProblems) ?? null,
    };
  } catch (error) {
    if (error instanceof CloisterError) throw error;
    return undefined;
  }
}

/**
 * Which build of cloister this is: its version and the id `npm run build` writes. A guardian
 * started by an older install keeps running after an upgrade and would not know the new routes.
 */
export function cloisterBuild(): string {
  try {
    return `${VERSION}+${readFileSync(join(PACKAGE_ROOT, "dist", "build-id"), "utf8").trim()}`;
  } catch {
    return VERSION;
  }
}

/**
 * node's thread pool in the guardian, where every cloister's DNS lookups (getaddrinfo) and the
 * guardian's file work run: 4 by default, which two cloisters' slow lookups (each at most
 * MAX_QUERIES_AT_ONCE, host-resolver.ts) would fill. Idle threads cost address space, not memory.
 */
const GUARDIAN_THREAD_POOL = 16;

function daemonFile(): string {
  return fileURLToPath(new URL("./daemon.js", import.meta.url));
}

/**
 * Node flags for the daemon: none from a build. The guardian outlives the process that starts it and
 * holds the user's secrets, so it must not inherit that process's --inspect (a debugger port any
 * local user could attach to), --cpu-prof (a profiler sampling for the guardian's whole life) and
 * the like. Run from TypeScript source (tests, the bench), it needs the loader that process has.
 */
function daemonNodeFlags(): string[] {
  return import.meta.url.endsWith(".ts") ? process.execArgv : [];
}

/** What a serving guardian says of itself in guardianInfoFile (written by daemon.ts). */
export interface GuardianInfo {
  pid: number;
  /** Its start time (/proc/PID/stat): a pid reused by another process does not match. */
  startTime: string;
  build: string;
  /** The inode of the control socket it listens on. */
  socketInode: number;
}

/**
 * Makes sure this instance's guardian runs and is of this build. Known from its info file when it
 * does: no round trip, which spares the commands that only need it alive (exec, start again) the
 * first HTTP request of their process (~15 ms). A guardian that died, a reused pid, a control
 * socket that is not its own, or another build: then it is asked, and started or replaced.
 */
export async function ensureGuardian(paths: CloisterPaths): Promise<void> {
  if (!runningGuardianIsCurrent(paths)) await startGuardian(paths);
}

/** Whether this instance's guardian process runs (of any build), by its info file: no round trip. */
export function guardianProcessRuns(paths: CloisterPaths): boolean {
  return processRuns(readGuardianInfo(paths));
}

/** The process an info file names runs (a reused pid does not: its start time differs). */
function processRuns(info: Partial<GuardianInfo> | undefined): info is Partial<GuardianInfo> & { pid: number } {
  return typeof info?.pid === "number" && isRunningProcess(info.pid, info.startTime);
}

function runningGuardianIsCurrent(paths: CloisterPaths): boolean {
  const info = readGuardianInfo(paths);
  try {
    return info?.build === cloisterBuild() && processRuns(info) && statSync(paths.guardianSocket).ino === info.socketInode;
  } catch {
    return false; // no control socket
  }
}

/** guardianInfoFile as written, unchecked; undefined when missing or not JSON. */
export function readGuardianInfo(paths: CloisterPaths): Partial<GuardianInfo> | undefined {
  try {
    return JSON.parse(readFileSync(paths.guardianInfoFile, "utf8")) as Partial<GuardianInfo>;
  } catch {
    return undefined;
  }
}

/** Starts under way in this process, by control socket (see startGuardian). */
const starting = new Map<string, Promise<GuardianStatus>>();

/**
 * Starts the guardian for this instance unless it answers already; returns its status. A guardian
 * of another build (cloister was upgraded or rebuilt since it started) is replaced: running
 * cloisters are adopted again by the new one, as after any guardian restart. Callers in one process
 * share one start: launches made at once through the library would otherwise restart an old
 * guardian once each and race their new ones for the instance (all but one failing).
 */
export function startGuardian(paths: CloisterPaths): Promise<GuardianStatus> {
  let start = starting.get(paths.guardianSocket);
  if (!start) {
    start = startGuardianOnce(paths).finally(() => starting.delete(paths.guardianSocket));
    starting.set(paths.guardianSocket, start);
  }
  return start;
}

async function startGuardianOnce(paths: CloisterPaths): Promise<GuardianStatus> {
  checkSocketRoom(paths);
  const running = await guardianStatus(paths);
  if (running && (running.build === undefined || running.build === cloisterBuild())) return running;
  if (running) {
    process.stderr.write(`cloister: the running guardian (pid ${running.pid}) is from another build of cloister; restarting it\n`);
    await guardianCall(paths, "POST", "/v1/restart").catch(() => undefined);
    for (let waited = 0; waited < 5_000 && (await guardianStatus(paths)); waited += 25) await new Promise((resolve) => setTimeout(resolve, 25));
  }
  ensurePrivateDir(paths.runtimeDir);
  mkdirSync(paths.stateDir, { recursive: true, mode: 0o700 });
  const log = openSync(paths.guardianLog, "a", 0o600);
  const logStart = statSync(paths.guardianLog).size;
  // Its environment names this instance: the caller's paths may not come from the caller's environment.
  const env = { ...instanceEnv(paths), UV_THREADPOOL_SIZE: String(GUARDIAN_THREAD_POOL) };
  const child = spawn(process.execPath, [...daemonNodeFlags(), daemonFile()], { detached: true, stdio: ["ignore", log, log], env });
  closeSync(log);
  child.unref();
  for (let waited = 0; waited < 10_000; waited += 25) {
    const status = await guardianStatus(paths);
    if (status) return status;
    // Exit code 0: another guardian holds this instance (another process started one at the same
    // moment), and answers once it is up. Anything else is a failed start.
    if (child.signalCode !== null || (child.exitCode !== null && child.exitCode !== 0)) break;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  const why = startFailure(paths.guardianLog, logStart);
  throw new CloisterError(`the guardian did not start${why ? `: ${why}` : ""}`, `see ${paths.guardianLog}`);
}

/** Begins the line a guardian that cannot start leaves last in its log, with its reason (daemon.ts). */
export const GUARDIAN_FAILED = "cloister guardian failed to start: ";

/** The reason the guardian gave in its log since `from` (the log's size when it was started), if any. */
function startFailure(logFile: string, from: number): string | undefined {
  let text: string;
  try {
    // Its last 64 KiB at most: the reason is its last line, and the log of a long-lived instance is long.
    const fd = openSync(logFile, "r");
    try {
      const size = fstatSync(fd).size;
      const start = Math.max(from, size - 65_536);
      const buffer = Buffer.alloc(Math.max(0, size - start));
      readSync(fd, buffer, 0, buffer.length, start);
      text = buffer.toString("utf8");
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
  const line = text.split("\n").filter((l) => l.startsWith(GUARDIAN_FAILED)).pop();
  return line?.slice(GUARDIAN_FAILED.length);
}

/** What the guardian needs to know of a launching cloister (POST /v1/cloisters). */
export interface GrantRequest {
  name: string;
  id: string;
  network: boolean;
  project: string;
  projectRoot: string;
  session?: SessionRules;
}

/**
 * Registers a launching cloister with the guardian; `granted` resolves with its grant. The request goes
 * straight to whatever guardian answers (one is started if none does): the grant says which build
 * gave it, and a guardian of another build is then replaced (its grant goes with it) and the new
 * one asked again. That covers guardians older than guardianInfoFile too. `signal` cuts the request
 * off (its launcher gave up on it).
 */
export function requestGrant(paths: CloisterPaths, request: GrantRequest, signal?: AbortSignal): PendingGrant {
  let markSent!: () => void;
  const sent = new Promise<void>((resolve) => (markSent = resolve));
  const granted = (async () => {
    try {
      const grant = await guardianCallStarting<LaunchGrant>(paths, "POST", "/v1/cloisters", request, { onSent: markSent, signal });
      if (grant.build === cloisterBuild()) return grant;
      await startGuardian(paths);
      return await guardianCall<LaunchGrant>(paths, "POST", "/v1/cloisters", request, { signal });
    } finally {
      markSent();
    }
  })();
  return { sent, granted };
}

/**
 * guardianCall, starting the guardian first when none listens (the call cannot have reached one).
 * `options.onSent` runs when the first attempt has been sent or has failed, whichever comes first.
 */
export async function guardianCallStarting<T>(paths: CloisterPaths, method: string, path: string, body?: unknown, options: CallOptions = {}): Promise<T> {
  try {
    return await guardianCall<T>(paths, method, path, body, options);
  } catch (error) {
    options.onSent?.();
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "ENOENT" && code !== "ECONNREFUSED") throw error;
  }
  await startGuardian(paths);
  return guardianCall<T>(paths, method, path, body, { ...options, onSent: undefined });
}

/**
 * A launch failed after its grant: the guardian closes what it opened for it (egress socket,
 * watches) and records the end. Best effort; the guardian's own sweep catches what this misses.
 */
export async function releaseGrant(paths: CloisterPaths, name: string, id: string, signal?: AbortSignal): Promise<void> {
  await guardianCall(paths, "POST", `/v1/cloisters/${encodeURIComponent(name)}/abandon`, { id }, { signal }).catch(() => undefined);
}

/**
 * What cloister `cloisterId` gets for an agent's stored credential (`cloister setup AGENT`): its
 * placeholder as a rule (`placeholder: true`); the value itself only for a custom agent's secret
 * that has no injection rule. Undefined when none is stored. `signal` cuts the request off (see CallOptions).
 */
export async function agentCredentialFromGuardian(paths: CloisterPaths, agent: string, cloisterId: string, signal?: AbortSignal): Promise<(AgentCredential & { placeholder: boolean }) | undefined> {
  const answer = await guardianCall<Partial<AgentCredential & { placeholder: boolean }>>(paths, "GET", `/v1/agents/${encodeURIComponent(agent)}/credential/${encodeURIComponent(cloisterId)}`, undefined, {
    deadlineMs: VAULT_DEADLINE_MS,
    signal,
  });
  return answer.kind && answer.value ? { kind: answer.kind, value: answer.value, placeholder: answer.placeholder === true } : undefined;
}
