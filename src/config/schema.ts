/**
 * The shape of cloister's config files, as zod schemas, and the types they produce once defaults are
 * applied. Each top-level key is its own section schema so later stages can add sections (proxy,
 * hostexec, agents) by spreading `globalSections` / `projectSections` into a new strict object.
 *
 * Every object is strict: an unknown key is an error, because a misspelt key that is silently ignored
 * is a security setting that silently does not apply.
 */
import { isIP } from "node:net";
import { isAbsolute, posix } from "node:path";
import { z } from "zod";
import { canonicalHost, HostSyntaxError } from "../policy/hosts.js";
import { parseRule, RuleError, type RuleList } from "../policy/rules.js";
import { formatDuration, isNone, parseDuration, parsePercent, parseProcessCount, parseSize, writeSize } from "./units.js";
import { bool, boundedDuration, describeValue, list, parsed, positive, section, text, wholeNumber, writtenForm } from "./schema-kit.js";
import { HostexecSchema, ProjectHostexecSchema } from "./hostexec-schema.js";
import { AgentsSchema, defaultAgent } from "./agents-schema.js";
import { agentNames } from "../agents/registry.js";
export { describeValue };

import { SAFE_NAME_RE } from "./names.js";
export { SAFE_NAME_RE };
export { ENV_NAME_RE, REFUSED_ENV_NAMES, REFUSED_ENV_PREFIXES, REFUSED_ENV_SUBSTRINGS, envNameProblem } from "./env-names.js";
import { envName } from "./env-names.js";
import { configuredPathProblem } from "../sandbox/host-exposure.js";
import { isUnder } from "../path-under.js";
import { LIMIT_DEFAULTS } from "./limit-defaults.js";

/** setTimeout (which enforces `cloister run --timeout`) fires at once for delays beyond 2^31-1 ms. */
import { MAX_TIMEOUT_MS } from "./units.js";
export { MAX_TIMEOUT_MS };

// ---------------------------------------------------------------------------------------------------
// Value schemas


/** A limit that may be switched off with "none" (→ null); `write` gives a set limit's written form. */
function limit(expected: string, parse: (input: string | number) => number, write: (value: number) => unknown) {
  return parsed(`${expected}, or none`, (input) => (isNone(input) ? null : parse(input)), (value) => (value === null ? "none" : write(value)));
}


function parseTimeout(input: string | number): number {
  const ms = positive("a timeout", parseDuration, true)(input);
  if (ms > MAX_TIMEOUT_MS) throw new Error(`"${input}" is too long; a timeout can be at most 24 days (or none)`);
  return ms;
}


function parseTmpfs(input: string | number): number {
  if (isNone(input)) {
    // An uncapped tmpfs may grow to half the host's RAM: one runaway agent could starve the machine.
    throw new Error(`tmpfs cannot be none: each private tmpfs needs a size cap, e.g. 1GiB`);
  }
  const bytes = parseSize(input);
  if (bytes <= 0) throw new Error(`a tmpfs size must be more than 0`);
  return bytes;
}

const memoryValue = limit("a size like 8GiB", positive("a memory limit", parseSize, true), writeSize);
const pidsValue = limit("a process count like 4096", parseProcessCount, (count) => count);
const cpuValue = limit("a percentage of one core like 100%", positive("a cpu limit", parsePercent, true), (percent) => `${percent}%`);
const tmpfsValue = parsed("a size like 1GiB", parseTmpfs, writeSize);
const timeoutValue = limit("a duration like 90s, 5m or 1h30m", parseTimeout, formatDuration);


/** An absolute path; ".." is refused so what the user reads is the path that gets mounted. */
const absolutePath = text("an absolute path").superRefine((path, ctx) => {
  const problem = absolutePathProblem(path);
  if (problem) ctx.addIssue({ code: "custom", message: problem, input: path });
});

export function absolutePathProblem(path: string): string | undefined {
  if (path.includes("\0")) return "a path cannot contain a NUL character";
  if (!isAbsolute(path)) return `"${path}" is not an absolute path (it must start with /)`;
  if (path.split("/").includes("..")) return `"${path}" contains "..": write the path without it`;
  return undefined;
}

/** A host path mounted into cloisters (refs, sandbox.mounts): never one that exposes HOME, secrets or sockets. */
const mountSource = absolutePath.superRefine((path, ctx) => {
  const problem = configuredPathProblem(path);
  if (problem) ctx.addIssue({ code: "custom", message: problem, input: path });
});

/** A path inside the project, relative to its root, that must stay inside it. */
const projectRelativePath = text("a path relative to the project").superRefine((path, ctx) => {
  const problem = relativePathProblem(path);
  if (problem) ctx.addIssue({ code: "custom", message: problem, input: path });
});

export function relativePathProblem(path: string): string | undefined {
  if (path.trim() === "") return "a path cannot be empty";
  if (path.includes("\0")) return "a path cannot contain a NUL character";
  if (isAbsolute(path)) return `"${path}" is absolute; protect paths are relative to the project root, e.g. "Makefile" or "scripts/ci/"`;
  if (path.split("/").includes("..")) return `"${path}" contains "..": protect paths must stay inside the project`;
  return undefined;
}

/**
 * Where the cloister's own view is, which a configured mount must not cover: the project and the
 * refs (a mount point below /work would also be made in the host's project, and stay there), its
 * plumbing in /run (init, the guardian's socket, the trust bundle), and the kernel's /proc and /dev.
 */
const RESERVED_MOUNT_PLACES: readonly [string, string][] = [
  ["/work", "the project is there"],
  ["/refs", "the project's refs are there"],
  ["/run", "the cloister's own plumbing is there"],
  ["/proc", "the cloister's /proc is there"],
  ["/dev", "the cloister's devices are there"],
];

export function mountDestProblem(dest: string): string | undefined {
  const place = posix.normalize(dest).replace(/(.)\/$/, "$1");
  if (place === "/") return "dest cannot be / (it would hide the whole sandbox)";
  const reserved = RESERVED_MOUNT_PLACES.find(([dir]) => isUnder(place, dir));
  return reserved && `dest cannot be ${reserved[0]} or below it: ${reserved[1]}; mount it elsewhere (e.g. /data/NAME) and use it from there`;
}

const mount = z.strictObject(
  {
    src: mountSource,
    dest: absolutePath.superRefine((dest, ctx) => {
      const problem = mountDestProblem(dest);
      if (problem) ctx.addIssue({ code: "custom", message: problem, input: dest });
    }),
  },
  { error: (issue) => `expected a mapping {src: /host/path, dest: /sandbox/path}, found ${describeValue(issue.input)}` },
);

const safeName = (what: string) =>
  text(`a ${what} name`).regex(SAFE_NAME_RE, {
    error: (issue) =>
      `${JSON.stringify(issue.input)} is not a valid ${what} name: use lowercase letters, digits, ".", "_" and "-", starting with a letter or digit, at most 63 characters`,
  });



// ---------------------------------------------------------------------------------------------------
// Sections

export const DefaultsSchema = section({
  shell: absolutePath.default("/bin/bash"),
  network: bool.default(true),
  /** The agent `--agent` without a name opens, and that `cloister start` sets up beside the shell. */
  agent: defaultAgent.prefault("none"),
});

export { LIMIT_DEFAULTS };

export const LimitsSchema = section({
  memory: memoryValue.prefault(LIMIT_DEFAULTS.memory),
  pids: pidsValue.prefault(LIMIT_DEFAULTS.pids),
  cpu: cpuValue.prefault(LIMIT_DEFAULTS.cpu),
  tmpfs: tmpfsValue.prefault(LIMIT_DEFAULTS.tmpfs),
  timeout: timeoutValue.prefault(LIMIT_DEFAULTS.timeout),
});

/** In a project file every limit is optional: what is left out comes from the global config. */
export const ProjectLimitsSchema = section({
  memory: memoryValue.optional(),
  pids: pidsValue.optional(),
  cpu: cpuValue.optional(),
  tmpfs: tmpfsValue.optional(),
  timeout: timeoutValue.optional(),
});

export const SandboxSchema = section({
  protect: list(projectRelativePath, "paths relative to the project"),
  env: list(envName, "environment variable names"),
  mounts: list(mount, "mounts {src, dest}"),
});

// ---------------------------------------------------------------------------------------------------
// Egress

/**
 * One egress rule as written in config: `host[:ports]` text, or `{rule: TEXT, private: true}` to let
 * the rule reach loopback/private/link-local addresses. The text is checked by the same parser the
 * guardian uses, so a rule that would be refused there is refused here, with its file and line.
 */
export type RuleEntry = string | { rule: string; private: boolean };

function ruleProblem(text: string, isPrivate: boolean, list: RuleList): string | undefined {
  try {
    parseRule(text, { private: isPrivate, list });
    return undefined;
  } catch (error) {
    if (error instanceof RuleError || error instanceof HostSyntaxError) return error.message;
    throw error;
  }
}

const ruleText = (list: RuleList) =>
  text("a rule like example.com, *.example.com or example.com:8443").superRefine((rule, ctx) => {
    const problem = ruleProblem(rule, false, list);
    if (problem) ctx.addIssue({ code: "custom", message: problem, input: rule });
  });

const privateRule = (list: RuleList) =>
  z
    .strictObject(
      { rule: text("a rule like db.internal:5432"), private: bool.default(false) },
      {
        // Only for what is no mapping at all: a mapping with a stray key gets zod's own issue, named below.
        error: (issue) => (issue.code === "unrecognized_keys" ? undefined : `expected a rule (text) or a mapping {rule: TEXT, private: true}, found ${describeValue(issue.input)}`),
      },
    )
    .superRefine((entry, ctx) => {
      const problem = ruleProblem(entry.rule, entry.private, list);
      if (problem) ctx.addIssue({ code: "custom", message: problem, input: entry.rule, path: ["rule"] });
    });

/**
 * Text goes to the text schema, anything else to the mapping schema, so an error inside a mapping
 * keeps its path (`proxy.allow[0].private`) instead of being flattened into "matches neither".
 * Which list the entry is on only changes the words of a refusal (see parseRule).
 */
const ruleEntry = (list: RuleList) => {
  const asText = ruleText(list);
  const asMapping = privateRule(list);
  return z.unknown().transform((input, ctx): RuleEntry => {
    const result = typeof input === "string" ? asText.safeParse(input) : asMapping.safeParse(input);
    if (result.success) return result.data;
    for (const issue of result.error.issues) {
      if (issue.code === "unrecognized_keys") {
        // Each stray key by its own path, as unknown keys elsewhere (`proxy.allow[0].privat`).
        for (const key of issue.keys) ctx.addIssue({ code: "custom", message: `unknown key: a rule mapping has the keys rule and private`, path: [...issue.path, key], input });
      } else ctx.addIssue({ code: "custom", message: issue.message, path: issue.path, input: issue.input });
    }
    return z.NEVER;
  });
};

/** The built-in allowlist: AI APIs, package registries, documentation. Written into the template, never applied invisibly. */
export const DEFAULT_ALLOW: readonly string[] = [
  "api.anthropic.com",
  "api.openai.com",
  "generativelanguage.googleapis.com",
  "registry.npmjs.org",
  "registry.yarnpkg.com",
  "proxy.golang.org",
  "sum.golang.org",
  "pypi.org",
  "files.pythonhosted.org",
  "crates.io",
  "static.crates.io",
  "index.crates.io",
  "rubygems.org",
  "index.rubygems.org",
  "golang.org",
  "pkg.go.dev",
  "go.dev",
  "docs.rs",
  "doc.rust-lang.org",
  "docs.python.org",
  "developer.mozilla.org",
  "devdocs.io",
  "stackoverflow.com",
  "man7.org",
  "cppreference.com",
  "en.cppreference.com",
  "www.typescriptlang.org",
  "nodejs.org",
  "docs.docker.com",
  "kubernetes.io",
  "docs.npmjs.com",
];

/** `proxy.resolve`: host name → IP address, like curl's --resolve, applied by the guardian. */
const resolveMap = z.preprocess(
  (value) => value ?? {},
  z.record(
    text("a host name").superRefine((name, ctx) => {
      const problem = resolveNameProblem(name);
      if (problem) ctx.addIssue({ code: "custom", message: problem, input: name });
    }),
    text("an IP address").refine((ip) => isIP(ip) !== 0, { error: (issue) => `${JSON.stringify(issue.input)} is not an IP address (write e.g. 127.0.0.1 or ::1)` }),
    { error: (issue) => `expected a mapping of host names to IP addresses, found ${describeValue(issue.input)}` },
  ),
);

const inspectedHost = text("a host name")
  .superRefine((name, ctx) => {
    const problem = resolveNameProblem(name);
    if (problem) ctx.addIssue({ code: "custom", message: problem, input: name });
  })
  .transform((name) => (canonicalHost(name) as { name: string }).name);

export function resolveNameProblem(name: string): string | undefined {
  try {
    if (canonicalHost(name).kind !== "name") return `${JSON.stringify(name)} is an IP address; only names can be mapped`;
    return undefined;
  } catch (error) {
    if (error instanceof HostSyntaxError) return error.message;
    throw error;
  }
}


export const PROXY_DEFAULTS = {
  connect_timeout: "10s",
  idle_timeout: "10m",
  max_connections: 1024,
  max_header_size: "32KiB",
  max_headers: 100,
  unlisted: "ask",
  approval_timeout: "60s",
  audit_rate: 50,
  audit_burst: 5000,
} as const;

export const ProxySchema = section({
  allow: list(ruleEntry("allow"), "rules").default([...DEFAULT_ALLOW]),
  deny: list(ruleEntry("deny"), "rules").default([]),
  resolve: resolveMap,
  connect_timeout: parsed("a duration like 10s", positive("a connect timeout", parseDuration), formatDuration).prefault(PROXY_DEFAULTS.connect_timeout),
  idle_timeout: parsed("a duration like 10m", positive("an idle timeout", parseDuration), formatDuration).prefault(PROXY_DEFAULTS.idle_timeout),
  max_connections: parsed("a connection count like 1024", wholeNumber("connection count", 1, 1_000_000)).prefault(PROXY_DEFAULTS.max_connections),
  max_header_size: parsed("a size like 32KiB", (input) => wholeNumber("header size", 1024, 1024 * 1024)(parseSize(input)), writeSize).prefault(PROXY_DEFAULTS.max_header_size),
  max_headers: parsed("a header count like 100", wholeNumber("header count", 8, 10_000)).prefault(PROXY_DEFAULTS.max_headers),
  /** A host on no list: `ask` holds the request for a human (approval UI or CLI), `deny` refuses at once. */
  unlisted: z
    .enum(["ask", "deny"], { error: (issue) => `expected ask or deny, found ${describeValue(issue.input)}` })
    .default(PROXY_DEFAULTS.unlisted),
  approval_timeout: parsed("a duration like 60s", boundedDuration("an approval timeout"), formatDuration).prefault(PROXY_DEFAULTS.approval_timeout),
  /** Audit records per second one cloister may cause after a burst; past it, its new work waits (guardian/proxy/record-pace.ts). */
  audit_rate: parsed("a number of records per second like 50", wholeNumber("audit rate (records per second)", 1, 1_000_000)).prefault(PROXY_DEFAULTS.audit_rate),
  audit_burst: parsed("a record count like 5000", wholeNumber("audit burst (records)", 1, 10_000_000)).prefault(PROXY_DEFAULTS.audit_burst),
  /** Hosts intercepted without a secret of theirs (port 443), so a placeholder sent there is seen and blocked. */
  inspect: list(inspectedHost, "host names").default([]),
  /** An extra CA certificate file trusted for the origin side of intercepted connections (tests, a company gateway). */
  upstream_ca: absolutePath.nullable().default(null),
});

/** A project adds rules; the proxy's mechanics (timeouts, caps, name overrides) are the guardian's. */
export const ProjectProxySchema = section({
  allow: list(ruleEntry("allow"), "rules"),
  deny: list(ruleEntry("deny"), "rules"),
});

/** What the guardian writes after `cloister allow|deny` or an approval: rules only. */
export const DecisionsSchema = z.strictObject({ proxy: ProjectProxySchema, hostexec: ProjectHostexecSchema });

export const AuditSchema = section({
  max_size: parsed("a size like 64MiB", positive("an audit file size", parseSize), writeSize).prefault("64MiB"),
  keep: parsed("a file count like 10", wholeNumber("file count", 1, 10_000)).prefault(10),
});

/** Where the approval UI listens unless `ui.port` says otherwise (also while the config does not load). */
export const DEFAULT_UI_PORT = 9999;

/** The approval UI, served by the guardian on 127.0.0.1 only. */
export const UiSchema = section({
  /** 0 picks a free port (isolated instances, tests); `cloister ui` always prints the real URL. */
  port: parsed("a port like 9999", wholeNumber("port", 0, 65_535)).prefault(DEFAULT_UI_PORT),
});

export const RefsSchema = z.preprocess(
  (value) => value ?? {},
  z.record(safeName("ref"), mountSource, {
    error: (issue) => `expected a mapping of ref names to host paths, found ${describeValue(issue.input)}`,
  }),
);

export const globalSections = {
  defaults: DefaultsSchema,
  limits: LimitsSchema,
  sandbox: SandboxSchema,
  proxy: ProxySchema,
  audit: AuditSchema,
  ui: UiSchema,
  hostexec: HostexecSchema,
  agents: AgentsSchema,
};

export const projectSections = {
  path: absolutePath.optional(),
  refs: RefsSchema,
  sandbox: SandboxSchema,
  limits: ProjectLimitsSchema,
  proxy: ProjectProxySchema,
  hostexec: ProjectHostexecSchema,
};

export const GlobalConfigSchema = z.strictObject(globalSections).superRefine((config, ctx) => {
  const agent = config.defaults.agent;
  if (agent !== null && !agentNames(config.agents).includes(agent)) {
    ctx.addIssue({
      code: "custom",
      path: ["defaults", "agent"],
      message: `unknown agent ${JSON.stringify(agent)}: known agents are ${agentNames(config.agents).join(", ")} (declare others under agents:), or none`,
      input: agent,
    });
  }
});
export const ProjectConfigSchema = z.strictObject(projectSections);

export const ProjectNameSchema = safeName("project");

export type GlobalConfig = z.output<typeof GlobalConfigSchema>;
export type ProjectConfig = z.output<typeof ProjectConfigSchema>;
export type Limits = GlobalConfig["limits"];
export type SandboxExtras = GlobalConfig["sandbox"];
export type Mount = SandboxExtras["mounts"][number];
export type ProxySettings = GlobalConfig["proxy"];
export type Decisions = z.output<typeof DecisionsSchema>;

/** Global and project config merged: what a cloister actually runs with. */
export interface EffectiveConfig {
  defaults: GlobalConfig["defaults"];
  /** Bytes, process count, percent of one core, bytes, milliseconds; null = no limit. */
  limits: Limits;
  sandbox: SandboxExtras;
  /** Ref name → host path, mounted read-only at /refs/<name>. */
  refs: Record<string, string>;
  /** Global proxy settings; allow/deny are the global lists followed by the project's. */
  proxy: ProxySettings;
  audit: GlobalConfig["audit"];
  ui: GlobalConfig["ui"];
  /** Global limits; rules are the global ones followed by the project's. */
  hostexec: GlobalConfig["hostexec"];
  /** Custom agents and changes to the built-in ones (global config only). */
  agents: GlobalConfig["agents"];
}

export type ConfigKind = "global" | "project";

// ---------------------------------------------------------------------------------------------------
// Schema introspection, for "did you mean" hints

/**
 * The keys valid in the mapping at `path` (numeric segments step into lists), or undefined if the
 * path does not lead to a fixed-key mapping. Wrappers (default, optional, preprocess) are looked
 * through.
 */
export function keysAt(schema: z.core.$ZodType, path: readonly PropertyKey[]): string[] | undefined {
  let node: z.core.$ZodType | undefined = objectOf(schema);
  for (const segment of path) {
    node = node && childOf(node, segment);
    node = node && objectOf(node);
  }
  return node instanceof z.ZodObject ? Object.keys(node.shape) : undefined;
}

/** Every fixed key path in the schema, e.g. ["limits", "memory"]; lists and records are not entered. */
export function allKeyPaths(schema: z.core.$ZodType, prefix: string[] = []): string[][] {
  const object = objectOf(schema);
  if (!(object instanceof z.ZodObject)) return [];
  const shape = object.shape as Record<string, z.core.$ZodType>;
  return Object.entries(shape).flatMap(([key, child]) => [[...prefix, key], ...allKeyPaths(child, [...prefix, key])]);
}

/**
 * A parsed config written back as its files would say it: numbers that were "8GiB" or "10s" in units
 * again, "none" for a limit switched off (see writtenForm). What `config show` prints, so that its
 * output pasted into a config file reads back to the same configuration.
 */
export function asWritten(schema: z.core.$ZodType, value: unknown): unknown {
  const write = writerOf(schema);
  if (write) return write(value);
  const object = objectOf(schema);
  if (!(object instanceof z.ZodObject) || typeof value !== "object" || value === null || Array.isArray(value)) return value;
  const shape = object.shape as Record<string, z.core.$ZodType>;
  return Object.fromEntries(Object.entries(value).map(([key, child]) => [key, shape[key] ? asWritten(shape[key], child) : child]));
}

/** The written form registered on a value schema, looking through defaults and optional wrappers. */
function writerOf(schema: z.core.$ZodType): ((value: unknown) => unknown) | undefined {
  const entry = writtenForm.get(schema);
  // The registry holds each schema's own writer, which is only ever given that schema's values.
  if (entry) return entry.write as (value: unknown) => unknown;
  if (schema instanceof z.ZodOptional || schema instanceof z.ZodNullable || schema instanceof z.ZodDefault || schema instanceof z.ZodPrefault) return writerOf(schema.unwrap());
  return undefined;
}

/** Look through wrappers to the schema that decides the value's shape. */
function objectOf(schema: z.core.$ZodType): z.core.$ZodType {
  if (schema instanceof z.ZodOptional || schema instanceof z.ZodNullable) return objectOf(schema.unwrap());
  if (schema instanceof z.ZodDefault || schema instanceof z.ZodPrefault) return objectOf(schema.unwrap());
  if (schema instanceof z.ZodPipe) {
    // z.preprocess is pipe(transform, target): the target is the shape; for a transform, the input is.
    const out = objectOf(schema.out);
    return out instanceof z.ZodTransform ? objectOf(schema.in) : out;
  }
  return schema;
}

function childOf(schema: z.core.$ZodType, segment: PropertyKey): z.core.$ZodType | undefined {
  if (schema instanceof z.ZodObject) return (schema.shape as Record<string, z.core.$ZodType>)[String(segment)];
  if (schema instanceof z.ZodArray && typeof segment === "number") return schema.element;
  if (schema instanceof z.ZodRecord) return schema.valueType;
  return undefined;
}

