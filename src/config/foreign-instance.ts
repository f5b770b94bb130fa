import { spawnSync } from "node:child_process";
import { lstatSync } from "node:fs";
import { dirname } from "node:path";
import { CloisterError } from "../errors.js";
import type { CloisterPaths } from "./paths.js";

/** The error says the caller may not do it: EACCES (file permissions) or EPERM. */
export function isPermissionDenied(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === "EACCES" || code === "EPERM";
}

/**
 * Permission denied on an instance's own files: as a rule, CLOISTER_HOME (or the XDG directories)
 * names another user's instance, whose directories are 0700 and whose guardian's socket is 0600.
 * Said as such, with the path, whose it is and what to do, instead of what an unreadable file looked
 * like ("Guardian: not running", "no audit log", "No cloisters."). `action` is what was tried:
 * "reach the guardian", "read the audit log".
 */
export function foreignInstanceError(action: string, path: string): CloisterError {
  const owner = blockingOwner(path);
  const denied = `cannot ${action} at ${path}: permission denied`;
  if (!owner || owner.uid === process.getuid?.()) return new CloisterError(denied, "check the owners and permissions of the directories on that path");
  return new CloisterError(`${denied}, as ${owner.path} belongs to ${owner.name}`, ownInstanceHint(owner.name));
}

function ownInstanceHint(owner: string): string {
  return `each user has an instance of their own: run this as ${owner}, or set CLOISTER_HOME to a directory of your own`;
}

/**
 * Refuses an instance whose directories belong to another user, before a command writes anything
 * there. Permissions alone do not: root may write anywhere, and root's command on a user's
 * CLOISTER_HOME left root-owned files there (its project file, config cache, placeholders) that the
 * user could then not replace, and failed only later, on one of them (QA). Checked: the instance's
 * home (CLOISTER_HOME, the parent its four directories share) and each of those directories, where
 * they exist; one not made yet will be made by the caller, so is the caller's.
 */
export function checkOwnInstance(paths: CloisterPaths): void {
  const uid = process.geteuid?.();
  if (uid === undefined) return;
  for (const dir of instanceDirs(paths)) {
    let owner: number;
    try {
      owner = lstatSync(dir).uid;
    } catch {
      continue; // not there yet, or not to be looked at: what reads it then says whose it is (foreignInstanceError)
    }
    if (owner !== uid) {
      const name = userName(owner);
      throw new CloisterError(`cannot use the cloister instance at ${dir}, as it belongs to ${name}; nothing was written there`, ownInstanceHint(name));
    }
  }
}

function instanceDirs(paths: CloisterPaths): string[] {
  const dirs = [paths.configDir, paths.stateDir, paths.dataDir, paths.runtimeDir];
  const parents = new Set(dirs.map((dir) => dirname(dir)));
  // XDG's parents (~/.config, /run/user/N, /tmp) are not the instance's: only CLOISTER_HOME's one is.
  return parents.size === 1 ? [...parents, ...dirs] : dirs;
}

/**
 * The entry that keeps the caller out of `path`, and its owner: the deepest one on the path that the
 * caller can still look at (a directory it may not enter, or `path` itself).
 */
function blockingOwner(path: string): { path: string; uid: number; name: string } | undefined {
  for (let at = path; ; at = dirname(at)) {
    try {
      const { uid } = lstatSync(at);
      return { path: at, uid, name: userName(uid) };
    } catch {
      if (dirname(at) === at) return undefined;
    }
  }
}

/** The user's name from the passwd database (through NSS, as `ls -l` has it), else "uid N". */
function userName(uid: number): string {
  const entry = spawnSync("getent", ["passwd", String(uid)], { encoding: "utf8" });
  const name = entry.status === 0 ? entry.stdout.split(":")[0] : undefined;
  return name ? name : `uid ${uid}`;
}
