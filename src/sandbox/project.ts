import { existsSync, realpathSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { CloisterError } from "../errors.js";

export interface ProjectLocation {
  /** Real path of the project directory (git toplevel, or the plain directory with allowNoGit). */
  root: string;
  isGit: boolean;
}

/**
 * The project a cloister is for: the git toplevel containing `dir` (found the way git does, by the
 * nearest ancestor holding `.git`), or `dir` itself when `allowNoGit` is set. Symlinks are resolved
 * first so the same project always gets the same path, name and mounts.
 */
export function locateProject(dir: string, allowNoGit = false): ProjectLocation {
  let start: string;
  try {
    start = realpathSync(dir);
  } catch {
    throw new CloisterError(`project directory ${JSON.stringify(dir)} does not exist`, "pass an existing directory with --project");
  }
  if (!statSync(start).isDirectory()) {
    throw new CloisterError(`project path ${JSON.stringify(start)} is not a directory`, "pass a directory with --project");
  }
  for (let current = start; ; current = dirname(current)) {
    if (existsSync(join(current, ".git"))) return { root: current, isGit: true };
    if (dirname(current) === current) break;
  }
  if (allowNoGit) return { root: start, isGit: false };
  throw new CloisterError(
    `${JSON.stringify(start)} is not inside a git repository`,
    "run cloister from a git project, pass --project DIR, or add --allow-no-git to use a plain directory",
  );
}
