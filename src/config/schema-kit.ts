/**
 * The building blocks of cloister's config schemas (schema.ts and its sections in their own files):
 * values read through the unit parsers with the parser's message as the error, strict sections
 * that may be left empty, lists that may be an empty key, and how a YAML value reads to a person.
 */
import { z } from "zod";
import { MAX_TIMEOUT_MS, parseDuration } from "./units.js";

/**
 * How a value that a schema turned into a number is written in a config file ("8GiB" for 8589934592,
 * "none" for null): `config show` prints what the files say, so its output can be pasted into one.
 */
export const writtenForm = z.registry<{ write: (value: never) => unknown }>();

/**
 * A value read through one of the unit parsers; the parser's message becomes the zod issue. `write`
 * turns the result back into what the file would say (see writtenForm).
 */
export function parsed<T>(expected: string, parse: (input: string | number) => T, write?: (value: T) => unknown) {
  const schema = z.unknown().transform((input, ctx): T => {
    if (typeof input !== "string" && typeof input !== "number") {
      ctx.addIssue({ code: "custom", message: `expected ${expected}, found ${describeValue(input)}`, input });
      return z.NEVER;
    }
    try {
      return parse(input);
    } catch (error) {
      ctx.addIssue({ code: "custom", message: (error as Error).message, input });
      return z.NEVER;
    }
  });
  return write ? schema.register(writtenForm, { write }) : schema;
}

/** `orNone`: the setting also takes `none` (a limit() value), which the message then offers. */
export function positive(what: string, parse: (input: string | number) => number, orNone = false) {
  return (input: string | number): number => {
    const value = parse(input);
    if (value <= 0) throw new Error(`${what} must be more than 0${orNone ? " (use none for no limit)" : ""}`);
    return value;
  };
}

export const text = (expected: string) => z.string({ error: (issue) => `expected ${expected}, found ${describeValue(issue.input)}` });
export const bool = z.boolean({ error: (issue) => `expected true or false, found ${describeValue(issue.input)}` });

/** A list that may be written as an empty key (`env:`) while the user is still filling it in. */
export function list<T extends z.ZodType>(item: T, expected: string) {
  return z.preprocess(
    (value) => value ?? [],
    z.array(item, { error: (issue) => `expected a list of ${expected}, found ${describeValue(issue.input)}` }),
  );
}

/**
 * A section: a strict mapping whose missing or empty value (`limits:` with everything commented out)
 * means "all defaults".
 */
export function section<Shape extends z.core.$ZodLooseShape>(shape: Shape) {
  return z.preprocess(
    (value) => value ?? {},
    z.strictObject(shape, { error: (issue) => `expected a mapping of keys, found ${describeValue(issue.input)}` }),
  );
}

export function wholeNumber(what: string, min: number, max: number) {
  return (input: string | number): number => {
    const value = typeof input === "number" ? input : /^\s*\d+\s*$/.test(input) ? Number(input) : NaN;
    if (!Number.isSafeInteger(value) || value < min || value > max) throw new Error(`"${input}" is not a valid ${what}: write a whole number from ${min} to ${max}`);
    return value;
  };
}

/** How a YAML value reads to a person: "a list", "text", "an empty value". */
export function describeValue(value: unknown): string {
  if (value === null || value === undefined) return "an empty value";
  if (Array.isArray(value)) return "a list";
  // A long text (a whole file where a value was expected) is cut: the message must stay a line.
  if (typeof value === "string") return `text ${JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value)}`;
  if (typeof value === "number") return `the number ${value}`;
  if (typeof value === "boolean") return `${value}`;
  if (typeof value === "object") return "a mapping";
  return typeof value;
}

/** A value within (0, max]: a duration that must be set (no "none") and that setTimeout can honour, a capped size. */
export function bounded(what: string, parse: (input: string | number) => number, max: number, maxText: string) {
  return (input: string | number): number => {
    const value = parse(input);
    if (value <= 0) throw new Error(`${what} must be more than 0`);
    if (value > max) throw new Error(`"${input}" is too long; ${what} can be at most ${maxText}`);
    return value;
  };
}

export const boundedDuration = (what: string) => bounded(what, parseDuration, MAX_TIMEOUT_MS, "24 days");
