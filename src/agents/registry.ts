/**
 * The agents cloister knows: the built-in ones (Claude Code, Codex CLI, Gemini CLI) and the custom
 * ones declared under `agents:` in the global config, which may also adjust a built-in. Pure data:
 * finding an agent on the host, setting it up and running it live in the other modules here.
 */
import { CloisterError } from "../errors.js";
import { isUnder } from "../path-under.js";

export type CredentialKind = "api_key" | "oauth_token";

/** What an agent entry in config may say (see config/agents-schema.ts); every key is optional for a built-in. */
export interface AgentConfigEntry {
  command?: string;
  args: string[];
  env: string[];
  config_dirs: string[];
  credential?: { env: string };
  skip_permissions?: boolean;
  skip_permissions_args?: string[];
  instructions_file?: string;
  npm?: string;
}

export interface AgentDefinition {
  name: string;
  builtin: boolean;
  /** A name looked up on the host, or an absolute path. */
  command: string;
  /** Given before the user's arguments, every time. */
  args: string[];
  /** The npm package `cloister agent install` installs. */
  npmPackage?: string;
  /** Files and directories under HOME (relative, e.g. ".claude") copied from the host, filtered. */
  configPaths: string[];
  /**
   * Never copied from the host: credentials, caches, history, sessions. Paths relative to a config
   * path ("projects", "plugins/repos"), "*.suffix" for any file name ending so, "**​/name" for a
   * name at any depth, "**​/prefix*" for any name starting so.
   */
  exclude: string[];
  /** What the agent itself wrote in the cloister's HOME (sessions, history), kept across set-ups. */
  keep: string[];
  /** Arguments that switch the agent's own permission prompts off: the cloister is the boundary. */
  skipPermissionsArgs: string[];
  skipPermissions: boolean;
  /** Where the agent reads user-level instructions, relative to HOME; cloister appends its own. */
  instructionsFile?: string;
  /**
   * The variable each kind of credential is known by (a kind absent here is not supported): where
   * the agent reads it, and where `--pass-env-credential` takes it from on the host.
   */
  credentialEnv: Partial<Record<CredentialKind, string>>;
  /** Where the agent reads an API key from a file instead, relative to HOME (codex's auth.json). */
  credentialFile?: string;
  /** Fixed environment of the agent. */
  env: Record<string, string>;
  /** Host variables passed through by name (custom agents; secret-looking names are refused by the schema). */
  passEnv: string[];
  /** Where the agent's own installers put its command, relative to HOME. */
  nativePaths: string[];
}

/** File names that hold credentials in many tools: never copied, whatever the agent (`.env.local` and the like too). */
export const ALWAYS_EXCLUDED = ["**/.credentials.json", "**/credentials.json", "**/auth.json", "**/oauth_creds.json", "**/.env", "**/.env.*", "**/.git", "*.lock"];

const CLAUDE: AgentDefinition = {
  name: "claude",
  builtin: true,
  command: "claude",
  args: [],
  npmPackage: "@anthropic-ai/claude-code",
  configPaths: [".claude"],
  exclude: [
    "cache",
    "history.jsonl",
    "projects",
    "statsig",
    "telemetry",
    "todos",
    "shell-snapshots",
    "file-history",
    "debug",
    "downloads",
    "paste-cache",
    "session-env",
    "sessions",
    "plans",
    "tasks",
    "backups",
    "ide",
    "local",
    "stats-cache.json",
    ".last-cleanup",
    "plugins/repos",
    "plugins/install-counts-cache.json",
  ],
  keep: ["history.jsonl", "projects", "todos", "file-history", "plans", "tasks", "sessions", "shell-snapshots", "session-env", ".credentials.json"],
  skipPermissionsArgs: ["--dangerously-skip-permissions"],
  skipPermissions: true,
  instructionsFile: ".claude/CLAUDE.md",
  credentialEnv: { api_key: "ANTHROPIC_API_KEY", oauth_token: "CLAUDE_CODE_OAUTH_TOKEN" },
  env: {
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
    // The install is mounted read-only: an update could only fail.
    DISABLE_AUTOUPDATER: "1",
    // Claude Code refuses to skip its permission prompts as root unless told it is sandboxed; it is.
    IS_SANDBOX: "1",
  },
  passEnv: [],
  nativePaths: [".local/bin/claude", ".claude/local/node_modules/.bin/claude"],
};

const CODEX: AgentDefinition = {
  name: "codex",
  builtin: true,
  command: "codex",
  args: [],
  npmPackage: "@openai/codex",
  configPaths: [".codex"],
  exclude: ["history.jsonl", "sessions", "archived_sessions", "log", "logs", "tmp", "cache", "shell_snapshots", "*.sqlite", "*.sqlite-wal", "*.sqlite-shm", "models_cache.json", "version.json"],
  keep: ["history.jsonl", "sessions", "archived_sessions", "auth.json"],
  // codex 0.169's spelling (`codex --help`): no approvals, and none of codex's own sandbox, which
  // needs user namespaces that a cloister does not grant.
  skipPermissionsArgs: ["--dangerously-bypass-approvals-and-sandbox"],
  skipPermissions: true,
  instructionsFile: ".codex/AGENTS.md",
  credentialEnv: { api_key: "OPENAI_API_KEY" },
  credentialFile: ".codex/auth.json",
  env: {},
  passEnv: [],
  nativePaths: [],
};

const GEMINI: AgentDefinition = {
  name: "gemini",
  builtin: true,
  command: "gemini",
  args: [],
  npmPackage: "@google/gemini-cli",
  configPaths: [".gemini"],
  exclude: ["oauth_creds.json", "google_accounts.json", "google_account_id", "installation_id", "mcp-oauth-tokens.json", "a2a-oauth-tokens.json", "tmp", "history", "antigravity-browser-profile"],
  keep: ["tmp", "history"],
  skipPermissionsArgs: ["--yolo"],
  skipPermissions: true,
  instructionsFile: ".gemini/GEMINI.md",
  credentialEnv: { api_key: "GEMINI_API_KEY" },
  env: {},
  passEnv: [],
  nativePaths: [],
};

export const BUILTIN_AGENTS: Readonly<Record<string, AgentDefinition>> = { claude: CLAUDE, codex: CODEX, gemini: GEMINI };
export const BUILTIN_AGENT_NAMES = Object.keys(BUILTIN_AGENTS);

/** Every agent name known with this config: built-ins first, then custom ones. */
export function agentNames(config: Readonly<Record<string, unknown>>): string[] {
  return [...new Set([...BUILTIN_AGENT_NAMES, ...Object.keys(config)])];
}

/** The agent as this config defines it; an unknown name is a usage error that lists the known ones. */
export function resolveAgent(name: string, config: Readonly<Record<string, AgentConfigEntry>>): AgentDefinition {
  const base = BUILTIN_AGENTS[name];
  const entry = Object.hasOwn(config, name) ? config[name] : undefined;
  if (!base && !entry) throw unknownAgent(name, config);
  // A copy: callers may change what they get without changing the registry.
  return structuredClone(entry ? withConfig(base ?? customBase(name), entry) : (base as AgentDefinition));
}

/**
 * An agent's npm package given for its name (`agent install @anthropic-ai/claude-code`) is named as
 * such, with the agent it belongs to, if any.
 */
function unknownAgent(name: string, config: Readonly<Record<string, AgentConfigEntry>>): CloisterError {
  const names = agentNames(config);
  const packageOf = (agent: string): string | undefined => (Object.hasOwn(config, agent) ? config[agent]?.npm : undefined) ?? BUILTIN_AGENTS[agent]?.npmPackage;
  const owner = names.find((agent) => packageOf(agent) === name);
  if (owner) return new CloisterError(`${JSON.stringify(name)} is the npm package of ${owner}, not an agent's name`, `name the agent: ${owner}`);
  const known = `known agents: ${names.join(", ")}`;
  if (name.includes("/") || name.startsWith("@")) {
    return new CloisterError(`${JSON.stringify(name)} is not an agent's name`, `give the agent's name, not an npm package; ${known}; declare others under agents: with agents.NAME.npm`);
  }
  return new CloisterError(`unknown agent ${JSON.stringify(name)}`, `${known}; declare others under agents: in \`cloister config edit\``);
}

/** A custom agent starts from nothing: only what its config entry says. */
function customBase(name: string): AgentDefinition {
  return {
    name,
    builtin: false,
    command: name,
    args: [],
    configPaths: [],
    exclude: [],
    keep: [],
    skipPermissionsArgs: [],
    skipPermissions: true,
    credentialEnv: {},
    env: {},
    passEnv: [],
    nativePaths: [],
  };
}

function withConfig(base: AgentDefinition, entry: AgentConfigEntry): AgentDefinition {
  const credential = entry.credential
    ? { credentialEnv: { api_key: entry.credential.env, oauth_token: entry.credential.env }, credentialFile: undefined }
    : { credentialEnv: base.credentialEnv, credentialFile: base.credentialFile };
  return {
    ...base,
    ...credential,
    command: entry.command ?? base.command,
    args: [...base.args, ...entry.args],
    npmPackage: entry.npm ?? base.npmPackage,
    configPaths: outermostDirs([...base.configPaths, ...entry.config_dirs.map(homeRelative)]),
    skipPermissions: entry.skip_permissions ?? base.skipPermissions,
    skipPermissionsArgs: entry.skip_permissions_args ?? base.skipPermissionsArgs,
    instructionsFile: entry.instructions_file ? homeRelative(entry.instructions_file) : base.instructionsFile,
    passEnv: [...base.passEnv, ...entry.env],
  };
}

/** "~/.aider" → ".aider" (the schema only lets "~/..." through). */
function homeRelative(path: string): string {
  return path.replace(/^~\//, "").replace(/\/+$/, "");
}

/** Each directory once, and none inside another that is carried whole (the copies would collide). */
function outermostDirs(dirs: readonly string[]): string[] {
  const unique = [...new Set(dirs)];
  return unique.filter((dir) => !unique.some((other) => other !== dir && isUnder(dir, other)));
}

/** The arguments the agent always gets: its own, then the permission switch when it is on. */
export function fixedArgs(agent: AgentDefinition): string[] {
  return [...agent.args, ...(agent.skipPermissions ? agent.skipPermissionsArgs : [])];
}
