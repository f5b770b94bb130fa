/**
 * Cloister as a library: the same sandbox engine the CLI uses.
 *
 *   import { runInCloister, createCloister } from "cloister";
 *   const code = await runInCloister(["npm", "test"], { project: "/path/to/repo" });
 */
export { Cloister, createCloister, findCloister, listCloisters, NameTaken, runInCloister, stopCloister } from "./cloister.js";
export type { CloisterOptions, ExecOptions, RunOptions } from "./cloister.js";
export { TIMED_OUT } from "./fresh-run.js";
export { CloisterError } from "./errors.js";
export { resolvePaths } from "./config/paths.js";
export type { CloisterPaths } from "./config/paths.js";
export type { CloisterRecord } from "./sandbox/records.js";
