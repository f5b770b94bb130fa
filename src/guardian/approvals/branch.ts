import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gitDirsOf } from "../../sandbox/git-dirs.js";

/**
 * The branch checked out in a project (or a worktree of it), for showing next to a request ("which
 * of my cloisters is asking?"). Read from the git dir's HEAD directly: cheap, and it runs no git on
 * the host. The file is the agent's to change, so the answer is informational only and shown as text.
 */
export function currentBranch(projectRoot: string): string | null {
  try {
    const gitDir = gitDirsOf(projectRoot)?.gitDir;
    if (gitDir === undefined) return null;
    const head = readFileSync(join(gitDir, "HEAD"), "utf8").slice(0, 512);
    const match = /^ref: refs\/heads\/(.+)\n?$/.exec(head);
    return match?.[1] ?? null;
  } catch {
    return null;
  }
}
