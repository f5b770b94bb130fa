/**
 * Reading the newest records of a live log: the last N across rotated files, then following the log
 * across rotations (like `tail -F`), for `cloister audit tail`.
 *
 * Following goes by seq, not by file name: every file begins with the record after the last one of
 * the file before it (signed-log.ts), so the file to read after ours is the one that begins at our
 * last seq + 1, whatever it is called by the time we look. Files are read through descriptors held
 * open, so one renamed or deleted (rotated out past `keep`) once we hold it is still read to its
 * end. Only a file made and deleted between two looks is lost, and the follower says which records
 * it missed.
 */
import { open, stat, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CURRENT_FILE, listLogFiles } from "./files.js";
import { readLinesBackward } from "./lines.js";
import { seqOfLine } from "./record.js";

/** A log file held open: read through its descriptor, a rename or a delete cannot take it away. */
interface HeldFile {
  handle: FileHandle;
  ino: number;
}

/** A file newer than ours, found by seq. */
interface NewerFile extends HeldFile {
  firstSeq: number;
}

/** Records `first`…`last` were deleted (rotated out past `keep`) before they could be read. */
export type OnMissed = (first: number, last: number) => void;

export interface FollowOptions {
  /** How often to look for new records, in ms. */
  pollMs?: number;
  onMissed?: OnMissed;
}

/**
 * How many looks at the files in a row may be spoiled by a rotation running meanwhile before the
 * follower waits for the next round.
 */
const LOOK_ATTEMPTS = 10;

/**
 * Follows the log. Opened before the last lines are read, so nothing written in between is missed:
 * the backlog is read up to `offset` through the same handle, and following starts there.
 */
export class LogFollower {
  private partial = Buffer.alloc(0);
  /** Files found to begin after ours, held open, oldest first: each one before the newest is complete. */
  private newer: NewerFile[] = [];

  private constructor(
    private readonly dir: string,
    private current: HeldFile | undefined,
    private offset: number,
    /** seq of the last line read, or of the last one before following started: the next file begins after it. */
    private lastSeq: number | undefined,
  ) {}

  static async open(dir: string): Promise<LogFollower> {
    const handle = await open(join(dir, CURRENT_FILE), "r").catch(noLogYet);
    if (!handle) return new LogFollower(dir, undefined, 0, await lastSeqOfRotated(dir));
    const { ino, size } = await handle.stat();
    // From the end of the last complete line: one being written as we look is read whole later.
    const start = await endOfCompleteLines(handle, size);
    const lastSeq = (await lastSeqBefore(handle, start)) ?? (await lastSeqOfRotated(dir));
    return new LogFollower(dir, { handle, ino }, start, lastSeq);
  }

  /** The last `count` complete lines of the log as it was when the follower opened, oldest first. */
  async lastLines(count: number): Promise<string[]> {
    const lines: string[] = [];
    if (count <= 0) return lines;
    if (this.current) await collectBackward(this.current.handle, this.offset, count, lines);
    for (const file of await rotatedNewestFirst(this.dir)) {
      if (lines.length >= count) break;
      const handle = await open(file, "r").catch(() => undefined);
      if (!handle) continue; // rotated away while we looked
      try {
        await collectBackward(handle, (await handle.stat()).size, count, lines);
      } finally {
        await handle.close();
      }
    }
    return lines.reverse();
  }

  async close(): Promise<void> {
    const held = [this.current, ...this.newer];
    this.current = undefined;
    this.newer = [];
    for (const file of held) await file?.handle.close();
  }

  /** Hand every new complete line to `onLine` until `signal` aborts. Polls: inotify misses renames on some filesystems. */
  async follow(onLine: (line: string) => void, signal: AbortSignal, options: FollowOptions = {}): Promise<void> {
    try {
      while (!signal.aborted) {
        await this.readAvailable(onLine, options.onMissed);
        await sleep(options.pollMs ?? 250, undefined, { signal }).catch(() => undefined);
      }
    } finally {
      await this.close();
    }
  }

  /**
   * Hands every complete line written since the last call to `onLine`, in log order, across as many
   * rotations as ran meanwhile. follow() calls it each round; tests call it between their writes.
   */
  async readAvailable(onLine: (line: string) => void, onMissed: OnMissed = () => undefined): Promise<void> {
    for (;;) {
      if (this.current) await this.readNew(this.current.handle, onLine);
      const next = await this.fileAfterOurs(onLine, onMissed);
      if (!next) return;
      await this.current?.handle.close();
      this.current = next;
      this.offset = 0;
      this.partial = Buffer.alloc(0); // a line cut off at the end of a finished file never ends
    }
  }

  private async readNew(handle: FileHandle, onLine: (line: string) => void): Promise<void> {
    const buffer = Buffer.alloc(256 * 1024);
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, this.offset);
      if (bytesRead === 0) return;
      this.offset += bytesRead;
      let data = Buffer.concat([this.partial, buffer.subarray(0, bytesRead)]);
      for (let nl = data.indexOf(0x0a); nl !== -1; nl = data.indexOf(0x0a)) {
        const line = data.subarray(0, nl);
        this.lastSeq = seqOfLine(line) ?? this.lastSeq;
        onLine(line.toString("utf8"));
        data = data.subarray(nl + 1);
      }
      this.partial = Buffer.from(data); // a line still being written: wait for its newline
    }
  }

  /**
   * The file to read once ours is read to its end and complete; undefined while ours is still the
   * one written to (or a rotation is halfway).
   */
  private async fileAfterOurs(onLine: (line: string) => void, onMissed: OnMissed): Promise<HeldFile | undefined> {
    if (this.newer.length === 0) {
      if (!(await this.replaced())) return undefined;
      // The guardian closes a file before it renames it: what ours holds now is all it ever will.
      if (this.current) await this.readNew(this.current.handle, onLine);
    }
    return this.takeSuccessor(onMissed);
  }

  /** Whether audit.jsonl is another file than ours (rotated, or a new log); false while there is none (mid-rotation). */
  private async replaced(): Promise<boolean> {
    const now = await stat(join(this.dir, CURRENT_FILE)).catch(() => undefined);
    if (!now) return false;
    if (!this.current || now.ino !== this.current.ino) return true;
    // Cut back by crash recovery at the guardian's start: continue from the new end.
    if (now.size < this.offset) {
      this.offset = now.size;
      this.partial = Buffer.alloc(0);
    }
    return false;
  }

  /**
   * The file that begins right after our last record. A gap is only called records missed after a
   * look that no rotation spoiled: a file renamed while we looked is not a file deleted.
   */
  private async takeSuccessor(onMissed: OnMissed): Promise<HeldFile | undefined> {
    const held = this.newer[0];
    if (held && this.continuesOurs(held)) return this.newer.shift();
    for (let attempt = 0; attempt < LOOK_ATTEMPTS; attempt++) {
      const undisturbed = await this.lookForNewer();
      const next = this.newer[0];
      if (next && this.continuesOurs(next)) return this.newer.shift();
      if (!undisturbed) continue;
      if (next && this.lastSeq !== undefined) {
        onMissed(this.lastSeq + 1, next.firstSeq - 1);
        return this.newer.shift();
      }
      return this.startedOver();
    }
    return undefined; // rotating faster than we can look: again next round
  }

  private continuesOurs(file: NewerFile): boolean {
    return this.lastSeq === undefined || file.firstSeq === this.lastSeq + 1;
  }

  /**
   * Holds every file that begins after our last record, in `newer` by seq. False when a rotation ran
   * while we looked (see lookAtFiles).
   */
  private async lookForNewer(): Promise<boolean> {
    const { files, undisturbed } = await lookAtFiles(this.dir);
    const known = new Set([this.current?.ino, ...this.newer.map((file) => file.ino)]);
    for (const { handle, ino, firstSeq } of files) {
      const isNewer = firstSeq !== undefined && (this.lastSeq === undefined || firstSeq > this.lastSeq) && !known.has(ino);
      if (isNewer) this.newer.push({ handle, ino, firstSeq });
      else await handle.close();
    }
    this.newer.sort((a, b) => a.firstSeq - b.firstSeq);
    return undisturbed;
  }

  /**
   * No file begins after our last record, yet audit.jsonl is another file than ours, with records:
   * the log was started over (the old one moved away). Follow the new one from its start.
   */
  private async startedOver(): Promise<HeldFile | undefined> {
    const handle = await open(join(this.dir, CURRENT_FILE), "r").catch(() => undefined);
    if (!handle) return undefined;
    const { ino } = await handle.stat();
    if (ino === this.current?.ino || (await firstSeqOf(handle)) === undefined) {
      await handle.close();
      return undefined;
    }
    this.lastSeq = undefined;
    return { handle, ino };
  }
}

/**
 * No log file yet (the guardian makes it when it first starts): nothing to read. Any other failure,
 * such as another user's log, is not an empty log, and is thrown.
 */
function noLogYet(error: NodeJS.ErrnoException): undefined {
  if (error.code === "ENOENT") return undefined;
  throw error;
}

interface LookedAtFile extends HeldFile {
  path: string;
  firstSeq: number | undefined;
}

/**
 * Every file of the log, opened, with the seq of its first record (undefined while it is empty).
 * `undisturbed` when a second look finds the same names beginning at the same seqs: a rotation
 * renames every file and makes a new audit.jsonl, so none ran in between, and a seq in none of the
 * files is in no file.
 */
async function lookAtFiles(dir: string): Promise<{ files: LookedAtFile[]; undisturbed: boolean }> {
  const files: LookedAtFile[] = [];
  for (const path of await listLogFiles(dir).catch(() => [])) {
    const handle = await open(path, "r").catch(() => undefined);
    if (!handle) continue; // renamed or deleted since the listing: the second look differs
    files.push({ path, handle, ino: (await handle.stat()).ino, firstSeq: await firstSeqOf(handle) });
  }
  const again: Array<{ path: string; firstSeq: number | undefined }> = [];
  for (const path of await listLogFiles(dir).catch(() => [])) {
    const handle = await open(path, "r").catch(() => undefined);
    again.push({ path, firstSeq: handle && (await firstSeqOf(handle).finally(() => handle.close())) });
  }
  const undisturbed = again.length === files.length && again.every((file, i) => file.path === files[i]?.path && file.firstSeq === files[i]?.firstSeq);
  return { files, undisturbed };
}

/** seq of a file's first record; undefined while nothing (or not all of its start) is written. */
async function firstSeqOf(handle: FileHandle): Promise<number | undefined> {
  const head = Buffer.alloc(32);
  const { bytesRead } = await handle.read(head, 0, head.length, 0);
  return seqOfLine(head.subarray(0, bytesRead));
}

/** Offset just past the last newline: where the complete lines end. */
async function endOfCompleteLines(handle: FileHandle, size: number): Promise<number> {
  for await (const line of readLinesBackward(handle, size)) return line.terminated ? size : line.offset;
  return 0;
}

/** seq of the last complete line before `end` that has one. */
async function lastSeqBefore(handle: FileHandle, end: number): Promise<number | undefined> {
  for await (const line of readLinesBackward(handle, end)) {
    const seq = line.terminated ? seqOfLine(line.bytes) : undefined;
    if (seq !== undefined) return seq;
  }
  return undefined;
}

/** seq of the last record in the rotated files (newest first), for a follower that finds no audit.jsonl. */
async function lastSeqOfRotated(dir: string): Promise<number | undefined> {
  for (const file of await rotatedNewestFirst(dir)) {
    const handle = await open(file, "r").catch(() => undefined);
    if (!handle) continue; // rotated away while we looked
    try {
      const seq = await lastSeqBefore(handle, (await handle.stat()).size);
      if (seq !== undefined) return seq;
    } finally {
      await handle.close();
    }
  }
  return undefined;
}

async function rotatedNewestFirst(dir: string): Promise<string[]> {
  return (await listLogFiles(dir).catch(() => [])).filter((file) => !file.endsWith(`/${CURRENT_FILE}`)).reverse();
}

/** Complete lines from `end` backwards into `lines` (newest first) until it holds `count`. */
async function collectBackward(handle: FileHandle, end: number, count: number, lines: string[]): Promise<void> {
  for await (const line of readLinesBackward(handle, end)) {
    if (lines.length >= count) return;
    if (line.terminated && line.bytes.length > 0) lines.push(line.bytes.toString("utf8"));
  }
}
