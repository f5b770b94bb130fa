/**
 * The words of `cloister exec [OPTIONS] [NAME] [--] CMD [ARGS...]` as typed. Commander reads exec's
 * own options; this tells the cloister's name from the command, and refuses an option among the
 * command's words before a `--`: commander would take it as exec's own (`exec p2 grep -w x` would
 * set the working directory to x) or refuse it as an unknown option without saying why, where
 * `docker exec c ls -la` works. The refusal gives the line to type instead.
 */
import type { Option } from "commander";
import { CloisterError } from "../errors.js";

export interface ExecWords {
  /** The cloister's name: the first word before `--` that is neither an option nor its value. */
  name?: string;
  /** The command and its arguments: the other words before `--`, then every word after it. */
  command: string[];
}

const USAGE = "cloister exec [NAME] -- CMD [ARGS...]";

/** Reads `words` (those after `exec`), given exec's options; throws a CloisterError for an option out of place or no command. */
export function readExecWords(words: readonly string[], options: readonly Option[]): ExecWords {
  const dashes = words.indexOf("--");
  const end = dashes === -1 ? words.length : dashes;
  /** Where the words before `--` that are neither options nor their values are. */
  const positional: number[] = [];
  for (let at = 0; at < end; at++) {
    const word = words[at] ?? "";
    if (!looksLikeOption(word)) {
      positional.push(at);
      continue;
    }
    // The second such word began the command: an option after it is the command's.
    if (positional.length >= 2) throw optionAfterCommand(words, positional[1] ?? at);
    const taken = wordsTaken(word, options);
    if (taken === undefined) throw unknownOption(word, words, positional[0], options);
    at += taken - 1;
  }
  const [name, ...commandWords] = positional.map((at) => words[at] ?? "");
  const command = [...commandWords, ...(dashes === -1 ? [] : words.slice(dashes + 1))];
  if (command.length === 0) throw new CloisterError("no command given", `${name === undefined ? "" : `${name} is taken as the cloister's name; `}usage: ${USAGE}`);
  return { name, command };
}

/** As commander tells an option from an operand. */
function looksLikeOption(word: string): boolean {
  return word.length > 1 && word.startsWith("-");
}

/** How many words an option of exec takes (itself, or itself and its value); undefined when it is none of exec's. */
function wordsTaken(word: string, options: readonly Option[]): 1 | 2 | undefined {
  const exact = options.find((option) => option.long === word || option.short === word);
  if (exact) return exact.required ? 2 : 1;
  // --workdir=DIR, -wDIR: the value in the same word.
  const joined = options.find((option) => option.required && ((option.long && word.startsWith(`${option.long}=`)) || (option.short && word.startsWith(option.short))));
  return joined ? 1 : undefined;
}

/** `words` as they should have been typed: `--` put before the word at `commandAt`. */
function withDashesAt(words: readonly string[], commandAt: number): string {
  return `cloister exec ${[...words.slice(0, commandAt), "--", ...words.slice(commandAt)].map(shellWord).join(" ")}`;
}

function optionAfterCommand(words: readonly string[], commandAt: number): CloisterError {
  return new CloisterError("options after the command must follow --", withDashesAt(words, commandAt));
}

/**
 * An option exec does not have, before any command word. One word before it may have been meant as
 * the command (`exec ls -la` in a project), though it is read as the cloister's name.
 */
function unknownOption(option: string, words: readonly string[], onlyWordAt: number | undefined, options: readonly Option[]): CloisterError {
  const own = `exec's own options are ${options.map((o) => o.long).join(", ")}`;
  const fix = onlyWordAt === undefined ? `usage: ${USAGE}` : `if ${words[onlyWordAt] ?? ""} is the command, put it after --: ${withDashesAt(words, onlyWordAt)}`;
  return new CloisterError(`unknown option ${JSON.stringify(option)} for exec`, `${own}; ${fix}`);
}

/** A word as it would be typed in a shell: quoted only when it has to be. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
