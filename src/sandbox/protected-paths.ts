import { lstatSync, mkdirSync, readdirSync, readFileSync, rmdirSync, unlinkSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { isBelow } from "../path-under.js";
import { CloisterError } from "../errors.js";
import { excludePlaceholders, forgetPlaceholders } from "./placeholder-excludes.js";
import { gitConfigPaths } from "./git-config-paths.js";
import { gitDirsOf, readPointer } from "./git-dirs.js";
import { moduleGitDirEntries, submoduleWorktreeEntries } from "./submodule-git.js";

/**
 * Paths inside the project that the cloister may read but never change, because code on the host
 * acts on them later (git hooks and config, editor tasks, agent settings and MCP servers, shell rc
 * files, direnv, npm/yarn settings that name programs). A trailing slash marks a directory.
 * They are enforced by read-only bind mounts; see mounts.ts.
 */
export const MANDATORY_PROTECTED: readonly string[] = [
  ".git/hooks/",
  ".git/info/",
  ".git/config",
  ".git/commondir",
  ".git/config.worktree",
  // Linked worktrees' admin dirs: their commondir, gitdir and config.worktree steer the host's git
  // in those worktrees (worktree cloisters: see worktree.ts).
  ".git/worktrees/",
  ".gitmodules",
  // The project root itself must never look like a git dir to the host's git: when `.git` stops
  // being one (a garbage `.git/HEAD`, which stays writable for checkouts), git takes a directory
  // holding HEAD, objects/ and refs/ for a bare repository and runs its `config` (a pager, an ext::
  // remote on fetch). Held by an empty directory, HEAD is never a valid one (found by red team).
  "HEAD",
  ".vscode/",
  ".idea/",
  ".claude/settings.json",
  ".claude/settings.local.json",
  ".claude/commands/",
  ".claude/agents/",
  // Where Claude Code's hooks conventionally live: the protected settings name scripts here, which
  // the host runs when the user starts Claude Code in the project.
  ".claude/hooks/",
  ".mcp.json",
  ".codex/",
  ".gemini/",
  ".envrc",
  ".npmrc",
  ".yarnrc",
  ".yarnrc.yml",
  ".bashrc",
  ".bash_profile",
  ".bash_login",
  ".profile",
  ".zshrc",
  ".zshenv",
  ".zprofile",
  ".zlogin",
];

/** Holds a missing config file that git's config includes from the project: comments are no settings. */
const INCLUDED_CONFIG_PLACEHOLDER = "# cloister: this included git config file was missing; it is held read-only while a cloister of the project runs\n";

/**
 * Files tools read, held by a file that changes nothing when missing (by file name, wherever the git
 * dir is): `commondir` pointing git at the repository itself ("."), an empty `config.worktree` (a
 * directory there makes every git command fail once extensions.worktreeConfig is on), an empty
 * `.gitmodules` (a directory there has git fetch and pull warn "unable to access"), empty agent
 * settings.
 */
const NEUTRAL_FILE_CONTENT: Readonly<Record<string, string>> = {
  commondir: ".\n",
  "config.worktree": "",
  ".gitmodules": "",
  // Agent settings files are JSON that agents read on start: a directory there makes Claude Code
  // report a broken settings file (EISDIR); empty settings change nothing.
  "settings.json": "{}\n",
  "settings.local.json": "{}\n",
  ".mcp.json": '{ "mcpServers": {} }\n',
  locked: "kept by cloister while a cloister of this project runs\n",
  // A plain directory's `.git`: a file that names no git dir is no repository for git ("invalid
  // gitfile format"), nor for the next launch (git-dirs.ts holdsGitEntry), and keys the project by
  // the directory as before (project-marks.ts); an empty directory would do neither.
  ".git": "# cloister: no git repository; held read-only while a cloister of this directory runs\n",
};

/**
 * Git removes `.git/worktrees` with its last worktree. The kernel then detaches the read-only mount
 * on it inside running cloisters, and the agent could make its own, where the host's next
 * `git worktree add` would put an admin dir the agent controls. A locked entry without a worktree
 * keeps the directory non-empty: git neither lists nor prunes it. It goes with the placeholders.
 */
const KEEP_NON_EMPTY: Readonly<Record<string, string>> = { ".git/worktrees": ".cloister-keep" };

/**
 * Directories of the repository that stay writable but are pinned like ancestors, because worktree
 * cloisters of the project bind them by path: a symlink swapped in while one launches would be followed.
 */
const PINNED_GIT_DIRS: readonly string[] = [".git/objects", ".git/refs", ".git/logs"];

export interface ProtectedPaths {
  /** Protected paths relative to the project root, without trailing slash. */
  paths: string[];
  /** Their ancestors below the project root, shallowest first: pinned by mounts so they cannot be renamed away. */
  ancestors: string[];
  /** What cloister created because it did not exist; removed when the last cloister of the project ends. */
  placeholders: string[];
}

/** The protected paths of a project, and those of them a missing path is held by an empty file for. */
export interface ProtectedList {
  paths: string[];
  /** Config files git includes: a directory there would make every git command fail. */
  heldByFile: ReadonlySet<string>;
}

/**
 * Which protected paths apply to a project: the mandatory list, what the repository's submodules
 * have of the same kind (submodule-git.ts), the hook directories and included config files git's
 * configuration points into it (git-config-paths.ts), plus configured additions. In a linked
 * worktree `.git` is a file naming the worktree's git dir: that file is protected instead of the
 * `.git/...` entries (its git dir is protected by the worktree cloister's git view).
 */
export function protectedPathList(extra: readonly string[], isGit: boolean, projectRoot?: string): ProtectedList {
  const fromConfig = isGit && projectRoot ? gitConfigPaths(projectRoot) : { hookDirs: [], includedFiles: [] };
  const fromRepository = isGit && projectRoot ? [...fromConfig.hookDirs, ...fromConfig.includedFiles, ...submoduleProtectedPaths(projectRoot)] : [];
  const all = [...MANDATORY_PROTECTED, ...fromRepository, ...extra];
  const dotGitIsFile = isGit && projectRoot !== undefined && gitDirsOf(projectRoot)?.kind === "file";
  const relevant = isGit && !dotGitIsFile ? all : all.filter((p) => !p.startsWith(".git/"));
  // `.git` as a whole where it is not the repository's directory: a linked worktree's file naming
  // its git dir, or in a plain directory (--allow-no-git) the place where `git init` inside would
  // make a repository whose config (core.fsmonitor) the host's next `git status` there runs.
  return { paths: [...new Set(isGit && !dotGitIsFile ? relevant : [".git", ...relevant])], heldByFile: new Set(fromConfig.includedFiles) };
}

/** The submodules' git dirs under .git/modules and their checkouts' .git (see submodule-git.ts), and nested worktrees' .git. */
function submoduleProtectedPaths(projectRoot: string): string[] {
  const modules = gitDirsOf(projectRoot)?.kind === "dir" ? moduleGitDirEntries(join(projectRoot, ".git")).map((entry) => `.git/${entry}`) : [];
  return [...modules, ...submoduleWorktreeEntries(projectRoot), ...nestedWorktreeGitFiles(projectRoot)];
}

/**
 * Linked worktrees of the repository that lie inside the project (`git worktree add .worktrees/x`):
 * each one's `.git` file names the git dir host git uses there, which the project's cloister could
 * point at a git dir of its own with a core.fsmonitor (found by QA). Each admin dir's `gitdir`
 * names that file.
 */
function nestedWorktreeGitFiles(projectRoot: string): string[] {
  const dirs = gitDirsOf(projectRoot);
  if (dirs?.kind !== "dir") return [];
  const adminDirs = join(dirs.commonDir, "worktrees");
  let names: string[];
  try {
    names = readdirSync(adminDirs);
  } catch {
    return []; // no linked worktree
  }
  return names.flatMap((name) => {
    const dotGit = readPointer(join(adminDirs, name, "gitdir"));
    if (dotGit === undefined) return [];
    const path = resolve(adminDirs, name, dotGit);
    // Only one that is there: a pruned worktree's path is left alone, not made again as a placeholder.
    const nested = basename(path) === ".git" && isBelow(dirname(path), projectRoot) && entryKind(path) === "file";
    return nested ? [relative(projectRoot, path)] : [];
  });
}

/** Directories to pin in a project (see PINNED_GIT_DIRS): only where `.git` is the repository directory. */
export function pinnedPathList(isGit: boolean, projectRoot: string): string[] {
  return isGit && gitDirsOf(projectRoot)?.kind === "dir" ? [...PINNED_GIT_DIRS] : [];
}

/**
 * "create" makes what is missing; "plan" only finds it and writes nothing, so that a launch can
 * record the placeholders it is about to make before it makes any (see launchCloister).
 */
export type PrepareMode = "create" | "plan";

/**
 * Makes every protected path exist so it can be mounted over, without leaving anything that changes
 * how the project behaves on the host: a missing path is held by an empty directory (git and most
 * tools ignore empty directories) or, for files git reads, by a neutral file. Fails closed when a
 * protected path or one of its ancestors is a symlink, since a mount would follow it out of place.
 * Planned, `placeholders` lists what is missing now: a superset of what creating it then makes
 * (another launch may make some first), which removePlaceholders may be given safely.
 */
export function prepareProtectedPaths(
  projectRoot: string,
  specs: readonly string[],
  pins: readonly string[] = [],
  mode: PrepareMode = "create",
  heldByFile: ReadonlySet<string> = new Set(),
): ProtectedPaths {
  const create = mode === "create";
  const result: ProtectedPaths = { paths: [], ancestors: [], placeholders: [] };
  const pin = (parts: readonly string[], count: number): void => {
    for (let i = 1; i <= count; i++) {
      const ancestor = parts.slice(0, i).join("/");
      if (result.ancestors.includes(ancestor)) continue;
      if (ensureRealDirectory(projectRoot, ancestor, create)) result.placeholders.push(ancestor);
      result.ancestors.push(ancestor);
    }
  };
  for (const spec of specs) {
    const relPath = spec.replace(/\/+$/, "");
    const parts = relPath.split("/");
    pin(parts, parts.length - 1);
    if (ensureMountable(projectRoot, relPath, create, heldByFile.has(relPath) ? INCLUDED_CONFIG_PLACEHOLDER : NEUTRAL_FILE_CONTENT[basename(relPath)])) result.placeholders.push(relPath);
    result.paths.push(relPath);
    const keeper = KEEP_NON_EMPTY[relPath];
    if (keeper !== undefined) {
      // Recorded even when found: one left by a cloister that crashed goes with this one.
      ensureRealDirectory(projectRoot, `${relPath}/${keeper}`, create);
      ensureMountable(projectRoot, `${relPath}/${keeper}/locked`, create, undefined);
      result.placeholders.push(`${relPath}/${keeper}`, `${relPath}/${keeper}/locked`);
    }
  }
  for (const dir of pins) pin(dir.split("/"), dir.split("/").length);
  if (create) excludePlaceholders(projectRoot, protectedPlaceholders(result));
  return result;
}

/** The placeholders among `placeholders` that hold a protected path itself (not an ancestor of one). */
export function protectedPlaceholders(prepared: ProtectedPaths, placeholders: readonly string[] = prepared.placeholders): string[] {
  return placeholders.filter((relPath) => prepared.paths.includes(relPath));
}

/** Returns true when the directory had to be created (or, with `create` false, would have to be). */
function ensureRealDirectory(projectRoot: string, relPath: string, create: boolean): boolean {
  const kind = entryKind(join(projectRoot, relPath));
  if (kind === "directory") return false;
  if (kind !== "missing") refuseProtection(relPath, kind);
  return !create || createUnlessRaced(projectRoot, relPath, () => mkdirSync(join(projectRoot, relPath), { mode: 0o755 }), ["directory"]);
}

/** Returns true when a placeholder had to be created (or, with `create` false, would have to be). */
/** `neutral`: the content of a file placeholder; none, an empty directory. */
function ensureMountable(projectRoot: string, relPath: string, create: boolean, neutral: string | undefined): boolean {
  const full = join(projectRoot, relPath);
  const kind = entryKind(full);
  if (kind === "file" || kind === "directory") return false;
  if (kind !== "missing") refuseProtection(relPath, kind);
  if (!create) return true;
  return createUnlessRaced(
    projectRoot,
    relPath,
    // "wx" = O_CREAT|O_EXCL: never follows a symlink planted in the meantime.
    () => (neutral !== undefined ? writeFileSync(full, neutral, { flag: "wx", mode: 0o644 }) : mkdirSync(full, { mode: 0o755 })),
    ["file", "directory"],
  );
}

/**
 * Creates a placeholder; returns true when this call created it. Another cloister of the project
 * launching at the same moment may create it first (EEXIST): then it exists, which is all a mount
 * needs, as long as it is of an acceptable kind.
 */
function createUnlessRaced(projectRoot: string, relPath: string, create: () => void, acceptable: EntryKind[]): boolean {
  try {
    create();
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
      throw new CloisterError(
        `cannot make ${relPath} in the project to protect it (${code === "EROFS" ? "read-only file system" : "permission denied"})`,
        "a cloister protects paths of its project by mounting over them, which needs write access to the project: run cloister as the user who owns it",
      );
    }
    if (code !== "EEXIST") throw error;
    const kind = entryKind(join(projectRoot, relPath));
    if (!acceptable.includes(kind)) refuseProtection(relPath, kind);
    return false;
  }
}

/**
 * Removes placeholders (deepest first) once no running cloister of the project needs them, and only
 * while they are still exactly what cloister created: an empty directory or the neutral file (or
 * the part of it written before its launcher was killed).
 */
export function removePlaceholders(projectRoot: string, relPaths: readonly string[]): void {
  forgetPlaceholders(projectRoot, relPaths);
  const deepestFirst = [...relPaths].sort((a, b) => b.split("/").length - a.split("/").length);
  for (const relPath of deepestFirst) {
    const full = join(projectRoot, relPath);
    try {
      if (!lstatSync(full).isFile()) rmdirSync(full);
      else if (isPlaceholderContent(readFileSync(full, "utf8"), NEUTRAL_FILE_CONTENT[basename(relPath)])) unlinkSync(full);
    } catch {
      // Not empty any more, already gone, or changed by the user: leave it as it is.
    }
  }
}

/**
 * A file placeholder holds the neutral content for its name, or the start of it: a launcher killed
 * between creating the file and writing it left it empty. An included config file's placeholder
 * (no name of its own) is known by its comment only, so an empty file a user put there stays.
 */
function isPlaceholderContent(content: string, neutral: string | undefined): boolean {
  return neutral !== undefined ? neutral.startsWith(content) : content !== "" && INCLUDED_CONFIG_PLACEHOLDER.startsWith(content);
}

export type EntryKind = "missing" | "file" | "directory" | "symlink" | "special";

/** What is at `path`, without following a link; a path through a file (ENOTDIR) is missing. */
export function entryKind(path: string): EntryKind {
  try {
    const st = lstatSync(path);
    if (st.isSymbolicLink()) return "symlink";
    if (st.isDirectory()) return "directory";
    if (st.isFile()) return "file";
    return "special";
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return "missing";
    throw error;
  }
}

function refuseProtection(relPath: string, kind: EntryKind): never {
  throw new CloisterError(
    `cannot protect ${relPath} in the project: it is a ${kind === "symlink" ? "symbolic link" : "special file"}`,
    `a read-only mount would follow it; replace ${relPath} with a regular ${kind === "symlink" ? "file or directory" : "file"} and retry`,
  );
}
