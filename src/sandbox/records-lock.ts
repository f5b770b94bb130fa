import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import type { CloisterPaths } from "../config/paths.js";
import { createFileAtomic, ensurePrivateDir } from "../config/atomic-write.js";
import { CloisterError } from "../errors.js";

/** A holder keeps the lock for a few file operations; one that keeps it this long is stuck. */
const GIVE_UP_MS = 10_000;
const RETRY_MS = 2;

/**
 * Runs `section` while holding the instance's records lock, around every change to cloister records
 * and to the placeholders they list: claiming a name, rewriting a record, ending one. Two launches of
 * one name would otherwise both make a cloister (the second's record replacing the first's), and two
 * cloisters of a project ending at once would each see the other's record and both leave the
 * placeholders behind. `section` is synchronous, so the lock is held for file operations only.
 *
 * The lock is an abstract unix socket, like the guardian's instance lock: the kernel frees it when
 * its holder dies, even by SIGKILL, so there is no stale lock to judge. Its name derives from a random
 * key in the private state dir, so another user can neither compute it nor squat it to block launches
 * and stops.
 */
export async function withRecordsLock<T>(paths: CloisterPaths, section: () => T, projectKey?: string): Promise<T> {
  // First, when given: the lock of a project's placeholders, shared by every instance and user
  // (projectKey: project-marks.ts). A launch's planning and making of placeholders and an ending
  // cloister's look at the project's marks and removal of placeholders then never interleave, so a
  // launch either finds placeholders gone and makes its own, or has its mark seen. Always taken
  // before a records lock, never while holding one: no two locks are waited on in opposite order.
  // Its name is not secret (other users must find it); one who holds it only delays such launches.
  const project = projectKey === undefined ? undefined : await acquire(`\0cloister-project-lock-${projectKey}`, GIVE_UP_MS, "the lock on the project's placeholders");
  try {
    const lock = await acquire(await lockName(paths), GIVE_UP_MS, "the lock on cloister records");
    try {
      return section();
    } finally {
      lock.close();
    }
  } finally {
    project?.close();
  }
}

/** `git worktree add` checks out a whole branch: a big repository may take this long. */
const WORKTREE_GIVE_UP_MS = 300_000;

/**
 * Runs `section` while holding the lock of one worktree directory of this instance (the records
 * lock's kind, another name): two launches of `start -b NEWBRANCH` at once would both run `git
 * worktree add`, and the second fail on git's ref lock (found by QA). The second now waits, then
 * finds the worktree made. Held across git processes, so it is not the records lock.
 */
export async function withWorktreeLock<T>(paths: CloisterPaths, dir: string, section: () => Promise<T>): Promise<T> {
  const name = `${await lockName(paths)}-worktree-${createHash("sha256").update(dir).digest("hex").slice(0, 32)}`;
  const lock = await acquire(name, WORKTREE_GIVE_UP_MS, `the lock on the worktree ${dir}`);
  try {
    return await section();
  } finally {
    lock.close();
  }
}

async function acquire(name: string, giveUpMs: number, what: string): Promise<Server> {
  for (const deadline = Date.now() + giveUpMs; ; ) {
    const server = await listenOn(name);
    if (server) return server;
    if (Date.now() > deadline) {
      throw new CloisterError(`another cloister command has held ${what} for ${Math.round(giveUpMs / 1000)} s`, "retry; if it persists, look for a stopped (Ctrl-Z) cloister command");
    }
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}

/** The listening server, or undefined when another process holds the name. */
function listenOn(name: string): Promise<Server | undefined> {
  const server = createServer();
  return new Promise((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) => (error.code === "EADDRINUSE" ? resolve(undefined) : reject(error)));
    server.listen(name, () => {
      server.unref();
      resolve(server);
    });
  });
}

/** Per records dir: a launch takes the lock four times, and the key never changes once made. */
const lockNames = new Map<string, string>();

async function lockName(paths: CloisterPaths): Promise<string> {
  const known = lockNames.get(paths.cloisterRecordDir);
  if (known !== undefined) return known;
  const digest = createHash("sha256").update(await lockKey(paths)).digest("hex").slice(0, 32);
  const name = `\0cloister-records-${digest}`;
  lockNames.set(paths.cloisterRecordDir, name);
  return name;
}

/** The instance's lock key: made once (the first of two racing makers wins), private to its user. */
async function lockKey(paths: CloisterPaths): Promise<string> {
  const file = join(paths.cloisterRecordDir, ".lock-key");
  try {
    return readFileSync(file, "utf8");
  } catch {
    ensurePrivateDir(paths.cloisterRecordDir);
    await createFileAtomic(file, randomBytes(32).toString("hex"));
    return readFileSync(file, "utf8");
  }
}
