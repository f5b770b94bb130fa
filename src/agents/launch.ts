/**
 * An agent from name to running process: which agent (registry), where it is (locate), its
 * credential, the set-up of the cloister's HOME before the cloister starts, and the command that
 * starts it inside. The launcher is a small script in the cloister's agent-bin directory (on PATH
 * inside), so `claude` typed in the cloister's shell starts it the same way.
 */
import { chmodSync, symlinkSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { basename, join } from "node:path";
import type { CloisterPaths } from "../config/paths.js";
import { CloisterError } from "../errors.js";
import { systemEntries } from "../sandbox/bwrap/host-facts.js";
import { AGENT_BIN_PATH } from "../sandbox/bwrap/mounts.js";
import { credentialDelivery, type CredentialSources, type Delivery } from "./credentials.js";
import { locateAgent, managedAgentsDir, type AgentLocation, type LocateContext } from "./locate.js";
import { writeAgentMarker } from "./marker.js";
import { npmGlobalPrefix } from "./npm-prefix.js";
import { fixedArgs, resolveAgent, type AgentConfigEntry, type AgentDefinition } from "./registry.js";
import { setUpAgentHome } from "./setup.js";

export interface AgentPlan {
  agent: AgentDefinition;
  location: AgentLocation;
  delivery: Delivery;
}

export function locateContext(paths: CloisterPaths, env: NodeJS.ProcessEnv = process.env): LocateContext {
  let prefix: { value: string | undefined } | undefined;
  return {
    hostHome: env.HOME || homedir(),
    pathEnv: env.PATH ?? "",
    managedDir: managedAgentsDir(paths.dataDir),
    npmPrefix: () => (prefix ??= { value: npmGlobalPrefix(paths.stateDir, env) }).value,
    systemDirs: systemEntries().map((entry) => entry.path),
  };
}

/** The agent, found on the host, with its credential; a usage error (exit 125) when it is unknown or not installed. */
export async function planAgent(name: string, config: Readonly<Record<string, AgentConfigEntry>>, ctx: LocateContext, credentials: CredentialSources): Promise<AgentPlan> {
  const agent = resolveAgent(name, config);
  const location = locateAgent(agent, ctx);
  if (!location) throw notFound(agent);
  return { agent, location, delivery: await credentialDelivery(agent, credentials) };
}

function notFound(agent: AgentDefinition): CloisterError {
  if (agent.command.startsWith("/")) return new CloisterError(`${agent.name}: ${agent.command} is not an executable file`, installHint(agent));
  const where = `looked on your PATH${agent.nativePaths.length > 0 ? `, in ${agent.nativePaths.map((p) => `~/${p}`).join(", ")}` : ""}, in npm's global prefix and in cloister's managed copies`;
  return new CloisterError(`${agent.name} is not installed (${where})`, installHint(agent));
}

/** What makes an agent that is not found there: `cloister agent install` only for one with an npm package. */
export function installHint(agent: AgentDefinition): string {
  if (agent.command.startsWith("/")) return `fix agents.${agent.name}.command in \`cloister config edit\``;
  return agent.npmPackage
    ? `install it with \`cloister agent install ${agent.name}\`, npm package ${agent.npmPackage}, or put ${agent.command} on your PATH`
    : `put ${agent.command} on your PATH, or set agents.${agent.name}.command to its absolute path`;
}

export interface PrepareDirs {
  homeDir: string;
  runtimeDir: string;
  /** Host directory bound read-only at AGENT_BIN_PATH inside. */
  binDir: string;
}

export interface AgentContext {
  hostHome: string;
  hostEnv: NodeJS.ProcessEnv;
  cloisterHome: string;
  projectRoot: string;
  network: boolean;
  notes: string[];
}

/** Sets the agent up in the cloister's HOME and writes its launcher; runs before the cloister starts. */
export function prepareAgent(plan: AgentPlan, dirs: PrepareDirs, context: AgentContext): void {
  setUpAgentHome({ agent: plan.agent, homeDir: dirs.homeDir, delivery: plan.delivery, hostHome: context.hostHome, cloisterHome: context.cloisterHome, projectRoot: context.projectRoot, network: context.network, notes: context.notes });
  const command = launcherName(plan.agent);
  writeFileSync(join(dirs.binDir, command), launcherScript(plan.agent, plan.location, context.hostEnv), { mode: 0o755 });
  chmodSync(join(dirs.binDir, command), 0o755);
  for (const link of plan.location.links) if (link.name !== command) symlinkSync(link.target, join(dirs.binDir, link.name));
  writeAgentMarker(dirs.runtimeDir, { name: plan.agent.name, command });
}

/** The launcher is named like the command, so typing `claude` in the cloister's shell finds it. */
export function launcherName(agent: AgentDefinition): string {
  return basename(agent.command);
}

/** The launcher: the agent's fixed environment and arguments, then the user's arguments. */
export function launcherScript(agent: AgentDefinition, location: AgentLocation, hostEnv: NodeJS.ProcessEnv): string {
  const passed = Object.fromEntries(agent.passEnv.flatMap((name) => (hostEnv[name] === undefined ? [] : [[name, hostEnv[name] as string]])));
  const exports = Object.entries({ ...passed, ...agent.env }).map(([name, value]) => `export ${name}=${shellQuote(value)}\n`);
  return `#!/bin/sh\n# ${agent.name} as cloister set it up for this cloister.\n${exports.join("")}exec ${[location.exec, ...fixedArgs(agent)].map(shellQuote).join(" ")} "$@"\n`;
}

export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** The command line that starts the agent inside. */
export function agentArgv(command: string, args: readonly string[]): string[] {
  return [`${AGENT_BIN_PATH}/${command}`, ...args];
}
