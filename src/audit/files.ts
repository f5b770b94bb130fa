/**
 * Which files make up a log directory, in which order, and how they rotate.
 *
 *   audit.jsonl      the file being written
 *   audit.1.jsonl    the file before it (most recently rotated)
 *   audit.2.jsonl    older … up to audit.<keep>.jsonl; anything older is deleted
 *
 * Numbered names (as logrotate does) rather than timestamps, so "newer" never depends on a clock;
 * the walk order is by number, and a gap left by a crash in the middle of a rotation is harmless.
 */
import { readdir, rename, unlink } from "node:fs/promises";
import { join } from "node:path";

export const CURRENT_FILE = "audit.jsonl";
const ROTATED_RE = /^audit\.([1-9][0-9]*)\.jsonl$/;

export function rotatedName(n: number): string {
  return `audit.${n}.jsonl`;
}

/** Log files in `dir`, oldest first (highest rotation number first, the current file last). */
export async function listLogFiles(dir: string): Promise<string[]> {
  const names = await readdir(dir);
  const rotated = names
    .map((name) => ({ name, n: Number(ROTATED_RE.exec(name)?.[1] ?? 0) }))
    .filter((entry) => entry.n > 0)
    .sort((a, b) => b.n - a.n)
    .map((entry) => join(dir, entry.name));
  return names.includes(CURRENT_FILE) ? [...rotated, join(dir, CURRENT_FILE)] : rotated;
}

/**
 * Shift every rotated file up by one (deleting those beyond `keep`), then move the current file to
 * audit.1.jsonl. Highest number first, so a rename never lands on a file that still has to move.
 * Each step is one atomic rename: a crash between two steps leaves a gap in the numbers, never a
 * half file or two files with one name.
 */
export async function rotateFiles(dir: string, keep: number): Promise<void> {
  const names = await readdir(dir);
  const rotated = names
    .map((name) => Number(ROTATED_RE.exec(name)?.[1] ?? 0))
    .filter((n) => n > 0)
    .sort((a, b) => b - a);
  for (const n of rotated) {
    if (n + 1 > keep) await unlink(join(dir, rotatedName(n)));
    else await rename(join(dir, rotatedName(n)), join(dir, rotatedName(n + 1)));
  }
  if (keep > 0) await rename(join(dir, CURRENT_FILE), join(dir, rotatedName(1)));
  else await unlink(join(dir, CURRENT_FILE));
}
