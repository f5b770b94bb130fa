import { CloisterError } from "../../errors.js";
import type { Vault } from "./vault.js";

/**
 * An agent's credential in the vault, under a name derived from the agent: `claude.oauth_token` or
 * `claude.api_key`. `cloister setup AGENT` stores one of the two; launching the agent reads it. An
 * OAuth token (a subscription) wins over an API key when both are there.
 */
export const CREDENTIAL_KINDS = ["oauth_token", "api_key"] as const;
export type CredentialKind = (typeof CREDENTIAL_KINDS)[number];

export interface AgentCredential {
  kind: CredentialKind;
  value: string;
}

export function credentialSecretName(agent: string, kind: CredentialKind): string {
  return `${agent}.${kind}`;
}

/** The agent's stored credential, or undefined when `cloister setup AGENT` was never run. */
export async function agentCredential(vault: Vault, agent: string): Promise<AgentCredential | undefined> {
  const stored = new Set((await vault.list()).map((secret) => secret.name));
  for (const kind of CREDENTIAL_KINDS) {
    const name = credentialSecretName(agent, kind);
    if (stored.has(name)) return { kind, value: await vault.get(name) };
  }
  return undefined;
}

export function checkAgentName(agent: string): string {
  if (!/^[a-z][a-z0-9-]{0,31}$/.test(agent)) throw new CloisterError(`invalid agent name ${JSON.stringify(agent)}`);
  return agent;
}
