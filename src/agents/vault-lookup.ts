/**
 * Agents' credentials from the guardian's vault, where `cloister setup AGENT` stores them: the
 * lookup the CLI gives every launch, and a library caller's agent gets the same by passing it
 * (`createCloister({ agent: "claude", credentials: vaultCredentials() })`).
 */
import { resolvePaths, type CloisterPaths } from "../config/paths.js";
import { agentCredentialFromGuardian, ensureGuardian } from "../guardian/control-client.js";
import { checkPaths } from "../options-check.js";
import type { CredentialLookup } from "./credentials.js";

/**
 * The lookup in the vault of the instance at `paths` (give the launch's own `paths` when it has
 * them): as a rule it yields the cloister's placeholder for the credential (the guardian swaps in
 * the real value at its proxy), and none for an agent with nothing stored. Its request is cut off
 * when the launch is (its signal), not left to wait out the vault's deadline.
 */
export function vaultCredentials(paths: CloisterPaths = resolvePaths()): CredentialLookup {
  checkPaths(paths, "paths");
  return async (agent, cloisterId, options) => {
    await ensureGuardian(paths);
    return agentCredentialFromGuardian(paths, agent, cloisterId, options?.signal);
  };
}
