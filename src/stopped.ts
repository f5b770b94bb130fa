/**
 * Stopped persistent cloisters (`cloister list --all`, `cloister rm`): what is left of one after
 * `stop` is its HOME, kept for its next start (sandbox/homes.ts), and who owns it (home-owner.ts).
 */
import { join } from "node:path";
import { stopCloister } from "./cloister.js";
import { checkOwnInstance } from "./config/foreign-instance.js";
import { NAME_RULE, SAFE_NAME_RE } from "./config/names.js";
import { resolvePaths, type CloisterPaths } from "./config/paths.js";
import { CloisterError } from "./errors.js";
import { checkPaths, checkRemoveOptions, checkText } from "./options-check.js";
import { homeOwner } from "./sandbox/home-owner.js";
import { persistentHomeNames, removeHome, runningRefusal } from "./sandbox/homes.js";
import { holdsName, listRecords, readRecord } from "./sandbox/records.js";
import { managedWorktreeAt } from "./sandbox/worktree.js";

/** A persistent cloister that is not running: its HOME waits for its next start. */
export interface StoppedCloister {
  name: string;
  /**
   * The project whose cloister first used the HOME, by its registered name; null when that is not
   * known (a HOME made before cloister wrote owners, a project no longer registered).
   */
  project: string | null;
  /** That project's directory (a worktree cloister's: its worktree); null when not known. */
  projectRoot: string | null;
  /** The HOME on the host. */
  homeDir: string;
}

/** removeCloister's options. */
export interface RemoveOptions {
  /** Stop the cloister first if it runs; without it, a running cloister is refused. */
  force?: boolean;
  /** An isolated instance (like CLOISTER_HOME); default from the environment. */
  paths?: CloisterPaths;
}

export interface RemovedCloister {
  name: string;
  /** The HOME that was removed. */
  homeDir: string;
  /** It was running (or starting), and was stopped first (options.force). */
  stopped: boolean;
}

/**
 * The persistent cloisters of this instance that are not running: every HOME under a cloister's
 * name with no record (listCloisters lists those with one, running or dead), by name.
 */
export async function stoppedCloisters(paths: CloisterPaths = resolvePaths()): Promise<StoppedCloister[]> {
  checkPaths(paths, "paths");
  const recorded = new Set(listRecords(paths).map((record) => record.name));
  const names = persistentHomeNames(paths).filter((name) => !recorded.has(name));
  if (names.length === 0) return [];
  const projectAt = await projectNames(paths);
  return names.map((name) => {
    const homeDir = join(paths.homesDir, name);
    const projectRoot = homeOwner(homeDir) ?? null;
    return { name, project: projectRoot === null ? null : projectAt(projectRoot), projectRoot, homeDir };
  });
}

/**
 * The project name for a HOME's owner: a worktree's project is in the worktree's path, any other
 * root is looked up in the registry (read once, and only when there are stopped cloisters: it
 * loads the YAML parser).
 */
async function projectNames(paths: CloisterPaths): Promise<(root: string) => string | null> {
  const { listProjects } = await import("./config/project-registry.js");
  const projects = await listProjects(paths);
  return (root) => managedWorktreeAt(paths, root)?.project ?? projects.find((project) => project.path === root)?.name ?? null;
}

/**
 * Removes a stopped persistent cloister: its HOME (shell history, agent logins, tool caches) and its
 * owner, so that its next start begins afresh. A running one is refused unless `options.force`,
 * which stops it first as stopCloister does. A worktree cloister's worktree stays (`cloister
 * worktree remove BRANCH` removes it). Nothing outside the instance's homes dir is touched: the
 * name must be a cloister's (no `/`, no `..`, no `.run-*`), and a symlink is removed, never what it
 * points to.
 */
export async function removeCloister(name: string, options: RemoveOptions = {}): Promise<RemovedCloister> {
  checkText(name, "name");
  checkRemoveOptions(options);
  if (!SAFE_NAME_RE.test(name)) throw new CloisterError(`invalid cloister name ${JSON.stringify(name)}`, `a cloister's name is ${NAME_RULE}; see \`cloister list --all\``);
  const paths = options.paths ?? resolvePaths();
  checkOwnInstance(paths);
  const record = readRecord(paths, name);
  if (record && !record.persistent) throw new CloisterError(`cloister ${name} is a \`cloister run\` one, which keeps no HOME`, `it is removed when it ends, or with \`cloister stop ${name}\``);
  const running = record !== undefined && holdsName(record);
  if (running && !options.force) throw runningRefusal(name, record.keeperPid === undefined ? "is starting" : "is running");
  // A dead one's record (its keeper died, and the guardian's sweep has not been by) goes as any stop's.
  if (record) await stopCloister(name, paths);
  return { name, homeDir: await removeHome(paths, name), stopped: running };
}
