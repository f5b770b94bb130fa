import { readFileSync } from "node:fs";
import { join } from "node:path";

/**
 * The branch checked out in a project, for showing next to a request ("which of my cloisters is
 * asking?"). Read from .git/HEAD directly: cheap, and it runs no git on the host. The file is the
 * agent's to change, so the answer is informational only and shown as text.
 */
export function currentBranch(projectRoot: string): string | null {
  try {
    const head = readFileSync(join(projectRoot, ".git", "HEAD"), "utf8").slice(0, 512);
    const match = /^ref: refs\/heads\/(.+)\n?$/.exec(head);
    return match?.[1] ?? null;
  } catch {
    return null;
  }
}
