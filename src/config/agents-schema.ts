/**
 * The `agents:` config section: custom agents, and changes to the built-in ones (claude, codex,
 * gemini). Each entry is strict like the rest of the config; a custom agent must name its command.
 */
import { z } from "zod";
import { BUILTIN_AGENT_NAMES, type AgentConfigEntry } from "../agents/registry.js";
import { credentialEnvProblem, envName } from "./env-names.js";
import { bool, describeValue, list, text, writtenForm } from "./schema-kit.js";
import { isUnder } from "../path-under.js";
import { HOME_SECRET_STORES } from "../sandbox/host-exposure.js";

/** Agent names also name vault entries (`claude.api_key`) and guardian routes: kept plain. */
export const AGENT_NAME_RE = /^[a-z][a-z0-9-]{0,31}$/;

function checked(expected: string, problem: (value: string) => string | undefined) {
  return text(expected).superRefine((value, ctx) => {
    const message = problem(value);
    if (message) ctx.addIssue({ code: "custom", message, input: value });
  });
}

/** Relative to HOME, where cloister keeps its own files (default XDG locations): never carried into a cloister. */
const CLOISTER_HOME_DIRS = [".config/cloister", ".local/state/cloister", ".local/share/cloister"];

/**
 * "~/.aider": under HOME, so that what is copied is the user's own agent config and nothing else:
 * not a place where keys and tokens are kept, nor a directory holding one (`~/.config` holds gh's
 * token), nor cloister's own files.
 */
export function homePathProblem(path: string): string | undefined {
  if (!path.startsWith("~/") || path.length === 2) return `"${path}" must be a path under your home directory, written ~/...`;
  if (path.includes("\0")) return "a path cannot contain a NUL character";
  const rel = homeRelative(path);
  if (rel.split("/").some((part) => part === ".." || part === "." || part === "")) return `"${path}" contains "." , ".." or "//": write the path without it`;
  const secret = HOME_SECRET_STORES.find((store) => isUnder(rel, store) || isUnder(store, rel));
  if (secret !== undefined) return `"${path}" ${isUnder(rel, secret) ? "is in" : "holds"} ~/${secret}, where secrets are kept: name the agent's own directory instead`;
  const own = CLOISTER_HOME_DIRS.find((dir) => isUnder(rel, dir) || isUnder(dir, rel));
  if (own !== undefined) return `"${path}" overlaps cloister's own files (~/${own})`;
  return undefined;
}

/** `~/a/b/` -> `a/b`: the same directory however it is written. */
function homeRelative(path: string): string {
  return path.slice(2).replace(/\/+$/, "");
}

/** Config dirs are copied one into the other's place: the same directory twice, or one inside another, would collide. */
function overlappingConfigDirs(dirs: readonly string[], ctx: z.RefinementCtx): void {
  dirs.forEach((dir, i) => {
    const earlier = dirs.slice(0, i).find((other) => isUnder(homeRelative(dir), homeRelative(other)) || isUnder(homeRelative(other), homeRelative(dir)));
    if (earlier !== undefined) {
      ctx.addIssue({ code: "custom", path: [i], input: dir, message: `"${dir}" overlaps "${earlier}", listed before it: list each directory once, and not one inside another` });
    }
  });
}

export function commandProblem(command: string): string | undefined {
  if (command.trim() === "" || command.includes("\0")) return "a command cannot be empty or contain a NUL character";
  if (command.includes("/") && !command.startsWith("/")) return `"${command}" must be a command name (looked up on PATH) or an absolute path`;
  return undefined;
}

const homePath = checked("a path like ~/.aider", homePathProblem);
const argument = text("an argument (text)");

const AgentEntrySchema = z.strictObject(
  {
    command: checked("a command name or an absolute path", commandProblem).optional(),
    args: list(argument, "arguments"),
    env: list(envName, "environment variable names"),
    config_dirs: list(homePath, "paths like ~/.aider").superRefine(overlappingConfigDirs),
    credential: z
      .strictObject(
        { env: checked("an environment variable name", credentialEnvProblem) },
        { error: (issue) => `expected a mapping {env: NAME}, found ${describeValue(issue.input)}` },
      )
      .optional(),
    skip_permissions: bool.optional(),
    skip_permissions_args: z.array(argument, { error: (issue) => `expected a list of arguments, found ${describeValue(issue.input)}` }).optional(),
    instructions_file: homePath.optional(),
    npm: checked("an npm package name like @scope/name", (name) => (/^(@[a-z0-9][\w.-]*\/)?[a-z0-9][\w.-]*$/.test(name) ? undefined : `"${name}" is not an npm package name`)).optional(),
  },
  { error: (issue) => `expected a mapping of agent settings, found ${describeValue(issue.input)}` },
);

const agentName = text("an agent name").regex(AGENT_NAME_RE, {
  error: (issue) => `${JSON.stringify(issue.input)} is not a valid agent name: use lowercase letters, digits and "-", starting with a letter, at most 32 characters`,
});

export const AgentsSchema = z.preprocess(
  (value) => value ?? {},
  z
    .record(agentName, z.preprocess((value) => value ?? {}, AgentEntrySchema), {
      error: (issue) => `expected a mapping of agent names to settings, found ${describeValue(issue.input)}`,
    })
    .superRefine((agents, ctx) => {
      for (const [name, entry] of Object.entries(agents)) {
        if (entry.command === undefined && !BUILTIN_AGENT_NAMES.includes(name)) {
          ctx.addIssue({
            code: "custom",
            path: [name, "command"],
            message: `a custom agent needs a command (the built-in agents are ${BUILTIN_AGENT_NAMES.join(", ")})`,
            input: entry,
          });
        }
      }
    }),
);

/** `defaults.agent`: an agent name, or none. Whether the name is known is checked with the whole file. */
export const defaultAgent = z
  .preprocess(
    (value) => (value === null || (typeof value === "string" && value.trim().toLowerCase() === "none") ? null : value),
    agentName.nullable(),
  )
  .register(writtenForm, { write: (agent: string | null) => agent ?? "none" });

export type AgentsConfig = Record<string, AgentConfigEntry>;
