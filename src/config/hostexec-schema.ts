/**
 * The `hostexec:` config section: the command rules (see policy/commands.ts for what they mean) and
 * the limits on host commands. Rules come out of the schema as validated config data, not compiled
 * rules: the effective config is cached as JSON (effective-cache.ts) and a RegExp does not survive
 * that, and the guardian writes approved rules back as the same data. The schema compiles every rule
 * once to refuse what the guardian could not use, so a bad rule is reported with its file, line and
 * key; the guardian calls compileCommandRules on the result, which then cannot fail.
 */
import { z } from "zod";
import {
  commandRuleEntry,
  compileCommandRule,
  CommandRuleError,
  type ArgPatternEntry,
  type CommandPatternEntry,
  type CommandRuleEntry,
  type CommandVerdict,
} from "../policy/commands.js";
import { bounded, boundedDuration, describeValue, parsed, section, wholeNumber } from "./schema-kit.js";
import { formatDuration, parseSize, writeSize } from "./units.js";

/** Written into the config template: docker ps may run at once; read-only gh commands ask a person. */
export const DEFAULT_HOSTEXEC_RULES: readonly CommandRuleEntry[] = [
  { allow: ["docker", "ps"] },
  { allow: ["docker", "ps", "-a"] },
  { ask: ["gh", "pr", { one_of: ["view", "list", "status", "checks", "diff"] }, "**"] },
  { ask: ["gh", "issue", { one_of: ["view", "list"] }, "**"] },
  { ask: ["gh", "repo", "view", "**"] },
  { ask: ["gh", "run", { one_of: ["list", "view"] }, "**"] },
];

export const HOSTEXEC_DEFAULTS = {
  timeout: "5m",
  approval_timeout: "5m",
  max_output: "16MiB",
  rate_limit: 30,
} as const;

/** The guardian holds a command's output in memory before forwarding it. */
const MAX_OUTPUT_LIMIT = 1024 ** 3;
const MAX_RATE_LIMIT = 10_000;

const VERDICTS: readonly CommandVerdict[] = ["allow", "ask", "deny"];

// ---------------------------------------------------------------------------------------------------
// Rules

/** YAML reads `10` and `true` as a number and a boolean; an argument is text, so say how to write it. */
function expectedText(expected: string) {
  return z.string({
    error: (issue) => {
      const hint = typeof issue.input === "number" || typeof issue.input === "boolean" ? ` (write it in quotes, "${String(issue.input)}", to match it as text)` : "";
      return `expected ${expected}, found ${describeValue(issue.input)}${hint}`;
    },
  });
}

const REGEX_FORM = "{regex: 'PATTERN'}";
const ARG_FORMS = `an argument pattern: text, "*", "**", {one_of: [a, b]} or ${REGEX_FORM}`;

const regexMapping = z.strictObject({ regex: expectedText("a regular expression") });
const oneOfMapping = z.strictObject({
  one_of: z.array(expectedText("an argument (text)"), { error: (issue) => `expected a list of arguments, found ${describeValue(issue.input)}` }),
});

function isMapping(input: unknown): input is Record<string, unknown> {
  return typeof input === "object" && input !== null && !Array.isArray(input);
}

/**
 * Validates `input` with the schema its shape calls for. A zod union would report a mismatch as one
 * "invalid input" at the union; this keeps each issue at its own path (`allow[1].one_of[0]`).
 */
function byShape<T>(expected: string, pick: (input: unknown) => z.ZodType<T> | undefined) {
  return z.unknown().transform((input, ctx): T => {
    const schema = pick(input);
    const result = schema?.safeParse(input);
    if (result?.success) return result.data;
    const issues = result?.error.issues ?? [{ path: [], message: `expected ${expected}, found ${describeValue(input)}` }];
    for (const issue of issues) {
      const unknownKeys = "keys" in issue ? issue.keys : [];
      if (unknownKeys.length === 0) ctx.addIssue({ code: "custom", message: issue.message, path: issue.path, input });
      for (const key of unknownKeys) ctx.addIssue({ code: "custom", message: `unknown key "${key}": expected ${expected}`, path: [...issue.path, key], input });
    }
    return z.NEVER;
  });
}

const argPattern = byShape<ArgPatternEntry>(ARG_FORMS, (input) => {
  if (typeof input === "string") return z.string();
  if (!isMapping(input)) return undefined;
  if ("one_of" in input) return oneOfMapping;
  return "regex" in input ? regexMapping : undefined;
});

const argList = z.array(argPattern);

const commandPattern = byShape<CommandPatternEntry>(`a list of argument patterns like [docker, ps, "**"], or ${REGEX_FORM}`, (input) => {
  if (Array.isArray(input)) return argList;
  return isMapping(input) ? regexMapping : undefined;
});

type RuleMapping = Partial<Record<CommandVerdict, CommandPatternEntry>>;

/** One rule: exactly one of allow, ask or deny, compiled once to refuse what would not compile. */
const commandRule = z
  .strictObject(
    { allow: commandPattern.optional(), ask: commandPattern.optional(), deny: commandPattern.optional() },
    { error: (issue) => (issue.code === "invalid_type" ? `expected a rule such as {allow: [docker, ps]}, {ask: [...]} or {deny: [...]}, found ${describeValue(issue.input)}` : undefined) },
  )
  .transform(toRuleEntry);

function toRuleEntry(rule: RuleMapping, ctx: z.core.$RefinementCtx<RuleMapping>): CommandRuleEntry {
  const verdicts = VERDICTS.filter((verdict) => rule[verdict] !== undefined);
  const [verdict] = verdicts;
  const pattern = verdict && rule[verdict];
  if (verdicts.length !== 1 || !verdict || !pattern) {
    // A misspelt key ({alow: ...}) is already reported as unknown, with a "did you mean".
    if (verdicts.length === 0 && ctx.issues.length > 0) return z.NEVER;
    const found = verdicts.length === 0 ? "none" : verdicts.join(" and ");
    ctx.addIssue({ code: "custom", message: `a rule has exactly one of allow, ask or deny (found ${found}); write each as its own rule`, input: rule });
    return z.NEVER;
  }
  const entry = commandRuleEntry(verdict, pattern);
  try {
    compileCommandRule(entry);
  } catch (error) {
    if (!(error instanceof CommandRuleError)) throw error;
    ctx.addIssue({ code: "custom", message: error.message, path: [...error.path], input: rule });
  }
  return entry;
}

/** A rule list; an empty `rules:` key is an empty list, which allows nothing. */
const ruleList = z.preprocess(
  (value) => value ?? [],
  z.array(commandRule, { error: (issue) => `expected a list of rules, found ${describeValue(issue.input)}` }),
);

// ---------------------------------------------------------------------------------------------------
// Limits

const duration = (what: string) => parsed("a duration like 90s, 5m or 1h", boundedDuration(what), formatDuration);

// ---------------------------------------------------------------------------------------------------
// Sections

export const HostexecSchema = section({
  rules: ruleList.prefault(DEFAULT_HOSTEXEC_RULES),
  timeout: duration("a host command's timeout").prefault(HOSTEXEC_DEFAULTS.timeout),
  approval_timeout: duration("the approval timeout").prefault(HOSTEXEC_DEFAULTS.approval_timeout),
  max_output: parsed("a size like 16MiB", bounded("the output limit", parseSize, MAX_OUTPUT_LIMIT, "1GiB"), writeSize).prefault(HOSTEXEC_DEFAULTS.max_output),
  rate_limit: parsed("a number of requests per minute like 30", wholeNumber("rate limit (requests per minute)", 1, MAX_RATE_LIMIT)).prefault(HOSTEXEC_DEFAULTS.rate_limit),
});

/** A project adds rules (checked after the global ones); the limits are the guardian's. */
export const ProjectHostexecSchema = section({ rules: ruleList });

/** Rules are config data; compile them with compileCommandRules. Durations in ms, max_output in bytes. */
export type HostexecConfig = z.output<typeof HostexecSchema>;
export type ProjectHostexecConfig = z.output<typeof ProjectHostexecSchema>;
