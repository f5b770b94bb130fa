/**
 * The HOMEs of persistent cloisters (data/homes/NAME), which stay after `stop` for the next `start`:
 * a stopped cloister is its HOME, until `cloister rm` removes it. The other entries there, `run`'s
 * HOMEs (.run-<id>, removed with their cloister or by the orphan sweep), the owners (.owners/, see
 * home-owner.ts) and agents' staging dirs, start with a dot, which no cloister name does: the name
 * rule tells them apart.
 */
import { randomBytes } from "node:crypto";
import { lstatSync, readdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { SAFE_NAME_RE } from "../config/names.js";
import type { CloisterPaths } from "../config/paths.js";
import { CloisterError } from "../errors.js";
import { ownerFileOf } from "./home-owner.js";
import { readRecord } from "./records.js";
import { withRecordsLock } from "./records-lock.js";
import { removeTree } from "./remove-tree.js";

/**
 * The names the persistent HOMEs there are kept under: every entry with a cloister's name, also one
 * that is not a directory (a symlink put there), so that `rm` can remove it. Nothing is opened.
 */
export function persistentHomeNames(paths: CloisterPaths): string[] {
  let entries: string[];
  try {
    entries = readdirSync(paths.homesDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  return entries.filter((name) => SAFE_NAME_RE.test(name)).sort();
}

/** A cloister's HOME set aside for removal: its name starts with a dot, so that nothing takes it for a cloister's. */
const ASIDE_PREFIX = ".removing-";

/**
 * Removes the HOME of the stopped cloister `name` and its owner (home-owner.ts), so that its next
 * start makes a fresh one, for any project; returns the HOME's path. The caller has stopped the
 * cloister: a record of the name found here means one started meanwhile, and is refused.
 *
 * Under the records lock, which every launch takes to claim a name before it makes its HOME, the
 * HOME is renamed aside: a launch either claimed the name first (its record is seen here) or comes
 * after and makes a new HOME, never one half removed. The lock is held for file operations only,
 * so the tree, which may be large, is removed after it. Nothing else holds that tree: the cloister
 * is stopped, with every process of its PID namespace, and no other cloister mounts it, so nothing
 * can swap a directory in it for a symlink while it is removed. rm does not follow symlinks (a link
 * is removed, never what it points to), nor does rename: a HOME that is itself a symlink leaves
 * as a link.
 */
export async function removeHome(paths: CloisterPaths, name: string): Promise<string> {
  const homeDir = join(paths.homesDir, name);
  const aside = join(paths.homesDir, `${ASIDE_PREFIX}${name}-${randomBytes(4).toString("hex")}`);
  await withRecordsLock(paths, () => setAside(paths, name, homeDir, aside));
  try {
    await removeTree(aside);
  } catch (error) {
    throw new CloisterError(`cloister ${name}'s HOME was set aside as ${aside}, but not all of it could be removed: ${(error as Error).message}`, `remove the rest by hand (rm -rf ${aside}), or run \`cloister rm\` again later`);
  }
  await removeLeftovers(paths);
  return homeDir;
}

function setAside(paths: CloisterPaths, name: string, homeDir: string, aside: string): void {
  if (readRecord(paths, name)) throw runningRefusal(name, "was started again meanwhile");
  const owner = ownerFileOf(homeDir);
  if (!exists(homeDir) && !exists(owner)) throw notStopped(paths, name);
  if (exists(homeDir)) renameSync(homeDir, aside);
  rmSync(owner, { force: true });
}

/** Refuses to remove a cloister that runs; `how` says so (`is running`). */
export function runningRefusal(name: string, how: string): CloisterError {
  return new CloisterError(`cloister ${name} ${how}: its HOME is in use`, `stop it first with \`cloister stop ${name}\`, or stop and remove it at once with \`cloister rm -f ${name}\``);
}

/** The error for a name that has no HOME to remove, naming those there are. */
export function notStopped(paths: CloisterPaths, name: string): CloisterError {
  const known = persistentHomeNames(paths).filter((home) => !readRecord(paths, home));
  const which = known.length > 0 ? `the stopped ones are ${known.join(", ")}` : "there are none";
  return new CloisterError(`no stopped cloister named ${JSON.stringify(name)}`, `${which}; see \`cloister list --all\``);
}

/** HOMEs an earlier `rm` set aside and was stopped before it removed them (Ctrl-C, a crash): removed when the next one runs. */
async function removeLeftovers(paths: CloisterPaths): Promise<void> {
  for (const entry of readdirSync(paths.homesDir)) {
    if (!entry.startsWith(ASIDE_PREFIX)) continue;
    try {
      await removeTree(join(paths.homesDir, entry));
    } catch {
      // Another `rm` at work on it, or what it could not remove either: the next one tries again.
    }
  }
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
