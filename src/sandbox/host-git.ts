/**
 * git that cloister itself runs on the host for worktree cloisters: in the user's repository
 * (`worktree add|list|lock|remove|prune`, `show-ref`, `check-ref-format`) and in its worktrees
 * (`symbolic-ref`, `status`). The repository's config, hooks and info are read-only to every
 * cloister, but a worktree's files and its index are the agent's, and a worktree checks out
 * whatever the agent committed on the branch.
 *
 * Of what a repository can make git run (see guardian/hostexec/git.ts), these commands reach:
 * - hooks: `worktree add` runs post-checkout, and with core.hooksPath relative (husky's `.husky`)
 *   that is a file of the checked-out branch. Off: core.hooksPath=/dev/null.
 * - fsmonitor: status and the checkout query it. Off: core.fsmonitor=false.
 * - submodules: status runs `git status` inside every populated submodule, and a nested repository
 *   the agent registered as a gitlink brings its own config (filters, fsmonitor). Kept out:
 *   `--ignore-submodules=dirty` on status (gitlink commits still count), and
 *   status.submoduleSummary=false. `worktree add` never recurses (it checks out with
 *   --no-recurse-submodules).
 * - filters: the checkout and status run the clean/smudge drivers of .gitattributes. Left on: the
 *   drivers themselves come from the user's config, which no cloister can write, and turning them
 *   off would check out Git LFS pointers instead of files.
 * - a bare repository git finds instead: where `.git` stops being a repository (a garbage HEAD, its
 *   file in a worktree), git takes a directory holding HEAD, objects/ and refs/ for a bare one and
 *   reads its config, filters and all (found by red team: `start -b` ran an agent-written smudge
 *   filter). The project root's HEAD is held by a placeholder (protected-paths.ts), and these
 *   commands also refuse any bare repository they were not pointed at: safe.bareRepository=explicit.
 * Pagers, editors, diff and merge drivers, credential helpers, ssh and gpg programs are never
 * reached: these commands show no diff, merge nothing, sign nothing, and never talk to a remote
 * (an `origin/BRANCH` to branch from is a remote-tracking ref already fetched). Command-line
 * settings reach git's own sub-processes through GIT_CONFIG_PARAMETERS; inherited GIT_* variables
 * (GIT_DIR, GIT_WORK_TREE, GIT_INDEX_FILE, ...) are dropped so that git answers for this repository.
 */
import { execFile } from "node:child_process";
import { isAbsolute } from "node:path";
import { CloisterError } from "../errors.js";

const HARDENING = ["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "status.submoduleSummary=false", "-c", "safe.bareRepository=explicit"];
const MAX_OUTPUT = 64 << 20;

export interface GitResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs hardened git in `cwd`; resolves with its exit code and output, whatever the code. */
export function hostGit(cwd: string, args: readonly string[]): Promise<GitResult> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("GIT_")));
  return new Promise((resolve) => {
    execFile("git", ["-C", cwd, ...HARDENING, ...args], { env, maxBuffer: MAX_OUTPUT, encoding: "utf8" }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : 127;
      resolve({ code, stdout, stderr: stderr || (code === 127 ? error?.message ?? "" : "") });
    });
  });
}

/** Like hostGit, for a command that must succeed: its output, or a CloisterError with git's message. */
export async function hostGitOk(cwd: string, args: readonly string[], what: string): Promise<string> {
  const result = await hostGit(cwd, args);
  if (result.code !== 0) throw new CloisterError(`${what}: ${lastLine(result.stderr) || `git exited with ${result.code}`}`);
  return result.stdout;
}

/**
 * True when git lists no change (tracked, staged or untracked) in the worktree; undefined when git
 * fails there. `placeholders` (relative to it: those of cloisters running on it) are not changes:
 * while a worktree's cloister runs, they are listed as excluded only in its own view of info/exclude.
 */
export async function isClean(worktreeDir: string, placeholders: readonly string[] = []): Promise<boolean | undefined> {
  const skipped = placeholders.filter((rel) => !isAbsolute(rel) && !rel.startsWith("../"));
  // Untracked files one by one, so that a placeholder in an untracked directory (.claude/) is matched on its own.
  const args = ["status", "--porcelain", "--ignore-submodules=dirty", "--untracked-files=all", "--", ".", ...skipped.map((rel) => `:(exclude,literal)${rel}`)];
  const result = await hostGit(worktreeDir, args);
  return result.code === 0 ? result.stdout.trim() === "" : undefined;
}

function lastLine(text: string): string {
  return text.trim().split("\n").pop()?.replace(/^(fatal|error): /, "") ?? "";
}
