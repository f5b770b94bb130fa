/**
 * The user's git identity in a cloister. A cloister's HOME is its own, so the user's ~/.gitconfig
 * is not there, and git without user.name and user.email refuses to commit ("Please tell me who
 * you are"); the repository's config, where an agent would set them, is read-only inside. So the
 * identity host git would use in the project (the repository's config, the user's, their
 * `includeIf` sections) is written to the cloister's ~/.gitconfig when that file does not exist
 * yet: a persistent cloister keeps what is set there later. Nothing else of the user's config is
 * carried: credential helpers, aliases and the programs it names stay on the host.
 */
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hostGit } from "./host-git.js";

export interface GitIdentity {
  name?: string;
  email?: string;
}

/** What seedGitIdentity will write into `homeDir`: nothing, and no git process run, when its ~/.gitconfig is there already. */
export function identityToSeed(homeDir: string, projectRoot: string): Promise<GitIdentity> {
  return existsSync(join(homeDir, ".gitconfig")) ? Promise.resolve({}) : hostGitIdentity(projectRoot);
}

/** user.name and user.email as git would take them in `projectRoot` (none when git is missing or unset). */
export async function hostGitIdentity(projectRoot: string): Promise<GitIdentity> {
  // `git config` reads files and runs nothing of the repository's; one process for both keys.
  const result = await hostGit(projectRoot, ["config", "--null", "--get-regexp", "^user\\.(name|email)$"]);
  const identity: GitIdentity = {};
  if (result.code !== 0) return identity;
  // --null: each entry is "key\nvalue\0"; the last of a key wins, as for git.
  for (const entry of result.stdout.split("\0")) {
    const newline = entry.indexOf("\n");
    if (newline < 0) continue;
    const key = entry.slice(0, newline);
    const value = entry.slice(newline + 1);
    if (key === "user.name") identity.name = value;
    if (key === "user.email") identity.email = value;
  }
  return identity;
}

/** Writes `identity` as `homeDir`/.gitconfig, unless that file exists or there is nothing to write. */
export function seedGitIdentity(homeDir: string, identity: GitIdentity): void {
  const lines = Object.entries(identity).map(([key, value]) => `\t${key} = ${quoted(String(value))}\n`);
  if (lines.length === 0) return;
  try {
    // "wx": a file already there (a persistent cloister's, maybe changed since) is left alone.
    writeFileSync(join(homeDir, ".gitconfig"), `# written by cloister: your git identity on the host\n[user]\n${lines.join("")}`, { flag: "wx", mode: 0o644 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
}

/**
 * A git config value in double quotes, with the escapes git-config(1) defines (\\ \" \n \t \b).
 * By hand: one function of five replacements, where `git config --file` would cost a process per key
 * on every launch.
 */
function quoted(value: string): string {
  const escapes: Record<string, string> = { "\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\b": "\\b" };
  return `"${value.replace(/[\\"\n\t\b]/g, (c) => escapes[c] ?? c)}"`;
}
