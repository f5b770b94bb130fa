/** Where a path lies relative to a directory, by their text: both absolute and normalized (no `..`, no trailing `/`). */
import { sep } from "node:path";

/** True when `path` is `dir` or lies below it (`/a/bc` is not under `/a/b`). */
export function isUnder(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

/** True when `path` lies below `dir`, not `dir` itself. */
export function isBelow(path: string, dir: string): boolean {
  return path !== dir && isUnder(path, dir);
}
