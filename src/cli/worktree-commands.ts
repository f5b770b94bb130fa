import { existsSync } from "node:fs";
import { basename, resolve } from "node:path";
import type { Command } from "commander";
import { stopCloister } from "../cloister.js";
import { resolvePaths, type CloisterPaths } from "../config/paths.js";
import { CloisterError } from "../errors.js";
import { isClean } from "../sandbox/host-git.js";
import { locateGitProject } from "../sandbox/project.js";
import { isKeeperAlive, listRecords } from "../sandbox/records.js";
import { branchSlug, mainProjectOf, managedWorktrees, type ManagedWorktree } from "../sandbox/worktree.js";
import { checkedOutBranch, deleteWorktree, missingRepositoryOf } from "../sandbox/worktree-git.js";
import { printTable } from "./output.js";

interface WorktreeStatus {
  project: string;
  /** The branch checked out there now; null on a detached HEAD or when git fails there. */
  branch: string | null;
  dir: string;
  /** The cloister `start -b` runs for it. */
  cloister: string;
  /** Live cloisters on the worktree (its own, and `run -b` ones). */
  running: string[];
  /** Uncommitted changes, untracked files included; null when git could not tell. */
  dirty: boolean | null;
  /** Where the worktree's repository was, when it is missing (moved or deleted): git knows nothing of the worktree then. */
  missingRepository: string | null;
}

async function statusOf(paths: CloisterPaths, w: ManagedWorktree): Promise<WorktreeStatus> {
  const records = listRecords(paths).filter((r) => r.projectRoot === w.dir && isKeeperAlive(r));
  const running = records.map((r) => r.name);
  const missingRepository = missingRepositoryOf(w.dir) ?? null;
  // Without its repository git can tell nothing there.
  const clean = missingRepository === null ? await isClean(w.dir, records.flatMap((r) => r.placeholders)) : undefined;
  const branch = missingRepository === null ? ((await checkedOutBranch(w.dir)) ?? null) : null;
  return { project: w.project, branch, dir: w.dir, cloister: w.cloisterName, running, dirty: clean === undefined ? null : !clean, missingRepository };
}

/**
 * The main project that `--project` (or the current directory) stands for: the directory of that
 * name when one exists, else a registered project's name, as `worktree list` shows it and `allow
 * --project` takes it (QA: a name was refused as a missing directory), or a registered directory
 * that is gone (deleted, or moved), so that its worktrees can be removed.
 */
async function projectOf(paths: CloisterPaths, given: string | undefined): Promise<{ project: string; root: string }> {
  if (given === undefined || existsSync(given)) {
    const main = await mainProjectOf(paths, locateGitProject(given ?? process.cwd()).root);
    return { project: main.project, root: main.root };
  }
  // Loaded only here: the registry brings the config schema (zod, yaml), which every other command
  // loaded at start-up only to register this one (~50 ms of each `cloister run`).
  const { listProjects } = await import("../config/project-registry.js");
  const registered = (await listProjects(paths)).find((p) => p.name === given || p.path === resolve(given));
  if (registered?.path) return { project: registered.name, root: registered.path };
  throw new CloisterError(`no project named or at ${JSON.stringify(given)}`, "pass --project a project's name (see `cloister project list`) or its directory");
}

/**
 * Refuses while cloister keeps worktrees for project `project`, which forgetting it would leave
 * behind (QA: `project remove` did, without a word). Names each by the branch `worktree remove`
 * takes, which refuses while a cloister runs there or changes are uncommitted, as for any worktree.
 */
export async function refuseWhileWorktrees(paths: CloisterPaths, project: string): Promise<void> {
  const worktrees = managedWorktrees(paths, project);
  if (worktrees.length === 0) return;
  const named = await Promise.all(worktrees.map(async (w) => `${(missingRepositoryOf(w.dir) === undefined ? await checkedOutBranch(w.dir) : undefined) ?? w.slug} (${w.dir})`));
  throw new CloisterError(
    `project ${project} has worktrees: ${named.join(", ")}`,
    `remove each first with \`cloister worktree remove BRANCH --project ${project}\` (see \`cloister worktree list --project ${project}\`)`,
  );
}

function branchColumn(w: WorktreeStatus): string {
  if (w.missingRepository !== null) return "(repository missing)";
  return w.branch ?? "(detached)";
}

function orphanProblem(w: WorktreeStatus): string {
  return `the worktree ${w.dir} belongs to the repository ${w.missingRepository ?? ""}, which was moved or deleted`;
}

/** What to do about a worktree whose repository is missing: git no longer knows it, cloister finds its project by the old path. */
function orphanHint(w: WorktreeStatus): string {
  return `if it was moved, move it back, or run \`git worktree repair ${w.dir}\` there to use the worktree with git alone; if it is gone, \`cloister worktree remove -f ${basename(w.dir)} --project ${w.dir}\` deletes the worktree`;
}

/** What `--project` takes. */
const PROJECT_OPTION = "its name (see `cloister project list`) or directory; a directory of that name wins";

export function registerWorktreeCommands(program: Command): void {
  const worktree = program
    .command("worktree")
    .description("the git worktrees of `cloister start -b BRANCH`, one per branch of a project, under the data dir");

  worktree
    .command("list")
    .alias("ls")
    .description("list worktrees: project, branch, directory, whether a cloister runs on it, uncommitted changes")
    .option("--project <project>", `only this project's (default: every project's): ${PROJECT_OPTION}`)
    .option("--json", "machine-readable output")
    .action(async (flags: { project?: string; json?: boolean }) => {
      const paths = resolvePaths();
      const project = flags.project === undefined ? undefined : (await projectOf(paths, flags.project)).project;
      const list = await Promise.all(managedWorktrees(paths, project).map((w) => statusOf(paths, w)));
      if (flags.json) return void process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
      if (list.length === 0) return void process.stdout.write("No worktrees. Create one with: cloister start -b BRANCH\n");
      printTable(
        ["PROJECT", "BRANCH", "CLOISTER", "STATUS", "CHANGES", "DIRECTORY"],
        list.map((w) => [w.project, branchColumn(w), w.cloister, w.running.length > 0 ? `running: ${w.running.join(", ")}` : "stopped", w.dirty === null ? "unknown" : w.dirty ? "uncommitted" : "clean", w.dir]),
      );
      for (const w of list) if (w.missingRepository !== null) process.stderr.write(`cloister: ${orphanProblem(w)} (${orphanHint(w)})\n`);
    });

  worktree
    .command("remove")
    .alias("rm")
    .description("remove a branch's worktree (the branch itself stays); refuses while it has uncommitted changes or a cloister runs on it")
    .argument("<branch>", "the branch given to `cloister start -b`")
    .option("--project <project>", `the project (default: the current directory's): ${PROJECT_OPTION}`)
    .option("-f, --force", "remove it anyway: stop its cloisters and discard uncommitted changes")
    .action(async (branch: string, flags: { project?: string; force?: boolean }) => {
      const paths = resolvePaths();
      const { project, root } = await projectOf(paths, flags.project);
      const found = managedWorktrees(paths, project).find((w) => w.slug === branchSlug(branch));
      if (!found) throw new CloisterError(`project ${project} has no worktree for ${branch}`, "see `cloister worktree list`");
      const status = await statusOf(paths, found);
      // Branch names share a directory when they sanitize alike (release/1.0, release-1.0): never remove another branch's work.
      if (status.branch !== null && status.branch !== branch) {
        throw new CloisterError(`the worktree ${found.dir} holds branch ${status.branch}, not ${branch}`, `to remove it, name its branch: cloister worktree remove ${status.branch}`);
      }
      if (!flags.force && status.missingRepository !== null) throw new CloisterError(orphanProblem(status), orphanHint(status));
      if (!flags.force && status.running.length > 0) {
        throw new CloisterError(`cloister ${status.running.join(", ")} is running on ${found.dir}`, `stop it first with \`cloister stop ${status.running[0] ?? ""}\`, or pass -f`);
      }
      if (!flags.force && status.dirty !== false) {
        const why = status.dirty === null ? "git could not check it for uncommitted changes" : "it has uncommitted changes";
        throw new CloisterError(`not removing ${found.dir}: ${why}`, "commit or stash them, or pass -f to discard them");
      }
      for (const name of status.running) if (await stopCloister(name, paths)) process.stderr.write(`Stopped cloister ${name}, which ran on it\n`);
      await deleteWorktree(root, found.dir);
      process.stderr.write(`Removed the worktree ${found.dir}${status.branch ? ` (branch ${status.branch} is kept)` : ""}\n`);
      if (status.missingRepository !== null) {
        process.stderr.write(`If ${status.missingRepository} was moved rather than deleted, its git still lists the worktree, locked, with its branch checked out: \`git worktree unlock ${found.dir} && git worktree prune\` there forgets it.\n`);
      }
    });
}
