/**
 * Reading the newest records of a live log: the last N across rotated files, then following the
 * current file across rotations (like `tail -F`), for `cloister audit tail`.
 */
import { open, stat, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CURRENT_FILE, listLogFiles } from "./files.js";
import { readLinesBackward } from "./lines.js";

/**
 * Follows audit.jsonl. Opened before the last lines are read, so nothing written in between is
 * missed: the backlog is read up to `offset` through the same handle, and following starts there.
 */
export class LogFollower {
  private partial = Buffer.alloc(0);

  private constructor(
    private readonly dir: string,
    private handle: FileHandle | undefined,
    private ino: number,
    private offset: number,
  ) {}

  static async open(dir: string): Promise<LogFollower> {
    const handle = await open(join(dir, CURRENT_FILE), "r").catch(noLogYet);
    if (!handle) return new LogFollower(dir, undefined, -1, 0);
    const info = await handle.stat();
    return new LogFollower(dir, handle, info.ino, info.size);
  }

  /** The last `count` complete lines of the log as it was when the follower opened, oldest first. */
  async lastLines(count: number): Promise<string[]> {
    const lines: string[] = [];
    if (count <= 0) return lines;
    if (this.handle) await collectBackward(this.handle, this.offset, count, lines);
    const rotated = (await listLogFiles(this.dir).catch(() => [])).filter((file) => !file.endsWith(`/${CURRENT_FILE}`)).reverse();
    for (const file of rotated) {
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
    await this.handle?.close();
    this.handle = undefined;
  }

  /** Hand every new complete line to `onLine` until `signal` aborts. Polls: inotify misses renames on some filesystems. */
  async follow(onLine: (line: string) => void, signal: AbortSignal, pollMs = 250): Promise<void> {
    try {
      while (!signal.aborted) {
        if (this.handle) await this.readNew(this.handle, onLine);
        if (await this.reopenIfReplaced(onLine)) continue;
        await sleep(pollMs, undefined, { signal }).catch(() => undefined);
      }
    } finally {
      await this.close();
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
        onLine(data.subarray(0, nl).toString("utf8"));
        data = data.subarray(nl + 1);
      }
      this.partial = Buffer.from(data); // a line still being written: wait for its newline
    }
  }

  /**
   * True when our file is no longer audit.jsonl (it was rotated) and we moved on to the next newer
   * file. One file at a time, found by inode: with small files several rotations can happen between
   * two polls, and jumping straight to audit.jsonl would skip the files in between. The guardian
   * finishes a file before renaming it, so reading ours to its end once more, after seeing the
   * rename, leaves nothing behind.
   */
  private async reopenIfReplaced(onLine: (line: string) => void): Promise<boolean> {
    const current = await stat(join(this.dir, CURRENT_FILE)).catch(() => undefined);
    if (!current) return false; // mid-rotation, or no log yet
    if (this.handle && current.ino === this.ino) {
      // Cut back by crash recovery at the guardian's start: continue from the new end.
      if (current.size < this.offset) {
        this.offset = current.size;
        this.partial = Buffer.alloc(0);
      }
      return false;
    }
    const next = this.handle ? await this.nextNewerFile() : { path: join(this.dir, CURRENT_FILE), ino: current.ino };
    if (!next || next.ino === this.ino) return false;
    const handle = await open(next.path, "r").catch(() => undefined);
    if (!handle) return false;
    if ((await handle.stat()).ino !== next.ino) {
      await handle.close(); // renamed again between listing and opening: look again next round
      return false;
    }
    if (this.handle) {
      await this.readNew(this.handle, onLine);
      await this.handle.close();
    }
    this.handle = handle;
    this.ino = next.ino;
    this.offset = 0;
    this.partial = Buffer.alloc(0);
    return true;
  }

  /**
   * The file after ours in log order; audit.jsonl if ours was pruned meanwhile (records were missed
   * then: we were slower than `keep` rotations). Undefined while files are being renamed.
   */
  private async nextNewerFile(): Promise<{ path: string; ino: number } | undefined> {
    const files = await stableListing(this.dir);
    if (!files) return undefined;
    const ours = files.findIndex((file) => file.ino === this.ino);
    const next = ours >= 0 ? files[ours + 1] : undefined;
    return next ?? files.at(-1);
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

/**
 * Log files with their inodes, oldest first. Names and inodes are read separately, so a rotation in
 * between would pair a name with the wrong file; two identical listings in a row rule that out.
 */
async function stableListing(dir: string): Promise<Array<{ path: string; ino: number }> | undefined> {
  const listing = async () => {
    const files: Array<{ path: string; ino: number }> = [];
    for (const path of await listLogFiles(dir).catch(() => [])) {
      const info = await stat(path).catch(() => undefined);
      if (info) files.push({ path, ino: info.ino });
    }
    return files;
  };
  for (let attempt = 0; attempt < 5; attempt++) {
    const first = await listing();
    const second = await listing();
    if (JSON.stringify(first) === JSON.stringify(second)) return first;
  }
  return undefined;
}

/** Complete lines from `end` backwards into `lines` (newest first) until it holds `count`. */
async function collectBackward(handle: FileHandle, end: number, count: number, lines: string[]): Promise<void> {
  for await (const line of readLinesBackward(handle, end)) {
    if (lines.length >= count) return;
    if (line.terminated && line.bytes.length > 0) lines.push(line.bytes.toString("utf8"));
  }
}
