/**
 * The library's inputs, checked when a call is made, before anything starts. TypeScript's types do
 * not reach a JavaScript caller or options read from JSON: without this, a wrong type failed deep
 * inside (`session.allow.map is not a function`), a misspelt key was ignored (`netwrok: false` ran
 * with the network), and `network: "no"` was taken by its truthiness. Every problem is a
 * CloisterError that names the value (`options.allow`, `argv[1]`); a misspelt key gets the nearest
 * valid one. Written by hand, not with zod: the CLI calls the same functions for every `run`, and
 * loading zod would cost it tens of milliseconds. What a value means (a size, a rule) is checked
 * where it is read, by the same parsers as for the CLI.
 */
import { constants as osConstants } from "node:os";
import { Readable, Writable } from "node:stream";
import type { CloisterOptions, ExecOptions, FindOptions, RunOptions } from "./cloister.js";
import type { CloisterPaths } from "./config/paths.js";
import type { RemoveOptions } from "./stopped.js";
import { CloisterError } from "./errors.js";
import { nearestKey } from "./nearest-key.js";
import { VARIABLE_NAME_RE } from "./sandbox/env.js";
import { MAX_PAYLOAD } from "./sandbox/init-protocol.js";

/** Checks one value; `where` is how the message names it (`options.allow`). Throws CloisterError. */
type Check = (value: unknown, where: string) => void;

/** A check for every key of T, optional or not: the compiler says when an option is added without one. */
type Checks<T> = { readonly [K in keyof Required<T>]: Check };

const text: Check = (value, where) => {
  if (typeof value !== "string") throw wrongType(where, "a string", value);
  // Paths, argv and the environment travel as C strings: a NUL would cut them short or fail later.
  if (value.includes("\0")) throw new CloisterError(`${where} contains a NUL byte`, "no string handed to a cloister may hold one");
};

const flag: Check = (value, where) => {
  if (typeof value !== "boolean") throw wrongType(where, "true or false", value);
};

const callback: Check = (value, where) => {
  if (typeof value !== "function") throw wrongType(where, "a function", value);
};

/** A string (parsed later, with the CLI's messages) or a number, as `memory: 512 * 1024 ** 2`. */
function textOrNumber(expected: string): Check {
  return (value, where) => {
    if (typeof value === "number") return;
    if (typeof value !== "string") throw wrongType(where, expected, value);
    text(value, where);
  };
}

function textOf(expected: string): Check {
  return (value, where) => {
    if (typeof value !== "string") throw wrongType(where, expected, value);
    text(value, where);
  };
}

function textList(expected: string): Check {
  return (value, where) => {
    if (!Array.isArray(value)) throw wrongType(where, expected, value);
    value.forEach((item: unknown, index) => text(item, `${where}[${index}]`));
  };
}

/** An object of string values; `keyProblem` says what is wrong with a key, if anything. */
function textRecord(expected: string, keyProblem?: (key: string) => { problem: string; hint: string } | undefined): Check {
  return (value, where) => {
    if (!isPlainObject(value)) throw wrongType(where, expected, value);
    for (const [key, item] of Object.entries(value)) {
      const wrong = keyProblem?.(key);
      if (wrong) throw new CloisterError(`${where} has ${wrong.problem} ${JSON.stringify(key)}`, wrong.hint);
      text(item, member(where, key));
    }
  };
}

/**
 * Half of what one exec request may carry (MAX_PAYLOAD): the rest is for the command's argv and the
 * cloister's own variables. A persistent cloister keeps its environment for every later command, and
 * one given more started fine, then refused every command (found by QA).
 */
const MAX_ENVIRONMENT_BYTES = MAX_PAYLOAD / 2;

/** Variable names as `--env NAME=VALUE` takes them (parseEnvAssignments), and not more than a command's request can carry. */
const environment = (expected: string): Check => {
  const names = textRecord(expected, (name) => (VARIABLE_NAME_RE.test(name) ? undefined : { problem: "an invalid variable name", hint: "use letters, digits and _, not starting with a digit" }));
  return (value, where) => {
    names(value, where);
    const bytes = Object.entries(value as Record<string, string>).reduce((sum, [name, item]) => sum + Buffer.byteLength(`${name}=${item}`) + 1, 0);
    if (bytes > MAX_ENVIRONMENT_BYTES) {
      throw new CloisterError(`${where} holds ${bytes} bytes, more than the ${MAX_ENVIRONMENT_BYTES} a command's environment may take here`, "put large values in a file in the project and pass its path");
    }
  };
};

/** Every field of CloisterPaths, so that the compiler says when one is added. */
const PATHS_FIELDS = {
  configDir: true,
  stateDir: true,
  dataDir: true,
  runtimeDir: true,
  globalConfigFile: true,
  projectConfigDir: true,
  cloisterRecordDir: true,
  homesDir: true,
  guardianSocket: true,
  guardianPidFile: true,
  guardianInfoFile: true,
  guardianLog: true,
  auditDir: true,
} as const satisfies Record<keyof CloisterPaths, true>;

const paths: Check = (value, where) => {
  const expected = "the object resolvePaths() returns";
  if (!isPlainObject(value)) throw wrongType(where, expected, value);
  // stopCloister, listCloisters and stoppedCloisters take the paths themselves, where findCloister and
  // removeCloister take options that hold them: an easy slip, named as such.
  if (Object.hasOwn(value, "paths")) throw new CloisterError(`${where} must be ${expected}, not an object that holds it ({ paths })`, "pass the paths themselves, as resolvePaths() returns them");
  const missing = Object.keys(PATHS_FIELDS).find((field) => typeof value[field] !== "string");
  if (missing !== undefined) throw new CloisterError(`${where} must be ${expected}: its ${missing} is ${describe(value[missing])}`, "pass resolvePaths({ CLOISTER_HOME: dir }) for an instance of its own");
};

const abortSignal: Check = (value, where) => {
  if (!(value instanceof AbortSignal)) throw wrongType(where, "an AbortSignal", value);
};

const agent: Check = (value, where) => {
  if (value !== true && (typeof value !== "string" || value === "")) throw wrongType(where, "an agent's name (such as \"claude\") or true", value);
};

/** findCloister's: what commands in a running cloister are set up with; a launch takes them too. */
const FIND_OPTIONS: Checks<FindOptions> = {
  env: environment('an object of variable names to values, such as { NODE_ENV: "test" }'),
  secretEnv: environment('an object of variable names to stored secrets\' names, such as { GITHUB_TOKEN: "gh" }'),
  paths,
  signal: abortSignal,
  agent,
  credentials: callback,
  passEnvCredential: flag,
  warn: callback,
};

/**
 * The options of a launch's that findCloister takes (FIND_OPTIONS' keys, so that one added there is
 * passed on too): the CLI's start looks for the running cloister with them.
 */
export function findOptionsOf(options: CloisterOptions): FindOptions {
  return Object.fromEntries(Object.keys(FIND_OPTIONS).map((key) => [key, options[key as keyof FindOptions]])) as FindOptions;
}

/** A fresh cloister's options: all but the name, which only a persistent one is given. */
const FRESH_OPTIONS: Checks<Omit<CloisterOptions, "name">> = {
  project: text,
  allowNoGit: flag,
  branch: text,
  network: flag,
  memory: textOrNumber('a size such as "8GiB", a number of bytes, or "none"'),
  pids: textOrNumber('a process count such as 4096, or "none"'),
  cpu: textOf('a percentage of one core such as "150%", or "none"'),
  allow: textList('an array of rules (strings such as "example.com")'),
  deny: textList('an array of rules (strings such as "example.com")'),
  allowPrivate: textList('an array of rules (strings such as "localhost:8080")'),
  resolve: textRecord('an object of host names to IP addresses, such as { "api.test": "127.0.0.1" }'),
  ...FIND_OPTIONS,
};

const CLOISTER_OPTIONS: Checks<CloisterOptions> = { ...FRESH_OPTIONS, name: text };

const RUN_OPTIONS: Checks<RunOptions> = {
  ...FRESH_OPTIONS,
  timeout: textOrNumber('a duration such as "5m", a number of milliseconds, or "none"'),
};

/** Why an option valid for another call is not taken here, and what to do instead. */
interface Elsewhere {
  readonly why: string;
  readonly hint: string;
}

const MADE_WITH: Elsewhere = {
  why: "is createCloister's: it applies when a cloister is made; a running one keeps what it was started with",
  hint: "stop it and create it again with the new options, or leave it out",
};

/**
 * The project (and its branch) is launch-only too: findCloister finds by name alone, so a project
 * given would be neither used nor compared with the cloister's, and a caller could take the cloister
 * of another project for this one's (the CLI's start compares them itself).
 */
const FOUND_BY_NAME: Elsewhere = {
  why: "is createCloister's: findCloister finds a cloister by its name alone, whatever its project",
  hint: "leave it out; a found cloister's project is its record.projectRoot",
};

/** Every option findCloister does not take, so that the compiler says where a new one belongs. */
const LAUNCH_ONLY: Readonly<Record<Exclude<keyof CloisterOptions, keyof FindOptions>, Elsewhere>> = {
  project: FOUND_BY_NAME,
  allowNoGit: FOUND_BY_NAME,
  branch: FOUND_BY_NAME,
  name: { why: "is createCloister's: findCloister takes the name as its first argument", hint: "leave it out: findCloister(name)" },
  network: MADE_WITH,
  memory: MADE_WITH,
  pids: MADE_WITH,
  cpu: MADE_WITH,
  allow: MADE_WITH,
  deny: MADE_WITH,
  allowPrivate: MADE_WITH,
  resolve: MADE_WITH,
};

/** Options that are valid for another call: why not here, and what to do instead. */
const ELSEWHERE = {
  nameOfFresh: { name: { why: "names a persistent cloister; a fresh one is named for you", hint: "leave it out, or create a persistent cloister: createCloister(options, true)" } },
  nameOfRun: { name: { why: "names a persistent cloister; runInCloister's is named for you", hint: "leave it out, or create a persistent one: createCloister(options, true)" } },
  timeout: { timeout: { why: "is runInCloister's: a cloister made here runs until it is stopped", hint: "stop it yourself: cloister.stop()" } },
} as const;

/** Which call the options are for: they differ in `name` and `timeout`, and a running cloister takes few. */
export type OptionsUse = "persistent" | "fresh" | "running" | "run";

/** Throws a CloisterError naming the first wrong option (`options.allow`); undefined values count as unset. */
export function checkOptions(options: unknown, use: OptionsUse): void {
  switch (use) {
    case "persistent":
      return checkObject(options, "options", CLOISTER_OPTIONS, ELSEWHERE.timeout);
    case "running":
      return checkObject(options, "options", FIND_OPTIONS, { ...LAUNCH_ONLY, ...ELSEWHERE.timeout });
    case "fresh":
      return checkObject(options, "options", FRESH_OPTIONS, { ...ELSEWHERE.nameOfFresh, ...ELSEWHERE.timeout });
    case "run":
      return checkObject(options, "options", RUN_OPTIONS, ELSEWHERE.nameOfRun);
  }
}

const REMOVE_OPTIONS: Checks<RemoveOptions> = { force: flag, paths };

/** removeCloister's options. */
export function checkRemoveOptions(options: unknown): void {
  checkObject(options, "options", REMOVE_OPTIONS);
}

/** A terminal's size, as the kernel's winsize keeps it (unsigned short). */
const dimension: Check = (value, where) => {
  if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > 0xffff) throw wrongType(where, "a whole number from 1 to 65535", value);
};

const TTY: Checks<NonNullable<ExecOptions["tty"]>> = { rows: dimension, cols: dimension, separateStderr: flag };

/** A running command's new terminal size (session.resize), as `tty` takes it. */
export function checkTerminalSize(rows: unknown, cols: unknown): void {
  dimension(rows, "rows");
  dimension(cols, "cols");
}

/** Linux's highest signal number (SIGRTMAX). */
const MAX_SIGNAL = 64;

/** The number of a signal for a running command (session.signal): a name such as "SIGTERM", or a number. */
export function signalNumber(signal: unknown): number {
  const known = typeof signal === "string" && Object.hasOwn(osConstants.signals, signal) ? osConstants.signals[signal as NodeJS.Signals] : undefined;
  if (known !== undefined) return known;
  if (Number.isInteger(signal) && (signal as number) >= 1 && (signal as number) <= MAX_SIGNAL) return signal as number;
  throw new CloisterError(`signal must be a signal's name or number, not ${describe(signal)}`, `give a name such as "SIGTERM" or "SIGINT", or a number from 1 to ${MAX_SIGNAL}`);
}

const tty: Check = (value, where) => {
  checkObject(value, where, TTY);
  const size = value as Record<string, unknown>;
  for (const field of ["rows", "cols"]) if (size[field] === undefined) throw new CloisterError(`${member(where, field)} is missing`, "give the terminal's size: { rows: 24, cols: 80 }");
};

const readable: Check = (value, where) => {
  if (!(value instanceof Readable)) throw wrongType(where, "a readable stream", value);
};

const writable: Check = (value, where) => {
  if (!(value instanceof Writable)) throw wrongType(where, "a writable stream", value);
};

const EXEC_OPTIONS: Checks<ExecOptions> = {
  cwd: text,
  env: CLOISTER_OPTIONS.env,
  tty,
  stdin: readable,
  stdout: writable,
  stderr: writable,
};

/** A command's options (`where`: how the caller's parameter is called, `options` or `exec`). */
export function checkExecOptions(options: unknown, where: string): void {
  checkObject(options, where, EXEC_OPTIONS);
}

/** A command's words: strings, one per argument; none only for an agent, which then starts as configured. */
export function checkArgv(argv: unknown, where: string, mayBeEmpty: boolean): void {
  if (typeof argv === "string") {
    throw new CloisterError(`${where} must be an array of strings, not ${describe(argv)}`, `one element per word, as in ${JSON.stringify(argv.trim().split(/\s+/))}; no shell splits it`);
  }
  textList("an array of strings")(argv, where);
  if (!mayBeEmpty && (argv as unknown[]).length === 0) throw new CloisterError(`${where} is empty: no command given`, 'give the command and its arguments, such as ["npm", "test"]');
}

export function checkText(value: unknown, where: string): void {
  text(value, where);
}

export function checkFlag(value: unknown, where: string): void {
  flag(value, where);
}

export function checkPaths(value: unknown, where: string): void {
  paths(value, where);
}

function checkObject(value: unknown, where: string, checks: Readonly<Record<string, Check>>, elsewhere: Readonly<Record<string, Elsewhere>> = {}): void {
  if (!isPlainObject(value)) throw wrongType(where, "an object", value);
  for (const [key, item] of Object.entries(value)) {
    if (item === undefined) continue; // an optional option left unset, as `{ name: flags.name }` does
    // Own keys only: "toString" must not find Object.prototype's.
    const check = Object.hasOwn(checks, key) ? checks[key] : undefined;
    if (check) {
      check(item, member(where, key));
      continue;
    }
    const other = Object.hasOwn(elsewhere, key) ? elsewhere[key] : undefined;
    if (other) throw new CloisterError(`${member(where, key)} ${other.why}`, other.hint);
    const nearest = nearestKey(key, Object.keys(checks));
    throw new CloisterError(`${member(where, key)} is not an option`, nearest ? `did you mean ${member(where, nearest)}?` : `the options are ${Object.keys(checks).join(", ")}`);
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null) return false;
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

/** `options.env`, `options.env.NODE_ENV`, `options.env[""]`. */
function member(where: string, key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${where}.${key}` : `${where}[${JSON.stringify(key)}]`;
}

function wrongType(where: string, expected: string, value: unknown): CloisterError {
  return new CloisterError(`${where} must be ${expected}, not ${describe(value)}`);
}

/** How a JavaScript value reads in a message: `the string "no"`, `the number 5`, `an array`. */
function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  if (typeof value === "number" || typeof value === "bigint") return `the number ${String(value)}`;
  if (typeof value === "boolean") return String(value);
  if (typeof value === "function") return "a function";
  if (typeof value === "object") {
    const kind = (Object.getPrototypeOf(value) as { constructor?: { name?: string } } | null)?.constructor?.name;
    return kind && kind !== "Object" ? `a ${kind}` : "an object";
  }
  return `a ${typeof value}`;
}
