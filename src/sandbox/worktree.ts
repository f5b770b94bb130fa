/**
 * Worktree cloisters (`cloister start -b BRANCH`): one git worktree per branch of a project, kept
 * under the data dir at `worktrees/<project>/<branch, sanitized>`, each with its own cloister
 * `<project>-<branch>` beside the project's main one. The cloister's record names the main
 * project (its proxy and hostexec policy apply) and the worktree as its root (hostexec commands run
 * there). Git works inside through the git view of linked-git.ts.
 */
import { lstatSync, mkdirSync, readdirSync } from "node:fs";
import { join, relative, sep } from "node:path";
import type { CloisterPaths } from "../config/paths.js";
import { resolveProject, resolveProjectName, type ResolvedProject } from "../config/effective-cache.js";
import { MAX_NAME, SAFE_NAME_RE, sanitizeProjectName, suffixedProjectName } from "../config/names.js";
import { CloisterError } from "../errors.js";
import { realPath } from "./git-dirs.js";
import type { LinkedGitDirs } from "./linked-git.js";
import type { ProjectLocation } from "./project.js";
import type { CloisterRecord } from "./records.js";
import { withWorktreeLock } from "./records-lock.js";
import { addWorktree, branchSource, checkBranchName, checkedOutBranch, linkedGitDirs, lockWorktree, worktreeEntries, type BranchSource } from "./worktree-git.js";

export interface Worktree {
  dir: string;
  branch: string;
  cloisterName: string;
  git: LinkedGitDirs;
}

/** A worktree directory under the data dir, as found there. */
export interface ManagedWorktree {
  project: string;
  /** The directory's name: the branch, sanitized. */
  slug: string;
  dir: string;
  cloisterName: string;
}

/**
 * A branch as a directory and name part: sanitized like project names ("feature/Auth" →
 * "feature-auth"). When that loses the name (truncated, nothing left, or characters outside ASCII
 * dropped or folded: "x/日本" would be "x") a hash of the branch keeps such branches apart; branches
 * that merely sanitize alike are told apart when opened. An ASCII branch's slug never changed, so
 * existing worktrees keep their directories.
 */
export function branchSlug(branch: string): string {
  const slug = sanitizeProjectName(branch);
  const emptied = slug === "project" && branch.toLowerCase() !== "project";
  const lossy = emptied || slug.length === MAX_NAME || NON_ASCII_RE.test(branch);
  return lossy ? suffixedProjectName(emptied ? "branch" : slug, branch) : slug;
}

const NON_ASCII_RE = /[^\x00-\x7f]/;

/** `<project>-<slug>`, shortened with a hash when it would exceed the 63 characters of a name. */
export function worktreeCloisterName(project: string, slug: string): string {
  const name = `${project}-${slug}`;
  return name.length <= MAX_NAME ? name : suffixedProjectName(name, `${project}/${slug}`);
}

/** Where worktrees live (its real path once it exists, so records and git name them alike). */
export function worktreesBase(paths: CloisterPaths): string {
  const base = join(paths.dataDir, "worktrees");
  return realPath(base) ?? base;
}

/** A worktree's directory under the data dir. */
export function worktreeDir(paths: CloisterPaths, worktree: Pick<PlannedWorktree, "project" | "slug">): string {
  return join(worktreesBase(paths), worktree.project, worktree.slug);
}

/** Worktrees under the data dir, of one project or all (none for what cannot be a project's name: `..`). */
export function managedWorktrees(paths: CloisterPaths, project?: string): ManagedWorktree[] {
  const base = worktreesBase(paths);
  const projects = project === undefined ? subdirectories(base) : SAFE_NAME_RE.test(project) ? [project] : [];
  return projects.flatMap((p) => subdirectories(join(base, p)).map((slug) => managed(base, p, slug)));
}

/** The managed worktree whose directory is `dir` exactly, if any. */
export function managedWorktreeAt(paths: CloisterPaths, dir: string): ManagedWorktree | undefined {
  const base = worktreesBase(paths);
  const parts = relative(base, dir).split(sep);
  const [project, slug] = parts;
  const valid = parts.length === 2 && project !== undefined && slug !== undefined && SAFE_NAME_RE.test(project) && SAFE_NAME_RE.test(slug);
  return valid ? managed(base, project, slug) : undefined;
}

function managed(base: string, project: string, slug: string): ManagedWorktree {
  return { project, slug, dir: join(base, project, slug), cloisterName: worktreeCloisterName(project, slug) };
}

function subdirectories(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((name) => SAFE_NAME_RE.test(name) && lstatSync(join(dir, name)).isDirectory())
      .sort();
  } catch {
    return [];
  }
}

/** The registered root of a project (by name), from the registry. */
export async function registeredRoot(paths: CloisterPaths, project: string): Promise<string | undefined> {
  const { listProjects } = await import("../config/project-registry.js");
  return (await listProjects(paths)).find((p) => p.name === project)?.path ?? undefined;
}

/**
 * The project a directory stands for: for a managed worktree, the project it belongs to (whose
 * registry entry and config apply); else the directory's own.
 */
export async function mainProjectOf(paths: CloisterPaths, root: string): Promise<ResolvedProject & { root: string; managed?: ManagedWorktree }> {
  const managed = managedWorktreeAt(paths, root);
  if (!managed) return { ...(await resolveProject(paths, root)), root };
  const mainRoot = await registeredRoot(paths, managed.project);
  if (mainRoot === undefined) throw new CloisterError(`${root} is a worktree of project ${managed.project}, which is no longer registered`, "start a cloister in the project's own directory to register it again");
  return { ...(await resolveProject(paths, mainRoot)), root: mainRoot, managed };
}

/** The root whose config applies to a cloister: a worktree cloister's project, not its worktree. */
export async function configRootOf(paths: CloisterPaths, record: CloisterRecord): Promise<string> {
  if (!managedWorktreeAt(paths, record.projectRoot)) return record.projectRoot;
  return (await registeredRoot(paths, record.project)) ?? record.projectRoot;
}

/** A worktree as planned before it is opened: whose, for which branch, and what its cloister is called. */
export interface PlannedWorktree {
  project: string;
  branch: string;
  /** The directory's name: the branch, sanitized. */
  slug: string;
  cloisterName: string;
}

/**
 * What a cloister is launched on: the project, its config, and with a branch (`-b`, or the one
 * checked out when `dir` is a managed worktree) the worktree for it, planned but not yet made:
 * the launch opens it (openWorktree) once every option is checked, so a refused launch leaves no
 * worktree behind (QA).
 */
export async function resolveLaunchProject(
  paths: CloisterPaths,
  location: ProjectLocation,
  branch: string | undefined,
): Promise<ResolvedProject & { root: string; worktree?: PlannedWorktree }> {
  // Before anything is looked up: a launch refused here leaves nothing (QA A14).
  if (branch !== undefined && !location.isGit) throw new CloisterError("options.branch needs a git repository", "run it in a git project, or pass the project's directory with options.project");
  const { managed, ...main } = await mainProjectOf(paths, location.root);
  // Without a branch given, only a managed worktree (a git one) has one to take.
  const wanted = branch ?? (managed ? await currentBranchOf(managed) : undefined);
  if (wanted === undefined) return main;
  return { ...main, worktree: await planWorktree(main.root, main.project, wanted) };
}

/** The worktree of `project` (whose repository is at `mainRoot`) for `branch`, a valid branch name. */
export async function planWorktree(mainRoot: string, project: string, branch: string): Promise<PlannedWorktree> {
  await checkBranchName(mainRoot, branch);
  const slug = branchSlug(branch);
  return { project, branch, slug, cloisterName: worktreeCloisterName(project, slug) };
}

/**
 * The name `start`, `exec` and `stop` use by default for a directory (and branch). From the names
 * alone: a project's config with problems must not keep anyone from stopping its cloister (QA).
 */
export async function defaultCloisterName(paths: CloisterPaths, location: ProjectLocation, branch: string | undefined): Promise<string> {
  const managed = managedWorktreeAt(paths, location.root);
  const project = managed?.project ?? (await resolveProjectName(paths, location.root));
  if (branch !== undefined) return worktreeCloisterName(project, branchSlug(branch));
  return managed?.cloisterName ?? project;
}

async function currentBranchOf(worktree: ManagedWorktree): Promise<string> {
  const branch = await checkedOutBranch(worktree.dir);
  if (branch === undefined) throw new CloisterError(`the worktree ${worktree.dir} has no branch checked out`, "check out a branch in it, or pass -b BRANCH");
  return branch;
}

function sourceNote(branch: string, source: BranchSource): string {
  if (source === "local") return `branch ${branch}`;
  return `a new branch ${branch} ${source === "origin" ? `from origin/${branch} (no upstream set: \`git branch -u origin/${branch}\` sets it)` : "from HEAD"}`;
}

/**
 * Two branch names that sanitize alike (release/1.0, release-1.0) share a worktree directory: the
 * one there keeps it. The hint names that one, because `worktree remove` removes by directory.
 */
export function heldByOtherBranch(dir: string, held: string | undefined, wanted: string): CloisterError {
  const holds = held ? `branch ${held}` : "a detached HEAD";
  const remove = held ? `remove its worktree with \`cloister worktree remove ${held}\`` : `remove the worktree with \`cloister worktree remove -f ${wanted}\``;
  return new CloisterError(`the worktree ${dir} has ${holds} checked out, not ${wanted}`, `check out ${wanted} there, or ${remove}`);
}

/** The planned worktree of a project: reused when it exists (and holds that branch), else created. */
export async function openWorktree(
  paths: CloisterPaths,
  mainRoot: string,
  planned: PlannedWorktree,
  note: (message: string) => void = (message) => process.stderr.write(`cloister: ${message}\n`),
): Promise<Worktree> {
  const { project, branch, slug, cloisterName } = planned;
  mkdirSync(join(paths.dataDir, "worktrees"), { recursive: true, mode: 0o700 });
  const dir = worktreeDir(paths, planned);
  const reason = `cloister worktree for ${cloisterName}; remove it with: cloister worktree remove ${branch}`;
  await withWorktreeLock(paths, dir, async () => {
    const entry = (await worktreeEntries(mainRoot)).find((e) => e.path === dir);
    if (entry) {
      if (entry.branch !== `refs/heads/${branch}`) {
        throw heldByOtherBranch(dir, entry.branch?.replace(/^refs\/heads\//, ""), branch);
      }
      if (!entry.locked) await lockWorktree(mainRoot, dir, reason);
    } else if (subdirectories(join(worktreesBase(paths), project)).includes(slug)) {
      throw new CloisterError(`${dir} exists but git does not know it as a worktree of ${mainRoot}`, `remove it with \`cloister worktree remove -f ${branch}\``);
    } else {
      const source = await branchSource(mainRoot, branch);
      await addWorktree(mainRoot, dir, branch, source, reason);
      note(`created the worktree ${dir} on ${sourceNote(branch, source)}`);
    }
  });
  return { dir, branch, cloisterName, git: linkedGitDirs(mainRoot, dir) };
}
