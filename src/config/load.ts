/**
 * Reading config files: YAML → plain data → zod, with every problem traced back to the file, line,
 * column and key it came from. The YAML is parsed as a Document (not straight to JS) precisely so a
 * zod issue path like ["limits", "memory"] can be mapped back to the node it came from.
 */
import { existsSync } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { type Document, LineCounter, type Node, type Pair, isAlias, isMap, isNode, isPair, isScalar, isSeq, parseDocument, stringify, visit } from "yaml";
import type { z } from "zod";
import { CloisterError, fileSystemError } from "../errors.js";
import { nearestKey } from "../nearest-key.js";
import { createFileAtomic, ensurePrivateDir } from "./atomic-write.js";
import { ConfigError, type ConfigProblem } from "./config-error.js";
import type { CloisterPaths } from "./paths.js";
import {
  type ConfigKind,
  type Decisions,
  DecisionsSchema,
  type EffectiveConfig,
  type GlobalConfig,
  GlobalConfigSchema,
  type Mount,
  type ProjectConfig,
  ProjectConfigSchema,
  ProjectNameSchema,
  allKeyPaths,
  asWritten,
  describeValue,
  keysAt,
} from "./schema.js";
import { GLOBAL_CONFIG_TEMPLATE } from "./template.js";

/** Config data as YAML text (for `config show` and the guardian's decision files). */
export function toYaml(value: unknown): string {
  return stringify(value);
}

/** A configuration as its files would say it (`config show`): sizes, durations and percentages in units, "none" for no limit. */
export function configAsYaml(config: GlobalConfig | EffectiveConfig): string {
  return toYaml(asWritten(GlobalConfigSchema, config));
}

// ---------------------------------------------------------------------------------------------------
// Errors (config-error.ts; here too for the modules that load config files)

export { ConfigError, type ConfigProblem, formatProblem } from "./config-error.js";

// ---------------------------------------------------------------------------------------------------
// Loading

/** The global config; on first use the commented template is written (0600, in a 0700 dir). */
export async function loadGlobalConfig(paths: CloisterPaths): Promise<GlobalConfig> {
  const file = paths.globalConfigFile;
  let text = await readIfExists(file);
  if (text === undefined) {
    await createDefaultConfig(paths);
    text = await readConfigText(file);
  }
  return parseConfigText(text, file, "global");
}

/** Writes the commented template as the global config unless there is one; resolves with whether it wrote it. */
export async function createDefaultConfig(paths: CloisterPaths): Promise<boolean> {
  ensurePrivateDir(paths.configDir);
  // Another cloister process may create it at the same moment; theirs is as good as ours.
  return createFileAtomic(paths.globalConfigFile, GLOBAL_CONFIG_TEMPLATE);
}

/**
 * The global config as loadGlobalConfig would give it, without writing anything: without a file,
 * what the template it would write says. For commands that only read (`config show`).
 */
export async function readGlobalConfig(paths: CloisterPaths): Promise<{ config: GlobalConfig; exists: boolean }> {
  const text = await readIfExists(paths.globalConfigFile);
  return { config: parseConfigText(text ?? GLOBAL_CONFIG_TEMPLATE, paths.globalConfigFile, "global"), exists: text !== undefined };
}

/**
 * What a cloister of `project` runs with (effectiveConfig). When both files have problems, one
 * ConfigError holds every problem of both: a launch names them all, not the first file's first.
 */
export async function loadEffectiveConfig(paths: CloisterPaths, project: string): Promise<EffectiveConfig> {
  const [global, local] = await loadedTogether([loadGlobalConfig(paths), loadProjectConfig(paths, project)]);
  return effectiveConfig(global, local);
}

/**
 * Awaits loads of config files (as Promise.all). When they fail with ConfigErrors, one ConfigError
 * holds every problem of every file, file by file in the order given: stopping at the first file's,
 * the user fixed it, ran again, and only then learnt of the next file's (QA). A failure of another
 * kind (a file that cannot be read) is thrown as it is.
 */
export async function loadedTogether<T extends readonly unknown[] | []>(loads: T): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const failures = (await Promise.allSettled(loads)).flatMap((result): unknown[] => (result.status === "rejected" ? [result.reason] : []));
  if (failures.length === 0) return Promise.all(loads);
  const isConfigError = (failure: unknown): failure is ConfigError => failure instanceof ConfigError;
  if (!failures.every(isConfigError)) throw failures.find((failure) => !isConfigError(failure));
  const [first, ...rest] = failures as [ConfigError, ...ConfigError[]];
  throw new ConfigError([...first.problems, ...rest.flatMap((error) => error.problems)]);
}

/** A project's config; a missing file means all defaults (it is not created: `path` is written on registration). */
export async function loadProjectConfig(paths: CloisterPaths, projectName: string): Promise<ProjectConfig> {
  const file = projectConfigFile(paths, projectName);
  const text = await readIfExists(file);
  return parseConfigText(text ?? "", file, "project");
}

/** The file holding a project's config. Refuses names that are not safe identifiers (they become file names). */
export function projectConfigFile(paths: CloisterPaths, projectName: string): string {
  const check = ProjectNameSchema.safeParse(projectName);
  if (!check.success) throw new CloisterError(check.error.issues[0]?.message ?? `invalid project name ${JSON.stringify(projectName)}`);
  return join(paths.projectConfigDir, `${projectName}.yaml`);
}

/** Where a decision (a rule from \`cloister allow|deny\` or an approval) is kept: for every project, or for one. */
export type DecisionScope = "global" | "project";

/** The decision file of a scope (the guardian writes them; people may edit them). */
export function decisionsFile(paths: CloisterPaths, scope: DecisionScope, project?: string): string {
  if (scope === "global") return join(paths.configDir, "decisions", "global.yaml");
  const name = ProjectNameSchema.safeParse(project);
  if (!name.success) throw new CloisterError(`invalid project name ${JSON.stringify(project)}`, "see \`cloister project list\`");
  return join(projectDecisionsDir(paths), `${name.data}.yaml`);
}

function projectDecisionsDir(paths: CloisterPaths): string {
  return join(paths.configDir, "decisions", "projects");
}

/** The decision files there are: the global one and each project's. */
export async function existingDecisionFiles(paths: CloisterPaths): Promise<string[]> {
  const projectDir = projectDecisionsDir(paths);
  const names = await readdir(projectDir).catch(() => [] as string[]);
  const projectFiles = names.filter((name) => name.endsWith(".yaml")).map((name) => join(projectDir, name));
  const global = decisionsFile(paths, "global");
  return [...(existsSync(global) ? [global] : []), ...projectFiles.sort()];
}

/** Read and check one config file; throws ConfigError (or CloisterError when it cannot be read). */
export async function validateConfigFile(path: string, kind: "global"): Promise<GlobalConfig>;
export async function validateConfigFile(path: string, kind: "project"): Promise<ProjectConfig>;
export async function validateConfigFile(path: string, kind: ConfigKind): Promise<GlobalConfig | ProjectConfig>;
export async function validateConfigFile(path: string, kind: ConfigKind): Promise<GlobalConfig | ProjectConfig> {
  return parseConfigText(await readConfigText(path), path, kind);
}

/**
 * What a cloister runs with: project limits override global ones key by key; protect and env lists
 * are joined (duplicates dropped); mounts are joined with a project mount replacing a global one that
 * has the same dest (two mounts on one dest would leave only the last visible anyway).
 */
export function effectiveConfig(global: GlobalConfig, project: ProjectConfig): EffectiveConfig {
  const limits = { ...global.limits };
  for (const [key, value] of Object.entries(project.limits) as Array<[keyof typeof limits, number | null | undefined]>) {
    if (value !== undefined) Object.assign(limits, { [key]: value });
  }
  return {
    defaults: { ...global.defaults },
    limits,
    sandbox: {
      protect: unique([...global.sandbox.protect, ...project.sandbox.protect]),
      env: unique([...global.sandbox.env, ...project.sandbox.env]),
      mounts: mergeMounts(global.sandbox.mounts, project.sandbox.mounts),
    },
    refs: { ...project.refs },
    proxy: {
      ...global.proxy,
      allow: [...global.proxy.allow, ...project.proxy.allow],
      deny: [...global.proxy.deny, ...project.proxy.deny],
    },
    audit: { ...global.audit },
    ui: { ...global.ui },
    hostexec: { ...global.hostexec, rules: [...global.hostexec.rules, ...project.hostexec.rules] },
    agents: global.agents,
  };
}

function unique<T>(items: readonly T[]): T[] {
  return [...new Set(items)];
}

function mergeMounts(base: readonly Mount[], overrides: readonly Mount[]): Mount[] {
  const byDest = new Map<string, Mount>();
  for (const mount of [...base, ...overrides]) byDest.set(mount.dest, { ...mount });
  return [...byDest.values()];
}

// ---------------------------------------------------------------------------------------------------
// Parsing

/** Parse and validate config text; `file` is only used in messages. Empty text gives all defaults. */
export function parseConfigText(text: string, file: string, kind: "global"): GlobalConfig;
export function parseConfigText(text: string, file: string, kind: "project"): ProjectConfig;
export function parseConfigText(text: string, file: string, kind: "decisions"): Decisions;
export function parseConfigText(text: string, file: string, kind: ConfigKind): GlobalConfig | ProjectConfig;
export function parseConfigText(text: string, file: string, kind: ConfigKind | "decisions"): GlobalConfig | ProjectConfig | Decisions;
export function parseConfigText(text: string, file: string, kind: ConfigKind | "decisions"): GlobalConfig | ProjectConfig | Decisions {
  const schema = { global: GlobalConfigSchema, project: ProjectConfigSchema, decisions: DecisionsSchema }[kind];
  const { doc, lineCounter } = parseYaml(text, file);
  const result = schema.safeParse(toPlainData(doc, file, lineCounter), { reportInput: true });
  if (result.success) return result.data;
  const where = new Locator(doc, lineCounter, file);
  const problems = result.error.issues.flatMap((issue) => problemsFor(issue, schema, where));
  throw new ConfigError(sortedNonEmpty(problems, file));
}

/**
 * Parse YAML into a Document, throwing ConfigError for syntax errors and for a top level that is not
 * a mapping. Exported for editors of config files (the project registry) that must keep comments.
 */
export function parseYaml(text: string, file: string): { doc: Document; lineCounter: LineCounter } {
  const lineCounter = new LineCounter();
  // YAML 1.2 core schema (the default): "no" and "off" stay strings instead of turning into false.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const syntax = doc.errors.map((error): ConfigProblem => {
    const { line, col } = lineCounter.linePos(error.pos[0]);
    // yaml's message does not say which key: the source at the error does.
    const key = /^[^:\n]*/.exec(text.slice(error.pos[0]))?.[0].trim();
    const which = error.code === "DUPLICATE_KEY" && key ? ` (${JSON.stringify(key)} is given twice)` : "";
    return { file, line, column: col, key: "", problem: `invalid YAML: ${firstLine(error.message)}${which}` };
  });
  if (syntax.length > 0) throw new ConfigError(sortedNonEmpty(syntax, file));
  const top = doc.contents;
  if (top !== null && !isMap(top)) {
    const { line, col } = lineCounter.linePos(top.range?.[0] ?? 0);
    throw new ConfigError([
      { file, line, column: col, key: "", problem: `the file must be a mapping of keys (like "limits:"), found ${describeNode(top)}` },
    ]);
  }
  refuseTags(doc, file, lineCounter);
  return { doc, lineCounter };
}

/**
 * Config files have no use for YAML tags, and some hide what they tag: a section written
 * `proxy: !!omap` became a JS Map, which the strict schema read as an empty mapping, so its deny
 * rules and even its unknown keys vanished without a word (found by QA). Any tag is refused.
 */
function refuseTags(doc: Document, file: string, lineCounter: LineCounter): void {
  const problems: ConfigProblem[] = [];
  visit(doc, (_key, node, path) => {
    if (!isNode(node) || node.tag === undefined) return;
    const { line, col } = lineCounter.linePos(node.range?.[0] ?? 0);
    problems.push({ file, line, column: col, key: keyPath(pathOf(path, node)), problem: `YAML tags such as ${node.tag.replace(/^tag:yaml\.org,2002:/, "!!")} are not used in cloister's config files: write the plain value` });
  });
  if (problems.length > 0) throw new ConfigError(sortedNonEmpty(problems, file));
}

/** The data path of `node` from the yaml visitor's ancestors: a pair gives its key, a sequence the item's index. */
function pathOf(ancestors: readonly unknown[], node: unknown): Array<string | number> {
  const chain = [...ancestors, node];
  const path: Array<string | number> = [];
  chain.slice(0, -1).forEach((here, i) => {
    if (isPair(here) && isScalar(here.key)) path.push(String(here.key.value));
    else if (isSeq(here)) path.push(here.items.indexOf(chain[i + 1] as never));
  });
  return path;
}

function toPlainData(doc: Document, file: string, lineCounter: LineCounter): unknown {
  try {
    // A document that is only comments has no contents: that is the "all defaults" file.
    return doc.contents === null ? {} : doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    // Alias bombs ("billion laughs") and similar are refused by the yaml library itself.
    const { line, col } = lineCounter.linePos(0);
    throw new ConfigError([{ file, line, column: col, key: "", problem: `invalid YAML: ${firstLine((error as Error).message)}` }]);
  }
}

function describeNode(node: Node): string {
  if (isSeq(node)) return "a list";
  if (isScalar(node)) return describeValue(node.value);
  if (isAlias(node)) return "an alias";
  return "something else";
}

function firstLine(message: string): string {
  return message.split("\n")[0] ?? message;
}

function sortedNonEmpty(problems: ConfigProblem[], file: string): [ConfigProblem, ...ConfigProblem[]] {
  const sorted = [...problems].sort((a, b) => a.line - b.line || a.column - b.column);
  const [first, ...rest] = sorted;
  // zod never fails without an issue; this keeps the types honest rather than asserting.
  return first ? [first, ...rest] : [{ file, line: 1, column: 1, key: "", problem: "invalid configuration" }];
}

// ---------------------------------------------------------------------------------------------------
// From zod issues to located problems

type Path = readonly PropertyKey[];

function problemsFor(issue: z.core.$ZodIssue, schema: z.core.$ZodType, where: Locator): ConfigProblem[] {
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((key) => {
      const path = [...issue.path, key];
      return { ...where.at(path, "key"), key: keyPath(path), problem: "unknown key", ...hintFor(schema, issue.path, key) };
    });
  }
  if (issue.code === "invalid_key") {
    // A record key (a ref name) is wrong: point at the key, and say what is wrong with it.
    const problem = issue.issues[0]?.message ?? issue.message;
    return [{ ...where.at(issue.path, "key"), key: keyPath(issue.path), problem }];
  }
  // zod reports a missing required key as "expected X, received undefined"; say it plainly.
  const missing = issue.code === "invalid_type" && issue.input === undefined;
  const problem = missing ? "required key is missing" : issue.message;
  return [{ ...where.at(issue.path, "value"), key: keyPath(issue.path), problem }];
}

/** "did you mean" the nearest key at this level; else the same key at another level; else the valid keys. */
function hintFor(schema: z.core.$ZodType, parent: Path, key: string): { hint: string } | Record<string, never> {
  const valid = keysAt(schema, parent) ?? [];
  const nearest = nearestKey(key, valid);
  if (nearest) return { hint: `did you mean "${nearest}"?` };
  const elsewhere = allKeyPaths(schema).find((path) => path[path.length - 1]?.toLowerCase() === key.toLowerCase());
  if (elsewhere) return { hint: `did you mean "${elsewhere.join(".")}"?` };
  if (valid.length === 0) return { hint: `${keyPath(parent) || "this mapping"} has no settings yet` };
  return { hint: `valid keys here: ${valid.join(", ")}` };
}

/** ["sandbox", "mounts", 0, "src"] → "sandbox.mounts[0].src"; odd keys are quoted: refs["my ref"]. */
export function keyPath(path: Path): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(String(segment))) out += out ? `.${String(segment)}` : String(segment);
    else out += `[${JSON.stringify(String(segment))}]`;
  }
  return out;
}

/** Maps a data path back to a position in the YAML source. */
class Locator {
  constructor(
    private readonly doc: Document,
    private readonly lineCounter: LineCounter,
    private readonly file: string,
  ) {}

  /**
   * Position of the value (or, with "key", the key) at `path`; when the path does not exist in the
   * source (a default, a merge), the deepest ancestor that does.
   */
  at(path: Path, target: "key" | "value"): { file: string; line: number; column: number } {
    let node: unknown = this.doc.contents;
    let offset = rangeStart(node) ?? 0;
    for (const [index, segment] of path.entries()) {
      const pair = isMap(node) ? node.items.find((item) => keyText(item) === String(segment)) : undefined;
      const next = pair ? pair.value : isSeq(node) && typeof segment === "number" ? node.items[segment] : undefined;
      const isLast = index === path.length - 1;
      const keyStart = pair ? rangeStart(pair.key) : undefined;
      if (isLast && target === "key" && keyStart !== undefined) {
        offset = keyStart;
        break;
      }
      // An empty value (`memory:`) has no useful range of its own; its key is the place to look.
      const start = rangeStart(next) ?? keyStart;
      if (start === undefined) break;
      offset = start;
      node = next;
    }
    const { line, col } = this.lineCounter.linePos(offset);
    return { file: this.file, line, column: col };
  }
}

function keyText(pair: Pair): string {
  return isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
}

function rangeStart(node: unknown): number | undefined {
  if (!isNode(node) || !node.range) return undefined;
  // yaml gives an empty value a zero-width range at the end of its line; that is not a useful place.
  if (isScalar(node) && node.value === null && node.range[0] === node.range[1]) return undefined;
  return node.range[0];
}

// ---------------------------------------------------------------------------------------------------
// Files

async function readConfigText(file: string): Promise<string> {
  const text = await readIfExists(file);
  if (text === undefined) throw new CloisterError(`${file} does not exist`);
  return text;
}

/** Far above any real config or decision file; a bigger one is a mistake, not a policy. */
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

/** The file's text, or undefined if it does not exist; other read errors become CloisterErrors. */
export async function readIfExists(file: string): Promise<string | undefined> {
  try {
    // A FIFO or a device in a config file's place would hang the read or fill memory (found by QA).
    const kind = await stat(file);
    if (!kind.isFile()) throw new CloisterError(`${file} is not a regular file`, "a config file must be a plain file");
    if (kind.size > MAX_CONFIG_BYTES) throw new CloisterError(`${file} is ${kind.size} bytes: too large for a config file (at most ${MAX_CONFIG_BYTES})`);
    return await readFile(file, "utf8");
  } catch (error) {
    if (error instanceof CloisterError) throw error;
    const code = error instanceof Error && "code" in error ? String(error.code) : undefined;
    if (code === "ENOENT") return undefined;
    throw fileSystemError(error) ?? new CloisterError(`cannot read ${file}: ${(error as Error).message}`);
  }
}
