import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { holdLauncherMark, markedCloisters, markName, projectKey } from "../../src/sandbox/project-marks.js";

describe("project marks", () => {
  const base = mkdtempSync(join(tmpdir(), "marks-"));
  after(() => rmSync(base, { recursive: true, force: true }));
  const git = (cwd: string, ...args: string[]) => assert.equal(spawnSync("git", ["-C", cwd, ...args]).status, 0, `git ${args.join(" ")}`);

  it("key a project by the directory its cloisters share: the same under another path and from its linked worktrees", () => {
    const repo = join(base, "repo");
    mkdirSync(repo);
    git(repo, "init", "-q");
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init");
    git(repo, "worktree", "add", "-q", join(base, "feature"), "-b", "feature");
    symlinkSync(repo, join(base, "alias"));
    const plain = join(base, "plain");
    mkdirSync(plain);

    const key = projectKey(repo);
    assert.equal(projectKey(join(base, "alias")), key);
    assert.equal(projectKey(join(base, "feature")), key);
    assert.notEqual(projectKey(plain), key);
    assert.throws(() => projectKey(join(base, "missing")), /ENOENT/);
  });

  it("see the marks of a project's cloisters, a launcher's as its cloister's, and only while they are held", async () => {
    const key = `test-${process.pid}-${Date.now()}`;
    assert.deepEqual(markedCloisters(key), new Set());
    const launcher = await holdLauncherMark(key, "0000aaaa");
    // A keeper's mark, as cloister-init binds it.
    const keeper = createServer();
    await new Promise<void>((resolve) => keeper.listen(`\0${markName(key, "0000bbbb")}`, resolve));
    // Another project's, whose key this one's is a prefix of.
    const other = createServer();
    await new Promise<void>((resolve) => other.listen(`\0${markName(`${key}0`, "0000cccc")}`, resolve));
    try {
      assert.deepEqual(markedCloisters(key), new Set(["0000aaaa", "0000bbbb"]));
    } finally {
      launcher.close();
      keeper.close();
      other.close();
    }
    assert.deepEqual(markedCloisters(key), new Set());
  });
});
