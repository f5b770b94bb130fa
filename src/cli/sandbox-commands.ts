import { posix, relative } from "node:path";
import type { Command } from "commander";
import { createCloister, findCloister, launchFresh, listCloisters, NameTaken, stopCloister, type Cloister, type CloisterOptions, type RunOptions } from "../cloister.js";
import { formatDuration, formatSize } from "../config/units.js";
import { runToEnd } from "../fresh-run.js";
import { removeCloister, stoppedCloisters } from "../stopped.js";
import { resolvePaths, type CloisterPaths } from "../config/paths.js";
import { CloisterError } from "../errors.js";
import { vaultCredentials } from "../agents/vault-lookup.js";
import { findOptionsOf } from "../options-check.js";
import { isBelow } from "../path-under.js";
import { WORK_DIR } from "../sandbox/bwrap/mounts.js";
import { quoteArgument } from "../policy/commands.js";
import { parseEnvAssignments } from "../sandbox/env.js";
import { guardianProcessRuns } from "../guardian/control-client.js";
import { realPath } from "../sandbox/git-dirs.js";
import { memoryLimitReached, oomKills } from "../sandbox/limits.js";
import { holdsName, noSuchCloister, readRecord } from "../sandbox/records.js";
import { locateProject } from "../sandbox/project.js";
import { configRootOf, defaultCloisterName as cloisterNameFor, heldByOtherBranch, managedWorktreeAt, managedWorktrees, registeredRoot } from "../sandbox/worktree.js";
import { checkedOutBranch } from "../sandbox/worktree-git.js";
import type { CloisterRecord } from "../sandbox/records.js";
import { readExecWords } from "./exec-words.js";
import { launchInterruptibly, runAttached } from "./terminal.js";
import { printPath, printTable, collect } from "./output.js";

interface SandboxFlags {
  project?: string;
  branch?: string;
  allowNoGit?: boolean;
  network?: boolean;
  memory?: string;
  pids?: string;
  cpu?: string;
  env?: string[];
  secret?: string[];
  name?: string;
  allow?: string[];
  deny?: string[];
  allowPrivate?: string[];
  resolve?: string[];
  agent?: string | true;
  passEnvCredential?: boolean;
}

function cloisterOptions(flags: SandboxFlags): CloisterOptions {
  return {
    agent: flags.agent,
    credentials: vaultCredentials(),
    passEnvCredential: flags.passEnvCredential,
    project: flags.project,
    branch: flags.branch,
    allowNoGit: flags.allowNoGit,
    network: flags.network,
    memory: flags.memory,
    pids: flags.pids,
    cpu: flags.cpu,
    env: parseEnvAssignments(flags.env ?? []),
    secretEnv: parseEnvAssignments(flags.secret ?? [], "--secret"),
    name: flags.name,
    allow: flags.allow,
    deny: flags.deny,
    allowPrivate: flags.allowPrivate,
    resolve: parseResolve(flags.resolve ?? []),
  };
}

/**
 * The options given that only take effect when a cloister is made: re-entering a running one with
 * them would silently ignore them (a `--no-network` shell that has the network).
 */
function launchOnlyFlags(flags: SandboxFlags, running: CloisterRecord): string[] {
  return [
    ...(given(flags.allow) ? ["--allow"] : []),
    ...(given(flags.deny) ? ["--deny"] : []),
    ...(given(flags.allowPrivate) ? ["--allow-private"] : []),
    ...(given(flags.resolve) ? ["--resolve"] : []),
    ...(flags.network === false && running.network ? ["--no-network"] : []),
    ...(flags.memory !== undefined ? ["--memory"] : []),
    ...(flags.pids !== undefined ? ["--pids"] : []),
    ...(flags.cpu !== undefined ? ["--cpu"] : []),
  ];
}

/** A repeatable flag given at least once. */
function given(list: readonly string[] | undefined): boolean {
  return (list?.length ?? 0) > 0;
}

/** `--resolve NAME=IP` values; the guardian checks the name and the address. */
function parseResolve(values: readonly string[]): Record<string, string> {
  const result: Record<string, string> = {};
  for (const item of values) {
    const eq = item.lastIndexOf("=");
    if (eq <= 0 || eq === item.length - 1) throw new CloisterError(`invalid --resolve ${JSON.stringify(item)}`, "write --resolve NAME=IP, e.g. --resolve api.test=127.0.0.1");
    result[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return result;
}

function projectFlags(command: Command): Command {
  return command
    .option("--project <dir>", "the project directory (its git toplevel is used; default: current directory)")
    .option("--allow-no-git", "allow a plain directory that is not in a git repository")
    .option("-b, --branch <branch>", "use the project's git worktree for this branch (created from the local branch, origin/BRANCH or HEAD); see `cloister worktree`");
}

function agentFlags(command: Command): Command {
  return command
    .option("--agent [name]", "set the cloister up for this agent (claude, codex, gemini, or one from config) and run it; no name = config defaults.agent")
    .option("--pass-env-credential", "give the agent its credential from your environment (ANTHROPIC_API_KEY, OPENAI_API_KEY, ...); off by default");
}

function limitFlags(command: Command): Command {
  return command
    .option("--no-network", "no network at all inside (not even the guardian's proxy)")
    .option("--memory <size>", "memory limit, e.g. 4GiB, 512M, or none")
    .option("--pids <n>", "maximum number of processes, or none")
    .option("--cpu <percent>", "cap CPU time at a percentage of one core, e.g. 150% (default: none; a cloister always runs at background priority)")
    .option("--env <NAME=VALUE>", "set an environment variable inside (repeatable)", collect, [])
    .option("--secret <NAME=SECRET>", "set NAME to the placeholder of a stored secret with an injection rule; the guardian swaps in the value on the way to its hosts (repeatable)", collect, [])
    .option("--allow <rule>", "also allow this host for this cloister only, e.g. example.com or *.example.com:8443 (repeatable)", collect, [])
    .option("--deny <rule>", "deny this host for this cloister, whatever else allows it (repeatable)", collect, [])
    .option("--allow-private <rule>", "allow a host even when it resolves to a loopback/private address (repeatable)", collect, [])
    .option("--resolve <NAME=IP>", "make the guardian connect NAME to IP, like curl --resolve (repeatable)", collect, []);
}

export function registerSandboxCommands(program: Command): void {
  agentFlags(limitFlags(projectFlags(program.command("run"))))
    .description("run a command in a fresh cloister for the project, then remove the cloister")
    .option("--timeout <duration>", "stop the cloister after this long (e.g. 90s, 5m, 1h30m); exit code 124")
    .argument("[command...]", "the command and its arguments (put them after --); with --agent, the agent's arguments")
    .addHelpText("after", '\nThe command runs where you are in the project (from packages/api: /work/packages/api); an agent at /work.\n\nExamples:\n  cloister run -- npm test\n  cloister run --agent claude -- -p "fix the failing test"\n  cloister run --agent codex -- exec "fix the tests"')
    .action(async (command: string[], flags: SandboxFlags & { timeout?: string }) => {
      if (command.length === 0 && flags.agent === undefined) throw new CloisterError("no command given", "usage: cloister run [OPTIONS] -- CMD [ARGS...], or cloister run --agent NAME -- [ARGS...]");
      const exitCode = await runOnce(command, { ...cloisterOptions(flags), timeout: flags.timeout });
      process.exitCode ??= exitCode;
    });

  agentFlags(limitFlags(projectFlags(program.command("start"))))
    .description("start (or re-enter) the project's persistent cloister and open a shell in it at /work (or, with --agent, the agent)")
    .option("-d, --detach", "start it in the background without opening a shell")
    .option("--name <name>", "name of the cloister (default: the project's name)")
    .argument("[agent-args...]", "with --agent: the agent's arguments (put them after --), e.g. -- --resume")
    .addHelpText("after", "\nExamples:\n  cloister start                     a shell in the project's cloister (again: the same cloister)\n  cloister start --agent claude      Claude Code in it, permission prompts off: the cloister is the boundary\n  cloister start --agent claude -- --resume    the agent with its own arguments\n  cloister start -d -b feature-x     a second cloister, detached, on a worktree of branch feature-x\n  cloister start --memory 8GiB --allow example.com")
    .action(async (agentArgs: string[], flags: SandboxFlags & { detach?: boolean }) => {
      // Checked before anything starts: arguments with nothing to take them would be dropped in silence.
      if (agentArgs.length > 0 && flags.agent === undefined) throw new CloisterError("arguments after -- are the agent's, and no --agent was given", "add --agent NAME, or run a command in the cloister with: cloister exec -- CMD [ARGS...]");
      if (agentArgs.length > 0 && flags.detach) throw new CloisterError("-d starts the cloister without opening the agent, so it takes no agent arguments", "drop -d, or the arguments after --");
      const options = cloisterOptions(flags);
      const name = flags.name ?? (await projectCloister(flags)).name;
      // Only what findCloister takes (it refuses the launch-only options): checkReentry says those in
      // the CLI's words (--no-network, not options.network) and lets through what matches the running
      // cloister (its project, its branch).
      const running = await findCloister(name, findOptionsOf(options));
      const { cloister, started } = running ? { cloister: running, started: false } : await launchOrJoin(name, options);
      if (!started) await checkReentry(flags, name, cloister);
      const opensAgent = flags.agent !== undefined;
      const leave = opensAgent ? "Leave the agent to return here" : "Type 'exit' to leave";
      if (!started && flags.detach) {
        process.stderr.write(`Cloister ${name} is already running. Enter it with: ${startAgain(flags, name)}\n`);
      } else if (!started) {
        process.stderr.write(`Entering cloister ${name}${opensAgent ? ` (${cloister.agent?.name ?? ""})` : ""}. ${leave}; it keeps running.\n`);
      } else {
        const agentNote = cloister.agent ? `, set up for ${cloister.agent.name}` : "";
        const next = flags.detach ? (cloister.agent ? ` Open ${cloister.agent.name} with: ${startAgain(flags, name)} --agent ${cloister.agent.name}` : "") : ` ${leave}; it keeps running.`;
        process.stderr.write(`Started cloister ${name} (project at /work${agentNote}).${next}\n`);
      }
      if (flags.detach) return;
      // Every command of a cloister set up for an agent gets its credential (findCloister): typing the
      // agent's name in this shell, or `cloister exec NAME -- claude`, starts the agent as set up.
      // An agent killed for memory is told as in run; a shell's exit status is the user's last command's.
      process.exitCode = opensAgent && cloister.agent
        ? await runSayingOom(cloister, cloister.agent.argv(agentArgs), {}, restartWithMore(name))
        : await runAttached(cloister, interactiveShell(cloister.shell));
      process.stderr.write(`Left cloister ${name}; it is still running. Stop it with: cloister stop ${name}\n`);
    });

  program
    .command("exec")
    .description("run a command in a running cloister (default: the current project's)")
    .argument("[name]", "the cloister's name")
    .argument("[command...]", "the command and its arguments (put them after --)")
    .addHelpText("after", "\nWithout --, the first word names the cloister and the rest is the command, which then may have no options.\n\nExamples:\n  cloister exec api -- ls -la /work\n  cloister exec -- npm test        (the current project's cloister, where you are in it)\n  cloister exec -w src -- ls       (/work/src, from the project's root)")
    .option("--env <NAME=VALUE>", "set an environment variable (repeatable)", collect, [])
    .option("--secret <NAME=SECRET>", "set NAME to the placeholder of a stored secret with an injection rule (repeatable)", collect, [])
    .option("-w, --workdir <dir>", "working directory inside (default: where you are in the cloister's project, under /work; else /work); a relative one is taken from that default, as cd would")
    // Options after the command without `--` are refused by readExecWords, with the line to type instead.
    .allowUnknownOption()
    .action(async (_name: unknown, _command: unknown, flags: { env: string[]; secret: string[]; workdir?: string }, exec: Command) => {
      // The words as typed (argv[2] is `exec`): commander's arguments do not say whether a `--` came before them.
      const { name, command } = readExecWords(process.argv.slice(3), exec.options);
      const { target, root } = await targetOf("exec", name);
      const cloister = await findCloister(target, { env: parseEnvAssignments(flags.env), secretEnv: parseEnvAssignments(flags.secret, "--secret"), credentials: vaultCredentials() });
      if (!cloister) throw await notRunning("exec", target, root);
      process.exitCode = await runSayingOom(cloister, command, { cwd: execWorkdir(cloister.record.projectRoot, flags.workdir) }, restartWithMore(target));
    });

  program
    .command("stop")
    .description("stop a cloister and every process in it (default: the current project's)")
    .argument("[name]", "the cloister's name")
    .option("--all", "stop every cloister of this instance")
    .action(async (name: string | undefined, flags: { all?: boolean }) => {
      // Taking one of the two silently stopped every cloister, or none, where the user meant one.
      if (flags.all && name !== undefined) throw new CloisterError(`--all stops every cloister, not ${JSON.stringify(name)}`, `give either the name (cloister stop ${name}) or --all`);
      if (!flags.all) {
        const { target, root } = await targetOf("stop", name);
        // The library's stop is idempotent; a name typed here that names nothing may be a typo.
        if (!(await stopCloister(target))) throw await notRunning("stop", target, root);
        return void process.stderr.write(`Stopped cloister ${target}\n`);
      }
      const names = (await listCloisters()).map((c) => c.name);
      // One gone between the listing and its stop (its keeper died and the guardian swept it) is not said.
      for (const target of names) if (await stopCloister(target)) process.stderr.write(`Stopped cloister ${target}\n`);
      if (names.length === 0) process.stderr.write("No cloisters to stop.\n");
    });

  program
    .command("list")
    .alias("ls")
    .description("list cloisters (with --all, also the stopped persistent ones, whose HOME waits for their next start)")
    .option("-a, --all", "also list stopped persistent cloisters (remove one with `cloister rm NAME`)")
    .option("--json", "machine-readable output")
    .action(async (flags: { all?: boolean; json?: boolean }) => {
      // A cloister's network is its guardian's proxy: without the guardian it has none (QA: listed as "proxy").
      const guardianRuns = guardianProcessRuns(resolvePaths());
      const cloisters = (await listCloisters()).map((c) => ({
        name: c.name,
        project: c.project,
        projectRoot: c.projectRoot,
        persistent: c.persistent,
        network: c.network,
        /** Its proxy answers: network on, and the guardian runs. */
        egressUp: c.network && guardianRuns,
        running: c.running,
        status: c.running ? "running" : "dead",
        createdAt: c.createdAt,
        limits: c.limitMechanism,
      }));
      // A stopped one is only its HOME: what network, limits and start time it had went with its record.
      const stopped = (flags.all ? await stoppedCloisters() : []).map((c) => ({
        name: c.name,
        project: c.project,
        projectRoot: c.projectRoot,
        persistent: true,
        running: false,
        status: "stopped",
        home: c.homeDir,
      }));
      if (flags.json) return void process.stdout.write(`${JSON.stringify([...cloisters, ...stopped], null, 2)}\n`);
      if (cloisters.length + stopped.length === 0) return void process.stdout.write("No cloisters.\n");
      printTable(["NAME", "PROJECT", "STATUS", "KIND", "NETWORK", "CREATED"], [
        ...cloisters.map((c) => [c.name, c.project, c.status, c.persistent ? "start" : "run", c.egressUp ? "proxy" : c.network ? "no guardian" : "none", c.createdAt]),
        ...stopped.map((c) => [c.name, c.project ?? "-", c.status, "start", "-", "-"]),
      ]);
      if (cloisters.some((c) => c.network && c.running && !c.egressUp)) {
        process.stderr.write("The guardian is not running: cloisters marked \"no guardian\" have no network until it runs again (start it: cloister guardian start).\n");
      }
    });

  program
    .command("rm")
    .alias("remove")
    .description("remove stopped persistent cloisters: their HOME (shell history, agent logins, caches), so that the next start begins afresh")
    .argument("<name...>", "the cloisters' names (see `cloister list --all`)")
    .option("-f, --force", "stop a running one first, instead of refusing")
    .addHelpText("after", "\nA worktree cloister's worktree (the branch's files) stays: `cloister worktree remove BRANCH` removes it.\nThe names are removed in the order given; the first that fails ends the command.")
    .action(async (names: string[], flags: { force?: boolean }) => {
      for (const name of names) {
        const removed = await removeCloister(name, { force: flags.force });
        if (removed.stopped) process.stderr.write(`Stopped cloister ${name}\n`);
        process.stderr.write(`Removed cloister ${name} (its HOME ${removed.homeDir})\n`);
      }
    });

  program
    .command("path")
    .description("print the host directory of a cloister's project (for cd \"$(cloister path NAME)\")")
    .argument("<name>", "the cloister's name, or a project's")
    .action(async (name: string) => {
      const paths = resolvePaths();
      // A worktree cloister's directory is its worktree, and a project's main cloister is named after
      // the project: both are known while the cloister is stopped.
      const dir = readRecord(paths, name)?.projectRoot ?? managedWorktrees(paths).find((w) => w.cloisterName === name)?.dir ?? (await registeredRoot(paths, name));
      if (dir === undefined) throw new CloisterError(`no cloister or project named ${JSON.stringify(name)}`, "see `cloister list`, `cloister worktree list` and `cloister project list`");
      printPath(dir);
    });
}

/**
 * Launches the cloister `name`, or, when another command is launching it at this very moment
 * (NameTaken), waits for that launch and joins its cloister, as `start` does with a running one.
 */
async function launchOrJoin(name: string, options: CloisterOptions): Promise<{ cloister: Cloister; started: boolean }> {
  try {
    return { cloister: await launchInterruptibly((signal) => createCloister({ ...options, name, signal }, true)), started: true };
  } catch (error) {
    if (!(error instanceof NameTaken)) throw error;
    return { cloister: await launchedBy(error, options), started: false };
  }
}

/** The cloister the launch holding the name started: waited for while that launch is alive and still under way. */
async function launchedBy(taken: NameTaken, options: CloisterOptions): Promise<Cloister> {
  const paths = resolvePaths();
  const { name, id } = taken.holder;
  for (let record = readRecord(paths, name); record?.id === id && holdsName(record); record = readRecord(paths, name)) {
    if (record.keeperPid !== undefined) {
      const cloister = await findCloister(name, findOptionsOf(options));
      if (cloister) return cloister;
    }
    await new Promise((resolve) => setTimeout(resolve, JOIN_POLL_MS));
  }
  throw new CloisterError(`cloister ${name} was being started by another command, which did not start it`, "start it again");
}

/** How often a `start` that lost the race for a name looks whether the winner's cloister runs. */
const JOIN_POLL_MS = 20;

/**
 * What `start` checks before entering a cloister that runs already: the flags it would ignore, the
 * branch it holds, and that it is this project's (`start --name X` from another project would
 * silently show X's files as if they were this one's). Outside any project nothing mismatches.
 */
async function checkReentry(flags: SandboxFlags & { detach?: boolean }, name: string, cloister: Cloister): Promise<void> {
  if (flags.branch !== undefined) {
    const held = await checkedOutBranch(cloister.record.projectRoot);
    if (held !== flags.branch) throw heldByOtherBranch(cloister.record.projectRoot, held, flags.branch);
  }
  // They reach the shell or agent that `start` opens in a running cloister; `-d` opens none, and
  // they would be dropped in silence (QA).
  const unused = flags.detach ? [...(given(flags.env) ? ["--env"] : []), ...(given(flags.secret) ? ["--secret"] : [])] : [];
  if (unused.length > 0) {
    const them = unused.length === 1 ? "it" : "them";
    throw new CloisterError(
      `cloister ${name} is already running, and -d opens nothing in it: ${unused.join(" and ")} would go unused (${unused.length === 1 ? "it reaches" : "they reach"} a cloister when it starts, or what start opens in it)`,
      `stop it first (cloister stop ${name}) and start it again with ${them}, or give ${them} to a command in it: cloister exec ${name} ${unused[0]} ... -- CMD`,
    );
  }
  const ignored = launchOnlyFlags(flags, cloister.record);
  if (ignored.length > 0) {
    const rules = ignored.some((flag) => ["--allow", "--deny", "--allow-private", "--resolve"].includes(flag));
    throw new CloisterError(
      `cloister ${name} is already running; ${ignored.join(", ")} ${ignored.length === 1 ? "applies" : "apply"} only when a cloister starts`,
      `stop it first (cloister stop ${name}) and start it again with ${ignored.length === 1 ? "it" : "them"}${rules ? ", or persist a rule with `cloister allow RULE`" : ""}`,
    );
  }
  const paths = resolvePaths();
  const here = callerProjectRoot(flags);
  const theirs = await configRootOf(paths, cloister.record);
  if (here !== undefined && (await mainRootOf(paths, here)) !== theirs) {
    throw new CloisterError(
      `cloister ${name} belongs to project ${cloister.record.project} (${theirs}), not to the project here (${here})`,
      `enter it from its project (cd ${JSON.stringify(theirs)}), or start one for this project with another --name`,
    );
  }
}

/**
 * The words that open `shell` interactively in a cloister, or /bin/sh with a notice on stderr when
 * that shell is missing there (config defaults.shell, as its template says). Looked for inside, by
 * a /bin/sh in front of it, not on the host: the cloister's HOME, /work and /tmp are not the host's.
 */
function interactiveShell(shell: string): string[] {
  const orSh = [
    'if [ -f "$1" ] && [ -x "$1" ]; then exec "$@"; fi',
    `echo "cloister: the shell $1 (config defaults.shell) is missing in the cloister; opening /bin/sh instead (change it with: cloister config edit)" >&2`,
    "SHELL=/bin/sh; export SHELL; exec /bin/sh -i",
  ].join("\n");
  return ["/bin/sh", "-c", orSh, "sh", shell, "-i"];
}

/**
 * The command that enters this cloister again, named the way it was started: a plain `cloister
 * start` finds the project's default name only, and a worktree's cloister by its branch (QA A4).
 */
function startAgain(flags: SandboxFlags, name: string): string {
  if (flags.name !== undefined || flags.project !== undefined) return `cloister start --name ${name}`;
  return flags.branch !== undefined ? `cloister start -b ${quoteArgument(flags.branch)}` : "cloister start";
}

/** The project directory `start` was given or run in; none outside any project. */
function callerProjectRoot(flags: SandboxFlags): string | undefined {
  try {
    return locateProject(flags.project ?? process.cwd(), flags.allowNoGit).root;
  } catch {
    return undefined;
  }
}

/** A managed worktree's project root (as configRootOf for a record), else `dir` itself; registers nothing. */
async function mainRootOf(paths: CloisterPaths, dir: string): Promise<string> {
  const managed = managedWorktreeAt(paths, dir);
  return managed ? ((await registeredRoot(paths, managed.project)) ?? dir) : dir;
}

/**
 * `cloister run`: a fresh cloister for one command, removed afterwards whatever happens; runInCloister's
 * steps, with Ctrl-C aborting only the launch (later it reaches the command) and the command on this
 * terminal. Its timeout (--timeout, else config limits.timeout) ends it with exit code 124.
 */
async function runOnce(command: string[], options: RunOptions): Promise<number> {
  const fresh = await launchInterruptibly((signal) => launchFresh({ ...options, signal }));
  const { cloister } = fresh;
  const agent = options.agent !== undefined ? cloister.agent : undefined;
  const [argv, where] = agent ? [agent.argv(command), {}] : [command, { cwd: workdirInside(cloister.record.projectRoot) }];
  // Inside runToEnd, before its stop removes the cgroups that tell of an OOM kill.
  const end = await runToEnd(fresh, () => runSayingOom(cloister, argv, where, "raise it with --memory"));
  if (end.timedOut) process.stderr.write(`cloister: ${agent?.name ?? command[0]} timed out after ${formatDuration(fresh.timeoutMs ?? 0)}; the cloister was stopped\n`);
  return end.exitCode;
}

/**
 * runAttached, and a line on stderr when the cloister's memory limit killed a process meanwhile:
 * a bare 137 does not say what killed it (QA). `raise` says how to give it more.
 */
async function runSayingOom(cloister: Cloister, argv: string[], options: { cwd?: string }, raise: string): Promise<number> {
  const killsBefore = oomKills(cloister.record.cgroupDirs);
  const exitCode = await runAttached(cloister, argv, options);
  const limit = exitCode === 0 ? undefined : memoryLimitReached(cloister.record.cgroupDirs, killsBefore);
  if (limit !== undefined) process.stderr.write(`cloister: killed: the cloister's memory limit (${formatSize(limit)}) was reached; ${raise}\n`);
  return exitCode;
}

/** How a running cloister gets a larger memory limit: a new one. */
function restartWithMore(name: string): string {
  return `the cloister keeps running; for a larger limit, stop it (cloister stop ${name}) and start it again with --memory`;
}

/**
 * The working directory inside for a command run from here: the caller's place in the project
 * (`cloister run -- npm test` in packages/api runs in /work/packages/api), or /work from outside
 * it. Compared by real path, so a symlinked way into the project counts too.
 */
export function workdirInside(projectRoot: string, cwd = process.cwd()): string {
  const root = realPath(projectRoot);
  const here = realPath(cwd);
  if (root === undefined || here === undefined) return WORK_DIR;
  return isBelow(here, root) ? `${WORK_DIR}/${relative(root, here)}` : WORK_DIR;
}

/**
 * Where `exec` runs a command: `-w DIR`, a relative one taken from where it would run otherwise (as
 * `cd DIR` there would: `-w src` from the project's root is /work/src), else workdirInside. Docker
 * refuses a relative `-w`, having no such place to start from; an absolute one is passed as given.
 */
function execWorkdir(projectRoot: string, workdir: string | undefined): string {
  const usual = workdirInside(projectRoot);
  if (workdir === undefined) return usual;
  return posix.isAbsolute(workdir) ? workdir : posix.join(usual, workdir);
}

/**
 * The cloister `exec` or `stop` means: the NAME given, else the one of the project here (`root`).
 * Their way out of a directory that is no project is a NAME, not `--allow-no-git` (which they do not have).
 */
async function targetOf(command: "exec" | "stop", name: string | undefined): Promise<{ target: string; root?: string }> {
  if (name !== undefined) return { target: name };
  try {
    const { name: target, root } = await projectCloister({});
    return { target, root };
  } catch (error) {
    if (!(error instanceof CloisterError)) throw error;
    throw new CloisterError(`no cloister name given, and ${error.message}`, `name the cloister (cloister ${command} NAME; \`cloister list\` shows them), or run this in its project`);
  }
}

/** The default cloister name of the project the flags (or the directory here) name, and that project's root. */
async function projectCloister(flags: SandboxFlags): Promise<{ name: string; root: string }> {
  const location = locateProject(flags.project ?? process.cwd(), flags.allowNoGit);
  return { name: await cloisterNameFor(resolvePaths(), location, flags.branch), root: location.root };
}

/**
 * Why `exec` or `stop` found no running cloister `target`, and what to type instead. Without a NAME
 * (`root`: the project here), the project's cloisters running under other names (`start --name`)
 * are named first: they are what the user is after. A stopped persistent one (`list --all` shows
 * it) is said to be stopped, not unknown. A stop of one not running still fails, as it did: a
 * script learns that nothing was stopped.
 */
async function notRunning(command: "exec" | "stop", target: string, root: string | undefined): Promise<CloisterError> {
  const paths = resolvePaths();
  const others = root === undefined ? [] : (await listCloisters(paths)).filter((c) => c.running && c.projectRoot === root).map((c) => c.name);
  if (others.length > 0) {
    const theirs = `this project's running ${others.length === 1 ? "cloister is" : "cloisters are"} ${others.join(", ")}`;
    const typed = others.map((other) => (command === "exec" ? `cloister exec ${other} -- COMMAND` : `cloister stop ${other}`));
    return new CloisterError(`no running cloister named ${JSON.stringify(target)} (this project's default); ${theirs}`, `name it: ${typed.join(", or ")}`);
  }
  const start = root === undefined ? `cloister start -d --name ${target}` : "cloister start -d";
  if ((await stoppedCloisters(paths)).some((stopped) => stopped.name === target)) {
    const rm = `\`cloister rm ${target}\` removes it`;
    return new CloisterError(`cloister ${target} is already stopped; its HOME is kept for its next start`, command === "exec" ? `start it with \`${start}\`; ${rm}` : rm);
  }
  if (command === "stop") return noSuchCloister(target);
  return new CloisterError(`no running cloister named ${JSON.stringify(target)}`, `start it with \`${start}\`, or see \`cloister list\``);
}
