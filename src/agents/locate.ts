/**
 * Finding an agent's command on the host, and what of it a cloister must see. The cloister already
 * sees the system directories read-only (/usr, /opt, ...), but not HOME: an agent installed under
 * HOME (native installer, npm prefix in HOME, nvm, cloister's managed copies) is bound read-only at
 * the same path, the real install rather than the link that led to it.
 */
import { closeSync, existsSync, openSync, readFileSync, readSync, realpathSync } from "node:fs";
import { basename, dirname, isAbsolute, join, sep } from "node:path";
import { CloisterError } from "../errors.js";
import { isUnder } from "../path-under.js";
import type { AgentDefinition } from "./registry.js";
import { isExecutableFile } from "../sandbox/native.js";

export type FoundHow = "config" | "PATH" | "native" | "npm" | "managed";

export interface AgentLocation {
  how: FoundHow;
  /** Where it was found, before resolving links. */
  path: string;
  realPath: string;
  /** What to run inside the cloister (a path it sees). */
  exec: string;
  /** Host paths to bind read-only at the same path inside. */
  mounts: string[];
  /** Programs the agent needs by name inside (its script's interpreter): name → path it sees. */
  links: { name: string; target: string }[];
  version?: string;
}

export interface LocateContext {
  hostHome: string;
  /** The PATH of the user running cloister. */
  pathEnv: string;
  /** `<dataDir>/agents`: managed copies, one npm prefix per agent. */
  managedDir: string;
  /** The npm global prefix, if npm is installed (asked lazily: it costs a process). */
  npmPrefix: () => string | undefined;
  /** Directories every cloister sees read-only already. */
  systemDirs: readonly string[];
}

/** Cloister's managed copies of agents, under its data dir. */
export function managedAgentsDir(dataDir: string): string {
  return join(dataDir, "agents");
}

/** Where `cloister agent install NAME` puts the agent: an npm prefix of its own. */
export function managedPrefix(managedDir: string, name: string): string {
  return join(managedDir, name);
}

/** The command of the agent's managed copy: there once `cloister agent install NAME` has installed it. */
export function managedCommand(managedDir: string, agent: AgentDefinition): string {
  return prefixCommand(managedPrefix(managedDir, agent.name), agent);
}

/** Where `npm install --prefix PREFIX` puts the agent's command. */
export function prefixCommand(prefix: string, agent: AgentDefinition): string {
  return join(prefix, "node_modules", ".bin", agent.command);
}

/** The agent as installed on this host, or undefined when it is nowhere to be found. */
export function locateAgent(agent: AgentDefinition, ctx: LocateContext): AgentLocation | undefined {
  const found = findCommand(agent, ctx);
  return found && describe(found.path, found.how, agent, ctx);
}

function findCommand(agent: AgentDefinition, ctx: LocateContext): { path: string; how: FoundHow } | undefined {
  if (isAbsolute(agent.command)) return isExecutableFile(agent.command) ? { path: agent.command, how: "config" } : undefined;
  const candidates: [FoundHow, () => string[]][] = [
    ["PATH", () => ctx.pathEnv.split(":").filter((dir) => isAbsolute(dir)).map((dir) => join(dir, agent.command))],
    ["native", () => agent.nativePaths.map((rel) => join(ctx.hostHome, rel))],
    ["npm", () => {
      const prefix = ctx.npmPrefix();
      return prefix ? [join(prefix, "bin", agent.command)] : [];
    }],
    ["managed", () => [managedCommand(ctx.managedDir, agent)]],
  ];
  for (const [how, paths] of candidates) {
    const path = paths().find(isExecutableFile);
    if (path) return { path, how };
  }
  return undefined;
}

function describe(path: string, how: FoundHow, agent: AgentDefinition, ctx: LocateContext): AgentLocation {
  const realPath = realpathSync(path);
  const mounts: string[] = [];
  const root = venvRoot(realPath, ctx) ?? mountRoot(realPath, ctx);
  if (root) mounts.push(root);
  // A link that lives inside the mounted tree (node_modules/.bin/claude) keeps the command's name.
  const exec = isVisible(path, ctx, mounts) && realpathOf(dirname(path)) === dirname(path) ? path : realPath;
  const links: AgentLocation["links"] = [];
  const interpreter = scriptInterpreter(realPath);
  if (interpreter) {
    const resolved = resolveInterpreter(interpreter, ctx);
    if (!resolved) {
      const managed = agent.npmPackage ? `, or run \`cloister agent install ${agent.name}\`` : "";
      throw new CloisterError(`${agent.name} (${realPath}) is a script for ${interpreter.name}, which is not on your PATH`, `install ${interpreter.name}${managed}`);
    }
    // A venv's python is a link to the system's, but only works from inside its venv (pyvenv.cfg).
    const venv = interpreter.path ? venvRoot(interpreter.path, ctx) : undefined;
    const interpreterRoot = mountRoot(resolved, ctx);
    for (const extra of [venv, interpreterRoot]) if (extra && !mounts.some((m) => isUnder(extra, m))) mounts.push(extra);
    if (interpreter.byName && interpreterRoot) links.push({ name: interpreter.name, target: resolved });
  }
  return { how, path, realPath, exec, mounts, links, version: agentVersion(realPath, root) };
}

function realpathOf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/**
 * What to bind for a program at `realPath`: nothing when the system view has it; else the outermost
 * node_modules directory above it (an npm package needs its dependencies and platform binaries,
 * which npm may have put beside it or below it); else the file alone. Never HOME or above.
 */
export function mountRoot(realPath: string, ctx: Pick<LocateContext, "systemDirs" | "hostHome">): string | undefined {
  if (ctx.systemDirs.some((dir) => isUnder(realPath, dir))) return undefined;
  const parts = realPath.split(sep);
  const index = parts.indexOf("node_modules");
  const tree = index > 0 ? parts.slice(0, index + 1).join(sep) : undefined;
  if (tree && !isUnder(ctx.hostHome, tree)) return tree;
  return realPath;
}

/** The Python virtual environment `path` is in (pipx, uv tool: VENV/bin/program), if any and not already visible. */
export function venvRoot(path: string, ctx: Pick<LocateContext, "systemDirs" | "hostHome">): string | undefined {
  const venv = dirname(dirname(path));
  if (!existsSync(join(venv, "pyvenv.cfg")) || isUnder(ctx.hostHome, venv)) return undefined;
  return ctx.systemDirs.some((dir) => isUnder(venv, dir)) ? undefined : venv;
}

function isVisible(path: string, ctx: LocateContext, mounts: readonly string[]): boolean {
  return [...ctx.systemDirs, ...mounts].some((dir) => isUnder(path, dir));
}


/** `#!/usr/bin/env node` → node, looked up by name; `#!/opt/node/bin/node` → that path. */
export function scriptInterpreter(path: string): { name: string; byName: boolean; path?: string } | undefined {
  const head = readHead(path, 256);
  if (!head.startsWith("#!")) return undefined;
  const words = head.slice(2).split("\n")[0]?.trim().split(/\s+/) ?? [];
  const [program, ...rest] = words;
  if (!program) return undefined;
  if (basename(program) !== "env") return { name: basename(program), byName: false, path: program };
  const name = rest.find((word) => !word.startsWith("-") && !word.includes("="));
  return name ? { name, byName: true } : undefined;
}

function resolveInterpreter(interpreter: { name: string; byName: boolean; path?: string }, ctx: LocateContext): string | undefined {
  const candidates = interpreter.path ? [interpreter.path] : ctx.pathEnv.split(":").filter((dir) => isAbsolute(dir)).map((dir) => join(dir, interpreter.name));
  const found = candidates.find(isExecutableFile);
  return found && realpathSync(found);
}

function readHead(path: string, bytes: number): string {
  const fd = openSync(path, "r");
  try {
    const buffer = Buffer.alloc(bytes);
    return buffer.subarray(0, readSync(fd, buffer, 0, bytes, 0)).toString("latin1");
  } finally {
    closeSync(fd);
  }
}

/** The version, when a file says it: the npm package's package.json, or a native install named by its version. */
function agentVersion(realPath: string, root: string | undefined): string | undefined {
  if (/^\d+\.\d+\.\d+([-+][\w.]+)?$/.test(basename(realPath))) return basename(realPath);
  return readPackageVersion(dirname(realPath), root ?? "/");
}

/** The version in the nearest package.json above `dir` (a few levels, not above `stopAt`). */
export function readPackageVersion(dir: string, stopAt: string): string | undefined {
  for (let current = dir, level = 0; level < 4 && isUnder(current, stopAt); current = dirname(current), level++) {
    try {
      const version: unknown = (JSON.parse(readFileSync(join(current, "package.json"), "utf8")) as { version?: unknown }).version;
      return typeof version === "string" ? version : undefined;
    } catch {
      // No package.json here (or not JSON): look one level up.
    }
    if (current === dirname(current)) break;
  }
  return undefined;
}
