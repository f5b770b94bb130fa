/**
 * Agents as the library (cloister.ts) uses them: which agent a new cloister gets set up for, and how
 * to start the agent of a running one. A new cloister is set up for the agent asked for, or for
 * `start`, the configured default agent (best effort: a missing default only earns a warning). A
 * running cloister can only start the agent it was set up for: its install is mounted at start.
 */
import type { CloisterPaths } from "../config/paths.js";
import type { EffectiveConfig } from "../config/schema.js";
import { CloisterError } from "../errors.js";
import type { AgentLaunchSpec } from "../sandbox/engine.js";
import type { CloisterRecord } from "../sandbox/records.js";
import { credentialDelivery, type CredentialLookup } from "./credentials.js";
import { agentArgv, launcherName, locateContext, planAgent, prepareAgent } from "./launch.js";
import { readAgentMarker } from "./marker.js";
import { resolveAgent } from "./registry.js";

/** How to start the agent of a cloister. */
export interface AgentSession {
  name: string;
  /** The command line that starts the agent with these arguments. */
  argv(args: readonly string[]): string[];
  /** What the agent's process gets on top of the cloister's environment (its credential). */
  env: Record<string, string>;
}

export interface AgentRequest {
  /** An agent name; true = config `defaults.agent`; undefined = none asked for. */
  agent?: string | true;
  credentials?: CredentialLookup;
  passEnvCredential?: boolean;
  warn: (message: string) => void;
  /** The launch's: the credential lookup ends when it aborts. */
  signal?: AbortSignal;
}

export async function agentForNewCloister(
  request: AgentRequest,
  setting: { cloisterId: string; persistent: boolean; config: EffectiveConfig; paths: CloisterPaths; projectRoot: string; network: boolean; cloisterHome: string },
): Promise<{ spec: AgentLaunchSpec; session: AgentSession } | undefined> {
  const name = request.agent === undefined ? (setting.persistent ? setting.config.defaults.agent : null) : wantedName(request.agent, setting.config);
  if (!name) return undefined;
  const ctx = locateContext(setting.paths);
  let plan;
  try {
    plan = await planAgent(name, setting.config.agents, ctx, credentialSources(request, setting.cloisterId));
  } catch (error) {
    // An abort is the launch's end, not a default agent to start without.
    if (request.agent !== undefined || request.signal?.aborted || !(error instanceof CloisterError)) throw error;
    request.warn(`the default agent is not set up: ${error.oneLine()}`);
    return undefined;
  }
  const ready = plan;
  const notes: string[] = [];
  const spec: AgentLaunchSpec = {
    mounts: ready.location.mounts,
    prepare: (dirs) => {
      prepareAgent(ready, dirs, { hostHome: ctx.hostHome, hostEnv: process.env, cloisterHome: setting.cloisterHome, projectRoot: setting.projectRoot, network: setting.network, notes });
      for (const note of notes) request.warn(`${name} set-up: ${note}`);
    },
  };
  return { spec, session: session(name, launcherName(ready.agent), ready.delivery.env) };
}

export async function agentForRunningCloister(record: CloisterRecord, request: AgentRequest, config: EffectiveConfig): Promise<AgentSession | undefined> {
  const marker = readAgentMarker(record.runtimeDir);
  if (request.agent !== undefined) {
    const wanted = wantedName(request.agent, config);
    if (marker?.name !== wanted) {
      throw new CloisterError(
        `cloister ${record.name} is running ${marker ? `set up for ${marker.name}` : "without an agent"}, not ${wanted}: an agent is set up when its cloister starts`,
        `stop it with \`cloister stop ${record.name}\`, then start it again with options.agent ${wanted}`,
      );
    }
  }
  if (!marker) return undefined;
  try {
    const agent = resolveAgent(marker.name, config.agents);
    return session(marker.name, marker.command, (await credentialDelivery(agent, credentialSources(request, record.id))).env);
  } catch (error) {
    // Only the agent itself needs its credential; a shell or `exec` runs without it rather than not at
    // all. An abort is no missing credential: the caller called it off.
    if (request.agent !== undefined || request.signal?.aborted) throw error;
    request.warn(`${marker.name}'s credential is not available: ${error instanceof CloisterError ? error.oneLine() : String(error)}`);
    return session(marker.name, marker.command, {});
  }
}

function wantedName(agent: string | true, config: EffectiveConfig): string {
  if (agent !== true) return agent;
  if (config.defaults.agent) return config.defaults.agent;
  throw new CloisterError("no agent named and no default agent configured", "name one (options.agent claude), or set defaults.agent in `cloister config edit`");
}

function credentialSources(request: AgentRequest, cloisterId: string) {
  return { lookup: request.credentials, cloisterId, passEnv: request.passEnvCredential ?? false, hostEnv: process.env, warn: request.warn, signal: request.signal };
}

function session(name: string, command: string, env: Record<string, string>): AgentSession {
  return { name, argv: (args) => agentArgv(command, args), env };
}
