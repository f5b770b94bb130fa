/**
 * Removing a cloister's tree (its runtime dir, a `run`'s HOME) without holding up the process that
 * removes it. The guardian does it, on its one event loop, and a HOME may hold hundreds of thousands
 * of files (an agent's caches): rmSync took ~4.5 s for 200k, during which its control socket and
 * every cloister's egress stood still. fs.promises.rm frees the event loop but queues one request
 * per file on libuv's four threads at once, ahead of the proxy's DNS lookups, which then waited as
 * long. Here the removal runs synchronously in slices of SLICE_MS, and the event loop runs between
 * them: no thread, nothing queued, and about rmSync's speed. `cloister rm` removes a stopped
 * cloister's HOME with it too.
 */
import { chmodSync, lstatSync, opendirSync, rmdirSync, unlinkSync, type Dir, type Dirent } from "node:fs";
import { dirname, join } from "node:path";
import { setImmediate as nextTurn } from "node:timers/promises";

/** How long one slice of removal may keep the event loop (one syscall that is slow can add to it). */
const SLICE_MS = 10;
/** Directory entries read per system call (node's default, 32, takes six thousand calls to list 200k). */
const LISTING_BATCH = 1024;

/**
 * A directory being emptied: its listing is read whole first (in slices, through `reading`), so
 * that nothing is removed from under a listing still being read, then worked through from `next`.
 * Only the deepest one is ever being read: one descriptor per removal, however deep the tree.
 */
interface Emptying {
  path: string;
  reading: Dir | undefined;
  entries: Dirent[];
  next: number;
}

/**
 * Removes `root` and all below it, as rmSync(root, { recursive: true, force: true }) does: nothing
 * there is fine, a symlink is removed as the link (never what it points to, also where `root` is
 * one), and the first error other than a missing entry is thrown. Resolves once all of it is gone.
 * Unlike rmSync, it also empties a directory made read-only inside (Go's module cache makes its
 * directories so), which otherwise refuses a user other than root, as it refuses `rm -rf`.
 * `sliceMs`: how long each slice may run (tests make every entry a slice of its own with 0).
 */
export async function removeTree(root: string, sliceMs = SLICE_MS): Promise<void> {
  const emptying: Emptying[] = [];
  let sliceEnd = Date.now() + sliceMs;
  const overdue = () => Date.now() >= sliceEnd;
  try {
    removeOrStartEmptying(root, emptying);
    while (emptying.length > 0) {
      advance(emptying, overdue);
      if (overdue()) {
        await nextTurn();
        sliceEnd = Date.now() + sliceMs;
      }
    }
  } finally {
    for (const dir of emptying) dir.reading?.closeSync();
  }
}

/**
 * Unlinks `path`, or, when it is a directory, puts it on `emptying`. It is looked at with lstat
 * right before it is opened: a symlink found in a directory's place is unlinked, never followed.
 */
function removeOrStartEmptying(path: string, emptying: Emptying[]): void {
  try {
    if (!lstatSync(path).isDirectory()) return inWritable(dirname(path), () => unlinkSync(path));
    emptying.push({ path, reading: inWritable(path, () => opendirSync(path, { bufferSize: LISTING_BATCH })), entries: [], next: 0 });
  } catch (error) {
    if (!isMissing(error)) throw error;
  }
}

/** One piece of work on the deepest directory being emptied, until it is done with it or `overdue`. */
function advance(emptying: Emptying[], overdue: () => boolean): void {
  const dir = emptying[emptying.length - 1];
  if (!dir) return;
  if (dir.reading) return readListing(dir, dir.reading, overdue);
  while (dir.next < dir.entries.length) {
    const entry = dir.entries[dir.next++];
    if (!entry) continue;
    const path = join(dir.path, entry.name);
    if (entry.isDirectory()) return removeOrStartEmptying(path, emptying);
    inWritable(dir.path, () => unlinkIfThere(path));
    if (overdue()) return;
  }
  removeEmptied(dir, emptying);
}

function readListing(dir: Emptying, reading: Dir, overdue: () => boolean): void {
  for (let entry = reading.readSync(); entry !== null; entry = reading.readSync()) {
    dir.entries.push(entry);
    if (overdue()) return;
  }
  reading.closeSync();
  dir.reading = undefined;
}

/**
 * Removes a directory whose listing was all removed. One that is not empty (an entry made after it
 * was listed) is listed again; when that listing was empty and it still is not, that is an error,
 * not a loop.
 */
function removeEmptied(dir: Emptying, emptying: Emptying[]): void {
  try {
    inWritable(dirname(dir.path), () => rmdirSync(dir.path));
  } catch (error) {
    const again = (error as NodeJS.ErrnoException).code === "ENOTEMPTY" && dir.entries.length > 0;
    if (!again && !isMissing(error)) throw error;
    emptying.pop();
    if (again) removeOrStartEmptying(dir.path, emptying);
    return;
  }
  emptying.pop();
}

function unlinkIfThere(path: string): void {
  try {
    unlinkSync(path);
  } catch (error) {
    if (!isMissing(error)) throw error;
  }
}

/**
 * `change` (of directory `dir` or of an entry in it); when the permissions of `dir` refuse it, as a
 * read-only directory refuses its owner unless root, `dir` is made its owner's to change and `change`
 * is tried once more. Only a directory found by lstat is changed, never a link's target.
 */
function inWritable<T>(dir: string, change: () => T): T {
  try {
    return change();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if ((code !== "EACCES" && code !== "EPERM") || !lstatSync(dir, { throwIfNoEntry: false })?.isDirectory()) throw error;
    chmodSync(dir, 0o700);
    return change();
  }
}

function isMissing(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).code === "ENOENT";
}
