/**
 * Symbolic links in the git dirs a cloister can write. Git inside must write objects, refs, logs,
 * the index and HEAD, so most of `.git` stays writable; the host's git follows symlinks in the
 * files of `.git` it writes (a reflog `logs/HEAD` it appends to, `COMMIT_EDITMSG` it overwrites, a
 * `refs/heads/x/` it creates files in). A link planted there by the agent would have the user's next
 * `git commit` append to `~/.bashrc` or create files in `~/.ssh`. Git itself makes no symlink in a
 * git dir but its probe (isGitProbe), so one that appears while a cloister runs is the cloister's doing: the guardian
 * watches for them (guardian/git-symlink-watch.ts), and the end of every cloister removes those
 * made since it started (removeNewGitSymlinks), guardian or not.
 *
 * Everything here looks at an entry through its directory's descriptor (`/proc/self/fd/N/NAME`),
 * never through a path whose directories could be swapped for a link meanwhile, and a link is
 * removed as the link: nothing is ever followed.
 */
import { chmodSync, closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, readlinkSync, statSync, unlinkSync, type Stats } from "node:fs";
import { join } from "node:path";
import { gitDirsOf, isAdminDirOf, realPath } from "./git-dirs.js";
import { isUnder } from "../path-under.js";

/** Which directory a path named when it was looked at (a directory renamed or swapped since is another). */
export interface DirIdentity {
  dev: number;
  ino: number;
}

/**
 * Entries of a git dir that every cloister sees read-only (protected-paths.ts, linked-git.ts): the
 * cloister cannot put anything there, and a user's hooks are often links (`hooks/pre-commit ->
 * ../../scripts/pre-commit`), which must not end a cloister when the user adds one meanwhile.
 */
const READ_ONLY_TOP = new Set(["hooks", "info"]);

/**
 * The directory of a git dir whose subdirectories are not walked (nor watched): objects/, whose
 * fan-out dirs are up to 256 of the ~270 directories of a repository's git dir, and whose walk cost
 * every launch 20-50 ms. Host git never writes through an existing name below it: a loose object or
 * a pack is written to a new temporary file and linked or renamed into place, which fails on (or
 * replaces) a link there rather than following it. What does matter, a fan-out dir or `pack/`
 * itself replaced by a link (git would then make its temporary files in the link's target), is an
 * entry of objects/, which is walked and watched.
 */
const OBJECTS = "objects";

/**
 * A link whose status changed less than this before the cloister's start counts as the cloister's
 * all the same: the kernel stamps inodes from a coarse clock (up to a tick, 1-10 ms, behind the
 * time the start was recorded with), and a user's link made that close to a launch is improbable.
 */
const CLOCK_SLACK_MS = 1_000;

/**
 * The git dirs the cloister of the project at `projectRoot` can write on the host, at their real
 * paths: the repository's `.git`; for a linked worktree (`.git` a file naming `<common>/worktrees/<id>`)
 * the common dir, which holds objects/, refs/, logs/ and the worktree's admin dir; for another
 * `.git` file, the git dirs it names only when they lie in the project (a cloister sees nothing else).
 */
export function writableGitDirs(projectRoot: string): string[] {
  const dirs = gitDirsOf(projectRoot);
  if (!dirs) return [];
  const candidates = dirs.kind === "dir" ? [dirs.gitDir] : isAdminDirOf(dirs.gitDir, dirs.commonDir) ? [dirs.commonDir] : [dirs.gitDir, dirs.commonDir];
  const real = candidates.map(realPath).filter((dir): dir is string => dir !== undefined);
  const inProject = dirs.kind === "dir" || isAdminDirOf(dirs.gitDir, dirs.commonDir) ? real : real.filter((dir) => isUnder(dir, realPath(projectRoot) ?? projectRoot));
  return [...new Set(inProject)];
}

/**
 * Runs `use` on the directory at `path`, opened without following a link in its place, as
 * `/proc/self/fd/N` (so that what `use` does lands in that very directory), if it is the one
 * `expected` names (any directory when undefined). Undefined when it is not (gone, swapped, not a
 * directory); an error other than those (EACCES: a directory made unreadable) is thrown.
 */
export function inDirectory<T>(path: string, expected: DirIdentity | undefined, use: (at: string, identity: DirIdentity) => T): T | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch (error) {
    if (["ENOENT", "ENOTDIR", "ELOOP"].includes((error as NodeJS.ErrnoException).code ?? "")) return undefined;
    throw error;
  }
  try {
    const st = fstatSync(fd);
    if (expected && (st.dev !== expected.dev || st.ino !== expected.ino)) return undefined;
    return use(`/proc/self/fd/${fd}`, { dev: st.dev, ino: st.ino });
  } finally {
    closeSync(fd);
  }
}

/** A symlink found in a git dir. */
export interface FoundLink {
  /** Its path on the host. */
  path: string;
  /** Its own status (lstat). */
  stats: Stats;
  /** Removes the link itself (through its directory's descriptor); the error's words when that failed. */
  remove(): string | undefined;
}

/** What a walk of a git dir reports. */
export interface GitDirVisitor {
  /** Each directory (the start first), before its entries; false leaves its entries unvisited. */
  directory?(path: string, identity: DirIdentity): boolean | void;
  link(link: FoundLink): void;
  /** A directory that could not be read (made unreadable): the walk goes on without it. */
  unreadable?(path: string, error: Error): void;
}

/**
 * Walks the tree of git dir `root` from `start` (a directory in it, with the identity it was seen
 * with; the root itself by default), depth first without recursion (a tree the agent made deep
 * costs no stack), leaving out READ_ONLY_TOP and the subdirectories of OBJECTS.
 */
export function walkGitDir(root: string, visitor: GitDirVisitor, start: { path: string; identity?: DirIdentity } = { path: root }): void {
  const pending: { path: string; identity?: DirIdentity }[] = [start];
  for (let next = pending.pop(); next; next = pending.pop()) {
    const { path } = next;
    try {
      inDirectory(path, next.identity, (at, identity) => {
        if (visitor.directory?.(path, identity) === false) return;
        for (const entry of readdirSync(at, { withFileTypes: true })) {
          if (leftOut(root, path, entry.name)) continue;
          if (!entry.isSymbolicLink() && !entry.isDirectory()) continue;
          const entryAt = `${at}/${entry.name}`;
          const stats = lstatSync(entryAt, { throwIfNoEntry: false });
          if (stats?.isDirectory() && walksInto(root, path)) pending.push({ path: join(path, entry.name), identity: { dev: stats.dev, ino: stats.ino } });
          else if (stats?.isSymbolicLink() && !isGitProbe(at, entry.name)) visitor.link({ path: join(path, entry.name), stats, remove: () => removeLink(at, entry.name) });
        }
      });
    } catch (error) {
      visitor.unreadable?.(path, error as Error);
    }
  }
}

/**
 * Git's own link: creating a repository (`git init`, a clone, a submodule's git dir), it tries
 * whether the file system has symlinks with `tXXXXXX -> testing` in the new git dir, and removes it
 * at once. A link to `testing` resolves to that name beside it, which is judged on its own when it is
 * a link (and `testing -> testing` is a loop): it leads nowhere outside its directory, and `testing`
 * is no file git or cloister protects. `at`: the directory's /proc/self/fd/N.
 */
export function isGitProbe(at: string, name: string): boolean {
  if (!/^t[A-Za-z0-9]{6}$/.test(name)) return false;
  try {
    return readlinkSync(`${at}/${name}`) === "testing";
  } catch {
    return false;
  }
}

/** Whether the subdirectories of `dir` (in git dir `root`) are walked and watched: all but OBJECTS's. */
export function walksInto(root: string, dir: string): boolean {
  return dir !== join(root, OBJECTS);
}

/** True when `name` in git dir `root`'s directory `dir` is one of the entries a walk leaves out. */
export function leftOut(root: string, dir: string, name: string): boolean {
  return dir === root && READ_ONLY_TOP.has(name);
}

/**
 * Removes the link `name` in the directory open at `at` (/proc/self/fd/N); a directory that refuses
 * its owner (made read-only) is made writable first, as `rm -rf` would not. The error's words when
 * the link stays.
 */
export function removeLink(at: string, name: string): string | undefined {
  const unlink = () => unlinkSync(`${at}/${name}`);
  try {
    unlink();
    return undefined;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    if (code !== "EACCES" && code !== "EPERM") return String((error as Error).message);
    try {
      // `at` is /proc/self/fd/N: what it leads to is the directory held open, never a link swapped in.
      chmodSync(at, statSync(at).mode | 0o700);
      unlink();
      return undefined;
    } catch (again) {
      return String((again as Error).message);
    }
  }
}

/** When the status of a link last changed: a link renamed or linked into a git dir has its ctime set then, whatever its birth. */
export function linkChangedAt(stats: Stats): number {
  return Math.max(stats.ctimeMs, stats.birthtimeMs);
}

/** True when a link changed at or after `sinceMs` (less CLOCK_SLACK_MS): one the cloister started then may have made. */
export function isNewSince(stats: Stats, sinceMs: number): boolean {
  return linkChangedAt(stats) >= sinceMs - CLOCK_SLACK_MS;
}

/**
 * The end of a cloister that started at `sinceMs`: removes every symlink in the git dirs of
 * `projectRoot` that is not older than that (ctime, which a rename or a hard link into the dir also
 * sets; the birth time alone would pass an old link moved in). A user's own older links stay.
 * Directories that cannot be read (made unreadable inside) are made readable to their owner first.
 * `removed` is told of each link, and whether it is gone (an error's words when not).
 */
export function removeNewGitSymlinks(projectRoot: string, sinceMs: number, removed: (path: string, error: string | undefined) => void): void {
  for (const root of writableGitDirs(projectRoot)) {
    const retried = new Set<string>();
    const visit: GitDirVisitor = {
      link: (link) => {
        if (isNewSince(link.stats, sinceMs)) removed(link.path, link.remove());
      },
      unreadable: (path, error) => {
        // Once per directory: the owner may read a directory it made unreadable again (root needs nothing).
        if ((error as NodeJS.ErrnoException).code !== "EACCES" || retried.has(path)) return;
        retried.add(path);
        const st = lstatSync(path, { throwIfNoEntry: false });
        if (!st?.isDirectory()) return;
        try {
          chmodSync(path, st.mode | 0o700);
        } catch {
          return;
        }
        walkGitDir(root, visit, { path, identity: { dev: st.dev, ino: st.ino } });
      },
    };
    walkGitDir(root, visit);
  }
}
