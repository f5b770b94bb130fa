/**
 * A configuration problem and the error that carries every one of them. Kept apart from load.ts
 * (YAML and zod) so that the control client, which every command loads, can rebuild a ConfigError
 * the guardian sent without loading the parsers.
 */
import { CloisterError } from "../errors.js";

export interface ConfigProblem {
  file: string;
  /** 1-based. */
  line: number;
  /** 1-based. */
  column: number;
  /** Dotted key path, e.g. "limits.memory" or "sandbox.mounts[0].src"; "" for the file as a whole. */
  key: string;
  problem: string;
  hint?: string;
}

/**
 * What failed because the configuration does not load, when that is more than the files (a change
 * that was not made): `lead` comes before the problems, `hint` says what to do about the whole.
 */
export interface ConfigErrorContext {
  lead: string;
  hint?: string;
}

/**
 * A config file is wrong. The message names the first problem in file order as
 * `<file>:<line>:<col>: <key>: <problem>` (after the context's lead, if any); `problems` holds all
 * of them, for `validate`-style output.
 */
export class ConfigError extends CloisterError {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly key: string;
  readonly problems: readonly [ConfigProblem, ...ConfigProblem[]];
  readonly context: ConfigErrorContext | undefined;

  constructor(problems: readonly [ConfigProblem, ...ConfigProblem[]], context?: ConfigErrorContext) {
    const [first] = problems;
    super(context ? `${context.lead}: ${problemLine(first)}` : formatProblem(first), context ? context.hint : first.hint);
    this.name = "ConfigError";
    this.file = first.file;
    this.line = first.line;
    this.column = first.column;
    this.key = first.key;
    this.problems = problems;
    this.context = context;
  }

  /**
   * Every problem on one line, for a warning or a log line (the message names only the first):
   * "3 problems in 2 config files: FILE:1:1: key: problem; ...", after the context's lead.
   */
  summary(): string {
    return this.problems.length === 1 ? this.message : this.joined(formatProblem);
  }

  /** As summary(), with each problem's hint (and the context's, for the whole) in brackets. */
  override oneLine(): string {
    if (this.problems.length === 1) return super.oneLine();
    const hint = this.context?.hint;
    return hint ? `${this.joined(problemLine)} (${hint})` : this.joined(problemLine);
  }

  private joined(line: (problem: ConfigProblem) => string): string {
    const lead = this.context ? `${this.context.lead}: ` : "";
    return `${lead}${problemsIn(this.problems)}: ${this.problems.map(line).join("; ")}`;
  }

  /** Every problem, not only the first: fixing one at a time, launch after launch, is slow (QA). */
  override terminalLines(): string[] {
    if (this.problems.length === 1) return super.terminalLines();
    const lead = this.context ? `${this.context.lead}: ` : "";
    return [`${lead}${problemsIn(this.problems)} (fix each; \`cloister config validate\` checks them all again):`, ...this.problems.map((p) => `  ${problemLine(p)}`)];
  }

  /** Every problem, in the shape `config validate --json` gives them. */
  override jsonDetails(): Record<string, unknown> {
    return { problems: this.problems };
  }
}

export function formatProblem(problem: ConfigProblem): string {
  const where = `${problem.file}:${problem.line}:${problem.column}`;
  return problem.key ? `${where}: ${problem.key}: ${problem.problem}` : `${where}: ${problem.problem}`;
}

/** A problem on a line of its own: where, key and problem, and its hint. */
export function problemLine(problem: ConfigProblem): string {
  return problem.hint ? `${formatProblem(problem)} (${problem.hint})` : formatProblem(problem);
}

/** "3 problems in 2 config files", or "2 problems in FILE" when they are all in one. */
export function problemsIn(problems: readonly ConfigProblem[]): string {
  const files = new Set(problems.map((p) => p.file));
  return `${problems.length} problems in ${files.size === 1 ? [...files][0] : `${files.size} config files`}`;
}

/**
 * Problems another process sent (the guardian, over its control socket), checked field by field and
 * copied without anything else they held; undefined unless there is at least one and each is whole.
 * A reply that is not what it should be must neither crash the CLI nor print what it did not mean.
 */
export function receivedProblems(value: unknown): [ConfigProblem, ...ConfigProblem[]] | undefined {
  if (!Array.isArray(value) || value.length === 0) return undefined;
  const problems = (value as unknown[]).map(receivedProblem);
  if (!problems.every((problem): problem is ConfigProblem => problem !== undefined)) return undefined;
  return problems as [ConfigProblem, ...ConfigProblem[]];
}

function receivedProblem(value: unknown): ConfigProblem | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { file, line, column, key, problem, hint } = value as Record<string, unknown>;
  const position = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 1;
  if (typeof file !== "string" || file === "" || !position(line) || !position(column) || typeof key !== "string" || typeof problem !== "string" || problem === "") return undefined;
  if (hint !== undefined && typeof hint !== "string") return undefined;
  return hint === undefined ? { file, line, column, key, problem } : { file, line, column, key, problem, hint };
}
