import { existsSync, realpathSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { resolvePaths } from "../config/paths.js";
import { CloisterError } from "../errors.js";
import { exposureProblem, guardedPaths, type GuardedPaths } from "./host-exposure.js";

export interface ProjectLocation {
  /** Real path of the project directory (git toplevel, or the plain directory with allowNoGit). */
  root: string;
  isGit: boolean;
}

/**
 * The project a cloister is for: the git toplevel containing `dir` (found the way git does, by the
 * nearest ancestor holding `.git`), or `dir` itself when `allowNoGit` is set. Symlinks are resolved
 * first so the same project always gets the same path, name and mounts. A project that would give
 * the cloister the host's HOME, secrets or sockets (see host-exposure.ts) is refused; the usual way
 * to meet that is a dotfiles repository in HOME, where `allowNoGit` takes `dir` alone instead.
 */
export function locateProject(dir: string, allowNoGit = false, guarded: GuardedPaths = guardedPaths(resolvePaths())): ProjectLocation {
  return locate(dir, allowNoGit ? "allowed" : "offered", guarded);
}

/**
 * locateProject for a command that needs a git repository and has no --allow-no-git (the worktree
 * commands): its errors do not suggest an option the command would refuse.
 */
export function locateGitProject(dir: string, guarded: GuardedPaths = guardedPaths(resolvePaths())): ProjectLocation {
  return locate(dir, "unavailable", guarded);
}

/** A plain directory as the project: taken (--allow-no-git given), suggested, or not for this command. */
type NoGit = "allowed" | "offered" | "unavailable";

function locate(dir: string, noGit: NoGit, guarded: GuardedPaths): ProjectLocation {
  const allowNoGit = noGit === "allowed";
  let start: string;
  try {
    start = realpathSync(dir);
  } catch {
    throw new CloisterError(`project directory ${JSON.stringify(dir)} does not exist`, "pass an existing directory with options.project");
  }
  if (!statSync(start).isDirectory()) {
    throw new CloisterError(`project path ${JSON.stringify(start)} is not a directory`, "pass a directory with options.project");
  }
  const toplevel = gitToplevel(start);
  if (toplevel !== undefined) {
    const problem = exposureProblem(toplevel, guarded);
    if (problem === undefined) return { root: toplevel, isGit: true };
    if (!allowNoGit || toplevel === start) {
      const hint =
        toplevel === start
          ? "run cloister in a project directory below it (options.project)"
          : `make ${start} a repository of its own (git init)${noGit === "offered" ? ", or add options.allowNoGit to use that directory alone" : ""}`;
      throw new CloisterError(`the git repository around ${JSON.stringify(start)} is ${JSON.stringify(toplevel)}, which a cloister must not get: ${problem}`, hint);
    }
  } else if (!allowNoGit) {
    throw new CloisterError(
      `${JSON.stringify(start)} is not inside a git repository`,
      `run cloister from a git project${noGit === "offered" ? ", pass the project's directory with options.project, or add options.allowNoGit to use a plain directory" : ", or pass the project's directory with options.project"}`,
    );
  }
  const problem = exposureProblem(start, guarded);
  if (problem !== undefined) throw new CloisterError(`${JSON.stringify(start)} cannot be a cloister's project: ${problem}`, "pass a project directory below it with options.project");
  return { root: start, isGit: false };
}

function gitToplevel(start: string): string | undefined {
  for (let current = start; ; current = dirname(current)) {
    if (existsSync(join(current, ".git"))) return current;
    if (dirname(current) === current) return undefined;
  }
}
