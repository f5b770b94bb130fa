/**
 * The `agents:` config section: custom agents, and changes to the built-in ones (claude, codex,
 * gemini). Each entry is strict like the rest of the config; a custom agent must name its command.
 */
import { z } from "zod";
import { BUILTIN_AGENT_NAMES, type AgentConfigEntry } from "../agents/registry.js";
import { credentialEnvProblem, envName } from "./env-names.js";
import { bool, describeValue, list, text } from "./schema-kit.js";

/** Agent names also name vault entries (`claude.api_key`) and guardian routes: kept plain. */
export const AGENT_NAME_RE = /^[a-z][a-z0-9-]{0,31}$/;

function checked(expected: string, problem: (value: string) => string | undefined) {
  return text(expected).superRefine((value, ctx) => {
    const message = problem(value);
    if (message) ctx.addIssue({ code: "custom", message, input: value });
  });
}

/** "~/.aider": under HOME, so that what is copied is the user's own agent config and nothing else. */
export function homePathProblem(path: string): string | undefined {
  if (!path.startsWith("~/") || path.length === 2) return `"${path}" must be a path under your home directory, written ~/...`;
  if (path.includes("\0")) return "a path cannot contain a NUL character";
  if (path.split("/").some((part) => part === ".." || part === ".")) return `"${path}" contains "." or "..": write the path without it`;
  return undefined;
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
    config_dirs: list(homePath, "paths like ~/.aider"),
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
export const defaultAgent = z.preprocess(
  (value) => (value === null || (typeof value === "string" && value.trim().toLowerCase() === "none") ? null : value),
  agentName.nullable(),
);

export type AgentsConfig = Record<string, AgentConfigEntry>;
