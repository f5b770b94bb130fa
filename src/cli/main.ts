#!/usr/bin/env node
import { Command, CommanderError, Help, type Option } from "commander";
import { checkOwnInstance } from "../config/foreign-instance.js";
import { resolvePaths } from "../config/paths.js";
import { CLOISTER_FAILED, CloisterError, fileSystemError } from "../errors.js";
import { VERSION } from "../version.js";
import { commandGroupsFor } from "./command-groups.js";
import { inFlagWords } from "./option-flags.js";

const program = new Command()
  .name("cloister")
  .description("Run AI agents and any command at full speed inside a sandbox they cannot leave.")
  .version(VERSION)
  .exitOverride()
  // Usage errors are said by exitCodeFor, in one line like every other error.
  .configureOutput({ writeErr: (text) => process.stderr.write(text), outputError: () => undefined })
  .configureHelp({
    // A repeatable option starts from [] (see collect): "(default: [])" under each says nothing.
    optionDescription(this: Help, option: Option): string {
      const described = Help.prototype.optionDescription.call(this, option);
      const emptyList = Array.isArray(option.defaultValue) && option.defaultValue.length === 0;
      return emptyList ? described.replace(/ \(default: \[\]\)$/, "") : described;
    },
  });

for (const group of commandGroupsFor(process.argv[2])) group.register(program);

/**
 * Commands that write nothing to the instance: `completion` prints a script; `doctor` reports an
 * instance of another user as its configuration check's failure, with the other checks.
 */
const INSTANCE_FREE = new Set(["completion", "doctor"]);

/** Set once the command about to run was asked for --json: its failure is then JSON on stdout too. */
let jsonRequested = false;
program.hook("preAction", (_program, actionCommand) => {
  jsonRequested = actionCommand.opts().json === true;
  // Before the command's first write, for every command alike (QA: root's run on a user's instance).
  if (!INSTANCE_FREE.has(topCommandOf(actionCommand).name())) checkOwnInstance(resolvePaths());
});

/** The command typed first (`guardian` for `cloister guardian status`). */
function topCommandOf(command: Command): Command {
  let top = command;
  while (top.parent && top.parent !== program) top = top.parent;
  return top;
}

// The reader of stdout went away (`cloister list | head -1`): end as a program killed by SIGPIPE
// would, quietly and with its status (128 + 13). Node ignores SIGPIPE, so the failed write arrives as
// an 'error' event instead, which unheard printed a stack trace. A command relaying a cloister's
// output (run, exec) hears it itself: it passes SIGPIPE on to the command and ends as the command
// does, cleaning up (init-client.ts), so this one stands aside while another listener is there.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code !== "EPIPE") throw error;
  if (process.stdout.listenerCount("error") === 1) process.exit(141);
});

// Not a top-level await: the CLI is bundled as CommonJS (scripts/bundle.mjs), which has none.
program.parseAsync(process.argv).catch((error: unknown) => {
  process.exitCode = exitCodeFor(error);
});

/**
 * Commander's usage error in one line: "error: unknown option '--memry'" and its "(Did you mean
 * --memory?)" become "unknown option '--memry' (did you mean --memory?; see cloister start --help)".
 */
function usageError(message: string): { problem: string; hint: string } {
  const [problem = "", ...notes] = message.replace(/^error: /, "").split("\n").filter((line) => line.trim() !== "");
  const hints = [...notes.map((note) => note.replace(/^\((.*)\)$/, "$1").replace(/^Did/, "did")), `see ${typedCommands().map((command) => command.name()).join(" ")} --help`];
  return { problem, hint: hints.join("; ") };
}

/** The commands the words typed name (`cloister`, `policy`, `explain`), as far as they name one. */
function typedCommands(): Command[] {
  const path: Command[] = [program];
  for (const word of process.argv.slice(2)) {
    const next = path.at(-1)?.commands.find((command) => command.name() === word || command.aliases().includes(word));
    if (!next) break;
    path.push(next);
  }
  return path;
}

/**
 * Whether --json was typed (before any `--`) to a command that takes it: a usage error comes before
 * the preAction hook that otherwise says so, and a script parsing stdout still needs its object.
 */
function jsonTyped(): boolean {
  const words = process.argv.slice(2);
  const end = words.indexOf("--");
  const options = (end === -1 ? words : words.slice(0, end)).includes("--json");
  return options && (typedCommands().at(-1)?.options.some((option) => option.long === "--json") ?? false);
}

function exitCodeFor(thrown: unknown): number {
  if (thrown instanceof CommanderError) {
    // --help and --version "fail" with exit code 0; a command group typed alone showed its help.
    if (thrown.exitCode === 0 || thrown.code === "commander.help") return thrown.exitCode === 0 ? 0 : CLOISTER_FAILED;
    const { problem, hint } = usageError(thrown.message);
    process.stderr.write(`cloister: ${problem} (${hint})\n`);
    if (jsonTyped()) writeJsonError({ message: problem, hint, exitCode: CLOISTER_FAILED });
    return CLOISTER_FAILED;
  }
  // process.cwd() throws once the shell's directory was removed; libuv's words ("uv_cwd") say little.
  const cwdGone = thrown instanceof Error && (thrown as NodeJS.ErrnoException).syscall === "uv_cwd";
  const error = cwdGone ? new CloisterError("the current directory no longer exists", "cd to one that exists, such as your project's, and run the command again") : (fileSystemError(thrown) ?? thrown);
  const lines = error instanceof CloisterError ? error.terminalLines() : [error instanceof Error ? error.message : String(error)];
  // Each line is one line: a newline in a message (a file name, a key) must not start a line of its own.
  const [words = "", ...details] = lines.map((line) => inFlagWords(line).replace(/\n/g, " "));
  process.stderr.write(`cloister: ${[words, ...details].join("\n")}\n`);
  if (process.env.CLOISTER_DEBUG && error instanceof Error) process.stderr.write(`${error.stack ?? ""}\n`);
  const exitCode = (error instanceof CloisterError ? error.exitCode : undefined) ?? CLOISTER_FAILED;
  if (jsonRequested) {
    const hint = error instanceof CloisterError && error.hint ? { hint: inFlagWords(error.hint) } : {};
    const text = error instanceof CloisterError ? inFlagWords(error.message) : words;
    const details = error instanceof CloisterError ? error.jsonDetails() : {};
    writeJsonError({ message: text, ...hint, exitCode, ...details });
  }
  return exitCode;
}

/** A failure as the one JSON object on stdout that a script which asked for --json parses, as `npm --json` does. */
function writeJsonError(error: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ error }, null, 2)}\n`);
}
