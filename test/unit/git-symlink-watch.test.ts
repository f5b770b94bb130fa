/**
 * The guardian's watch for symlinks in git dirs, and the scan at a cloister's end: a link made in a
 * directory made after the watch began is removed and reported; a file is not; a link from before
 * the watch is the user's, unless it changed since the cloister's start; a directory renamed in
 * whole with a link inside is caught; nothing is ever followed.
 */
import assert from "node:assert/strict";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { GitSymlinkWatch, type GitLinkEvent } from "../../src/guardian/git-symlink-watch.js";
import { removeNewGitSymlinks, writableGitDirs } from "../../src/sandbox/git-symlinks.js";

const base = mkdtempSync(join(tmpdir(), "cgs-"));
after(() => rmSync(base, { recursive: true, force: true }));

let count = 0;
/** A project with a skeleton `.git`, and a file outside it that a link would point at. */
function project(): { root: string; git: string; outside: string } {
  const root = join(base, `p${count++}`);
  const git = join(root, ".git");
  for (const dir of ["objects/ab", "refs/heads", "logs/refs/heads", "hooks", "info"]) mkdirSync(join(git, dir), { recursive: true });
  writeFileSync(join(git, "HEAD"), "ref: refs/heads/main\n");
  const outside = join(root, "..", `bashrc-${count}`);
  writeFileSync(outside, "# rc\n");
  return { root, git, outside };
}

function collecting(): { watch: GitSymlinkWatch; events: string[] } {
  const events: string[] = [];
  const watch = new GitSymlinkWatch((cloister, event: GitLinkEvent) => events.push(`${cloister.id} ${event.kind} ${event.path}`));
  return { watch, events };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 150));
const isThere = (path: string) => lstatSync(path, { throwIfNoEntry: false }) !== undefined;

describe("GitSymlinkWatch", () => {
  it("removes and reports a link made in a directory made after the watch began, for every cloister of the git dir", async () => {
    const p = project();
    const { watch, events } = collecting();
    watch.watch("a", "a", writableGitDirs(p.root), Date.now());
    watch.watch("b", "b", writableGitDirs(p.root), Date.now());
    mkdirSync(join(p.git, "refs", "heads", "feature", "deep"), { recursive: true });
    await settle();
    const link = join(p.git, "refs", "heads", "feature", "deep", "x");
    symlinkSync(p.outside, link);
    await settle();
    assert.equal(isThere(link), false);
    assert.deepEqual(events.sort(), [`a symlink ${link}`, `b symlink ${link}`]);
    assert.equal(readFileSync(p.outside, "utf8"), "# rc\n");
    watch.close();
  });

  it("replacing a reflog by a link (ln -sf) is caught; a regular file is not reported", async () => {
    const p = project();
    writeFileSync(join(p.git, "logs", "HEAD"), "old\n");
    const { watch, events } = collecting();
    watch.watch("a", "a", [p.git], Date.now());
    writeFileSync(join(p.git, "logs", "refs", "heads", "main"), "entry\n");
    writeFileSync(join(p.git, "COMMIT_EDITMSG"), "msg\n");
    await settle();
    assert.deepEqual(events, []);
    symlinkSync(p.outside, join(p.git, "logs", "HEAD.tmp"));
    renameSync(join(p.git, "logs", "HEAD.tmp"), join(p.git, "logs", "HEAD"));
    await settle();
    assert.equal(isThere(join(p.git, "logs", "HEAD")), false);
    assert.equal(events.length, 1);
    watch.close();
  });

  it("catches a directory renamed in whole with a link already inside", async () => {
    const p = project();
    const { watch, events } = collecting();
    watch.watch("a", "a", [p.git], Date.now());
    const staged = join(p.root, "staged");
    mkdirSync(join(staged, "sub"), { recursive: true });
    symlinkSync(base, join(staged, "sub", "evil"));
    renameSync(staged, join(p.git, "refs", "heads", "moved"));
    await settle();
    assert.equal(isThere(join(p.git, "refs", "heads", "moved", "sub", "evil")), false);
    assert.deepEqual(events, [`a symlink ${join(p.git, "refs", "heads", "moved", "sub", "evil")}`]);
    watch.close();
  });

  it("leaves a link from before the watch alone (the user's), but the scan removes one new enough", async () => {
    const p = project();
    const userLink = join(p.git, "refs", "heads", "users-own");
    symlinkSync("main", userLink);
    const { watch, events } = collecting();
    watch.watch("a", "a", [p.git], Date.now() + 5_000);
    watch.sweep();
    await settle();
    assert.deepEqual(events, []);
    assert.equal(isThere(userLink), true);
    watch.close();
    // The end of a cloister started before the link was made removes it; one started later keeps it.
    const scan = (since: number) => {
      const removed: string[] = [];
      removeNewGitSymlinks(p.root, since, (path, error) => removed.push(error ?? path));
      return removed;
    };
    assert.deepEqual(scan(Date.now() + 5_000), []);
    assert.deepEqual(scan(Date.now() - 60_000), [userLink]);
    assert.equal(isThere(userLink), false);
  });

  it("a guardian adopting a running cloister removes the links made since its start", () => {
    const p = project();
    const link = join(p.git, "logs", "HEAD");
    symlinkSync(p.outside, link);
    const { watch, events } = collecting();
    watch.watch("a", "a", [p.git], Date.now() - 60_000);
    assert.deepEqual(events, [`a symlink ${link}`]);
    assert.equal(isThere(link), false);
    watch.close();
  });

  it("the sweep finds what the events missed, and leaves hooks/ (read-only in every cloister) alone", () => {
    const p = project();
    const { watch, events } = collecting();
    watch.watch("a", "a", [p.git], Date.now());
    const link = join(p.git, "logs", "refs", "heads", "main");
    symlinkSync(p.outside, link);
    symlinkSync("../../scripts/pre-commit", join(p.git, "hooks", "pre-commit"));
    watch.sweep(); // before any event was read
    assert.deepEqual(events, [`a symlink ${link}`]);
    assert.equal(isThere(join(p.git, "hooks", "pre-commit")), true);
    watch.close();
  });

  it("objects/: a fan-out dir replaced by a link is caught; a link inside one, which git never writes through, is left, and its dirs are not watched", async () => {
    const p = project();
    const { watch, events } = collecting();
    watch.watch("a", "a", [p.git], Date.now());
    const inside = join(p.git, "objects", "ab", "cdef");
    symlinkSync(p.outside, inside);
    mkdirSync(join(p.git, "objects", "12"));
    symlinkSync(p.outside, join(p.git, "objects", "12", "3456"));
    const fanOut = join(p.git, "objects", "ff");
    symlinkSync(p.outside, fanOut);
    await new Promise((resolve) => setTimeout(resolve, 200));
    watch.sweep();
    assert.deepEqual(events, [`a symlink ${fanOut}`]);
    assert.equal(isThere(inside), true);
    watch.close();
  });

  it("a worktree's git dirs are the common dir, which holds its admin dir; a plain directory has none", () => {
    const p = project();
    const admin = join(p.git, "worktrees", "feat");
    mkdirSync(admin, { recursive: true });
    writeFileSync(join(admin, "commondir"), "../..\n");
    const worktree = join(base, `wt${count++}`);
    mkdirSync(worktree);
    writeFileSync(join(worktree, ".git"), `gitdir: ${admin}\n`);
    assert.deepEqual(writableGitDirs(worktree), [p.git]);
    assert.deepEqual(writableGitDirs(p.root), [p.git]);
    const plain = join(base, `plain${count++}`);
    mkdirSync(plain);
    assert.deepEqual(writableGitDirs(plain), []);
  });

  it("leaves git's own probe alone (`tXXXXXX -> testing`, made by every `git init` or clone, a submodule's too)", async () => {
    const p = project();
    const { watch, events } = collecting();
    watch.watch("a", "a", [p.git], Date.now());
    mkdirSync(join(p.git, "modules", "lib"), { recursive: true });
    await settle();
    symlinkSync("testing", join(p.git, "modules", "lib", "tAb3xYz"));
    symlinkSync("elsewhere", join(p.git, "modules", "lib", "tAb3xY0"));
    await settle();
    watch.sweep();
    assert.deepEqual(events, [`a symlink ${join(p.git, "modules", "lib", "tAb3xY0")}`]);
    assert.equal(isThere(join(p.git, "modules", "lib", "tAb3xYz")), true);
    watch.close();
  });

  it("stops reporting once unwatched, and never follows a link it removes", async () => {
    const p = project();
    const { watch, events } = collecting();
    watch.watch("a", "a", [p.git], Date.now());
    watch.unwatch("a");
    symlinkSync(p.outside, join(p.git, "logs", "HEAD"));
    await settle();
    assert.deepEqual(events, []);
    assert.equal(existsSync(p.outside), true);
  });
});
