/**
 * The parts of a project's submodules that steer the host's git, so that they are protected like the
 * repository's own (protected-paths.ts). Host git works inside every populated submodule on a plain
 * `git status` in the project (it runs `git status` there to see whether the submodule is modified),
 * reading that submodule's git dir: a cloister that could write `.git/modules/lib/config`
 * (core.fsmonitor, a clean filter) or repoint `lib/.git` at a git dir of its own would have the
 * host run its commands; hooks there run on the host's next commit in the submodule.
 *
 * So, for the submodules that exist when a cloister starts:
 * - every submodule git dir under the repository's `modules/` (nested ones included) gets the entries
 *   of GIT_DIR_ENTRIES protected;
 * - every populated submodule listed in a `.gitmodules` gets its `.git` protected (the file naming its
 *   git dir, or an embedded git dir's entries), and its own `.gitmodules`.
 *
 * Not covered: a repository the cloister makes itself, or puts in an unpopulated submodule's place,
 * and registers in the index (docs/sandbox.md, "What the protected paths do not cover").
 */
import { spawnSync } from "node:child_process";
import { lstatSync, readdirSync } from "node:fs";
import { isAbsolute, join, normalize } from "node:path";
import { entryKind } from "./protected-paths.js";

/** What a git dir holds that makes git run something or look elsewhere (as for the repository's own). */
const GIT_DIR_ENTRIES = ["config", "config.worktree", "commondir", "hooks/", "info/", "worktrees/"];

/** Submodule names may hold slashes (`modules/a/b`): how deep under one `modules/` a git dir is looked for. */
const MAX_NAME_DEPTH = 8;

/** The protected entries of the submodule git dirs under `gitDir` (relative to it; `<gitDir>/modules/**`). */
export function moduleGitDirEntries(gitDir: string): string[] {
  return moduleGitDirs(gitDir, "").flatMap(gitDirEntries);
}

/** The protected paths of the project's populated submodules, relative to the project root. */
export function submoduleWorktreeEntries(projectRoot: string): string[] {
  return populatedSubmodulePaths(projectRoot).flatMap((path) => {
    const dotGit = join(path, ".git");
    const ownModules = entryKind(join(projectRoot, path, ".gitmodules")) === "file" ? [join(path, ".gitmodules")] : [];
    if (entryKind(join(projectRoot, dotGit)) === "file") return [dotGit, ...ownModules];
    // An embedded git dir (submodules made before git absorbed them into .git/modules).
    const embedded = moduleGitDirs(join(projectRoot, dotGit), "").map((dir) => join(dotGit, dir));
    return [...[dotGit, ...embedded].flatMap(gitDirEntries), ...ownModules];
  });
}

/** The project's populated submodules (listed in a `.gitmodules`, with a `.git`), nested ones too, relative to the project root. */
export function populatedSubmodulePaths(projectRoot: string): string[] {
  return populatedSubmodules(projectRoot, "");
}

function gitDirEntries(dir: string): string[] {
  return GIT_DIR_ENTRIES.map((entry) => `${dir}/${entry}`);
}

/** Git dirs under `<gitDir>/<rel>/modules`, relative to gitDir, each followed by its own nested ones. */
function moduleGitDirs(gitDir: string, rel: string): string[] {
  const found: string[] = [];
  const visit = (dir: string, depth: number): void => {
    // entryKind does not follow a link: a symlinked module dir is not walked into, nor protected
    // through (a mount would follow it out of place; what it points at is not the project's).
    if (depth > MAX_NAME_DEPTH || entryKind(join(gitDir, dir)) !== "directory") return;
    if (entryKind(join(gitDir, dir, "HEAD")) === "file") {
      found.push(dir, ...moduleGitDirs(gitDir, dir));
      return;
    }
    for (const name of childNames(join(gitDir, dir))) visit(join(dir, name), depth + 1);
  };
  const modules = join(rel, "modules");
  for (const name of childNames(join(gitDir, modules))) visit(join(modules, name), 1);
  return found;
}

function childNames(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return []; // missing, or not a directory: nothing below
  }
}

/**
 * Submodules listed in the `.gitmodules` of `rel` (the project root or a submodule) whose checkout
 * has a `.git`, then theirs, relative to the project root. Paths that would leave the directory
 * they are listed in are ignored: git refuses them too.
 */
function populatedSubmodules(projectRoot: string, rel: string): string[] {
  return submodulePaths(join(projectRoot, rel, ".gitmodules")).flatMap((listed) => {
    const path = join(rel, listed);
    const kind = entryKind(join(projectRoot, path, ".git"));
    return kind === "file" || kind === "directory" ? [path, ...populatedSubmodules(projectRoot, path)] : [];
  });
}

/**
 * The `submodule.<name>.path` values of a .gitmodules file, read with git itself from that file alone
 * (`--file` follows no includes and runs nothing). No file, no git, or no submodules: none. An empty
 * file (the placeholder a project without submodules gets) is answered without a git process, which
 * would cost every launch of such a project a few milliseconds.
 */
function submodulePaths(gitmodules: string): string[] {
  if (entryKind(gitmodules) !== "file" || lstatSync(gitmodules).size === 0) return [];
  const result = spawnSync("git", ["config", "--file", gitmodules, "--null", "--get-regexp", "^submodule\\..*\\.path$"], { encoding: "utf8" });
  if (result.status !== 0) return [];
  // --null: each entry is "key\nvalue\0".
  return result.stdout
    .split("\0")
    .map((entry) => entry.slice(entry.indexOf("\n") + 1))
    .filter(isPlainRelativePath);
}

function isPlainRelativePath(path: string): boolean {
  if (path === "" || isAbsolute(path) || normalize(path) !== path) return false;
  return path.split("/").every((part) => part !== ".." && part !== "." && part !== ".git");
}
