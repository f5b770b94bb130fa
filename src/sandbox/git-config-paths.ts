/**
 * Paths inside the project that git's configuration makes the host act on, so they are protected
 * like .git/hooks and .git/config (protected-paths.ts):
 * - a core.hooksPath that lies in the worktree (`.husky`, `.githooks`): the host runs what is there
 *   on its next commit (for husky's `.husky/_`, all of `.husky`, whose scripts those hooks run). It may come from any file git reads for the project, not only the
 *   repository's: the user's ~/.gitconfig (or GIT_CONFIG_GLOBAL), the system's, and what they include.
 * - config files that any of those include from inside the project (`include.path = ../.gitconfig`,
 *   a committed team config): the agent would add core.fsmonitor there, and the host's next
 *   `git status` would run it.
 *
 * Read with git itself (`git config` reads files and runs nothing), once per launch, and only when
 * some config file mentions hooksPath or include: most projects are answered without a process.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { basename, dirname, join, relative, resolve } from "node:path";
import { isBelow } from "../path-under.js";
import { gitDirsOf, realPath } from "./git-dirs.js";

export interface GitConfigPaths {
  /** Hook directories in the worktree, relative to the project root. */
  hookDirs: string[];
  /** Included config files in the project, relative to its root (held by an empty file while missing). */
  includedFiles: string[];
}

const NONE: GitConfigPaths = { hookDirs: [], includedFiles: [] };

/**
 * Variables git reads that name its config files (they are the user's, and their host git honors
 * them); every other GIT_* is dropped so that git answers for this project.
 */
const KEPT_GIT_VARIABLES = new Set(["GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_CONFIG_NOSYSTEM"]);

const KEYS = "^(core\\.hookspath|include(if\\..*)?\\.path)$";
/** Includes are followed this deep (git's own limit is 10). */
const MAX_INCLUDE_FILES = 32;

export function gitConfigPaths(projectRoot: string, env: NodeJS.ProcessEnv = process.env): GitConfigPaths {
  const dirs = gitDirsOf(projectRoot);
  if (!dirs) return NONE;
  const files = [join(dirs.commonDir, "config"), join(dirs.gitDir, "config.worktree"), ...userConfigFiles(env)];
  if (!files.some(mayNamePaths)) return NONE;
  const gitEnv = Object.fromEntries(Object.entries(env).filter(([name]) => !name.startsWith("GIT_") || KEPT_GIT_VARIABLES.has(name)));
  const home = env.HOME || homedir();
  const found: GitConfigPaths = { hookDirs: [], includedFiles: [] };
  // Every file git reads here, as git reads it; then every included file that git did not read on
  // its own, since git reads one under a condition (includeIf "onbranch:...") only while the
  // condition holds, and the agent can make it hold (HEAD is writable inside). A file git read has
  // all its entries in the first list already.
  const everyFile = configEntries(projectRoot, [], gitEnv);
  const readByGit = new Set(everyFile.map((entry) => resolve(projectRoot, entry.origin)));
  const pending = [everyFile];
  const scanned = new Set<string>();
  for (let entries = pending.pop(); entries !== undefined; entries = pending.pop()) {
    for (const { origin, key, value } of entries) {
      const expanded = value.startsWith("~/") ? join(home, value.slice(2)) : value;
      if (key === "core.hookspath") {
        // Relative to where hooks run: the worktree's root.
        const inside = insideProject(projectRoot, resolve(projectRoot, expanded));
        if (inside !== undefined) found.hookDirs.push(huskyHooks(inside) ?? inside);
        continue;
      }
      // Relative to the file that includes it.
      const target = resolve(dirname(resolve(projectRoot, origin)), expanded);
      const inside = insideProject(projectRoot, target);
      if (inside !== undefined) found.includedFiles.push(inside);
      if (!readByGit.has(target) && !scanned.has(target) && scanned.size < MAX_INCLUDE_FILES) {
        scanned.add(target);
        pending.push(configEntries(projectRoot, ["--file", target], gitEnv));
      }
    }
  }
  return { hookDirs: [...new Set(found.hookDirs)], includedFiles: [...new Set(found.includedFiles)] };
}

interface ConfigEntry {
  /** The file the entry is in (relative to the project root, or absolute). */
  origin: string;
  key: string;
  value: string;
}

/**
 * core.hooksPath and include paths as `git config` lists them in the project, with the file of
 * each: from every file git reads there (no `source`), or from one file without its includes.
 * None when git is missing, finds no such key (exit 1) or cannot read a file: then host git reads
 * none of it either.
 */
function configEntries(projectRoot: string, source: string[], env: NodeJS.ProcessEnv): ConfigEntry[] {
  const result = spawnSync("git", ["config", ...source, "--show-origin", "--null", "--get-regexp", KEYS], { cwd: projectRoot, env, encoding: "utf8" });
  if (result.status !== 0) return [];
  const entries: ConfigEntry[] = [];
  // --null --show-origin: "file:ORIGIN\0KEY\nVALUE\0" per entry.
  const fields = result.stdout.split("\0");
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const origin = fields[i]!;
    const [key = "", value = ""] = fields[i + 1]!.split(/\n(.*)/s);
    if (origin.startsWith("file:") && value !== "") entries.push({ origin: origin.slice("file:".length), key, value });
  }
  return entries;
}

/**
 * Husky (v9) points core.hooksPath at `.husky/_`, whose generated scripts run the user's hooks one
 * level up (`.husky/pre-commit`): there the whole `.husky` is what the host runs.
 */
function huskyHooks(hookDir: string): string | undefined {
  return basename(hookDir) === "_" && dirname(hookDir) !== "." ? dirname(hookDir) : undefined;
}

/** The user's and the system's config files, where git finds them. */
function userConfigFiles(env: NodeJS.ProcessEnv): string[] {
  const home = env.HOME || homedir();
  const global = env.GIT_CONFIG_GLOBAL ? [env.GIT_CONFIG_GLOBAL] : [join(home, ".gitconfig"), join(env.XDG_CONFIG_HOME || join(home, ".config"), "git", "config")];
  const system = env.GIT_CONFIG_NOSYSTEM ? [] : [env.GIT_CONFIG_SYSTEM || "/etc/gitconfig"];
  return [...system, ...global];
}

/**
 * Whether git could find either key in this file. Variable and section names are written out
 * literally (case-insensitive, no escapes), so a file without the text "hookspath" or "include"
 * cannot set them, nor include a file that does.
 */
function mayNamePaths(file: string): boolean {
  try {
    return /hookspath|include/i.test(readFileSync(file, "latin1"));
  } catch {
    return false; // no such file
  }
}

/**
 * `path` relative to the project root when it lies inside, else undefined. As written first: a
 * symlink on the way inside the project is the agent's to re-point, so that path is what gets
 * protected, and protecting it refuses the launch (protected-paths.ts fails closed on a link).
 * Else by its directory's real path, for a path that reaches the project through a link outside it.
 */
function insideProject(projectRoot: string, path: string): string | undefined {
  if (isBelow(path, projectRoot)) return relative(projectRoot, path);
  const realDir = realPath(dirname(path));
  if (realDir === undefined) return undefined; // its directory does not exist, and not inside as written
  const real = join(realDir, basename(path));
  return isBelow(real, projectRoot) ? relative(projectRoot, real) : undefined;
}
