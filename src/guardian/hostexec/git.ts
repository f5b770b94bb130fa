/**
 * Hardened git for commands that run on the host against the agent's repository. The agent controls
 * the working tree, the index and any repository it creates inside the tree; the project's own
 * .git/config is read-only to it, but nothing here relies on that. Repository hooks, fsmonitor,
 * pagers, external diff and textconv, filters, merge drivers, credential helpers, ssh/askpass/editor/
 * gpg programs and includes from the repository must never run on the host, while the user's own
 * ~/.gitconfig (their credential helper, ssh command, identity) keeps working.
 *
 * test/unit/hostexec-git.test.ts checks against the installed git (2.39) that the overrides below
 * work, and that the settings refused instead cannot be overridden.
 */
import { entryKind } from "../../sandbox/protected-paths.js";
import { userInfo } from "node:os";
import { basename, join } from "node:path";
import { executeOnHost } from "./execute.js";

export type Hardened = { argv: string[] } | { refused: string };

/**
 * Command-line settings win over every config file, and git hands them to its own sub-processes
 * (submodules included) through GIT_CONFIG_PARAMETERS.
 */
const OVERRIDES: readonly (readonly [key: string, value: string])[] = [
  // Git looks hooks up as /dev/null/<name>, which cannot exist.
  ["core.hooksPath", "/dev/null"],
  ["core.fsmonitor", "false"],
  ["core.pager", "cat"],
  // Nobody sits at a terminal: an editor could only hang or run a repository's program.
  ["core.editor", "false"],
  ["sequence.editor", "false"],
  // Entering a submodule means reading a configuration the agent wrote, which we have not checked.
  ["diff.ignoreSubmodules", "all"],
  ["diff.submodule", "short"],
  ["status.submoduleSummary", "false"],
  ["submodule.recurse", "false"],
  ["fetch.recurseSubmodules", "false"],
  ["push.recurseSubmodules", "no"],
  // ext:: runs an arbitrary command. Local transports run the other repository's hooks (git does not
  // pass -c settings on to a local receive-pack), and the agent can create repositories in the tree.
  ["protocol.ext.allow", "never"],
  ["protocol.file.allow", "never"],
  // An agent could make the project directory itself look like a bare repository with its own config.
  ["safe.bareRepository", "explicit"],
];

const HARDENING: readonly string[] = ["--no-pager", ...OVERRIDES.flatMap(([key, value]) => ["-c", `${key}=${value}`])];

/**
 * Repository settings that make git run a program, read more config or act outside the project, and
 * that no later `-c` can undo: an include is read as it is met, `diff.external=` with an empty value
 * breaks every diff instead of disabling it, helpers and programs are lists or would also reset the
 * user's own. Matched against `key=value`, the key in lower case.
 */
const REFUSED_SETTINGS: readonly RegExp[] = [
  /^include(if\..*)?\.path=/,
  /^alias\./,
  /^core\.(sshcommand|askpass|gitproxy|alternaterefscommand|worktree)=/,
  /^credential\.(.*\.)?helper=/,
  /^diff\.external=/,
  /^diff\..*\.(command|textconv)=/,
  /^filter\..*\.(clean|smudge|process)=/,
  /^merge\..*\.driver=/,
  /^gpg\.(.*\.)?program=/,
  /^gpg\.ssh\.defaultkeycommand=/,
  /^remote\..*\.(uploadpack|receivepack)=/,
  /^uploadpack\.packobjectshook=/,
  /^submodule\..*\.update=!/,
  /^trailer\..*\.(command|cmd)=/,
  /^(sendemail|difftool|mergetool|browser|man|guitool|instaweb|hook)\./,
  /^(web\.browser|help\.browser|help\.format|help\.htmlpath|imap\.tunnel|init\.templatedir|commit\.template)=/,
  // Settings that name a file git reads or writes: the same reach as the file options that
  // policy/commands.ts makes hazards (format-patch --suffix/--signature-file, blame --ignore-revs-file, ...).
  /^format\.(outputdirectory|signaturefile|suffix)=/,
  /^(blame\.ignorerevsfile|core\.excludesfile|core\.attributesfile|diff\.orderfile|mailmap\.file|fsck\.skiplist|http\.cookiefile|interactive\.difffilter)=/,
];

/** Global options that change neither where git finds its repository and config nor what it runs. */
const HARMLESS_GLOBAL_OPTIONS: ReadonlySet<string> = new Set([
  "--no-pager",
  "-P",
  "--no-replace-objects",
  "--literal-pathspecs",
  "--glob-pathspecs",
  "--noglob-pathspecs",
  "--icase-pathspecs",
  "--no-optional-locks",
  "--version",
  "--help",
  "-h",
  "--exec-path",
  "--html-path",
  "--man-path",
  "--info-path",
]);

/**
 * Options that make git enter submodules despite the overrides, with the values that keep it out.
 * Git accepts any unambiguous abbreviation of a long option, so a prefix counts as the option.
 */
const SUBMODULE_OPTIONS: readonly (readonly [name: string, safeValues: readonly (string | undefined)[]])[] = [
  ["recurse-submodules", ["no"]],
  ["ignore-submodules", [undefined, "all"]],
  ["submodule", [undefined, "short", "log"]],
];

const SCAN_TIMEOUT_MS = 10_000;
const SCAN_MAX_OUTPUT = 4 << 20;

/**
 * The argv to run instead of `argv` (unchanged when the program is not git), or why it must not run.
 * Reads the repository's config as git will see it from `cwd`.
 */
export async function hardenGit(argv: readonly string[], cwd: string): Promise<Hardened> {
  const [git, ...args] = argv;
  if (git === undefined) throw new TypeError("hardenGit: argv is empty");
  const program = basename(git);
  if (program.startsWith("git-")) {
    return { refused: `${program} cannot be hardened against the repository's hooks and config on the host; use "git <command>" instead.` };
  }
  if (program !== "git") return { argv: [...argv] };
  const argRefusal = refuseArguments(args);
  if (argRefusal !== undefined) return { refused: argRefusal };
  const configRefusal = await refuseRepositoryConfig(git, cwd);
  if (configRefusal !== undefined) return { refused: configRefusal };
  const submodules = await submoduleNames(git, cwd);
  if ("refused" in submodules) return submodules;
  if (!submodules.inWorkTree && args.find((arg) => !arg.startsWith("-")) === "diff") {
    // Outside a work tree git diff is git diff --no-index, and a path through a symbolic link the
    // agent made (link/id_rsa, link -> ~/.ssh) shows any host file; the path rule cannot see that.
    return { refused: "git diff outside a git work tree compares any two files, like git diff --no-index; the host does not run that. Run it yourself on the host if it is needed." };
  }
  return { argv: [git, ...HARDENING, ...submodules.names.flatMap(keepOutOfSubmodule), ...args] };
}

/** Per submodule, because a .gitmodules entry (which the agent can stage) outranks the general settings. */
function keepOutOfSubmodule(name: string): string[] {
  return ["-c", `submodule.${name}.ignore=all`, "-c", `submodule.${name}.fetchRecurseSubmodules=false`];
}

function refuseArguments(args: readonly string[]): string | undefined {
  const found = args.findIndex((arg) => !arg.startsWith("-"));
  const command = found === -1 ? args.length : found;
  const global = args.slice(0, command).find((arg) => !HARMLESS_GLOBAL_OPTIONS.has(arg));
  if (global !== undefined) {
    return `The git option ${JSON.stringify(global)} is not allowed before the command on the host: it could change which repository, config or program git uses. Run it yourself on the host if it is needed.`;
  }
  // submodule--helper is what git submodule runs: its foreach runs shell code in every submodule.
  if (args[command] === "submodule" || args[command] === "submodule--helper") return submoduleRefusal(`git ${args[command]}`);
  const entering = args.slice(command + 1).find(entersSubmodules);
  return entering === undefined ? undefined : submoduleRefusal(JSON.stringify(entering));
}

function entersSubmodules(arg: string): boolean {
  const match = /^--([^=]+)(?:=(.*))?$/s.exec(arg);
  if (!match) return false;
  const [, name = "", value] = match;
  return SUBMODULE_OPTIONS.some(([option, safeValues]) => option.startsWith(name) && !safeValues.includes(value));
}

function submoduleRefusal(what: string): string {
  return `${what} would make git enter submodules, whose configuration the agent controls; the host does not run that. Ask the user to run it on the host.`;
}

interface Scan {
  ok: boolean;
  stdout: Buffer;
  /** git's complaint, or why it did not finish. */
  problem: string;
}

/** Runs a read-only git query with the same hardening and environment as the command itself. */
async function scan(git: string, args: readonly string[], cwd: string): Promise<Scan> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const result = await executeOnHost({
    argv: [git, ...HARDENING, ...args],
    cwd,
    timeoutMs: SCAN_TIMEOUT_MS,
    maxOutputBytes: SCAN_MAX_OUTPUT,
    signal: new AbortController().signal,
    onStdout: (chunk) => void out.push(chunk),
    onStderr: (chunk) => void err.push(chunk),
    home: userInfo().homedir,
  });
  const ok = result.end === "exited" && result.exitCode === 0;
  return { ok, stdout: Buffer.concat(out), problem: Buffer.concat(err).toString().trim() || (result.message ?? result.end) };
}

/** The NUL-terminated fields of `git config -z` output. */
function fields(output: Buffer): string[] {
  return output.toString("utf8").split("\0").slice(0, -1);
}

async function refuseRepositoryConfig(git: string, cwd: string): Promise<string | undefined> {
  const config = await scan(git, ["config", "--list", "--show-scope", "--no-includes", "-z"], cwd);
  if (!config.ok) {
    return `Refusing to run git on the host: the repository's git config could not be checked (${config.problem}).`;
  }
  const listed = fields(config.stdout);
  const refused = new Set<string>();
  for (let i = 0; i + 1 < listed.length; i += 2) {
    const [key = "", value = ""] = listed[i + 1]!.split(/\n(.*)/s);
    const fromRepository = listed[i] === "local" || listed[i] === "worktree";
    if (fromRepository && REFUSED_SETTINGS.some((pattern) => pattern.test(`${key.toLowerCase()}=${value}`))) refused.add(key);
  }
  if (refused.size === 0) return undefined;
  const keys = [...refused].map((key) => JSON.stringify(key)).join(", ");
  return `Refusing to run git on the host: the repository's own git config sets ${keys}, which could make git run a program or act outside the project. Move the setting to ~/.gitconfig or remove it from the repository's config, or run this git command yourself on the host.`;
}

/**
 * Every submodule name in .gitmodules as git may read it: the work tree's file, else the index's, else
 * HEAD's; and whether `cwd` is in a work tree at all.
 */
async function submoduleNames(git: string, cwd: string): Promise<{ names: string[]; inWorkTree: boolean } | { refused: string }> {
  const top = await scan(git, ["rev-parse", "--show-cdup"], cwd);
  if (!top.ok) return { names: [], inWorkTree: false };
  const file = join(cwd, top.stdout.toString().trim(), ".gitmodules");
  // Only a regular file: while a cloister of the project runs, a missing .gitmodules is held by an
  // empty placeholder directory (protected paths), which git itself ignores.
  const sources = [...(entryKind(file) === "file" ? [["--file", file]] : []), ["--blob", ":.gitmodules"], ["--blob", "HEAD:.gitmodules"]];
  const names = new Set<string>();
  for (const source of sources) {
    const listed = await scan(git, ["config", "--list", "--name-only", "-z", ...source], cwd);
    if (!listed.ok && /unable to resolve config blob/.test(listed.problem)) continue;
    if (!listed.ok) return { refused: `Refusing to run git on the host: .gitmodules could not be checked (${listed.problem}).` };
    for (const key of fields(listed.stdout)) {
      const name = /^submodule\.(.*)\.[^.]*$/s.exec(key)?.[1];
      if (name !== undefined) names.add(name);
    }
  }
  // A name that does not survive the trip through argv (UTF-8) or `-c key=value` cannot be overridden.
  const unsafe = [...names].find((name) => name.includes("=") || name.includes("\uFFFD"));
  if (unsafe !== undefined) return { refused: `Refusing to run git on the host: the submodule name ${JSON.stringify(unsafe)} cannot be overridden on git's command line.` };
  return { names: [...names], inWorkTree: true };
}
