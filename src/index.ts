/**
 * Cloister as a library: the same sandbox engine the CLI uses.
 *
 *   import { runInCloister, createCloister } from "cloister";
 *   const code = await runInCloister(["npm", "test"], { project: "/path/to/repo" });
 */
export { Cloister, createCloister, findCloister, listCloisters, NameTaken, runInCloister, stopCloister } from "./cloister.js";
export type { AgentSession, CloisterListing, CloisterOptions, ExecOptions, FindOptions, RunOptions } from "./cloister.js";
// What the calls above take and give: a caller names them to hold or pass them on (QA library-cli L3).
export type { ExecResult, ExecSession } from "./sandbox/init-client.js";
export type { Credential, CredentialLookup } from "./agents/credentials.js";
export { vaultCredentials } from "./agents/vault-lookup.js";
export type { CredentialKind } from "./agents/registry.js";
export { removeCloister, stoppedCloisters } from "./stopped.js";
export type { RemovedCloister, RemoveOptions, StoppedCloister } from "./stopped.js";
export { TIMED_OUT } from "./fresh-run.js";
export { CloisterError } from "./errors.js";
export { resolvePaths } from "./config/paths.js";
export type { CloisterPaths } from "./config/paths.js";
export type { CloisterRecord, SessionRules } from "./sandbox/records.js";
