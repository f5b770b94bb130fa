import { randomBytes } from "node:crypto";
import { realpathSync } from "node:fs";
import type { Readable, Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { checkOwnInstance } from "./config/foreign-instance.js";
import { resolvePaths, type CloisterPaths } from "./config/paths.js";
import { registerResolved, resolveProject } from "./config/effective-cache.js";
import { NAME_RULE, SAFE_NAME_RE } from "./config/names.js";
import type { EffectiveConfig } from "./config/schema.js";
import { LIMIT_DEFAULTS } from "./config/limit-defaults.js";
import { formatSize, isNone, MAX_TIMEOUT_MS, parseDuration, parsePercent, parseProcessCount, parseSize } from "./config/units.js";
import { CloisterError } from "./errors.js";
import { runToEnd, type FreshCloister } from "./fresh-run.js";
import { ensureGuardian, guardianCall, guardianCallStarting, releaseGrant, requestGrant, STOP_DEADLINE_MS, VAULT_DEADLINE_MS } from "./guardian/control-client.js";
import { WORK_DIR } from "./sandbox/bwrap/mounts.js";
import { claimCloister, launchCloister, PROXY_PORT, releaseRecord, sandboxHome, type ClaimedName, type LaunchSpec } from "./sandbox/engine.js";
import { sandboxEnv } from "./sandbox/env.js";
import { execInCloister, type ExecSession } from "./sandbox/init-client.js";
import { detectLimitMechanism, unenforceableLimits, type LimitMechanism } from "./sandbox/limits.js";
import { ProtocolError } from "./sandbox/init-protocol.js";
import { exposureProblem, guardedPaths, writableByRunningCloister, type GuardedPaths, type RunningProject } from "./sandbox/host-exposure.js";
import { gitDirsOf, isAdminDirOf, realPath } from "./sandbox/git-dirs.js";
import type { LinkedGitDirs } from "./sandbox/linked-git.js";
import { locateProject, type ProjectLocation } from "./sandbox/project.js";
import { cloisterListing, isKeeperAlive, listRecords, readRecord, type CloisterListing, type CloisterRecord } from "./sandbox/records.js";
import { configRootOf, openWorktree, resolveLaunchProject, worktreeDir } from "./sandbox/worktree.js";
import { userInfo } from "node:os";
import type { CredentialLookup } from "./agents/credentials.js";
import { hasAgentMarker } from "./agents/marker.js";
import type { AgentRequest, AgentSession } from "./agents/session.js";
import { checkArgv, checkExecOptions, checkFlag, checkOptions, checkPaths, checkText } from "./options-check.js";
export type { AgentSession, CloisterListing };
export { NameTaken } from "./sandbox/engine.js";

/**
 * Options shared by the CLI and the library; every field is optional. They are checked when a call is
 * made, before anything starts: a value of the wrong type or an unknown key (a misspelt one) is a
 * CloisterError that names it (`options.allow must be an array of rules ...`, `did you mean ...`).
 */
export interface CloisterOptions {
  /** Project directory (its git toplevel is used); default: the current directory. */
  project?: string;
  allowNoGit?: boolean;
  /**
   * Run in the project's git worktree for this branch (created under the data dir if needed, from
   * the local branch, else origin/BRANCH, else HEAD); a persistent cloister is named `<project>-<branch>`.
   */
  branch?: string;
  /** Name of a persistent cloister; default: the project's name. */
  name?: string;
  /** false = no network at all (not even the guardian bridge). Default from config (true). */
  network?: boolean;
  /** "8GiB", "512M", bytes, or "none". */
  memory?: string | number;
  pids?: number | string;
  /** "150%" of one core, or "none". */
  cpu?: string;
  /** Extra environment for commands: NAME → value. */
  env?: Record<string, string>;
  /**
   * Variables that hold a stored secret's placeholder (`--secret NAME=SECRET`): the guardian swaps
   * the placeholder for the value on the way to the secret's hosts; the cloister never sees the value.
   */
  secretEnv?: Record<string, string>;
  /** Egress rules for this cloister alone, on top of global and project rules (`--allow`, `--deny`). */
  allow?: string[];
  deny?: string[];
  /** Allow rules that may also reach loopback/private addresses (`--allow-private`). */
  allowPrivate?: string[];
  /** Host name → IP address, applied by the guardian (`--resolve NAME=IP`). */
  resolve?: Record<string, string>;
  /** An isolated instance (like CLOISTER_HOME); default from the environment. */
  paths?: CloisterPaths;
  /**
   * Aborts a launch under way: what it had made (cgroups, the keeper, placeholders in the project,
   * the record) is removed, and the promise rejects with the signal's reason. A cloister that
   * createCloister has returned is not affected: stop it. runInCloister's also stops its command
   * (see RunOptions).
   */
  signal?: AbortSignal;
  /**
   * Set the cloister up for this agent (claude, codex, gemini, or one from config `agents:`); true =
   * config `defaults.agent`. Without it, a persistent cloister is set up for `defaults.agent` if any.
   */
  agent?: string | true;
  /** Where the agent's stored credential comes from (the guardian's vault). */
  credentials?: CredentialLookup;
  /** Take the agent's credential from the host environment (ANTHROPIC_API_KEY, ...) instead: an explicit opt-in, warned about. */
  passEnvCredential?: boolean;
  /** Warnings and set-up notes; default: one line each on stderr. */
  warn?: (message: string) => void;
}

/** runInCloister's options: a fresh cloister's (it is named for you), and how long its command may run. */
export interface RunOptions extends Omit<CloisterOptions, "name"> {
  /**
   * Stop the cloister, and with it the command and everything it started, after this long, counted
   * from the command's start: milliseconds, or a duration ("90s", "5m", "1h30m"), at most 24 days; or
   * "none". Default: config `limits.timeout` (none unless set). The promise then resolves with 124
   * (TIMED_OUT), as `cloister run --timeout` exits, once the cloister is gone.
   */
  timeout?: number | string;
  /**
   * Aborts the launch, as for createCloister, and also the command once it runs: the cloister is
   * stopped, and the promise rejects with the signal's reason once it is gone. `AbortSignal.timeout(ms)`
   * counts the launch too, and rejects where `timeout` resolves with 124.
   */
  signal?: AbortSignal;
}

/**
 * findCloister's options: what commands in a running cloister are set up with. The others of
 * CloisterOptions (project, network, limits, rules, ...) apply when a cloister is made, and are
 * refused here rather than ignored: a running one keeps what it was started with.
 */
export interface FindOptions extends Pick<CloisterOptions, "env" | "secretEnv" | "paths" | "credentials" | "passEnvCredential" | "warn"> {
  /**
   * The agent the cloister must have been set up for (an agent is set up when its cloister starts):
   * another is a CloisterError. Without it, a cloister set up for an agent still gives every command
   * the agent's credential.
   */
  agent?: string | true;
  /** Calls off what findCloister asks of the guardian (the agent's credential, secretEnv's placeholders); the cloister is not affected. */
  signal?: AbortSignal;
}

/** A command's options; checked like CloisterOptions. */
export interface ExecOptions {
  cwd?: string;
  env?: Record<string, string>;
  /**
   * Run under a terminal of this size. `separateStderr`: the command's stderr goes to `stderr` through
   * a pipe instead of the terminal, as for a caller whose own stderr is redirected (`2>build.log`).
   */
  tty?: { rows: number; cols: number; separateStderr?: boolean };
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
}

/** A running cloister. Commands run in it through its init; `stop` ends it and everything inside. */
export class Cloister {
  constructor(
    readonly record: CloisterRecord,
    private readonly paths: CloisterPaths,
    private readonly baseEnv: Record<string, string>,
    /** The agent the cloister was set up for, if any. */
    readonly agent?: AgentSession,
  ) {}

  get name(): string {
    return this.record.name;
  }

  /** The login shell configured for cloisters (config `defaults.shell`). */
  get shell(): string {
    return this.baseEnv.SHELL ?? "/bin/sh";
  }

  /**
   * Starts a command (its words, no shell); await `.done` for its exit code. In a cloister set up for
   * an agent, every command has the agent's credential in its environment, as the agent does.
   */
  exec(argv: string[], options: ExecOptions = {}): ExecSession {
    checkArgv(argv, "argv", false);
    checkExecOptions(options, "options");
    const env = { ...this.baseEnv, ...options.env };
    if (options.tty) env.TERM ??= "xterm-256color";
    try {
      return this.startCommand(argv, options, env);
    } catch (error) {
      // What the checks above cannot see before it is encoded: a command too large for init to take.
      if (error instanceof ProtocolError) throw new CloisterError(`cannot run the command: ${error.message}`);
      throw error;
    }
  }

  private startCommand(argv: string[], options: ExecOptions, env: Record<string, string>): ExecSession {
    return execInCloister(
      this.record.initSocket,
      {
        tty: options.tty !== undefined,
        separateStderr: options.tty?.separateStderr,
        rows: options.tty?.rows ?? 24,
        cols: options.tty?.cols ?? 80,
        cwd: options.cwd ?? WORK_DIR,
        argv,
        env,
      },
      { stdin: options.stdin, stdout: options.stdout ?? process.stdout, stderr: options.stderr ?? process.stderr },
      this.record.persistent,
    );
  }

  /** Starts the cloister's agent with these arguments; await `.done` for its exit code. */
  execAgent(args: string[], options: ExecOptions = {}): ExecSession {
    checkArgv(args, "args", true);
    if (!this.agent) throw new CloisterError(`cloister ${this.name} was not set up for an agent`, "create it with options.agent");
    return this.exec(this.agent.argv(args), options);
  }

  /**
   * Stops the cloister and everything in it, and removes it; resolves with true once it is gone, or
   * with false if it was gone already (stopped before, from here or by `cloister stop`, or swept
   * after its keeper died): a second stop is not an error, so `finally { await c.stop() }` needs no
   * try/catch of its own. A cloister of the same name started since is another one, and left running.
   */
  async stop(): Promise<boolean> {
    return stopRecorded(this.paths, this.name, this.record.id);
  }
}

/**
 * Creates a cloister. A persistent one lives until it is stopped (`stop`, `cloister stop`), beyond
 * this process. Any other is meant for one `run`: stop it when done; one that is not keeps its host
 * processes and cgroups until this process exits, which it does not hold up: the cloister then dies
 * with it, its commands included, however it exits, and the guardian removes what is left of it
 * (record, runtime dir, cgroups, HOME) within seconds.
 */
export async function createCloister(options: CloisterOptions = {}, persistent = false): Promise<Cloister> {
  checkFlag(persistent, "persistent");
  checkOptions(options, persistent ? "persistent" : "fresh");
  return (await launch(options, persistent)).cloister;
}

/**
 * A fresh cloister for one command (runInCloister, `cloister run`), with the command's timeout. Its
 * options are not checked here: the CLI makes its own.
 */
export async function launchFresh(options: RunOptions): Promise<FreshCloister> {
  const { cloister, timeoutMs } = await launch(options, false);
  return { cloister, timeoutMs, remove: async () => void (await cloister.stop()) };
}

/** The options a launch reads: a persistent cloister's name, a fresh one's timeout. */
type LaunchOptions = CloisterOptions & Pick<RunOptions, "timeout">;

/** createCloister's launch; also the timeout a fresh cloister's command gets. */
async function launch(options: LaunchOptions, persistent: boolean): Promise<{ cloister: Cloister; timeoutMs: number | undefined }> {
  const paths = options.paths ?? resolvePaths();
  const { spec, config, timeoutMs } = await launchSpec(options, paths, persistent);
  const mechanism = detectLimitMechanism();
  dropUnenforceable(spec, options, config, mechanism);
  const id = randomBytes(4).toString("hex");
  // Before anything is made or asked of the guardian: a name is one cloister's (NameTaken).
  const claim = await claimCloister(paths, spec, id, mechanism);
  // launchCloister gives the name back when it fails; this covers the steps before it too (giving it
  // back twice is harmless: only a record that is still this launch's goes).
  const { record, agent, env } = await launchClaimed(paths, options, persistent, spec, config, claim).catch(async (error: unknown) => {
    await releaseRecord(paths, claim.record).catch(() => undefined);
    throw error;
  });
  const cloister = new Cloister(record, paths, commandEnv(record, { ...options, env: { ...agent?.session.env, ...env } }, config), agent?.session);
  // Aborted after the launch's last wait: the abort still stands, so the cloister goes again.
  if (options.signal?.aborted) {
    await cloister.stop().catch(() => undefined);
    options.signal?.throwIfAborted();
  }
  return { cloister, timeoutMs };
}

/** The agent's set-up, the environment and the guardian's grant for a claimed name, then the launch. */
async function launchClaimed(paths: CloisterPaths, options: CloisterOptions, persistent: boolean, spec: LaunchSpec, config: EffectiveConfig, claim: ClaimedName) {
  const id = claim.record.id;
  // Before the grant, not beside it: the agent's set-up asks the guardian for its credential, which
  // would then wait behind the grant's /etc scan (measured: ~6-14 ms slower that way round).
  const agent = options.agent !== undefined || (persistent && config.defaults.agent)
    ? await (await import("./agents/session.js")).agentForNewCloister(agentRequest(options), { cloisterId: id, persistent, config, paths, projectRoot: spec.projectRoot, network: spec.network, cloisterHome: sandboxHome() })
    : undefined;
  spec.agent = agent?.spec;
  // Before anything is launched: a secret that cannot be handed out fails the start, not a later step.
  const env = await withPlaceholders(paths, options, id);
  spec.env = env;
  // The claim was written before the environment was known: later commands take it from the record.
  claim.record.env = env;
  // Cut off by its own signal, not the launch's: an undone launch still takes the grant to give it back.
  const grantCancel = new AbortController();
  const grant = requestGrant(paths, { name: spec.name, id, network: spec.network, project: spec.project, projectRoot: spec.projectRoot, session: spec.session }, grantCancel.signal);
  // Awaited by launchCloister, but maybe only after its own preparation has failed: handled there.
  // A cloister whose every connection will be refused starts, but not silently (QA: only `guardian
  // status` said so).
  grant.granted.then(
    (granted) => granted.policyError && warnOf(options)(`the configuration does not load, so the guardian refuses all egress until it is fixed: ${granted.policyError} (then \`cloister guardian reload\`)`),
    () => undefined,
  );
  try {
    return { record: await launchCloister(paths, spec, claim, grant, options.signal), agent, env };
  } catch (error) {
    // Given back at once, or the guardian's socket dir stays in the runtime dir until its sweep; but
    // cut off after RELEASE_WAIT_MS, so that Ctrl-C ends a launch on a stopped guardian (QA).
    const released = grant.granted.then(() => releaseGrant(paths, spec.name, id, grantCancel.signal), () => undefined);
    await Promise.race([released, sleep(RELEASE_WAIT_MS, undefined, { ref: false })]);
    grantCancel.abort();
    throw error;
  }
}

/**
 * How long an undone launch still waits for its grant, to give it back: the guardian answers in
 * milliseconds. One that does not (stopped, hung) abandons the grant itself after LAUNCH_GRACE_MS.
 */
const RELEASE_WAIT_MS = 2_000;

/**
 * CloisterOptions' other keys, each allowed only as undefined: without them, createCloister's options
 * object, passed as it is (`await findCloister(n, opts) ?? await createCloister(opts, true)`), compiles.
 */
type WithoutLaunchOptions = { [K in Exclude<keyof CloisterOptions, keyof FindOptions>]?: never };

/**
 * The persistent cloister of that name if it is running. Options that apply when a cloister is made
 * (options.network, ...) are a CloisterError, not ignored: see FindOptions.
 */
export async function findCloister(name: string, options: FindOptions & WithoutLaunchOptions = {}): Promise<Cloister | undefined> {
  checkText(name, "name");
  checkOptions(options, "running");
  const paths = options.paths ?? resolvePaths();
  // It may start the guardian, as a stop and a removal write: not into another user's instance.
  checkOwnInstance(paths);
  const record = readRecord(paths, name);
  if (!record || !isKeeperAlive(record)) return undefined;
  // A running cloister needs its guardian (egress socket, reaper): bring back one that crashed.
  await ensureGuardian(paths);
  const config = await configForRunning(paths, record, warnOf(options));
  const agent = options.agent !== undefined || hasAgentMarker(record.runtimeDir)
    ? await (await import("./agents/session.js")).agentForRunningCloister(record, agentRequest(options), config)
    : undefined;
  // Under the caller's: a command of a cloister set up for an agent has its credential (`cloister exec
  // NAME -- claude` is the agent too), and an explicit env or secretEnv of the same name wins.
  const env = { ...record.env, ...agent?.env, ...(await withPlaceholders(paths, options, record.id)) };
  return new Cloister(record, paths, commandEnv(record, { ...options, env }, config), agent);
}

/**
 * The config a command in a running cloister is set up with (its shell, the host variables it
 * passes). A config file broken since the cloister started must not lock the user out of it (the
 * guardian keeps the policy it had): the command gets the defaults, which pass no extra host
 * variables, and the error is said. Loaded lazily: the config modules are only needed then.
 */
async function configForRunning(paths: CloisterPaths, record: CloisterRecord, warn: (message: string) => void): Promise<EffectiveConfig> {
  try {
    return (await resolveProject(paths, await configRootOf(paths, record))).config;
  } catch (error) {
    const { ConfigError, effectiveConfig, parseConfigText } = await import("./config/load.js");
    if (!(error instanceof ConfigError)) throw error;
    // Every problem, as a launch names them (QA), on the one line a warning has.
    const them = error.problems.length === 1 ? "it is" : "they are";
    warn(`${error.summary()}; until ${them} fixed, commands in ${record.name} run with the default settings`);
    return effectiveConfig(parseConfigText("", "defaults", "global"), parseConfigText("", "defaults", "project"));
  }
}

/** `options.env` plus each `secretEnv` variable set to the cloister's placeholder for its secret. */
async function withPlaceholders(paths: CloisterPaths, options: FindOptions, cloisterId: string): Promise<Record<string, string> | undefined> {
  const entries = Object.entries(options.secretEnv ?? {});
  if (entries.length === 0) return options.env;
  await ensureGuardian(paths);
  const env: Record<string, string> = {};
  for (const [name, secret] of entries) {
    const answer = await guardianCall<{ placeholder: string }>(paths, "GET", `/v1/secrets/${encodeURIComponent(secret)}/placeholder/${cloisterId}`, undefined, {
      deadlineMs: VAULT_DEADLINE_MS,
      signal: options.signal,
    });
    env[name] = answer.placeholder;
  }
  return { ...env, ...options.env };
}

/**
 * Creates a fresh cloister, runs one command, removes the cloister; resolves with the exit code, or
 * with 124 when `options.timeout` stopped it. `options.signal` aborting stops it too, and rejects with
 * the signal's reason. Either way the promise settles once nothing of the cloister is left. With
 * `options.agent`, `argv` are the agent's arguments (`["-p", "fix the tests"]`).
 */
export async function runInCloister(argv: string[], options: RunOptions = {}, exec: ExecOptions = {}): Promise<number> {
  checkOptions(options, "run");
  checkArgv(argv, "argv", options.agent !== undefined);
  checkExecOptions(exec, "exec");
  const fresh = await launchFresh(options);
  const command = async (cloister: Cloister) => (await (options.agent !== undefined ? cloister.execAgent(argv, exec) : cloister.exec(argv, exec)).done).exitCode;
  return (await runToEnd(fresh, command, options.signal)).exitCode;
}

/**
 * Stops the cloister of that name and everything in it, and removes it. Resolves with true once it is
 * gone, or with false if there was none (never started, stopped already, swept after its keeper
 * died): stopping is idempotent, so clean-up code needs no try/catch of its own. (`cloister stop NAME`
 * says an unknown name is an error: it may be a typo.)
 */
export async function stopCloister(name: string, paths: CloisterPaths = resolvePaths()): Promise<boolean> {
  checkText(name, "name");
  checkPaths(paths, "paths");
  checkOwnInstance(paths);
  return stopRecorded(paths, name, undefined);
}

/** stopCloister's, and a Cloister's with its `id`: a record of that name with another id is not it. */
async function stopRecorded(paths: CloisterPaths, name: string, id: string | undefined): Promise<boolean> {
  const recorded = () => {
    const record = readRecord(paths, name);
    return record !== undefined && (id === undefined || record.id === id);
  };
  // Only a recorded cloister needs the guardian (which adopts it, should it have crashed): for any
  // other name, asking would start a guardian only to hear that there is no such cloister.
  if (!recorded()) return false;
  try {
    await guardianCallStarting(paths, "POST", `/v1/cloisters/${encodeURIComponent(name)}/stop`, id === undefined ? undefined : { id }, { deadlineMs: STOP_DEADLINE_MS });
    return true;
  } catch (error) {
    // The guardian names it unknown when another stop, or its sweep, removed it meanwhile: that
    // stop did what this one was asked to. Any other failure leaves the record, and is said.
    if (recorded()) throw error;
    return false;
  }
}

/** The cloisters of this instance, running (`running`) or dead but not yet swept. */
export async function listCloisters(paths: CloisterPaths = resolvePaths()): Promise<CloisterListing[]> {
  checkPaths(paths, "paths");
  return listRecords(paths).map(cloisterListing);
}

/**
 * The launch spec, the effective config it came from (commands' environment needs it too), and the
 * timeout of a fresh cloister's command: every option is read here, before anything is made.
 */
async function launchSpec(options: LaunchOptions, paths: CloisterPaths, persistent: boolean): Promise<{ spec: LaunchSpec; config: EffectiveConfig; timeoutMs: number | undefined }> {
  // The library's launches, as the CLI's commands, write nothing into another user's instance.
  checkOwnInstance(paths);
  const guarded = guardedPaths(paths);
  const location = locateProject(options.project ?? process.cwd(), options.allowNoGit, guarded);
  const resolved = await resolveLaunchProject(paths, location, options.branch);
  const { project, config, worktree: planned } = resolved;
  const name = persistent ? checkedName(options.name ?? planned?.cloisterName ?? project, options.name !== undefined) : `${project.slice(0, 50)}-run-${randomBytes(3).toString("hex")}`;
  const network = options.network ?? config.defaults.network;
  const limits = {
    memoryBytes: atLeast("memory", optionOr("memory", options.memory, parseSize, config.limits.memory), MIN_MEMORY_BYTES, "memory limit", formatSize),
    pids: atLeast("pids", optionOr("pids", options.pids, parseProcessCount, config.limits.pids), MIN_PIDS, "process limit", String),
    cpuPercent: optionOr("cpu", options.cpu, parsePercent, config.limits.cpu),
  };
  const sessionRules = [options.allow, options.deny, options.allowPrivate, Object.keys(options.resolve ?? {})];
  if (!network && sessionRules.some((list) => (list?.length ?? 0) > 0)) {
    throw new CloisterError("options.allow, options.deny, options.allowPrivate and options.resolve have no effect without a network", "drop them, or drop options.network");
  }
  const timeoutMs = optionOr("timeout", options.timeout, parseTimeout, config.limits.timeout);
  const mounts = {
    project,
    projectRoot: planned !== undefined ? worktreeDir(paths, planned) : location.root,
    refs: Object.entries(config.refs).map(([refName, hostPath]) => ({ name: refName, hostPath })),
    extraMounts: config.sandbox.mounts,
  };
  checkMountSources(mounts, guarded, runningProjects(paths));
  // Only now, every option checked: a launch refused leaves no worktree behind (QA).
  const worktree = planned !== undefined ? await openWorktree(paths, resolved.root, planned, options.warn) : undefined;
  const spec: LaunchSpec = {
    ...mounts,
    name,
    projectRoot: worktree?.dir ?? location.root,
    linkedGit: worktree?.git ?? hostMadeWorktree(location),
    isGit: location.isGit,
    persistent,
    network,
    limits,
    tmpfsBytes: config.limits.tmpfs,
    protect: config.sandbox.protect,
    session: {
      allow: options.allow ?? [],
      deny: options.deny ?? [],
      allowPrivate: options.allowPrivate ?? [],
      resolve: options.resolve ?? {},
    },
  };
  // Last, once every option is checked: a launch refused leaves no project behind (QA).
  await registerResolved(paths, resolved);
  return { spec, config, timeoutMs };
}

/**
 * A worktree the user made with `git worktree add` gets the same view of its repository as a
 * `start -b` worktree (linked-git.ts): its git dir lives in the main repository's, which is outside
 * the project, so without it git inside fails ("not a git repository"). A submodule checkout, whose
 * `.git` file names a dir under .git/modules, is not one.
 */
function hostMadeWorktree(location: ProjectLocation): LinkedGitDirs | undefined {
  const dirs = location.isGit ? gitDirsOf(location.root) : undefined;
  if (dirs?.kind !== "file" || !isAdminDirOf(dirs.gitDir, dirs.commonDir)) return undefined;
  return { commonDir: dirs.commonDir, adminDir: dirs.gitDir };
}

/**
 * A configured mount whose host path is missing would only fail inside bwrap, after the launch
 * was reported started, where the user sees a cloister that is gone; say which entry it is instead.
 * One that would hand the cloister the host's HOME, secrets, sockets or cloister's own files is
 * refused (host-exposure.ts), checked by its real path as bwrap would mount it; so is a project, ref
 * or mount inside another project whose cloister runs (writableByRunningCloister).
 */
function checkMountSources(spec: Pick<LaunchSpec, "project" | "projectRoot" | "refs" | "extraMounts">, guarded: GuardedPaths, running: readonly RunningProject[]): void {
  const projectFix = `cloister project edit ${spec.project}`;
  checkNotWritableByOthers("this project", spec.projectRoot, spec.projectRoot, running);
  for (const ref of spec.refs) checkMountSource(`refs.${ref.name} in project ${spec.project}'s config`, ref.hostPath, `create it, or remove the ref: ${projectFix}`, guarded, spec, running);
  for (const mount of spec.extraMounts) {
    checkMountSource(`sandbox.mounts (for ${mount.dest})`, mount.src, `create it, or remove the entry: cloister config edit (global) or ${projectFix}`, guarded, spec, running);
  }
}

function checkMountSource(entry: string, hostPath: string, fix: string, guarded: GuardedPaths, spec: Pick<LaunchSpec, "projectRoot">, running: readonly RunningProject[]): void {
  let real: string;
  try {
    real = realpathSync(hostPath);
  } catch {
    throw new CloisterError(`${entry} names ${hostPath}, which does not exist`, fix);
  }
  const problem = exposureProblem(real, guarded);
  if (problem !== undefined) throw new CloisterError(`${entry} names ${hostPath}, which a cloister must not see: ${problem}`, "name a directory that holds only what the cloister needs");
  checkNotWritableByOthers(`${entry} (${hostPath})`, real, spec.projectRoot, running);
}

function checkNotWritableByOthers(what: string, real: string, ownRoot: string, running: readonly RunningProject[]): void {
  const other = writableByRunningCloister(real, ownRoot, running);
  if (other === undefined) return;
  throw new CloisterError(
    `${what} lies inside the project of cloister ${other.name} (${other.projectRoot}), which runs and can change anything there, also while this one starts`,
    `stop it first (cloister stop ${other.name}); for a branch of that project, use its own worktree cloister: cloister start -b BRANCH`,
  );
}

/** The running cloisters' projects, by real path. */
function runningProjects(paths: CloisterPaths): RunningProject[] {
  return listRecords(paths)
    .filter(isKeeperAlive)
    .map((record) => ({ name: record.name, projectRoot: realPath(record.projectRoot) ?? record.projectRoot }));
}

/**
 * An option's value wins over config; "none" means no limit; zero or junk is a usage error, which
 * names the option (the CLI says its flag).
 */
function optionOr<T extends string | number>(option: keyof LaunchOptions, value: T | undefined, parse: (v: T) => number, fallback: number | null): number | undefined {
  if (value === undefined) return fallback ?? undefined;
  if (typeof value === "string" && value.trim().toLowerCase() === "none") return undefined;
  let parsed: number;
  try {
    parsed = parse(value);
  } catch (error) {
    throw new CloisterError(`options.${option}: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (parsed <= 0) throw new CloisterError(`options.${option}: a limit of ${JSON.stringify(value)} would stop everything`, "give a positive value, or none for no limit");
  return parsed;
}

/**
 * A memory or CPU cap this host cannot enforce (no cgroup for it: limits.ts) is not dropped in
 * silence. One the caller asked for (options.memory, options.cpu: the CLI's --memory and --cpu)
 * fails the launch; one the configuration sets is left out with a warning at each launch. Only the
 * built-in default (limits.memory 8GiB, a safety net nobody chose) is left out without a word: said
 * at every launch, it would be noise for every user without a delegated cgroup; `cloister doctor`
 * says it instead.
 */
function dropUnenforceable(spec: LaunchSpec, options: LaunchOptions, config: EffectiveConfig, mechanism: LimitMechanism): void {
  const gaps = unenforceableLimits(mechanism, spec.limits);
  if (gaps.length === 0) return;
  // The built-in values as the config holds them; not through the schema, which would load zod on every launch.
  const builtIn = { memory: parseSize(LIMIT_DEFAULTS.memory), cpu: isNone(LIMIT_DEFAULTS.cpu) ? null : parsePercent(LIMIT_DEFAULTS.cpu) };
  const root = userInfo().uid === 0;
  const getOne = `get a delegated cgroup (\`cloister doctor\` shows how, e.g. systemd-run ${root ? "" : "--user "}--scope -p Delegate=yes cloister ...)${root ? "" : " or run cloister as root"}`;
  for (const { limit, why } of gaps) {
    const what = limit === "memory" ? "a memory limit" : "a CPU cap";
    if (options[limit] !== undefined) {
      throw new CloisterError(`options.${limit}: ${what} cannot be enforced here: ${why}`, `${getOne}; or leave options.${limit} out, and the cloister runs without one`);
    }
    const configured = config.limits[limit];
    if (configured !== builtIn[limit]) {
      const shown = limit === "memory" ? formatSize(configured) : `${configured}%`;
      warnOf(options)(`limits.${limit} ${shown} (from the configuration) is not enforced: ${why}; this cloister runs without ${what} (${getOne}, or set limits.${limit}: none to silence this)`);
    }
    if (limit === "memory") delete spec.limits.memoryBytes;
    else delete spec.limits.cpuPercent;
  }
}

/**
 * The least a cloister needs to start at all: bwrap, init, the relay and a shell that can fork once
 * (measured: a cloister with 8 MiB and 8 processes runs `sh -c '(true)'`, one with 6 processes cannot).
 * Below it the launch fails in a way that only names the keeper's log.
 */
const MIN_MEMORY_BYTES = 8 * 1024 * 1024;
const MIN_PIDS = 8;

function atLeast(option: keyof LaunchOptions, limit: number | undefined, minimum: number, what: string, format: (value: number) => string): number | undefined {
  if (limit !== undefined && limit < minimum) {
    throw new CloisterError(`options.${option}: a ${what} of ${format(limit)} is too small to start a cloister`, `give at least ${format(minimum)}, or none for no limit`);
  }
  return limit;
}

/** Cloister names become hostnames, file names and cgroup names: keep them boring. `given`: by options.name. */
function checkedName(name: string, given: boolean): string {
  if (!SAFE_NAME_RE.test(name)) {
    throw new CloisterError(
      `${given ? "options.name: " : ""}invalid cloister name ${JSON.stringify(name)}`,
      `use ${NAME_RULE}${given ? "" : ", and give it with options.name"}`,
    );
  }
  return name;
}

/**
 * A timeout in milliseconds, from a number of them or a duration ("90s", "5m"): below setTimeout's
 * ~24-day ceiling. Zero, negative and "none" are optionOr's.
 */
function parseTimeout(value: string | number): number {
  const ms = typeof value === "number" ? value : parseDuration(value);
  if (!Number.isInteger(ms)) throw new Error(`${value} is not a whole number of milliseconds`);
  if (ms > MAX_TIMEOUT_MS) throw new Error(`${JSON.stringify(value)} is longer than the longest supported (24 days)`);
  return ms;
}

function commandEnv(record: CloisterRecord, options: FindOptions, config: EffectiveConfig): Record<string, string> {
  const proxyUrl = record.network && record.proxyToken ? `http://cloister:${record.proxyToken}@127.0.0.1:${PROXY_PORT}` : undefined;
  return sandboxEnv({
    hostEnv: process.env,
    cloisterName: record.name,
    user: userInfo().username,
    home: sandboxHome(),
    shell: config.defaults.shell,
    extraNames: config.sandbox.env,
    proxyUrl,
    trustBundle: proxyUrl !== undefined && record.trustBundle !== undefined,
    nodeTrust: proxyUrl !== undefined && record.nodeTrustFile !== undefined,
    explicit: options.env ?? {},
    agentBin: hasAgentMarker(record.runtimeDir),
  });
}

function agentRequest(options: FindOptions): AgentRequest {
  return {
    agent: options.agent,
    credentials: options.credentials,
    passEnvCredential: options.passEnvCredential,
    warn: warnOf(options),
    signal: options.signal,
  };
}

/** Where a launch says what its caller should know: options.warn, else stderr. */
function warnOf(options: FindOptions): (message: string) => void {
  return options.warn ?? ((message) => process.stderr.write(`cloister: ${message}\n`));
}
