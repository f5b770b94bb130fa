import { realpathSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { resolvePaths } from "../config/paths.js";
import { CloisterError } from "../errors.js";
import { isBelow } from "../path-under.js";
import { quoteArgument } from "../policy/commands.js";
import { gitDirsOf, holdsGitEntry } from "./git-dirs.js";
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
  const toplevel = gitToplevel(start, guarded);
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
  }
  // Not even as a plain directory: the cloister would have the repository's config and hooks, which
  // git on the host runs (a bare repository's, or those of a refused repository's .git).
  const gitDir = enclosingGitDir(start);
  if (gitDir !== undefined) {
    const where = gitDir === start ? JSON.stringify(start) : `${JSON.stringify(start)} is inside ${JSON.stringify(gitDir)}, which`;
    throw new CloisterError(
      `${where} is a git repository's own directory, not a work tree: a cloister there could change the repository's config and hooks, which git on the host runs`,
      `work on a checkout of it: \`git clone ${quoteArgument(gitDir)}\`, or \`git -C ${quoteArgument(gitDir)} worktree add ../NAME\`, and run cloister there`,
    );
  }
  if (toplevel === undefined && !allowNoGit) {
    throw new CloisterError(
      `${JSON.stringify(start)} is not inside a git repository`,
      `run cloister from a git project${noGit === "offered" ? ", pass the project's directory with options.project, or add options.allowNoGit to use a plain directory" : ", or pass the project's directory with options.project"}`,
    );
  }
  const problem = exposureProblem(start, guarded);
  if (problem !== undefined) throw new CloisterError(`${JSON.stringify(start)} cannot be a cloister's project: ${problem}`, "pass a project directory below it with options.project");
  return { root: start, isGit: false };
}

/**
 * The work tree git would use for `start`, except that a submodule's checkout gives way to its
 * superproject (nested ones too): the submodule's `.git` names its git dir inside the
 * superproject's (`.git/modules/NAME`, by a relative path), which a cloister of the submodule alone
 * would not have, so git there failed ("not a git repository"). From the superproject's root,
 * the cloister starts in the submodule's directory as in any other, and its git dir is protected
 * with the superproject's (submodule-git.ts). A superproject a cloister must not get (a dotfiles
 * repository in HOME) is not taken: the submodule stays the project.
 */
function gitToplevel(start: string, guarded: GuardedPaths): string | undefined {
  let root = nearestGitRoot(start);
  while (root !== undefined && dirname(root) !== root) {
    const outer = nearestGitRoot(dirname(root));
    if (outer === undefined || !isSubmoduleCheckoutOf(root, outer) || exposureProblem(outer, guarded) !== undefined) return root;
    root = outer;
  }
  return root;
}

/** The nearest of `start` and its ancestors that holds `.git`, the way git finds a work tree. */
function nearestGitRoot(start: string): string | undefined {
  return nearestAncestor(start, holdsGitEntry);
}

/** `start` or its nearest ancestor for which `test` holds. */
function nearestAncestor(start: string, test: (dir: string) => boolean): string | undefined {
  for (let current = start; ; current = dirname(current)) {
    if (test(current)) return current;
    if (dirname(current) === current) return undefined;
  }
}

/** True when `root`'s `.git` file names a git dir in `outer`'s `modules/`, where git keeps its submodules'. */
function isSubmoduleCheckoutOf(root: string, outer: string): boolean {
  const inner = gitDirsOf(root);
  const superproject = gitDirsOf(outer);
  if (inner?.kind !== "file" || superproject === undefined) return false;
  return [superproject.gitDir, superproject.commonDir].some((dir) => isBelow(inner.gitDir, join(dir, "modules")));
}

/**
 * `start` or its nearest ancestor that is a git dir itself (git's own test: HEAD, objects/ and
 * refs/), for a directory with no `.git` above it.
 */
function enclosingGitDir(start: string): string | undefined {
  return nearestAncestor(start, isGitDir);
}

/** Links followed, as git follows them: a git dir reached through one is still one. */
function isGitDir(dir: string): boolean {
  const is = (path: string, kind: "file" | "directory"): boolean => {
    try {
      const st = statSync(path);
      return kind === "file" ? st.isFile() : st.isDirectory();
    } catch {
      return false;
    }
  };
  return is(join(dir, "HEAD"), "file") && is(join(dir, "objects"), "directory") && is(join(dir, "refs"), "directory");
}
