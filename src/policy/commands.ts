/**
 * The `hostexec` command policy (SECURITY.md, "Host execution and approvals"): which argv a sandboxed
 * agent may run on the host at once (allow), only after a person agrees (ask), or never (deny).
 * Pure: no I/O, so the guardian, the config loader and the tests share one definition.
 *
 * A request is an argv array, never shell text, and every pattern covers the whole argv: there is no
 * prefix or substring matching, so chaining, substitution and redirection characters are plain bytes
 * inside one argument. Programs that run other programs or code (shells, `env`, `find -exec`,
 * `git -c`, `python -c`) are "hazards": an allow rule passes them only where it names them literally.
 */

// ---------------------------------------------------------------------------------------------------
// Rules as written in config (plain data, JSON-safe) and as compiled for matching

export type CommandVerdict = "allow" | "ask" | "deny";
export type RuleTier = "global" | "project";

/** One element of an argument list: a literal, "*", "**", `{one_of: [...]}` or `{regex: "..."}`. */
export type ArgPatternEntry = string | { readonly one_of: readonly string[] } | { readonly regex: string };
/** What a rule matches: a list of argument patterns, or one regex over the canonical quoting of argv. */
export type CommandPatternEntry = readonly ArgPatternEntry[] | { readonly regex: string };
/** A rule as written in config: a mapping with exactly one key. */
export type CommandRuleEntry =
  | { readonly allow: CommandPatternEntry }
  | { readonly ask: CommandPatternEntry }
  | { readonly deny: CommandPatternEntry };

/** Exactly one arbitrary argument. */
export const ANY_ARGUMENT = "*";
/** Zero or more arbitrary arguments. */
export const ANY_ARGUMENTS = "**";

export type ArgPattern =
  | { kind: "literal"; value: string }
  | { kind: "one_of"; values: readonly string[] }
  | { kind: "regex"; regex: RegExp }
  | { kind: "any_argument" }
  | { kind: "any_arguments" };

export type CommandMatcher = { kind: "argv"; patterns: readonly ArgPattern[] } | { kind: "regex"; source: string; regex: RegExp };

export interface CommandRule {
  verdict: CommandVerdict;
  match: CommandMatcher;
  /** ruleText of the entry it was compiled from, for decisions, audit records and the UI. */
  text: string;
}

/** A rule that cannot be compiled; `path` leads from the rule entry to the offending value. */
export class CommandRuleError extends Error {
  constructor(
    message: string,
    readonly path: readonly (string | number)[],
  ) {
    super(message);
    this.name = "CommandRuleError";
  }
}

/**
 * Regexes are anchored by wrapping them in `^(?:…)$`. Flag `s` lets `.` match a newline too, so an
 * argument with a newline in it cannot slip past a deny rule such as `git push .*--force.*`; flag `u`
 * makes the syntax strict (a stray escape is an error, not a literal).
 */
const REGEX_FLAGS = "su";

export function compileCommandRules(entries: readonly CommandRuleEntry[]): CommandRule[] {
  return entries.map(compileCommandRule);
}

/** Throws CommandRuleError for a rule that would be refused by the config schema. */
export function compileCommandRule(entry: CommandRuleEntry): CommandRule {
  const [verdict, pattern] = ruleParts(entry);
  const match: CommandMatcher = isArgList(pattern)
    ? { kind: "argv", patterns: compileArgList(pattern, [verdict]) }
    : { kind: "regex", source: pattern.regex, regex: compileRegex(pattern.regex, [verdict, "regex"]) };
  return { verdict, match, text: ruleText(entry) };
}

/** The rule that matches exactly `argv` and nothing else; "*" and "**" are written as one_of literals. */
export function exactCommandRule(verdict: CommandVerdict, argv: readonly string[]): CommandRuleEntry {
  const patterns = argv.map((arg): ArgPatternEntry => (isWildcard(arg) ? { one_of: [arg] } : arg));
  return commandRuleEntry(verdict, patterns);
}

/** The config form of a rule with this verdict and pattern. */
export function commandRuleEntry(verdict: CommandVerdict, pattern: CommandPatternEntry): CommandRuleEntry {
  switch (verdict) {
    case "allow":
      return { allow: pattern };
    case "ask":
      return { ask: pattern };
    case "deny":
      return { deny: pattern };
  }
}

function ruleParts(entry: CommandRuleEntry): [CommandVerdict, CommandPatternEntry] {
  if ("allow" in entry) return ["allow", entry.allow];
  if ("ask" in entry) return ["ask", entry.ask];
  return ["deny", entry.deny];
}

function isArgList(pattern: CommandPatternEntry): pattern is readonly ArgPatternEntry[] {
  return Array.isArray(pattern);
}

function isWildcard(text: string): boolean {
  return text === ANY_ARGUMENT || text === ANY_ARGUMENTS;
}

function compileArgList(entries: readonly ArgPatternEntry[], path: (string | number)[]): ArgPattern[] {
  const [program] = entries;
  if (program === undefined) throw new CommandRuleError("an argument list cannot be empty: name at least the program, e.g. [docker, ps]", path);
  checkProgram(program, [...path, 0]);
  return entries.map((entry, index) => compileArgPattern(entry, [...path, index]));
}

/** The program must be named: a wildcard or regex in its place would let the agent pick any program. */
function checkProgram(entry: ArgPatternEntry, path: (string | number)[]): void {
  const instead = "the first element names the program: write it literally (e.g. docker) or as {one_of: [docker, podman]}";
  if (typeof entry === "string" && isWildcard(entry)) throw new CommandRuleError(`"${entry}" cannot stand for the program; ${instead}`, path);
  if (typeof entry !== "string" && "regex" in entry) throw new CommandRuleError(`a regex cannot stand for the program; ${instead}`, path);
  const names = typeof entry === "string" ? [entry] : entry.one_of;
  if (names.includes("")) throw new CommandRuleError("the program name cannot be empty", typeof entry === "string" ? path : [...path, "one_of"]);
}

function compileArgPattern(entry: ArgPatternEntry, path: (string | number)[]): ArgPattern {
  if (entry === ANY_ARGUMENT) return { kind: "any_argument" };
  if (entry === ANY_ARGUMENTS) return { kind: "any_arguments" };
  if (typeof entry === "string") return { kind: "literal", value: checkText(entry, path) };
  if ("regex" in entry) return { kind: "regex", regex: compileRegex(entry.regex, [...path, "regex"]) };
  if (entry.one_of.length === 0) throw new CommandRuleError("one_of needs at least one value, e.g. {one_of: [view, list]}", [...path, "one_of"]);
  return { kind: "one_of", values: entry.one_of.map((value, index) => checkText(value, [...path, "one_of", index])) };
}

function checkText(text: string, path: (string | number)[]): string {
  if (text.includes("\0")) throw new CommandRuleError("text cannot contain a NUL character (no argument can)", path);
  return text;
}

function compileRegex(source: string, path: (string | number)[]): RegExp {
  checkText(source, path);
  try {
    // Compiled alone first: a source such as "a)|(b" is an error by itself, but inside the anchoring
    // group it would balance and turn into two unanchored alternatives.
    new RegExp(source, REGEX_FLAGS);
  } catch (error) {
    throw new CommandRuleError((error as Error).message, path);
  }
  return new RegExp(`^(?:${source})$`, REGEX_FLAGS);
}

// ---------------------------------------------------------------------------------------------------
// Text

/** Characters that never need quoting in a POSIX shell word. */
const BARE_ARGUMENT = /^[A-Za-z0-9_@%+=:,./-]+$/;

/**
 * argv as one line of POSIX-shell words: bare when safe, else single-quoted with `'` written `'\''`,
 * the empty argument as `''`. One argv has one quoting and no two argvs share one, so a whole-argv
 * regex sees argument boundaries: `["echo", "a b"]` is `echo 'a b'`, `["echo", "a", "b"]` is `echo a b`.
 */
export function canonicalQuote(argv: readonly string[]): string {
  return argv.map(quoteArgument).join(" ");
}

/** One argument as a POSIX shell reads it back: bare when that is safe, else single-quoted. */
export function quoteArgument(arg: string): string {
  return BARE_ARGUMENT.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

/**
 * A short, stable text for a rule: `allow [docker, ps, **]`, `ask [gh, pr, {view|list}, **]`,
 * `deny /git push .+/`. Literals are quoted like arguments, so `'*'` is a literal star
 * and `*` the wildcard. Rules may hold agent-chosen literals (an approved exact argv): show the text
 * through visible().
 */
export function ruleText(entry: CommandRuleEntry): string {
  const [verdict, pattern] = ruleParts(entry);
  return `${verdict} ${isArgList(pattern) ? `[${pattern.map(argPatternText).join(", ")}]` : `/${pattern.regex}/`}`;
}

function argPatternText(entry: ArgPatternEntry): string {
  if (typeof entry === "string") return isWildcard(entry) ? entry : quoteArgument(entry);
  if ("regex" in entry) return `/${entry.regex}/`;
  return `{${entry.one_of.map(quoteArgument).join("|")}}`;
}

// ---------------------------------------------------------------------------------------------------
// Requests

export const MAX_ARGUMENTS = 4096;
export const MAX_REQUEST_BYTES = 256 * 1024;

/** A request refused before any rule is consulted; the message says what is wrong with the argv. */
export class CommandRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CommandRequestError";
  }
}

/** A lone surrogate would reach the program as U+FFFD: another argument than the one the rules saw. */
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Throws CommandRequestError unless `argv` is something a program can be run with. The argv arrives
 * as JSON from inside the sandbox, so element types are checked too.
 */
export function checkCommandRequest(argv: readonly string[]): void {
  if (!Array.isArray(argv) || argv.length === 0) throw new CommandRequestError("the command is empty: name a program to run, e.g. hostexec docker ps");
  if (argv.length > MAX_ARGUMENTS) throw new CommandRequestError(`the command has ${argv.length} arguments; at most ${MAX_ARGUMENTS} are allowed`);
  if (argv[0] === "") throw new CommandRequestError("the program name is empty");
  let bytes = 0;
  for (const [index, arg] of argv.entries()) {
    const problem = argumentProblem(arg);
    if (problem) throw new CommandRequestError(`${index === 0 ? "the program name" : `argument ${index}`} ${problem}`);
    bytes += Buffer.byteLength(arg, "utf8");
    if (bytes > MAX_REQUEST_BYTES) throw new CommandRequestError(`the command is longer than ${MAX_REQUEST_BYTES} bytes (256 KiB) in all; pass large input in a file instead`);
  }
}

function argumentProblem(arg: unknown): string | undefined {
  if (typeof arg !== "string") return "is not text";
  if (arg.includes("\0")) return "contains a NUL character, which no program can receive";
  if (LONE_SURROGATE.test(arg)) return "is not valid Unicode (it contains a lone surrogate)";
  return undefined;
}

// ---------------------------------------------------------------------------------------------------
// Hazards

export interface Hazard {
  /** Position in argv (0 = the program). */
  index: number;
  token: string;
  /** Completes "the program X …" / "argument N X …". */
  why: string;
}

const WHY = {
  env: "is an environment assignment (like LD_PRELOAD=x.so), which can make a program load other code",
  path: "is a path, not a program name: it could run a file the agent wrote",
  wrapper: "runs another program or shell code",
  script: "runs a script given on its command line (awk and sed scripts can run programs and write files)",
  inline: "makes the interpreter run code given on the command line or standard input",
  find: "makes find run programs, or write or delete files",
  gitOption: "is a git option that can run programs or point git at other repositories and config",
  gitCommand: "makes git run programs, serve repositories, change configuration or reach files outside the repository",
  gitFile: "makes git write or read a file it names, anywhere on the host (a shell rc file written is code run later; a key read is a key leaked)",
  gitPath: "is a path git writes to or reads from, anywhere on the host, for this command (a checkout made in ~/.local/bin is code run later)",
  gitDiffPath: "is a path outside the repository, which makes git diff compare files anywhere on the host, as with --no-index (a key shown is a key leaked)",
} as const;

/** Programs whose job is to run another program or code. */
const WRAPPERS: ReadonlySet<string> = new Set([
  "sh", "bash", "dash", "zsh", "ksh", "mksh", "fish", "csh", "tcsh", "ash", "yash", "posh", "rbash", "pwsh", "nu", "elvish", "xonsh",
  "env", "xargs", "nice", "ionice", "timeout", "nohup", "stdbuf", "setsid", "sudo", "doas", "su", "runuser", "pkexec",
  "chroot", "unshare", "nsenter", "flock", "taskset", "chrt", "time", "watch", "script", "parallel", "busybox",
  "strace", "ltrace", "gdb", "valgrind", "eval", "exec", "command", "builtin",
  "systemd-run", "setpriv", "prlimit", "setarch", "linux32", "linux64", "numactl", "faketime", "unbuffer", "xvfb-run",
  "dbus-run-session", "ssh-agent", "firejail", "bwrap", "proot", "fakeroot", "sg", "expect",
]);

/** Script languages whose every script is too hard to vet; the program itself is the hazard. */
const SCRIPT_RUNNERS: ReadonlySet<string> = new Set(["awk", "gawk", "mawk", "nawk", "sed", "gsed"]);

/**
 * How a program's arguments can make it run something else. Options are matched in every spelling a
 * program accepts: `short` letters anywhere in a single-dash cluster (`-Ic`, `-ck=v`, `-C/tmp`: a
 * cluster may end in an attached value, so this over-matches rather than parse it), `long` names as
 * `--name` or `--name=value` (and any prefix where the program accepts abbreviations), `words` as
 * whole arguments, `prefixes` at the start of an argument.
 */
interface OptionHazards {
  why: string;
  short: string;
  long: readonly string[];
  abbreviations: boolean;
  words: readonly string[];
  prefixes: readonly string[];
}

const NO_OPTIONS: Omit<OptionHazards, "why"> = { short: "", long: [], abbreviations: false, words: [], prefixes: [] };

/** An interpreter: "-" reads the program from standard input, which the agent may control. */
function interpreter(short: string, long: readonly string[] = [], words: readonly string[] = []): OptionHazards {
  return { ...NO_OPTIONS, why: WHY.inline, short, long, words: ["-", ...words] };
}

const NODE_LIKE = interpreter("epr", ["eval", "print", "require", "import", "loader", "experimental-loader", "preload"]);

const OPTION_HAZARDS: ReadonlyMap<string, OptionHazards> = new Map([
  ["find", { ...NO_OPTIONS, why: WHY.find, words: ["-exec", "-execdir", "-ok", "-okdir", "-fprint", "-fprint0", "-fprintf", "-fls", "-delete"] }],
  [
    "git",
    {
      why: WHY.gitOption,
      short: "cCuO",
      long: [
        "config-env", "config", "git-dir", "work-tree", "exec-path", "upload-pack", "receive-pack", "exec", "namespace",
        "template", "open-files-in-pager", "extcmd", "help",
      ],
      // git's parse-options takes any unambiguous prefix (`--upload-p=x`); every prefix counts here.
      abbreviations: true,
      words: [],
      // The ext:: transport runs a command line in place of a remote.
      prefixes: ["ext::"],
    },
  ],
  // Looked up without a version too (see programName): "python" covers python3 and python3.12.
  ["python", interpreter("c")],
  ["pypy", interpreter("c")],
  // -M/-m write `use MODULE …;`, which can carry code.
  ["perl", interpreter("eEMm")],
  ["ruby", interpreter("er")],
  ["node", NODE_LIKE],
  ["nodejs", NODE_LIKE],
  ["bun", NODE_LIKE],
  ["deno", interpreter("", ["eval", "eval-file"], ["eval"])],
  ["php", interpreter("rBRE", ["run", "process-begin", "process-code", "process-end"])],
  ["lua", interpreter("el")],
  ["luajit", interpreter("el")],
  // tclsh has no inline-code option; a script comes from a file or standard input.
  ["tclsh", interpreter("")],
  ["wish", interpreter("")],
]);

/** Global options of git that take the next argument as their value. */
const GIT_VALUE_OPTIONS: ReadonlySet<string> = new Set(["-c", "-C", "--git-dir", "--work-tree", "--namespace", "--config-env", "--super-prefix", "--attr-source"]);

/** git commands that run programs, serve repositories or write configuration, whatever follows. */
const GIT_HAZARD_COMMANDS: ReadonlySet<string> = new Set([
  "daemon", "filter-branch", "difftool", "mergetool", "config", "credential", "credential-store", "credential-cache",
  "credential-cache--daemon", "upload-pack", "receive-pack", "shell", "web--browse", "instaweb", "send-email", "help",
  "hook", "maintenance", "remote-ext", "imap-send", "fsmonitor--daemon",
  // merge-index runs the program it is given (a script the agent wrote), merge-one-file (its helper)
  // writes a blob to the path it is given, for-each-repo runs any git command (config included) in
  // other repositories of the host, and the helpers do what their commands' hazards do.
  "merge-index", "merge-one-file", "for-each-repo", "submodule--helper", "bisect--helper", "difftool--helper",
  // Serving or fetching: an archive of any repository on the host, index-pack with any arguments.
  "upload-archive", "upload-archive--writer", "http-backend", "http-fetch",
  // Bridges to other tools, with their own options naming files and programs (svn --authors-prog);
  // quiltimport applies the patches its series file names, wherever they are.
  "svn", "p4", "cvsimport", "cvsexportcommit", "cvsserver", "archimport", "quiltimport",
]);

/**
 * Credential helpers (`credential-libsecret`, `credential-osxkeychain`, `credential-manager`, ...)
 * print the user's stored secrets; whichever are installed, every one is a hazard.
 */
const GIT_HAZARD_COMMAND_PREFIXES: readonly string[] = ["credential-"];

/**
 * git options, of any command, that make git write or read a file they name: `git log --output=FILE`
 * writes FILE with text the agent chose, `git diff --no-index /dev/null FILE` shows FILE,
 * `git add --pathspec-from-file=FILE` shows FILE's first line in its complaint. Any prefix counts, as
 * for the options above.
 */
const GIT_FILE_OPTIONS: readonly string[] = [
  "output", "output-directory", "no-index", "contents", "file", "unsafe-paths", "export-marks", "import-marks",
  "import-marks-if-exists", "object-dir", "pathspec-from-file", "separate-git-dir",
];

/**
 * Long options that name a file to write or read in some git commands only, where a prefix of the name
 * means something harmless in others (`--index` of stash, `--ref` of notes, `--add` of update-index).
 * Any prefix counts, except one of GIT_EXACT_OPTIONS.
 */
const GIT_FILE_LONG_OPTIONS: ReadonlyMap<string, readonly string[]> = new Map([
  // The revisions to ignore, or to blame, read from a file: its first line shows in git's complaint.
  ["blame", ["ignore-revs-file"]],
  ["annotate", ["ignore-revs-file"]],
  ["pickaxe", ["ignore-revs-file"]],
  // The signature, shown whole; a suffix with a "/" puts the patch files anywhere (a ~/.bashrc of commit messages).
  ["format-patch", ["signature-file", "suffix"]],
  ["bugreport", ["suffix"]],
  ["diagnose", ["suffix"]],
  ["archive", ["add-file"]],
  ["ls-files", ["exclude-from", "exclude-per-directory"]],
  ["read-tree", ["index-output", "exclude-per-directory"]],
  ["apply", ["build-fake-ancestor", "directory"]],
  ["am", ["directory"]],
  // Where to write every file of the index: --prefix=/home/u/ writes over the user's files.
  ["checkout-index", ["prefix"]],
  ["clone", ["reference", "reference-if-able", "bundle-uri"]],
  ["repack", ["expire-to"]],
  ["multi-pack-index", ["refs-snapshot"]],
  // Lets a fast-import stream name mark files (`feature export-marks=FILE`) of its own.
  ["fast-import", ["export-pack-edges", "allow-unsafe-features"]],
]);

/**
 * Options a git command takes as written though they are a prefix of one of its file options: git's
 * option parser prefers an exact name to an abbreviation (`git ls-files --exclude=*.o`).
 */
const GIT_EXACT_OPTIONS: ReadonlyMap<string, readonly string[]> = new Map([
  ["ls-files", ["exclude"]],
  ["blame", ["ignore-rev"]],
  ["annotate", ["ignore-rev"]],
  ["pickaxe", ["ignore-rev"]],
  ["format-patch", ["signature"]],
  ["cat-file", ["path"]],
  ["hash-object", ["path"]],
]);

/** The short options that name a file to write or read, by git command (the same letter means something else elsewhere). */
const GIT_FILE_SHORT_OPTIONS: ReadonlyMap<string, string> = new Map([
  ["commit", "Ft"],
  ["commit-tree", "F"],
  ["tag", "F"],
  ["notes", "F"],
  ["merge", "F"],
  ["fmt-merge-msg", "F"],
  ["grep", "f"],
  ["format-patch", "o"],
  ["archive", "o"],
  ["blame", "S"],
  ["annotate", "S"],
  ["pickaxe", "S"],
  ["ls-files", "X"],
  ["bugreport", "os"],
  ["diagnose", "os"],
  // The value may be attached (`-o/home/u/x`), which the path rule below would not see.
  ["mailsplit", "o"],
  ["index-pack", "o"],
]);

/**
 * git commands whose arguments are paths they write or read outside the repository (a clone's or a
 * worktree's directory, a bundle, a pack, a patch or mailbox to apply, a file to hash): every
 * argument that is not an option is a hazard, so a wildcard passes none of them.
 */
const GIT_PATH_COMMANDS: ReadonlySet<string> = new Set([
  "clone", "init", "init-db", "worktree", "bundle", "merge-file", "hash-object", "mailsplit", "mailinfo", "index-pack",
  "pack-objects", "am", "apply", "checkout-index", "verify-pack",
  // Shows the files it names, and rewrites them with --in-place.
  "interpret-trailers",
]);

/** A later argument of a git command that is the hazard, and why. */
interface GitArgumentHazard {
  hits: (arg: string) => boolean;
  why: string;
}

/** git commands that run programs, or touch files outside the repository, only with a certain later argument. */
const GIT_HAZARD_ARGUMENTS: ReadonlyMap<string, GitArgumentHazard> = new Map([
  ["submodule", { hits: (arg: string) => arg === "foreach", why: WHY.gitCommand }],
  // bisect replay reads the log file it is given.
  ["bisect", { hits: (arg: string) => arg === "run" || arg === "replay", why: WHY.gitCommand }],
  ["rebase", { hits: (arg: string) => shortClusterHas(arg, "x"), why: WHY.gitCommand }],
  ["archive", { hits: (arg: string) => longOptionIs(arg, ["remote"], true), why: WHY.gitCommand }],
  // git diff with two paths, one outside the repository, is git diff --no-index (git-diff(1)).
  ["diff", { hits: (arg: string) => !arg.startsWith("-") && (arg.startsWith("/") || arg.split("/").includes("..")), why: WHY.gitDiffPath }],
]);

/**
 * The hazards in `argv`, at most one per argument, in argv order.
 *
 * Option scanning does not stop at `--`. An option that takes a value takes the next argument even
 * when it is `--` (`git clone -o -- -u ./evil repo` passes `-u` to git as an option), so without
 * parsing every option of every program a scanner cannot tell a separator from a value. The cost is
 * that a path spelled like a hazard (`git log -- -c`) needs a rule that names it.
 */
export function hazards(argv: readonly string[]): Hazard[] {
  const [program] = argv;
  if (program === undefined) return [];
  const name = programName(program);
  const findings: [number, string][] = [
    ...programFindings(program, name),
    ...optionFindings(argv, lookup(OPTION_HAZARDS, name)),
    ...(name.base === "git" ? gitCommandFindings(argv) : []),
  ];
  const byIndex = new Map<number, Hazard>();
  for (const [index, why] of findings) if (!byIndex.has(index)) byIndex.set(index, { index, token: argv[index] ?? "", why });
  return [...byIndex.values()].sort((a, b) => a.index - b.index);
}

/**
 * The names a program may be known by: its basename in lower case (a case-insensitive file system
 * runs BASH as bash), and that without a version suffix (python3.12 → python, lua5.4 → lua).
 */
interface ProgramName {
  base: string;
  unversioned: string;
}

function programName(program: string): ProgramName {
  const base = (program.split("/").pop() ?? "").toLowerCase();
  const unversioned = base.replace(/[-_.]?\d+(?:\.\d+)*$/, "");
  return { base, unversioned: unversioned === "" ? base : unversioned };
}

function isNamed(set: ReadonlySet<string>, name: ProgramName): boolean {
  return set.has(name.base) || set.has(name.unversioned);
}

function lookup<T>(table: ReadonlyMap<string, T>, name: ProgramName): T | undefined {
  return table.get(name.base) ?? table.get(name.unversioned);
}

function programFindings(program: string, name: ProgramName): [number, string][] {
  const reasons: [boolean, string][] = [
    [program.includes("="), WHY.env],
    [program.includes("/"), WHY.path],
    [isNamed(WRAPPERS, name), WHY.wrapper],
    [isNamed(SCRIPT_RUNNERS, name), WHY.script],
  ];
  return reasons.filter(([applies]) => applies).map(([, why]) => [0, why]);
}

function optionFindings(argv: readonly string[], options: OptionHazards | undefined): [number, string][] {
  if (!options) return [];
  const found: [number, string][] = [];
  for (let index = 1; index < argv.length; index++) {
    if (optionHits(argv[index] ?? "", options)) found.push([index, options.why]);
  }
  return found;
}

function optionHits(arg: string, options: OptionHazards): boolean {
  return (
    shortClusterHas(arg, options.short) ||
    longOptionIs(arg, options.long, options.abbreviations) ||
    options.words.includes(arg) ||
    options.prefixes.some((prefix) => arg.startsWith(prefix))
  );
}

/** Whether `arg` is a single-dash option cluster containing any of `letters`. */
function shortClusterHas(arg: string, letters: string): boolean {
  if (arg.length < 2 || arg[0] !== "-" || arg[1] === "-") return false;
  return [...arg.slice(1)].some((char) => letters.includes(char));
}

/** Whether `arg` is `--name` or `--name=value` for one of `names` (or, with abbreviations, a prefix of one). */
function longOptionIs(arg: string, names: readonly string[], abbreviations: boolean): boolean {
  if (!arg.startsWith("--")) return false;
  const written = arg.slice(2).split("=", 1)[0] ?? "";
  if (written === "") return false;
  return names.some((name) => (abbreviations ? name.startsWith(written) : name === written));
}

/** The git command (first argument after git's global options and their values) and what follows it. */
function gitCommandFindings(argv: readonly string[]): [number, string][] {
  const commandIndex = gitCommandIndex(argv);
  const command = commandIndex === undefined ? undefined : argv[commandIndex];
  if (commandIndex === undefined || command === undefined) return [];
  if (GIT_HAZARD_COMMANDS.has(command) || GIT_HAZARD_COMMAND_PREFIXES.some((prefix) => command.startsWith(prefix))) {
    return [[commandIndex, WHY.gitCommand]];
  }
  const found: [number, string][] = [];
  for (let index = commandIndex + 1; index < argv.length; index++) {
    const why = gitArgumentHazard(command, argv[index] ?? "");
    if (why !== undefined) found.push([index, why]);
  }
  return found;
}

/** Why `arg`, after the git command `command`, is a hazard; undefined when it is not one. */
function gitArgumentHazard(command: string, arg: string): string | undefined {
  const trigger = GIT_HAZARD_ARGUMENTS.get(command);
  if (trigger?.hits(arg)) return trigger.why;
  if (gitFileOption(command, arg) || shortClusterHas(arg, GIT_FILE_SHORT_OPTIONS.get(command) ?? "")) return WHY.gitFile;
  if (GIT_PATH_COMMANDS.has(command) && !arg.startsWith("-")) return WHY.gitPath;
  return undefined;
}

/** Whether `arg` is a long option naming a file for `command`, in any spelling git takes it as that option. */
function gitFileOption(command: string, arg: string): boolean {
  if (longOptionIs(arg, GIT_EXACT_OPTIONS.get(command) ?? [], false)) return false;
  return longOptionIs(arg, [...GIT_FILE_OPTIONS, ...(GIT_FILE_LONG_OPTIONS.get(command) ?? [])], true);
}

function gitCommandIndex(argv: readonly string[]): number | undefined {
  for (let index = 1; index < argv.length; index++) {
    const arg = argv[index] ?? "";
    if (GIT_VALUE_OPTIONS.has(arg)) index++;
    else if (!arg.startsWith("-")) return index;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------
// Matching and evaluation

export interface RuleRef {
  text: string;
  tier: RuleTier;
  /** Position in its tier's list. */
  index: number;
}

export interface CommandDecision {
  verdict: CommandVerdict;
  /** The rule that decided; null when none matched (deny by default). */
  rule: RuleRef | null;
  /** The first allow rule that matched but was passed over because it left a hazard unnamed. */
  skipped: { rule: RuleRef; hazard: Hazard } | null;
}

export interface CommandRules {
  global: readonly CommandRule[];
  project: readonly CommandRule[];
}

const TIERS: readonly RuleTier[] = ["global", "project"];

/** What a rule is matched against; computed once per request. */
interface Request {
  argv: readonly string[];
  quoted: string;
  hazards: readonly Hazard[];
}

type Outcome = "match" | "no match" | { unnamed: Hazard };

/**
 * Global rules first, then the project's; the first rule that matches decides, and no match is deny.
 * An allow rule matches only if it names every hazard in argv (see unnamedHazard); ask and deny rules
 * match regardless, since a person sees an ask and a deny is always safe. Throws CommandRequestError
 * for an argv that cannot be run at all.
 */
export function evaluateCommand(rules: CommandRules, argv: readonly string[]): CommandDecision {
  checkCommandRequest(argv);
  const request: Request = { argv, quoted: canonicalQuote(argv), hazards: hazards(argv) };
  let skipped: CommandDecision["skipped"] = null;
  for (const tier of TIERS) {
    for (const [index, rule] of rules[tier].entries()) {
      const outcome = ruleOutcome(rule, request);
      if (outcome === "no match") continue;
      const ref = { text: rule.text, tier, index };
      if (outcome === "match") return { verdict: rule.verdict, rule: ref, skipped };
      skipped ??= { rule: ref, hazard: outcome.unnamed };
    }
  }
  return { verdict: "deny", rule: null, skipped };
}

function ruleOutcome(rule: CommandRule, request: Request): Outcome {
  if (!matches(rule.match, request, NO_HAZARDS)) return "no match";
  if (rule.verdict !== "allow") return "match";
  const unnamed = unnamedHazard(rule.match, request);
  return unnamed ? { unnamed } : "match";
}

const NO_HAZARDS: ReadonlySet<number> = new Set();

function matches(match: CommandMatcher, request: Request, guarded: ReadonlySet<number>): boolean {
  return match.kind === "regex" ? match.regex.test(request.quoted) : argvMatches(match.patterns, request.argv, guarded);
}

/**
 * A hazard is named by a literal or one_of element matching it. A regex rule names a hazard when its
 * source contains the token: the rule's author wrote it down, which is the point. Of several hazards,
 * the first whose token the rule never writes is reported, else the first (the rule writes it, but
 * not where it stands); trying each hazard alone would cost a match per hazard, which an agent could
 * make thousands.
 */
function unnamedHazard(match: CommandMatcher, request: Request): Hazard | undefined {
  const { hazards: found } = request;
  if (match.kind === "regex") return found.find((hazard) => !match.source.includes(hazard.token));
  const [first] = found;
  if (first === undefined || matches(match, request, new Set(found.map((hazard) => hazard.index)))) return undefined;
  const written = new Set(match.patterns.flatMap(literalValues));
  return found.find((hazard) => !written.has(hazard.token)) ?? first;
}

function literalValues(pattern: ArgPattern): readonly string[] {
  if (pattern.kind === "literal") return [pattern.value];
  return pattern.kind === "one_of" ? pattern.values : [];
}

/**
 * Whether `patterns` cover all of `argv`, where arguments at `guarded` positions may only be taken by
 * literal or one_of elements. `reach[i]` says the elements so far can cover exactly argv[0..i); each
 * element is a step, so several "**" cost O(elements × arguments), never backtracking.
 */
function argvMatches(patterns: readonly ArgPattern[], argv: readonly string[], guarded: ReadonlySet<number>): boolean {
  let reach = argv.map(() => false).concat(false);
  reach[0] = true;
  for (const pattern of patterns) {
    reach = pattern.kind === "any_arguments" ? spread(reach, guarded) : step(reach, (index) => argMatches(pattern, argv[index] ?? "", guarded.has(index)));
    if (!reach.includes(true)) return false;
  }
  return reach[argv.length] === true;
}

/** "**": from every reached position, onward over any arguments that are not guarded. */
function spread(reach: readonly boolean[], guarded: ReadonlySet<number>): boolean[] {
  let open = false;
  return reach.map((reached, index) => {
    open = (open && !guarded.has(index - 1)) || reached;
    return open;
  });
}

/** One element taking one argument: position i+1 is reached if i was and argv[i] fits. */
function step(reach: readonly boolean[], fits: (index: number) => boolean): boolean[] {
  return reach.map((_, index) => index > 0 && reach[index - 1] === true && fits(index - 1));
}

function argMatches(pattern: Exclude<ArgPattern, { kind: "any_arguments" }>, arg: string, guarded: boolean): boolean {
  switch (pattern.kind) {
    case "literal":
      return arg === pattern.value;
    case "one_of":
      return pattern.values.includes(arg);
    case "regex":
      return !guarded && pattern.regex.test(arg);
    case "any_argument":
      return !guarded;
  }
}

/**
 * One sentence for the agent, the audit log and the CLI: what was decided and why. It contains
 * agent-chosen text (a hazard's argument): show it through visible().
 */
export function decisionText(decision: CommandDecision): string {
  const { verdict, rule, skipped } = decision;
  const because = rule ? `${rule.tier} rule ${rule.text}` : "no rule allows this command";
  const outcome = { allow: `allowed by ${because}`, ask: `needs approval (${because})`, deny: rule ? `denied by ${because}` : `denied: ${because}` }[verdict];
  if (!skipped) return outcome;
  return `${outcome}; ${skipped.rule.tier} rule ${skipped.rule.text} was passed over because ${hazardText(skipped.hazard)}, and an allow rule must name that argument literally`;
}

export function hazardText(hazard: Hazard): string {
  const where = hazard.index === 0 ? "the program" : `argument ${hazard.index}`;
  return `${where} (${quoteArgument(hazard.token)}) ${hazard.why}`;
}
