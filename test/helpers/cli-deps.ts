/**
 * The CLI copy that as-user.ts makes for another user lists its runtime packages by hand
 * (commander, yaml, zod); a dependency added since (tldts, for the egress rules) is missing there
 * and the copied CLI fails to start. This completes a copy from package.json, transitively, without
 * touching the packages already copied.
 */
import { cpSync, existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { REPO_ROOT } from "./cloister.js";
import { chownTree } from "./as-user.js";

function dependenciesOf(packageJson: string): string[] {
  const parsed = JSON.parse(readFileSync(packageJson, "utf8")) as { dependencies?: Record<string, string> };
  return Object.keys(parsed.dependencies ?? {});
}

/**
 * Copies every runtime dependency of the project (and theirs) that the copied CLI at `cliPath`
 * (APP/dist/cli/main.js) lacks into APP/node_modules, world-readable like the rest of the copy.
 */
export function completeCliCopy(cliPath: string, owner?: { uid: number; gid: number }): string[] {
  const app = dirname(dirname(dirname(cliPath)));
  const added: string[] = [];
  const todo = dependenciesOf(join(REPO_ROOT, "package.json"));
  const seen = new Set<string>();
  while (todo.length > 0) {
    const name = todo.pop() as string;
    if (seen.has(name)) continue;
    seen.add(name);
    const source = join(REPO_ROOT, "node_modules", name);
    if (!existsSync(join(source, "package.json"))) continue;
    todo.push(...dependenciesOf(join(source, "package.json")));
    const dest = join(app, "node_modules", name);
    if (existsSync(dest)) continue;
    cpSync(source, dest, { recursive: true });
    if (owner) chownTree(dest, owner.uid, owner.gid);
    added.push(name);
  }
  return added;
}
