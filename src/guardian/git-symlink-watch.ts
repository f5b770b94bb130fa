import { lstatSync, watch, type FSWatcher } from "node:fs";
import { join } from "node:path";
import { CloisterError } from "../errors.js";
import { isBelow } from "../path-under.js";
import { inDirectory, isGitProbe, isNewSince, leftOut, removeLink, walkGitDir, walksInto, type DirIdentity, type FoundLink } from "../sandbox/git-symlinks.js";

/** What the watch tells of a cloister: a link it removed (`error`: why it could not), or a directory it cannot watch. */
export type GitLinkEvent = { kind: "symlink"; path: string; error?: string } | { kind: "unwatchable"; path: string; error: string };

/**
 * Events counted on a git dir since its last sweep beyond which it is swept again at once. The
 * kernel drops inotify events past its queue (fs.inotify.max_queued_events, 16384 by default) and
 * node does not say so: an agent that floods the git dir with writes could hide a link's creation
 * among them. The sweep finds it all the same, and the guardian's tick sweeps every 2 s anyway.
 */
const BURST_EVENTS = 4096;
const BURST_SWEEP_DELAY_MS = 20;

/** One watched directory of a git dir: the one it was when watched (a directory renamed in its place is another). */
interface WatchedDir {
  identity: DirIdentity;
  watcher: FSWatcher;
}

/** A git dir watched for the cloisters that can write it. */
interface WatchedRoot {
  path: string;
  dirs: Map<string, WatchedDir>;
  /** Links that were there before the cloisters (the user's own), by identity: left alone. */
  baseline: Set<string>;
  /** The earliest start of its cloisters (ms): a link changed since then may be theirs. */
  since: number;
  cloisters: Map<string, string>;
  events: number;
  sweepTimer?: NodeJS.Timeout;
}

/**
 * Watches the git dirs of running cloisters (sandbox/git-symlinks.ts: why) for symlinks, and
 * removes each one at once, before anything else, through its directory's descriptor (never
 * following it), then tells `found` for every cloister that can write that git dir.
 *
 * Every directory of the tree has a watcher of its own (fs.watch on the directory: one inotify
 * watch each, objects/ gives up to 256, a repository a few hundred in all). node 20's
 * `fs.watch(dir, { recursive: true })` on Linux is no fit: it is implemented in JS with a watcher
 * per *file* (thousands of inotify watches for loose objects, against a per-user limit that may be
 * 8192), it stats through links (following the very link it should report), and a directory
 * renamed in with a link already inside is not reported as holding one. Here a directory that
 * appears (made, or renamed in whole) is walked at once: its links are removed, its directories
 * watched; one whose watch the kernel refuses (ENOSPC: the user's inotify watches are used up; an
 * unreadable directory) is reported for the cloisters to be stopped, fail closed. Events can be
 * lost (see BURST_EVENTS), so `sweep` walks every git dir again: the guardian calls it on its tick.
 *
 * Links there before the watch began are the user's (git never makes one), unless they changed
 * since the cloister's start (`since`, for a guardian adopting running cloisters): those go too.
 */
export class GitSymlinkWatch {
  private readonly roots = new Map<string, WatchedRoot>();
  /** Per cloister id: the git dirs watched for it. */
  private readonly watched = new Map<string, string[]>();

  constructor(private readonly found: (cloister: { id: string; name: string }, event: GitLinkEvent) => void) {}

  /**
   * Watches the git dirs `roots` for cloister `id` named `name`, started at `since` (ms): links
   * changed since then are removed and reported now. Throws, watching nothing new, when a git dir
   * cannot be watched (a launch is then refused).
   */
  watch(id: string, name: string, roots: readonly string[], since: number): void {
    const known = this.watched.get(id) ?? [];
    const added = roots.filter((root) => !known.includes(root));
    if (added.length === 0) return;
    this.watched.set(id, [...known, ...added]);
    for (const path of added) {
      const existing = this.roots.get(path);
      const root = existing ?? { path, dirs: new Map(), baseline: new Set<string>(), since, cloisters: new Map(), events: 0 };
      root.cloisters.set(id, name);
      if (!existing) this.roots.set(path, root);
      const problems: GitLinkEvent[] = [];
      // The first cloister's walk makes the baseline; an earlier-started one joining looks again.
      if (!existing || since < root.since) this.sync(root, problems, { since, first: !existing });
      root.since = Math.min(root.since, since);
      const failed = problems.find((p): p is Extract<GitLinkEvent, { kind: "unwatchable" }> => p.kind === "unwatchable");
      if (failed) {
        this.unwatch(id);
        throw new CloisterError(`cannot watch ${failed.path} for symbolic links planted by the cloister: ${failed.error}`, "raise fs.inotify.max_user_watches (sysctl), or make the directory readable again");
      }
      this.tell(root, problems);
    }
  }

  unwatch(id: string): void {
    for (const path of this.watched.get(id) ?? []) {
      const root = this.roots.get(path);
      root?.cloisters.delete(id);
      if (root && root.cloisters.size === 0) {
        for (const dir of root.dirs.values()) dir.watcher.close();
        clearTimeout(root.sweepTimer);
        this.roots.delete(path);
      }
    }
    this.watched.delete(id);
  }

  close(): void {
    for (const id of [...this.watched.keys()]) this.unwatch(id);
  }

  /** Walks every watched git dir again: links the events missed are removed and reported, directories they missed watched. */
  sweep(): void {
    for (const root of [...this.roots.values()]) this.sweepRoot(root);
  }

  private sweepRoot(root: WatchedRoot): void {
    clearTimeout(root.sweepTimer);
    root.sweepTimer = undefined;
    root.events = 0;
    const problems: GitLinkEvent[] = [];
    this.sync(root, problems);
    this.tell(root, problems);
  }

  /**
   * Walks `root`'s tree (from `start` when given, else all of it: then watchers of directories no
   * longer there are closed): each directory gets a watcher, each link not in the baseline is
   * removed. `establish`: the walk that makes the baseline (`first`) or looks at it again for an
   * earlier `since`: links older than that are the user's.
   */
  private sync(root: WatchedRoot, problems: GitLinkEvent[], establish?: { since: number; first: boolean }, start?: { path: string; identity: DirIdentity }): void {
    const seen = new Set<string>();
    walkGitDir(
      root.path,
      {
        directory: (path, identity) => {
          seen.add(path);
          const watched = root.dirs.get(path);
          if (watched && sameDir(watched.identity, identity)) return;
          if (watched) this.forgetDirs(root, path);
          const error = this.watchDir(root, path, identity);
          if (error !== undefined) problems.push({ kind: "unwatchable", path, error });
        },
        link: (link) => this.judge(root, link, problems, establish),
        unreadable: (path, error) => problems.push({ kind: "unwatchable", path, error: error.message }),
      },
      start,
    );
    if (start) return;
    for (const path of [...root.dirs.keys()]) {
      if (!seen.has(path)) this.forgetDirs(root, path);
    }
  }

  /** A link found: kept when it is the user's (in the baseline), else removed and added to `problems`. */
  private judge(root: WatchedRoot, link: FoundLink, problems: GitLinkEvent[], establish?: { since: number; first: boolean }): void {
    const key = linkKey(link);
    const old = establish === undefined || !isNewSince(link.stats, establish.since);
    if (old && (root.baseline.has(key) || establish?.first === true)) {
      root.baseline.add(key);
      return;
    }
    root.baseline.delete(key);
    const error = link.remove();
    problems.push(error === undefined ? { kind: "symlink", path: link.path } : { kind: "symlink", path: link.path, error });
  }

  /** Starts watching directory `path` of `root`; the error's words when the kernel refuses. */
  private watchDir(root: WatchedRoot, path: string, identity: DirIdentity): string | undefined {
    let watcher: FSWatcher;
    try {
      watcher = watch(path, { persistent: false }, (_event, name) => this.changed(root, path, name));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // Gone or swapped meanwhile: its parent's event (or the next sweep) says what is there now.
      if (code === "ENOENT" || code === "ENOTDIR") return undefined;
      return (error as Error).message;
    }
    watcher.on("error", () => undefined);
    root.dirs.set(path, { identity, watcher });
    return undefined;
  }

  /** Closes the watchers of `path` and of the directories below it. */
  private forgetDirs(root: WatchedRoot, path: string): void {
    for (const [dir, watched] of [...root.dirs]) {
      if (dir === path || isBelow(dir, path)) {
        watched.watcher.close();
        root.dirs.delete(dir);
      }
    }
  }

  /** An event in watched directory `dir`: what `name` is now is looked at through the directory's descriptor. */
  private changed(root: WatchedRoot, dir: string, name: string | Buffer | null): void {
    const watched = root.dirs.get(dir);
    if (!watched || this.roots.get(root.path) !== root) return; // closed meanwhile
    if (++root.events >= BURST_EVENTS) this.sweepSoon(root);
    if (name === null) return this.sweepSoon(root); // the kernel did not say which: look at all of it
    const entry = String(name);
    if (leftOut(root.path, dir, entry)) return;
    const path = join(dir, entry);
    const problems: GitLinkEvent[] = [];
    try {
      inDirectory(dir, watched.identity, (at) => {
        const stats = lstatSync(`${at}/${entry}`, { throwIfNoEntry: false });
        const known = root.dirs.get(path);
        if (stats?.isSymbolicLink()) {
          if (known) this.forgetDirs(root, path);
          if (isGitProbe(at, entry)) return;
          this.judge(root, { path, stats, remove: () => removeLink(at, entry) }, problems);
        } else if (stats?.isDirectory() && walksInto(root.path, dir)) {
          const identity = { dev: stats.dev, ino: stats.ino };
          if (known && sameDir(known.identity, identity)) return;
          if (known) this.forgetDirs(root, path);
          // New here (made, or renamed in with whatever it holds): all of it is looked at now.
          this.sync(root, problems, undefined, { path, identity });
        } else if (known) {
          this.forgetDirs(root, path);
        }
      });
    } catch (error) {
      // The directory cannot be opened any more (made unreadable): fail closed.
      problems.push({ kind: "unwatchable", path: dir, error: (error as Error).message });
    }
    this.tell(root, problems);
  }

  private sweepSoon(root: WatchedRoot): void {
    if (root.sweepTimer) return;
    root.sweepTimer = setTimeout(() => this.sweepRoot(root), BURST_SWEEP_DELAY_MS);
    root.sweepTimer.unref();
  }

  /** Tells `found` of each problem, for every cloister that can write `root`. */
  private tell(root: WatchedRoot, problems: readonly GitLinkEvent[]): void {
    for (const problem of problems) {
      for (const [id, name] of [...root.cloisters]) this.found({ id, name }, problem);
    }
  }
}

function sameDir(a: DirIdentity, b: DirIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/** A link's identity: inode and birth time (an inode number is reused at once once freed). */
function linkKey(link: FoundLink): string {
  return `${link.stats.dev}:${link.stats.ino}:${link.stats.birthtimeMs}`;
}
