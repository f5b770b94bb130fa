import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, realpathSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { CloisterError } from "../errors.js";

/**
 * Where a project's git metadata lives, read from the files alone (no git process, so nothing of
 * the repository runs). `.git` is either the repository directory (a clone) or, in a linked
 * worktree or a submodule checkout, a file naming the worktree's own git dir, whose `commondir`
 * file names the directory shared by all worktrees (objects, refs, config, hooks).
 */
export interface GitDirs {
  /** How `.git` exists in the project root. */
  kind: "dir" | "file";
  /** The per-worktree git dir: `<root>/.git`, or where the `.git` file points. */
  gitDir: string;
  /** The shared git dir: the git dir itself, or where its `commondir` file points. */
  commonDir: string;
}

/** A `.git` file or `commondir` file is one short line; anything longer is not git's. */
const POINTER_MAX_BYTES = 4096;

/** The project's git dirs; undefined when `.git` is missing, a symlink, or a file git would not read. */
export function gitDirsOf(projectRoot: string): GitDirs | undefined {
  const dotGit = join(projectRoot, ".git");
  const kind = entryType(dotGit);
  if (kind === "dir") return { kind, gitDir: dotGit, commonDir: commonDirOf(dotGit) };
  if (kind !== "file") return undefined;
  const pointer = /^gitdir: (.+)$/.exec(readPointer(dotGit) ?? "")?.[1];
  if (pointer === undefined) return undefined;
  const gitDir = resolve(projectRoot, pointer);
  return { kind, gitDir, commonDir: commonDirOf(gitDir) };
}

/**
 * Whether `dir` holds a `.git` that git would stop at when it looks for a work tree: anything but
 * a file that names no git dir, which is what holds a plain directory's `.git` while a cloister of
 * it runs (protected-paths.ts), so that a second launch there does not take it for a repository.
 */
export function holdsGitEntry(dir: string): boolean {
  const kind = entryType(join(dir, ".git"));
  return kind !== "missing" && (kind !== "file" || gitDirsOf(dir) !== undefined);
}

function commonDirOf(gitDir: string): string {
  const pointer = readPointer(join(gitDir, "commondir"));
  return pointer ? resolve(gitDir, pointer) : gitDir;
}

/** The first line of a small regular file, never through a symlink; undefined when there is none. */
export function readPointer(path: string): string | undefined {
  try {
    return withRegularFile(path, (fd) => {
      const buffer = Buffer.alloc(POINTER_MAX_BYTES);
      const length = readSync(fd, buffer, 0, buffer.length, 0);
      return buffer.subarray(0, length).toString("utf8").split("\n")[0]?.replace(/\r$/, "");
    });
  } catch {
    return undefined;
  }
}

/**
 * Runs `read` on the file opened without following a symlink (one swapped in after a check
 * included); throws when it is not a regular file.
 */
export function withRegularFile<T>(path: string, read: (fd: number) => T): T {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    if (!fstatSync(fd).isFile()) throw new CloisterError(`${path} is not a regular file`);
    return read(fd);
  } finally {
    closeSync(fd);
  }
}

/** The real path, or undefined when there is nothing there. */
export function realPath(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

function entryType(path: string): "dir" | "file" | "other" | "missing" {
  try {
    const st = lstatSync(path);
    return st.isDirectory() ? "dir" : st.isFile() ? "file" : "other";
  } catch {
    return "missing";
  }
}

/** True when `gitDir` is a linked worktree's admin dir directly inside `commonDir`'s worktrees/. */
export function isAdminDirOf(gitDir: string, commonDir: string): boolean {
  return dirname(gitDir) === join(commonDir, "worktrees");
}
