/**
 * How an agent's credential reaches it in the cloister. `deliverCredential` is the one place that
 * decides (an environment variable, or a file in the cloister's private HOME, the way each agent
 * reads it); swapping it (e.g. for placeholders the guardian replaces on egress) changes nothing for
 * the agents. Where the value comes from is the caller's `CredentialLookup` (the guardian's vault);
 * the host environment is used only when asked for explicitly, with a warning.
 */
import { CloisterError } from "../errors.js";
import { untilAborted } from "../abort.js";
import type { AgentDefinition, CredentialKind } from "./registry.js";

export interface Credential {
  kind: CredentialKind;
  value: string;
  /**
   * From the vault: false when it is the real value, handed out for want of an injection rule (a
   * custom agent's), true for the cloister's placeholder. Absent elsewhere (the host environment).
   */
  placeholder?: boolean;
}

/**
 * Where stored credentials come from (the guardian's vault); undefined when none is stored for the
 * agent. The guardian answers with the cloister's own placeholder when its broker swaps the secret in
 * on egress (the default for the built-in agents), so the cloister never holds the real value.
 * `options.signal` is the launch's: it aborts when the launch is called off (Ctrl-C), and a lookup
 * that heeds it stops its request then. The launch ends at the abort whether or not it does.
 */
export type CredentialLookup = (agent: string, cloisterId: string, options?: CredentialLookupOptions) => Promise<Credential | undefined>;

export interface CredentialLookupOptions {
  signal?: AbortSignal;
}

export interface Delivery {
  /** Variables set for the agent's process. */
  env: Record<string, string>;
  /** Files written in the cloister's HOME (paths relative to it), readable by the user only. */
  files: { path: string; content: string }[];
}

export const NO_DELIVERY: Delivery = { env: {}, files: [] };

export function deliverCredential(agent: AgentDefinition, credential: Credential): Delivery {
  if (agent.credentialFile && credential.kind === "api_key") {
    // Codex reads its API key from ~/.codex/auth.json, as `codex login --with-api-key` writes it.
    return { env: {}, files: [{ path: agent.credentialFile, content: `${JSON.stringify({ auth_mode: "apikey", OPENAI_API_KEY: credential.value }, null, 2)}\n` }] };
  }
  const variable = agent.credentialEnv[credential.kind];
  if (!variable) {
    const kinds = Object.keys(agent.credentialEnv).map((kind) => kind.replace("_", " "));
    const secret = `${agent.name}.${credential.kind}`;
    throw new CloisterError(
      `${agent.name} cannot use the stored ${credential.kind.replace("_", " ")} (${secret})${kinds.length > 0 ? "" : ": no variable is declared for it"}`,
      kinds.length > 0 ? `${agent.name} takes: ${kinds.join(" or ")}` : `declare one with agents.${agent.name}.credential.env in \`cloister config edit\`, or remove it with \`cloister secret rm ${secret}\``,
    );
  }
  return { env: { [variable]: credential.value }, files: [] };
}

/** The agent's credential from the host's environment (ANTHROPIC_API_KEY, ...), with the variable it came from. */
export function hostEnvCredential(agent: AgentDefinition, env: NodeJS.ProcessEnv): { credential: Credential; variable: string } | undefined {
  for (const [kind, variable] of Object.entries(agent.credentialEnv) as [CredentialKind, string][]) {
    const value = env[variable];
    if (value) return { credential: { kind, value }, variable };
  }
  return undefined;
}

export interface CredentialSources {
  lookup?: CredentialLookup;
  /** The cloister the credential is for (placeholders are unique per cloister). */
  cloisterId: string;
  /** `--pass-env-credential`: the host environment's credential wins, with a warning. */
  passEnv: boolean;
  hostEnv: NodeJS.ProcessEnv;
  warn: (message: string) => void;
  /** The launch's: ends the wait for `lookup` when the launch is called off. */
  signal?: AbortSignal;
}

/**
 * The agent's credential (findCredential), the way it reads it (deliverCredential). A stored real
 * value is said to enter the cloister as it is, once it is sure to: not before a delivery that fails.
 */
export async function credentialDelivery(agent: AgentDefinition, sources: CredentialSources): Promise<Delivery> {
  const credential = await findCredential(agent, sources);
  if (!credential) return NO_DELIVERY;
  const delivery = deliverCredential(agent, credential);
  if (credential.placeholder === false) {
    const secret = `${agent.name}.${credential.kind}`;
    sources.warn(`${agent.name}'s stored credential enters the cloister as it is (no injection rule for ${secret}); to keep it in the guardian: cloister secret set ${secret} --host API_HOST --header "Authorization: Bearer {}"`);
  }
  return delivery;
}

export async function findCredential(agent: AgentDefinition, sources: CredentialSources): Promise<Credential | undefined> {
  if (sources.passEnv) {
    const fromEnv = hostEnvCredential(agent, sources.hostEnv);
    if (fromEnv) {
      sources.warn(`passing ${fromEnv.variable} from your environment into the cloister, as asked: ${agent.name} and everything it runs can read it`);
      return fromEnv.credential;
    }
    const names = Object.values(agent.credentialEnv);
    sources.warn(`no credential in your environment, where it was asked for: ${names.length > 0 ? `${[...new Set(names)].join(" and ")} ${names.length > 1 ? "are" : "is"} not set` : `${agent.name} has no credential variable`}; looking for a stored credential`);
  }
  if (!sources.lookup) return undefined;
  // Not asked at all once aborted; raced, not only passed on, while it runs: a lookup written without
  // the signal (the vault behind a keyring prompt) must not hold a Ctrl-C'd launch for as long as it takes.
  const { signal } = sources;
  signal?.throwIfAborted();
  return untilAborted(sources.lookup(agent.name, sources.cloisterId, { signal }), signal);
}
