import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import type { Command, Option } from "commander";
import { resolvePaths } from "../config/paths.js";
import { CloisterError } from "../errors.js";
import { guardianCall } from "../guardian/control-client.js";
import { SCOPES, type DecisionView } from "../guardian/approvals/types.js";
import { isBelow } from "../path-under.js";

/**
 * Shell completion for bash, zsh and fish. The scripts are thin: they hand the words typed so far to
 * the hidden `cloister __complete -- WORDS...` command (after a `--` of its own: commander takes the
 * first `--` as the end of options and drops it, and `--` is what users type most, `run -- CMD`),
 * which walks the command tree commander already has (so a
 * new command or option completes without touching this file) and fills in live names: cloisters,
 * projects, branches, agents, secrets, waiting requests. Where a value is a path on the host,
 * `__complete` prints FILES or DIRECTORIES alone and the script lets the shell complete it, as it
 * would for any command (quoting, `~`, its own settings).
 *
 * It runs on every TAB, so it stays quick: the CLI registers every command only for it (see
 * command-groups.ts), each source of names is imported when its value is asked for, and none starts
 * the guardian, loads the config schema or touches the network.
 */

const FILES = ":file";
const DIRECTORIES = ":directory";
/** The shell's own completion of paths: printed as the only line; no name can be mistaken for it (none contains ":"). */
type ShellPaths = typeof FILES | typeof DIRECTORIES;
export type Completion = readonly string[] | ShellPaths;

const SCRIPTS: Readonly<Record<string, string>> = {
  bash: `# cloister completion for bash: add to ~/.bashrc:  source <(cloister completion bash)
_cloister() {
  local IFS=$'\\n'
  COMPREPLY=($(cloister __complete -- "\${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
  # No candidates, and readline completes the path itself.
  case \${COMPREPLY[0]-} in
  ${FILES}) COMPREPLY=(); compopt -o default ;;
  ${DIRECTORIES}) COMPREPLY=(); compopt -o dirnames ;;
  esac
}
complete -F _cloister cloister
`,
  zsh: `#compdef cloister
# cloister completion for zsh: add to ~/.zshrc:  source <(cloister completion zsh)
# compdef comes with zsh's completion system: started here when ~/.zshrc has not run compinit.
(( $+functions[compdef] )) || { autoload -Uz compinit && compinit -i; }
_cloister() {
  local -a candidates
  candidates=(\${(f)"$(cloister __complete -- "\${(@)words[2,CURRENT]}" 2>/dev/null)"})
  case \${candidates[1]-} in
  ${FILES}) _files ;;
  ${DIRECTORIES}) _files -/ ;;
  *) compadd -a candidates ;;
  esac
}
# Loaded from fpath (this file as _cloister), the file is the completion function itself.
if [[ \${funcstack[1]-} == _cloister ]]; then _cloister "$@"; else compdef _cloister cloister; fi
`,
  fish: `# cloister completion for fish: cloister completion fish > ~/.config/fish/completions/cloister.fish
function __cloister_complete
  set -l candidates (cloister __complete -- (commandline -opc)[2..-1] (commandline -ct) 2>/dev/null)
  switch "$candidates[1]"
    case ${FILES}
      __fish_complete_path (commandline -ct)
    case ${DIRECTORIES}
      __fish_complete_directories (commandline -ct)
    case '*'
      string join \\n -- $candidates
  end
end
# -f: no file names unless __complete asks for them.
complete -c cloister -f -a '(__cloister_complete)'
`,
};

export function completionScript(shell: string): string {
  const script = SCRIPTS[shell];
  if (!script) throw new CloisterError(`no completion for ${JSON.stringify(shell)}`, `choose one of ${Object.keys(SCRIPTS).join(", ")}`);
  return script;
}

const INSTALL_HELP = `
Install:
  bash: echo 'source <(cloister completion bash)' >> ~/.bashrc
  zsh:  echo 'source <(cloister completion zsh)' >> ~/.zshrc
        (it runs zsh's compinit itself when ~/.zshrc has not yet: put it after your compinit, if any)
  fish: cloister completion fish > ~/.config/fish/completions/cloister.fish`;

export function registerCompletionCommands(program: Command): void {
  program
    .command("completion")
    .description("print the shell completion script for bash, zsh or fish")
    .argument("<shell>", "bash, zsh or fish")
    .addHelpText("after", INSTALL_HELP)
    .action((shell: string) => {
      process.stdout.write(completionScript(shell));
    });

  program
    .command("__complete", { hidden: true })
    .argument("[words...]", "after --, the words after `cloister`, the last one being completed (a `--` among them is a word like any other)")
    .allowUnknownOption()
    .helpOption(false)
    .action(async (words: string[]) => {
      const completion = await complete(program, words.length > 0 ? words : [""]);
      const lines = typeof completion === "string" ? [completion] : completion;
      if (lines.length > 0) process.stdout.write(`${lines.join("\n")}\n`);
    });
}

/** What the words before the one being completed say. */
interface Line {
  command: Command;
  /** How many positional words the command has been given. */
  positional: number;
  /** The option the word is the value of, when the word before it is one that takes a value. */
  pendingOption?: Option;
  /** Values given to options, by option name (`project`): `-b` lists the branches of `--project DIR`. */
  values: Map<string, string>;
  /** A `--` came: the rest is the command to run inside. */
  afterDashes: boolean;
}

/** Candidates for the last word, given the ones before it. Never throws: completion must not print errors. */
export async function complete(program: Command, words: readonly string[]): Promise<Completion> {
  const current = words.at(-1) ?? "";
  try {
    const values = await valuesFor(readLine(program, words.slice(0, -1)), current);
    return typeof values === "string" ? values : [...new Set(values.filter((value) => value.startsWith(current)))].sort();
  } catch {
    return [];
  }
}

function readLine(program: Command, before: readonly string[]): Line {
  const line: Line = { command: program, positional: 0, values: new Map(), afterDashes: false };
  for (const word of before) {
    const pending = line.pendingOption;
    line.pendingOption = undefined;
    // An option's optional value is not an option (`run --agent -- ARGS`: the configured agent).
    if (pending && !(pending.optional && word.startsWith("-"))) line.values.set(pending.name(), word);
    else if (word === "--") return { ...line, afterDashes: true };
    else if (word.startsWith("-")) readOption(line, word);
    else readPositional(line, word);
  }
  return line;
}

function readOption(line: Line, word: string): void {
  const [flag, ...inline] = word.split("=");
  const option = line.command.options.find((o) => o.long === flag || o.short === flag);
  if (!option || !(option.required || option.optional)) return;
  if (inline.length > 0) line.values.set(option.name(), inline.join("="));
  else line.pendingOption = option;
}

function readPositional(line: Line, word: string): void {
  const sub = line.positional === 0 ? line.command.commands.find((c) => c.name() === word || c.aliases().includes(word)) : undefined;
  if (sub) line.command = sub;
  else line.positional++;
}

async function valuesFor(line: Line, current: string): Promise<Completion> {
  if (line.afterDashes) return FILES;
  if (line.pendingOption) return valuesFrom(OPTION_VALUES[line.pendingOption.flags], line);
  if (current.startsWith("-")) return line.command.options.flatMap((o) => [o.long, o.short]).filter((flag): flag is string => flag !== undefined);
  if (line.positional === 0 && line.command.commands.length > 0) return line.command.commands.filter((c) => !c.name().startsWith("_")).map((c) => c.name());
  const argument = line.command.registeredArguments[line.positional] ?? line.command.registeredArguments.at(-1);
  return argument ? valuesFrom(ARGUMENT_VALUES[`${commandPath(line.command)} ${argument.name()}`], line) : [];
}

type Source = ((line: Line) => Promise<readonly string[]> | readonly string[]) | ShellPaths;

async function valuesFrom(source: Source | undefined, line: Line): Promise<Completion> {
  if (source === undefined) return [];
  return typeof source === "string" ? source : source(line);
}

/** `agent install`: the words that name a subcommand, without the program's own name. */
function commandPath(command: Command): string {
  const names: string[] = [];
  for (let at: Command | null = command; at?.parent; at = at.parent) names.unshift(at.name());
  return names.join(" ");
}

/**
 * An option's values by its flags exactly as declared: the same option name may take different
 * things (`start --project <dir>` a directory, `allow --project <name>` a registered project).
 */
const OPTION_VALUES: Readonly<Record<string, Source>> = {
  "--project <dir>": DIRECTORIES,
  "--project <name>": projectNames,
  "--project <project>": projectNames,
  "--agent [name]": agentNames,
  "-b, --branch <branch>": branchNames,
  "--name <name>": cloisterNames,
  "--scope <scope>": () => SCOPES,
  "--pubkey <file>": FILES,
};

/**
 * An argument's values by its command and its name: a name alone says too little (`<name>` is a
 * cloister's for `exec`, an agent's for `agent install`, a secret's for `secret rm`).
 */
const ARGUMENT_VALUES: Readonly<Record<string, Source>> = {
  "exec name": cloisterNames,
  "stop name": cloisterNames,
  "rm name": persistentNames,
  "path name": pathNames,
  "run command": FILES,
  "exec command": FILES,
  "agent install name": agentNames,
  "agent uninstall name": agentNames,
  "setup agent": builtinAgentNames,
  "secret set name": secretNames,
  "secret rm name": secretNames,
  "project show name": projectNames,
  "project edit name": projectNames,
  "project remove name": projectNames,
  "worktree remove branch": worktreeBranches,
  "approve id": pendingIds,
  "deny rule": pendingIds,
  "undo id": undoableDecisionIds,
  "audit verify file": FILES,
  "completion shell": () => Object.keys(SCRIPTS),
};

async function cloisterNames(): Promise<string[]> {
  const { listRecords } = await import("../sandbox/records.js");
  return listRecords(resolvePaths()).map((record) => record.name);
}

/** What `rm` removes: persistent cloisters, running ones (for -f) by their records, stopped ones by their HOMEs. */
async function persistentNames(): Promise<string[]> {
  const [{ listRecords }, { persistentHomeNames }] = await Promise.all([import("../sandbox/records.js"), import("../sandbox/homes.js")]);
  const paths = resolvePaths();
  return [...listRecords(paths).filter((record) => record.persistent).map((record) => record.name), ...persistentHomeNames(paths)];
}

/** What `cloister path` accepts: a cloister's record, or a worktree cloister's worktree, which stays while it is stopped. */
async function pathNames(): Promise<string[]> {
  const { managedWorktrees } = await import("../sandbox/worktree.js");
  return [...(await cloisterNames()), ...managedWorktrees(resolvePaths()).map((worktree) => worktree.cloisterName)];
}

async function projectNames(): Promise<string[]> {
  const { projectFileNames } = await import("../config/names.js");
  return projectFileNames(resolvePaths().projectConfigDir);
}

async function builtinAgentNames(): Promise<readonly string[]> {
  return (await import("../agents/registry.js")).BUILTIN_AGENT_NAMES;
}

/** The built-in agents and the custom ones under the global config's `agents:`. */
async function agentNames(): Promise<string[]> {
  const { agentNames: known } = await import("../agents/registry.js");
  return known(await configuredAgents());
}

/**
 * The global config's `agents:` section, read with the YAML parser alone: the schema library would
 * cost every TAB ~30 ms, and a config that does not validate still names its agents. None when
 * there is no config yet or it does not parse: the built-in agents complete anyway.
 */
async function configuredAgents(): Promise<Readonly<Record<string, unknown>>> {
  try {
    const { parse } = await import("yaml");
    const config: unknown = parse(await readFile(resolvePaths().globalConfigFile, "utf8"));
    const agents = isObject(config) ? config.agents : undefined;
    return isObject(agents) ? agents : {};
  } catch {
    return {};
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Local branches and origin's, as `git branch` would list them, of the project the line names with
 * `--project` (else the current directory's); nothing outside a repository.
 */
function branchNames(line: Line): string[] {
  const result = spawnSync("git", ["-c", "core.fsmonitor=false", "for-each-ref", "--format=%(refname:lstrip=2)", "refs/heads", "refs/remotes/origin"], { cwd: projectDir(line), encoding: "utf8" });
  if (result.status !== 0) return [];
  return result.stdout.split("\n").filter(Boolean).map((ref) => ref.replace(/^origin\//, "")).filter((ref) => ref !== "HEAD");
}

/**
 * The branches checked out in the worktrees cloister keeps for the project (`start -b`), as
 * `worktree list` shows them: `worktree remove` takes no other. Read from git's list of the
 * project's worktrees, which needs neither the project registry nor the config.
 */
async function worktreeBranches(line: Line): Promise<string[]> {
  const { worktreeEntries } = await import("../sandbox/worktree-git.js");
  const { managedWorktrees, worktreesBase } = await import("../sandbox/worktree.js");
  const paths = resolvePaths();
  const base = worktreesBase(paths);
  // As the worktree commands take --project: a directory when one of that name exists, else a
  // project's name, whose repository git lists the worktrees of from any one of them.
  const given = projectDir(line);
  const from = given === undefined || existsSync(given) ? (given ?? process.cwd()) : managedWorktrees(paths, given)[0]?.dir;
  if (from === undefined) return [];
  const entries = await worktreeEntries(from);
  return entries.flatMap((entry) => (entry.branch !== undefined && isBelow(entry.path, base) ? [entry.branch.replace(/^refs\/heads\//, "")] : []));
}

/** `--project`'s directory as the command will get it: the shell expands a leading ~ only when it runs the command. */
function projectDir(line: Line): string | undefined {
  return line.values.get("project")?.replace(/^~(?=\/|$)/, homedir());
}

/** From a running guardian only: guardianCall fails at once when there is none, and never starts one. */
async function fromGuardian<T>(path: string, pick: (answer: T) => string[]): Promise<string[]> {
  return pick(await guardianCall<T>(resolvePaths(), "GET", path));
}

/** Names only: the guardian's listing never holds a value. */
function secretNames(): Promise<string[]> {
  return fromGuardian<{ secrets: { name: string }[] }>("/v1/secrets", (answer) => answer.secrets.map((secret) => secret.name));
}

function pendingIds(): Promise<string[]> {
  return fromGuardian<{ pending: { id: string }[] }>("/v1/approvals", (answer) => answer.pending.map((request) => request.id));
}

/** What `cloister approvals` lists as undoable. */
function undoableDecisionIds(): Promise<string[]> {
  return fromGuardian<{ recent: DecisionView[] }>("/v1/approvals", (answer) => answer.recent.filter((decision) => decision.undoable && !decision.undone).map((decision) => decision.id));
}
