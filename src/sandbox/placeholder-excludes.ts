import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gitDirsOf } from "./git-dirs.js";
import { entryKind } from "./protected-paths.js";

/**
 * Placeholders of protected paths in the work tree would be git's untracked files: a file (an empty
 * `.mcp.json`, `.claude/settings.json`) shows in `git status` and an agent's `git add -A` would
 * commit it; an empty directory (`.vscode/`) is not shown, but `git clean -d` and `git stash -u`
 * try to remove it, fail on the mount (EBUSY) and exit non-zero, after stashing. While they exist
 * they are listed in the repository's own `info/exclude` (never committed, never shared), in a
 * block of their own that goes when the placeholders go. `info/` is read-only inside every cloister.
 * A linked worktree's placeholders are not listed there (the file is shared by every worktree):
 * its cloister reads a copy with them added instead (linked-git.ts).
 */
const BEGIN = "# >>> cloister: protected-path placeholders (removed when the project's last cloister stops)";
const END = "# <<< cloister";

/** Adds the work-tree placeholders among `relPaths`: protected paths only (an ancestor made for one may get the agent's files). */
export function excludePlaceholders(projectRoot: string, relPaths: readonly string[]): void {
  const patterns = placeholderPatterns(projectRoot, relPaths);
  if (patterns.length > 0) editBlock(projectRoot, (lines) => [...new Set([...lines, ...patterns])]);
}

/** The exclude patterns of the work-tree placeholders among `relPaths` (those of a git dir are left out). */
export function placeholderPatterns(projectRoot: string, relPaths: readonly string[]): string[] {
  return relPaths.flatMap((relPath) => {
    if (relPath.startsWith(".git/")) return [];
    const kind = entryKind(join(projectRoot, relPath));
    return kind === "file" ? [pattern(relPath)] : kind === "directory" ? [`${pattern(relPath)}/`] : [];
  });
}

/** The lines of `patterns` as this module's block of an exclude file. */
export function excludeBlock(patterns: readonly string[]): string {
  return patterns.length > 0 ? `${BEGIN}\n${patterns.join("\n")}\n${END}\n` : "";
}

/** Removes `relPaths` from the block, and the block once it is empty. */
export function forgetPlaceholders(projectRoot: string, relPaths: readonly string[]): void {
  const gone = new Set(relPaths.flatMap((relPath) => [pattern(relPath), `${pattern(relPath)}/`]));
  editBlock(projectRoot, (lines) => lines.filter((line) => !gone.has(line)));
}

/** `/.mcp.json`: anchored at the work tree's root, and glob characters escaped. */
function pattern(relPath: string): string {
  return `/${relPath.replace(/[\\*?[\]!#]/g, (c) => `\\${c}`)}`;
}

function editBlock(projectRoot: string, edit: (lines: string[]) => string[]): void {
  const dirs = gitDirsOf(projectRoot);
  // Only a repository's main work tree: info/exclude is shared by all its worktrees, and one
  // worktree's cloister ending must not unlist the placeholders of another that still runs.
  if (dirs?.kind !== "dir") return;
  const infoDir = join(dirs.commonDir, "info");
  const file = join(infoDir, "exclude");
  let text = "";
  try {
    text = readFileSync(file, "utf8");
  } catch {
    // No exclude file yet.
  }
  const start = text.indexOf(`${BEGIN}\n`);
  const end = start < 0 ? -1 : text.indexOf(`${END}\n`, start);
  const current = start < 0 || end < 0 ? [] : text.slice(start + BEGIN.length + 1, end).split("\n").filter(Boolean);
  const outside = start < 0 || end < 0 ? text : text.slice(0, start) + text.slice(end + END.length + 1);
  const next = edit(current);
  if (next.length === current.length && next.every((line, i) => line === current[i])) return;
  const block = excludeBlock(next);
  const prefix = outside && !outside.endsWith("\n") ? `${outside}\n` : outside;
  mkdirSync(infoDir, { recursive: true });
  // Written in place, not replaced by rename: a running worktree cloister has its own copy of this
  // file bound over it (linked-git.ts), and renaming onto a mount point lifts that mount in every
  // namespace, so the worktree's placeholders would show again. The cost: a git that reads the file
  // during the write may miss a pattern once. (info/ is read-only in every cloister: no link here.)
  writeFileSync(file, prefix + block, { mode: 0o644 });
}
