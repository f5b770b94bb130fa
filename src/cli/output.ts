import { visible } from "../policy/visible.js";

/** Commander helper for repeatable options. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/**
 * Aligned columns, two spaces apart. Cells are made visible first: a directory named with a newline
 * or a terminal escape (a project path, a branch) must neither forge a row nor repaint the screen.
 */
export function printTable(header: string[], rows: string[][]): void {
  const shown = rows.map((row) => row.map(visible));
  const widths = header.map((h, i) => Math.max(h.length, ...shown.map((r) => (r[i] ?? "").length)));
  for (const row of [header, ...shown]) {
    process.stdout.write(`${row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join("  ")}\n`);
  }
}

/**
 * A path on a line of its own: as it is for a script (`cd "$(cloister path X)"` needs the real
 * bytes), made visible on a terminal, where its control characters would act, as ls does.
 */
export function printPath(path: string): void {
  process.stdout.write(`${process.stdout.isTTY ? visible(path) : path}\n`);
}
