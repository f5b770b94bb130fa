/**
 * Writing files so that a reader (or a crash) sees the old content or the new, never half of either:
 * write a temp file in the same directory, fsync it, rename it over the target, fsync the directory.
 * Same directory because rename is atomic only within one filesystem.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, closeSync, fchmodSync, mkdirSync, openSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { link, open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { CloisterError } from "../errors.js";

/**
 * Replace `path` with `data` atomically; the file ends up with exactly `mode` whatever the umask.
 * `durable: false` skips the fsyncs: still atomic against crashes of the process, not of the machine
 * (for state that is rebuilt anyway, on hot paths where two fsyncs cost milliseconds).
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o600, durable = true): Promise<void> {
  const temp = await writeTemp(path, data, mode, durable);
  try {
    await rename(temp, path);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  if (durable) await syncDir(dirname(path));
}

/**
 * writeFileAtomic with `durable: false`, done synchronously: for small state files on a launch's
 * critical path (cloister records), where the five thread-pool round trips of the asynchronous
 * form (open, chmod, write, close, rename) cost more than the system calls themselves.
 */
export function replaceFileSync(path: string, data: string, mode = 0o600): void {
  const temp = tempName(path);
  const fd = openSync(temp, "wx", mode);
  try {
    try {
      fchmodSync(fd, mode); // as in writeTemp
      writeFileSync(fd, data);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
  } catch (error) {
    rmSync(temp, { force: true });
    throw error;
  }
}

/**
 * Create `path` with `data` only if it does not exist yet, atomically (link fails on an existing
 * name, unlike rename). Returns false when the file was already there; its content is left alone,
 * so a config a user wrote a moment ago is never replaced by a template.
 */
export async function createFileAtomic(path: string, data: string | Uint8Array, mode = 0o600): Promise<boolean> {
  const temp = await writeTemp(path, data, mode);
  try {
    await link(temp, path);
  } catch (error) {
    if (errorCode(error) === "EEXIST") return false;
    throw error;
  } finally {
    await unlink(temp).catch(() => undefined);
  }
  await syncDir(dirname(path));
  return true;
}

/**
 * mkdir -p with 0700. An existing directory of ours with looser permissions is tightened; one owned
 * by someone else is refused (except for root), since its owner could swap the files we read.
 * Synchronous: a few system calls on local directories, cheaper than the event-loop turns of their
 * asynchronous forms; a launch prepares in one run (see createCloister).
 */
export function ensurePrivateDir(path: string): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  const info = statSync(path);
  if (!info.isDirectory()) throw new CloisterError(`${path} exists but is not a directory`);
  const uid = process.getuid?.();
  if (uid === undefined) return;
  if (info.uid !== uid) {
    if (uid === 0) return;
    throw new CloisterError(
      `${path} belongs to uid ${info.uid}, not to you (uid ${uid}); refusing to keep cloister files there`,
      "remove it or point CLOISTER_HOME / XDG_* at a directory you own",
    );
  }
  if ((info.mode & 0o077) !== 0) chmodSync(path, 0o700);
}

/** Writes `data` to a fresh temp file beside `path` (see tempName) and returns its name. */
async function writeTemp(path: string, data: string | Uint8Array, mode: number, durable = true): Promise<string> {
  const temp = tempName(path);
  const handle = await open(temp, "wx", mode);
  try {
    await handle.chmod(mode); // open's mode is filtered by the umask; the caller asked for exactly this
    await handle.writeFile(data);
    if (durable) await handle.sync();
  } catch (error) {
    await handle.close();
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  await handle.close();
  return temp;
}

/** O_EXCL on a random name: a symlink planted at a guessable temp name cannot redirect the write. */
function tempName(path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
}

/** Make the rename itself durable. Some filesystems refuse fsync on a directory; that is not fatal. */
async function syncDir(dir: string): Promise<void> {
  let handle;
  try {
    handle = await open(dir, "r");
    await handle.sync();
  } catch {
    // best effort
  } finally {
    await handle?.close();
  }
}

function errorCode(error: unknown): string | undefined {
  return error instanceof Error && "code" in error ? String(error.code) : undefined;
}
