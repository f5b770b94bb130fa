/**
 * The git view of a worktree cloister: git must work at /work, a linked worktree whose `.git` file
 * names its admin dir `<common>/worktrees/<id>` by absolute host path, and whose admin dir names the
 * shared dir `<common>` ("../.."). So both appear at their host paths, built rather than subtracted:
 *
 * - `<common>` itself is a small private tmpfs. Git creates lock files there (packed-refs.lock when
 *   it deletes a ref, gc.pid, config.lock) and they land in scratch space; nothing the cloister
 *   writes at `<common>/<name>` reaches the host, so the repository's config, hooks, info,
 *   commondir, config.worktree and the main worktree's own state (HEAD, index, rebase-merge/, ...)
 *   are out of reach whether they exist or not, and whatever the host renames there later.
 * - objects/, refs/ and logs/ are the host's, writable: commits made inside are the repository's.
 *   The project's main cloister pins them (protected-paths.ts), so they cannot be swapped for a
 *   symlink while this view is mounted.
 * - hooks/, info/ and worktrees/ are the host's, read-only; the worktree's own admin dir is bound
 *   writable on top (HEAD, index, logs of this worktree), with its commondir, gitdir and
 *   config.worktree read-only on top of that (placeholders when missing, as in protected-paths.ts),
 *   and so are its submodules' config, hooks and pointers (submodule-git.ts). Those submodules'
 *   `.git` files and configs name each other by paths relative to the worktree's host directory,
 *   which lead nowhere at /work: read-only copies with the paths as they are inside go on top
 *   (submoduleCopies).
 * - config, HEAD (the main worktree's: git refuses to check out a branch in use there),
 *   packed-refs and shallow are copies taken at launch, read-only: read by name, never through a
 *   path the main cloister could turn into a symlink. Git replaces packed-refs by rename, which a
 *   bind refuses (EBUSY), and rewrites it for every deletion that checks the ref's old value, so
 *   `branch -d` and `tag -d` fail inside whether the ref is packed or not (docs/worktrees.md); and
 *   a packed-refs rewritten on the host (git gc, pack-refs) is seen only by cloisters started afterwards.
 *
 * Nothing else of the main repository is mounted: its working tree stays invisible.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { CloisterError } from "../errors.js";
import { CLOISTER_RUN_DIR, WORK_DIR, type MountOp } from "./bwrap/mounts.js";
import { gitDirsOf, isAdminDirOf, realPath, withRegularFile } from "./git-dirs.js";
import { entryKind, prepareProtectedPaths, type EntryKind } from "./protected-paths.js";
import { excludeBlock, placeholderPatterns } from "./placeholder-excludes.js";
import { moduleGitDirEntries, populatedSubmodulePaths } from "./submodule-git.js";

/** The git dirs of a linked worktree, as cloister checked them when it opened the worktree. */
export interface LinkedGitDirs {
  /** The shared git dir (`<main>/.git`). */
  commonDir: string;
  /** The worktree's admin dir (`<common>/worktrees/<id>`). */
  adminDir: string;
}

/** What exists of the shared dir at launch: the view is planned from it. */
export interface LinkedGitFacts extends LinkedGitDirs {
  /** Entries of `<common>` that exist as directories (of SHARED_DIRS and READ_ONLY_DIRS). */
  dirs: string[];
  /** Read-only copies, by entry name (of COPIED_FILES), in the cloister's runtime dir. */
  copies: Record<string, string>;
  /** Entries of the admin dir bound read-only on top of it. */
  adminProtected: string[];
  /** Their ancestors below the admin dir (its submodules' git dirs), pinned so they cannot be renamed away. */
  adminAncestors: string[];
}

export interface LinkedGitView {
  mounts: MountOp[];
  /** Placeholders created in the admin dir, relative to the project root (released like the project's). */
  placeholders: string[];
}

const SHARED_DIRS = ["objects", "refs", "logs"];
const READ_ONLY_DIRS = ["hooks", "info", "worktrees"];
const REQUIRED_DIRS = ["objects", "refs", "worktrees"];
const COPIED_FILES = ["config", "HEAD", "packed-refs", "shallow"];
const REQUIRED_FILES = ["config", "HEAD"];
/**
 * Bound even when the host has none (then empty): a packed-refs that git inside wrote to the scratch
 * space would hold refs whose loose files it then deletes on the host (pack-refs, run by gc --auto).
 * With a bind there, pack-refs fails before it deletes anything.
 */
const ALWAYS_BOUND = ["packed-refs"];
const ADMIN_PROTECTED = ["commondir", "gitdir", "config.worktree"];
/** Lock files and small scratch files only: git writes a new packed-refs there before failing to rename it. */
const SCRATCH_TMPFS_BYTES = 16 * 1024 * 1024;
/** Places inside a cloister that a host path must not shadow, nor reach into. */
const RESERVED = [WORK_DIR, CLOISTER_RUN_DIR, "/proc", "/dev", "/sys"];

/** The mounts for the facts: pure, in the order bwrap must apply them. */
export function planLinkedGit(f: LinkedGitFacts): MountOp[] {
  const at = (name: string) => join(f.commonDir, name);
  const sharedDirs = SHARED_DIRS.filter((d) => f.dirs.includes(d));
  const readOnlyDirs = READ_ONLY_DIRS.filter((d) => f.dirs.includes(d));
  return [
    { op: "tmpfs", dest: f.commonDir, sizeBytes: SCRATCH_TMPFS_BYTES, mode: 0o755 },
    ...sharedDirs.map((d): MountOp => ({ op: "bind", src: at(d), dest: at(d) })),
    ...readOnlyDirs.map((d): MountOp => ({ op: "ro-bind", src: at(d), dest: at(d) })),
    ...Object.entries(f.copies).map(([name, copy]): MountOp => ({ op: "ro-bind", src: copy, dest: at(name) })),
    { op: "bind", src: f.adminDir, dest: f.adminDir },
    ...f.adminAncestors.map((name): MountOp => ({ op: "bind", src: join(f.adminDir, name), dest: join(f.adminDir, name) })),
    ...f.adminProtected.map((name): MountOp => ({ op: "ro-bind", src: join(f.adminDir, name), dest: join(f.adminDir, name) })),
  ];
}

/**
 * Checks the linked worktree's git dirs on the host (fail closed on symlinks and surprises),
 * copies what is copied into `scratchDir` (the cloister's private runtime dir), creates the admin
 * dir's placeholders, and plans the view.
 */
export function prepareLinkedGitView(projectRoot: string, dirs: LinkedGitDirs, scratchDir: string, worktreePlaceholders: readonly string[]): LinkedGitView {
  const { commonDir, adminDir } = dirs;
  checkGitDirs(dirs);

  const present = (name: string, kind: EntryKind): boolean => checkedKind(join(commonDir, name), kind) === kind;
  const dirsPresent = [...SHARED_DIRS, ...READ_ONLY_DIRS].filter((d) => present(d, "directory"));
  const missing = [...REQUIRED_DIRS.filter((d) => !dirsPresent.includes(d)), ...REQUIRED_FILES.filter((f) => !present(f, "file"))];
  if (missing.length > 0) throw new CloisterError(`${commonDir} is not a complete git dir: ${missing.join(", ")} missing`);

  const copyDir = join(scratchDir, "git");
  mkdirSync(copyDir, { mode: 0o700 });
  const copies: Record<string, string> = {};
  for (const name of COPIED_FILES) {
    const content = present(name, "file") ? withRegularFile(join(commonDir, name), (fd) => readFileSync(fd)) : ALWAYS_BOUND.includes(name) ? "" : undefined;
    if (content === undefined) continue;
    copies[name] = join(copyDir, name);
    writeFileSync(copies[name], content, { mode: 0o400 });
  }

  for (const name of ["commondir", "gitdir"]) {
    if (checkedKind(join(adminDir, name), "file") !== "file") throw new CloisterError(`the worktree's git dir ${adminDir} has no ${name} file`, "repair it with `git worktree repair`, or remove the worktree");
  }
  const prepared = prepareProtectedPaths(adminDir, adminProtected(adminDir));
  return {
    mounts: [
      ...planLinkedGit({ commonDir, adminDir, dirs: dirsPresent, copies, adminProtected: prepared.paths, adminAncestors: prepared.ancestors }),
      ...submoduleCopies(projectRoot, adminDir, copyDir),
      ...placeholderExcludes(projectRoot, commonDir, copyDir, worktreePlaceholders),
    ],
    placeholders: fromProject(projectRoot, adminDir, prepared.placeholders),
  };
}

/**
 * What lets git inside reach the worktree's populated submodules. Git keeps their git dirs under
 * the admin dir's modules/ (mounted at its host path); each checkout's `.git` file names its git
 * dir, and the git dir's config names the checkout back (core.worktree), both by a path relative
 * to where they are on the host, and the worktree is /work inside, where neither leads anywhere.
 * So each gets read-only copies made for inside, over the protected originals: the `.git` file
 * naming the git dir by its absolute path, and the config with core.worktree at /work/<path>. The
 * host's files are not touched, and what the host changes in that config meanwhile is seen by
 * cloisters started afterwards, as for the repository's own config.
 */
function submoduleCopies(projectRoot: string, adminDir: string, copyDir: string): MountOp[] {
  return populatedSubmodulePaths(projectRoot).flatMap((path, i): MountOp[] => {
    const dirs = gitDirsOf(join(projectRoot, path));
    // An embedded git dir (a directory, not a file) needs nothing; one elsewhere is not mounted.
    if (dirs?.kind !== "file" || !dirs.gitDir.startsWith(`${adminDir}/modules/`) || realPath(dirs.gitDir) !== dirs.gitDir) return [];
    const dotGit = join(copyDir, `submodule-${i}.git`);
    writeFileSync(dotGit, `gitdir: ${dirs.gitDir}\n`, { mode: 0o400 });
    const mounts: MountOp[] = [{ op: "ro-bind", src: dotGit, dest: join(WORK_DIR, path, ".git") }];
    const config = join(dirs.gitDir, "config");
    if (checkedKind(config, "file") !== "file") return mounts;
    const copy = join(copyDir, `submodule-${i}.config`);
    writeFileSync(copy, withRegularFile(config, (fd) => readFileSync(fd)), { mode: 0o600 });
    if (configFile(copy, ["--get", "core.worktree"]) !== undefined) configFile(copy, ["core.worktree", join(WORK_DIR, path)]);
    chmodSync(copy, 0o400);
    return [...mounts, { op: "ro-bind", src: copy, dest: config }];
  });
}

/**
 * info/exclude as git inside reads it: the repository's own, and the worktree's placeholders after
 * it (why they are listed: placeholder-excludes.ts). The main work tree lists its own in the
 * repository's file, which every worktree shares; a worktree's go in this copy, which only its
 * cloister sees.
 */
function placeholderExcludes(projectRoot: string, commonDir: string, copyDir: string, placeholders: readonly string[]): MountOp[] {
  const patterns = placeholderPatterns(projectRoot, placeholders);
  if (patterns.length === 0) return [];
  const exclude = join(commonDir, "info", "exclude");
  const own = checkedKind(exclude, "file") === "file" ? withRegularFile(exclude, (fd) => readFileSync(fd, "utf8")) : "";
  const copy = join(copyDir, "exclude");
  writeFileSync(copy, `${own}${own && !own.endsWith("\n") ? "\n" : ""}${excludeBlock(patterns)}`, { mode: 0o400 });
  return [{ op: "ro-bind", src: copy, dest: exclude }];
}

/**
 * `git config --file FILE ARGS`: that file alone (no includes followed, nothing run). Its output;
 * undefined when git says the key is not there; a failure to set a key refuses the launch.
 */
function configFile(file: string, args: string[]): string | undefined {
  const result = spawnSync("git", ["config", "--file", file, ...args], { encoding: "utf8" });
  if (result.status === 0) return result.stdout.trim();
  if (args[0] === "--get" && result.status === 1) return undefined;
  throw new CloisterError(`git config --file ${file} ${args.join(" ")} failed: ${(result.stderr || result.error?.message || "").trim()}`);
}

/** The placeholders prepareLinkedGitView would make in the admin dir, found without writing anything. */
export function plannedLinkedGitPlaceholders(projectRoot: string, dirs: LinkedGitDirs): string[] {
  checkGitDirs(dirs);
  return fromProject(projectRoot, dirs.adminDir, prepareProtectedPaths(dirs.adminDir, adminProtected(dirs.adminDir), [], "plan").placeholders);
}

/** The admin dir's own pointers, and its submodules' git dirs (git keeps a linked worktree's under its admin dir). */
function adminProtected(adminDir: string): string[] {
  return [...ADMIN_PROTECTED, ...moduleGitDirEntries(adminDir)];
}

/** Both git dirs are real directories outside what a cloister keeps for itself, and belong together. */
function checkGitDirs({ commonDir, adminDir }: LinkedGitDirs): void {
  for (const dir of [commonDir, adminDir]) {
    assertRealDirectory(dir);
    const reserved = RESERVED.find((r) => dir === r || dir.startsWith(`${r}/`));
    if (reserved !== undefined) {
      throw new CloisterError(`the repository's git dir ${dir} lies under ${reserved}, which a cloister keeps for itself`, "move the repository elsewhere to use worktree cloisters");
    }
  }
  if (!isAdminDirOf(adminDir, commonDir)) throw new CloisterError(`${adminDir} is not a worktree admin dir of ${commonDir}`);
}

/** Placeholders in the admin dir, as the record keeps them: relative to the project root. */
function fromProject(projectRoot: string, adminDir: string, placeholders: readonly string[]): string[] {
  return placeholders.map((p) => relative(projectRoot, join(adminDir, p)));
}

function assertRealDirectory(dir: string): void {
  if (realPath(dir) !== dir || entryKind(dir) !== "directory") {
    throw new CloisterError(`the worktree's git dir ${dir} is not a directory at that real path`, "a mount would follow a symbolic link out of place; replace it with a real directory");
  }
}

/** The entry's kind; a symlink or an entry of another kind than expected refuses the launch. */
function checkedKind(path: string, expected: EntryKind): EntryKind {
  const kind = entryKind(path);
  if (kind !== "missing" && kind !== expected) {
    throw new CloisterError(`${path} is a ${kind}, not a ${expected}`, "a worktree cloister binds it by path; put the real one back, or remove the worktree");
  }
  return kind;
}
