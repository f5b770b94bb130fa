/**
 * The git side of worktree cloisters: creating, checking, describing and removing the linked
 * worktrees cloister keeps under its data dir, with hardened host git (host-git.ts).
 */
import { existsSync, mkdirSync, rmdirSync, rmSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { CloisterError } from "../errors.js";
import { gitDirsOf, isAdminDirOf, readPointer, realPath } from "./git-dirs.js";
import { hostGit, hostGitOk } from "./host-git.js";
import type { LinkedGitDirs } from "./linked-git.js";

/** One entry of `git worktree list --porcelain`. */
export interface WorktreeEntry {
  path: string;
  /** `refs/heads/NAME`, or undefined on a detached HEAD. */
  branch?: string;
  locked: boolean;
}

/** Where the branch of a new worktree comes from. */
export type BranchSource = "local" | "origin" | "new";

export async function worktreeEntries(mainRoot: string): Promise<WorktreeEntry[]> {
  const listed = await hostGitOk(mainRoot, ["worktree", "list", "--porcelain"], `cannot list the worktrees of ${mainRoot}`);
  return listed.split("\n\n").flatMap((block): WorktreeEntry[] => {
    const lines = block.split("\n");
    const path = lines.find((l) => l.startsWith("worktree "))?.slice("worktree ".length);
    if (path === undefined) return [];
    const branch = lines.find((l) => l.startsWith("branch "))?.slice("branch ".length);
    return [{ path, branch, locked: lines.some((l) => l === "locked" || l.startsWith("locked ")) }];
  });
}

/**
 * Refuses what git would not take as a branch name, and what it would read as something else: an
 * option (`-x`), `@{-1}` (the previously checked-out branch), HEAD.
 */
export async function checkBranchName(mainRoot: string, branch: string): Promise<void> {
  const checked = branch.startsWith("-") || branch.includes("@{") || branch === "HEAD" ? undefined : await hostGit(mainRoot, ["check-ref-format", "--branch", branch]);
  if (checked?.code !== 0 || checked.stdout.trim() !== branch) {
    throw new CloisterError(`${JSON.stringify(branch)} is not a valid branch name`, "see `git check-ref-format --help` for what git accepts");
  }
}

async function refExists(mainRoot: string, ref: string): Promise<boolean> {
  return (await hostGit(mainRoot, ["show-ref", "--verify", "--quiet", ref])).code === 0;
}

export async function branchSource(mainRoot: string, branch: string): Promise<BranchSource> {
  if (await refExists(mainRoot, `refs/heads/${branch}`)) return "local";
  return (await refExists(mainRoot, `refs/remotes/origin/${branch}`)) ? "origin" : "new";
}

/**
 * Adds the worktree, locked: git in any other view of the repository (the project's main cloister,
 * where this path does not exist) would otherwise count it as prunable and delete its admin dir.
 */
export async function addWorktree(mainRoot: string, dir: string, branch: string, source: BranchSource, reason: string): Promise<void> {
  if (source === "new" && (await hostGit(mainRoot, ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])).code !== 0) {
    throw new CloisterError(`${mainRoot} has no commit yet to start the branch ${branch} from`, "commit something first (git commit), then try again");
  }
  const from: Record<BranchSource, string[]> = {
    local: [dir, branch],
    // No --track: setting an upstream rewrites .git/config, and replacing a protected file stops the
    // project's running cloisters (src/guardian/protection-watch.ts). `git branch -u` sets it later.
    origin: ["--no-track", "-b", branch, dir, `refs/remotes/origin/${branch}`],
    new: ["-b", branch, dir, "HEAD"],
  };
  mkdirSync(dirname(dir), { recursive: true, mode: 0o700 });
  try {
    await hostGitOk(mainRoot, ["worktree", "add", "--quiet", "--lock", "--reason", reason, ...from[source]], `cannot create a worktree for ${branch}`);
  } catch (error) {
    removeIfEmpty(dirname(dir));
    throw error;
  }
}

export async function lockWorktree(mainRoot: string, dir: string, reason: string): Promise<void> {
  await hostGitOk(mainRoot, ["worktree", "lock", "--reason", reason, dir], `cannot lock the worktree ${dir}`);
}

/**
 * The worktree's git dirs, checked against the main repository's: its `.git` file must name an
 * admin dir directly in the main repository's worktrees/, at its real path, pointing back here.
 */
export function linkedGitDirs(mainRoot: string, dir: string): LinkedGitDirs {
  const mainDirs = gitDirsOf(mainRoot);
  const commonDir = mainDirs && realPath(mainDirs.commonDir);
  const linked = gitDirsOf(dir);
  if (
    commonDir === undefined ||
    linked?.kind !== "file" ||
    realPath(linked.commonDir) !== commonDir ||
    realPath(linked.gitDir) !== linked.gitDir ||
    !isAdminDirOf(linked.gitDir, commonDir) ||
    readPointer(join(linked.gitDir, "gitdir")) !== join(dir, ".git")
  ) {
    throw new CloisterError(`${dir} is not a worktree of ${mainRoot} that cloister can mount`, "remove it with `cloister worktree remove -f BRANCH` and start again");
  }
  return { commonDir, adminDir: linked.gitDir };
}

/** The branch checked out in a worktree, or undefined (detached, or git fails there). */
export async function checkedOutBranch(dir: string): Promise<string | undefined> {
  const result = await hostGit(dir, ["symbolic-ref", "--quiet", "--short", "HEAD"]);
  return result.code === 0 ? result.stdout.trim() : undefined;
}

/**
 * Where the repository of a worktree was, when it is missing (moved or deleted): the worktree's `.git`
 * file names its admin dir `<repository>/.git/worktrees/<id>` by absolute path, and the admin dir
 * goes with the repository. Undefined while the repository's git dir is there (an admin dir git
 * pruned is not a missing repository: deleteWorktree handles that one).
 */
export function missingRepositoryOf(dir: string): string | undefined {
  const dirs = gitDirsOf(dir);
  if (dirs?.kind !== "file" || existsSync(dirs.gitDir)) return undefined;
  const commonDir = dirname(dirname(dirs.gitDir));
  if (existsSync(commonDir)) return undefined;
  return basename(commonDir) === ".git" ? dirname(commonDir) : commonDir;
}

/**
 * Removes a worktree of the main repository (forced: the caller checked that nothing is lost, and
 * the worktree is locked), or only its directory when git no longer knows it or its repository is
 * missing; then prunes, and drops the project's directory under the data dir once it is empty. The
 * branch stays.
 */
export async function deleteWorktree(mainRoot: string, dir: string): Promise<void> {
  if (missingRepositoryOf(dir) !== undefined) {
    // No git to ask: the repository's admin dir for it went with the repository.
    rmSync(dir, { recursive: true, force: true });
  } else {
    const registered = (await worktreeEntries(mainRoot)).some((e) => e.path === dir);
    if (registered) await hostGitOk(mainRoot, ["worktree", "remove", "--force", "--force", dir], `cannot remove the worktree ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
    await hostGitOk(mainRoot, ["worktree", "prune"], `cannot prune the worktrees of ${mainRoot}`);
  }
  removeIfEmpty(dirname(dir));
}

/** Drops a project's directory under the data dir once no worktree of it is left. */
function removeIfEmpty(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // Other worktrees of the project remain.
  }
}
