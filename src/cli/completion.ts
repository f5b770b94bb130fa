import { spawnSync } from "node:child_process";
import type { Command, Option } from "commander";
import { resolvePaths } from "../config/paths.js";
import { CloisterError } from "../errors.js";
import { guardianStatus, guardianCall } from "../guardian/control-client.js";
import { SCOPES } from "../guardian/approvals/types.js";

/**
 * Shell completion for bash, zsh and fish. The scripts are thin: they hand the words typed so far to
 * the hidden `cloister __complete` command, which walks the command tree commander already has (so a
 * new command or option completes without touching this file) and fills in live names: cloisters,
 * projects, branches, agents, waiting requests.
 */

const SCRIPTS: Readonly<Record<string, string>> = {
  bash: `# cloister completion for bash: add to ~/.bashrc:  source <(cloister completion bash)
_cloister() {
  local IFS=$'\\n'
  COMPREPLY=($(cloister __complete "\${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _cloister cloister
`,
  zsh: `#compdef cloister
# cloister completion for zsh: add to ~/.zshrc:  source <(cloister completion zsh)
_cloister() {
  local -a candidates
  candidates=(\${(f)"$(cloister __complete "\${(@)words[2,CURRENT]}" 2>/dev/null)"})
  compadd -a candidates
}
compdef _cloister cloister
`,
  fish: `# cloister completion for fish: cloister completion fish > ~/.config/fish/completions/cloister.fish
complete -c cloister -f -a '(cloister __complete (commandline -opc)[2..-1] (commandline -ct) 2>/dev/null)'
`,
};

export function registerCompletionCommands(program: Command): void {
  program
    .command("completion")
    .description("print the shell completion script for bash, zsh or fish")
    .argument("<shell>", "bash, zsh or fish")
    .addHelpText("after", "\nInstall:\n  bash: echo 'source <(cloister completion bash)' >> ~/.bashrc\n  zsh:  echo 'source <(cloister completion zsh)' >> ~/.zshrc\n  fish: cloister completion fish > ~/.config/fish/completions/cloister.fish")
    .action((shell: string) => {
      const script = SCRIPTS[shell];
      if (!script) throw new CloisterError(`no completion for ${JSON.stringify(shell)}`, `choose one of ${Object.keys(SCRIPTS).join(", ")}`);
      process.stdout.write(script);
    });

  program
    .command("__complete", { hidden: true })
    .argument("[words...]", "the words after `cloister`, the last one being completed")
    .allowUnknownOption()
    .helpOption(false)
    .action(async (words: string[]) => {
      const candidates = await complete(program, words.length > 0 ? words : [""]);
      if (candidates.length > 0) process.stdout.write(`${candidates.join("\n")}\n`);
    });
}

/** Candidates for the last word, given the ones before it. Never throws: completion must not print errors. */
export async function complete(program: Command, words: readonly string[]): Promise<string[]> {
  const current = words.at(-1) ?? "";
  const before = words.slice(0, -1);
  let command = program;
  let positional = 0;
  let pendingOption: Option | undefined;
  for (const word of before) {
    if (pendingOption) {
      pendingOption = undefined;
      continue;
    }
    if (word === "--") break;
    if (word.startsWith("-")) {
      const option = command.options.find((o) => o.long === word.split("=")[0] || o.short === word);
      if (option && (option.required || option.optional) && !word.includes("=")) pendingOption = option;
      continue;
    }
    const sub = command.commands.find((c) => c.name() === word || c.aliases().includes(word));
    if (sub && positional === 0) command = sub;
    else positional++;
  }
  let candidates: string[];
  try {
    if (pendingOption) candidates = await valuesFor(pendingOption.long ?? pendingOption.short ?? "");
    else if (current.startsWith("-")) candidates = command.options.flatMap((o) => [o.long, o.short]).filter((flag): flag is string => flag !== undefined);
    else if (positional === 0 && command.commands.length > 0) candidates = command.commands.filter((c) => !c.name().startsWith("_")).map((c) => c.name());
    else candidates = await valuesFor(command.registeredArguments[positional]?.name() ?? command.registeredArguments.at(-1)?.name() ?? "");
  } catch {
    candidates = [];
  }
  return candidates.filter((candidate) => candidate.startsWith(current)).sort();
}

/** Live values for an option or argument, chosen by its name. */
async function valuesFor(name: string): Promise<string[]> {
  switch (name.replace(/^-+/, "")) {
    case "name":
      return cloisterNames();
    case "project":
    case "projects":
      return projectNames();
    case "agent":
      return agentNames();
    case "b":
    case "branch":
      return branchNames();
    case "id":
      return pendingIds();
    case "scope":
      return [...SCOPES];
    case "shell":
      return Object.keys(SCRIPTS);
    default:
      return [];
  }
}

async function cloisterNames(): Promise<string[]> {
  const { listRecords } = await import("../sandbox/records.js");
  return listRecords(resolvePaths()).map((record) => record.name);
}

async function projectNames(): Promise<string[]> {
  const { listProjects } = await import("../config/project-registry.js");
  return (await listProjects(resolvePaths())).map((project) => project.name);
}

async function agentNames(): Promise<string[]> {
  const { BUILTIN_AGENT_NAMES } = await import("../agents/registry.js");
  return [...BUILTIN_AGENT_NAMES];
}

/** Local branches and origin's, as `git branch` would list them; nothing outside a repository. */
function branchNames(): string[] {
  const result = spawnSync("git", ["-c", "core.fsmonitor=false", "for-each-ref", "--format=%(refname:lstrip=2)", "refs/heads", "refs/remotes/origin"], { encoding: "utf8" });
  if (result.status !== 0) return [];
  return [...new Set(result.stdout.split("\n").filter(Boolean).map((ref) => ref.replace(/^origin\//, "")).filter((ref) => ref !== "HEAD"))];
}

/** Only from a running guardian: completing a word never starts one. */
async function pendingIds(): Promise<string[]> {
  const paths = resolvePaths();
  if (!(await guardianStatus(paths))) return [];
  const { pending } = await guardianCall<{ pending: { id: string }[] }>(paths, "GET", "/v1/approvals");
  return pending.map((request) => request.id);
}
