import { lstatSync, watch, type FSWatcher } from "node:fs";
import { basename, dirname, join } from "node:path";

/**
 * A read-only bind mount over a single file is attached to that file's directory entry: when the
 * host replaces the file by rename (as `git config`, `git push -u` and many editors do), the mount
 * is lifted in every namespace and the cloister sees the new file on its writable project mount.
 * A cloister in that state could plant `core.hooksPath` in `.git/config` for the host's next commit.
 * Nothing unprivileged can re-attach the mount from outside, so the guardian watches the protected
 * files of running cloisters and reports each replacement at once (a cloister cannot replace them:
 * the mount makes that EBUSY, so an event on them is the host's doing); the guardian kills and removes the cloister (fail closed), and the next start
 * protects the new file again. A process inside that races the rename in a tight loop can still get
 * a write in first: the window is narrowed, not closed (see docs/sandbox.md).
 *
 * An event says that a name changed, not when: one queued before a file was watched (another launch
 * of the project creating the placeholder this one then found and watches) arrives after. So each
 * watcher keeps the identity of the file it saw (inode and birth time: a replaced file's inode number
 * can be reused at once, e.g. by the second of two `git config` writes), and only a file that is
 * gone or another counts as replaced.
 */
export class ProtectionWatch {
  /** Per watched directory: its watcher, and per file name the cloisters watching it with the file each saw. */
  private readonly dirs = new Map<string, { watcher: FSWatcher; files: Map<string, Map<string, string | undefined>> }>();
  /** Per cloister id: its name (what `lost` is told, so no record needs looking for first) and files. */
  private readonly watched = new Map<string, { name: string; files: string[] }>();

  constructor(private readonly lost: (cloister: { id: string; name: string }, file: string) => void) {}

  /** Starts watching the protected files of the cloister `id` named `name` (adding to those watched already). */
  watch(id: string, name: string, files: readonly string[]): void {
    const known = this.watched.get(id)?.files ?? [];
    const added = files.filter((file) => !known.includes(file));
    this.watched.set(id, { name, files: [...known, ...added] });
    for (const file of added) {
      const dir = dirname(file);
      let entry = this.dirs.get(dir);
      if (!entry) {
        let watcher: FSWatcher;
        try {
          watcher = watch(dir, { persistent: false }, (event, entryName) => this.changed(dir, event, entryName));
        } catch {
          continue; // The directory is gone: so is the project; the reaper cleans up.
        }
        watcher.on("error", () => undefined);
        entry = { watcher, files: new Map() };
        this.dirs.set(dir, entry);
      }
      // Only NAME itself: git's NAME.lock would be the earlier warning, but a cloister can create
      // that one too (its directory is writable), so it cannot say who is at work.
      const fileName = basename(file);
      const owners = entry.files.get(fileName) ?? new Map<string, string | undefined>();
      owners.set(id, identityOf(file));
      entry.files.set(fileName, owners);
    }
  }

  unwatch(cloister: string): void {
    for (const file of this.watched.get(cloister)?.files ?? []) {
      const entry = this.dirs.get(dirname(file));
      const owners = entry?.files.get(basename(file));
      owners?.delete(cloister);
      if (entry && owners?.size === 0) entry.files.delete(basename(file));
      if (entry && entry.files.size === 0) {
        entry.watcher.close();
        this.dirs.delete(dirname(file));
      }
    }
    this.watched.delete(cloister);
  }

  close(): void {
    for (const cloister of [...this.watched.keys()]) this.unwatch(cloister);
  }

  private changed(dir: string, event: string, name: string | Buffer | null): void {
    // A rename event is what a replacement (or removal) gives; a write in place keeps the mount.
    if (event !== "rename" || name === null) return;
    const owners = this.dirs.get(dir)?.files.get(String(name));
    if (!owners) return;
    const file = join(dir, String(name));
    const now = identityOf(file);
    for (const [id, seen] of [...owners]) {
      const name = this.watched.get(id)?.name;
      if (name !== undefined && (now === undefined || now !== seen)) this.lost({ id, name }, file);
    }
  }
}

/** Which file is at `path` itself (a symlink's own): inode and birth time; undefined when nothing is there. */
function identityOf(path: string): string | undefined {
  try {
    const st = lstatSync(path);
    return `${st.ino}:${st.birthtimeMs}`;
  } catch {
    return undefined;
  }
}
