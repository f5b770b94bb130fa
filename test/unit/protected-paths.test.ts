import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { protectedPathList, repositoryHooksPaths } from "../../src/sandbox/protected-paths.js";

const repo = mkdtempSync(join(tmpdir(), "cpp-"));
spawnSync("git", ["init", "-q", repo]);
after(() => rmSync(repo, { recursive: true, force: true }));
const git = (...args: string[]) => spawnSync("git", ["-C", repo, ...args]);

describe("repositoryHooksPaths: hook directories the repository points into its worktree", () => {
  it("finds none by default", () => {
    assert.deepEqual(repositoryHooksPaths(repo), []);
  });

  it("protects a relative hooksPath (husky) and an absolute one inside the project", () => {
    git("config", "core.hooksPath", ".husky");
    assert.deepEqual(repositoryHooksPaths(repo), [".husky"]);
    git("config", "core.hooksPath", join(repo, "tools/hooks"));
    assert.deepEqual(repositoryHooksPaths(repo), ["tools/hooks"]);
    assert.ok(protectedPathList([], true, repo).includes("tools/hooks"));
  });

  it("finds a hooksPath spelt in any case, as git does (the file is read before git is asked)", () => {
    git("config", "--unset-all", "core.hooksPath");
    appendFileSync(join(repo, ".git/config"), "[CORE]\n\tHOOKSPATH = tools/Hooks\n");
    assert.deepEqual(repositoryHooksPaths(repo), ["tools/Hooks"]);
    git("config", "--unset-all", "core.hooksPath");
  });

  it("ignores a hooksPath outside the project (the cloister cannot write there anyway)", () => {
    git("config", "core.hooksPath", "/etc/git-hooks");
    assert.deepEqual(repositoryHooksPaths(repo), []);
    git("config", "core.hooksPath", "../elsewhere");
    assert.deepEqual(repositoryHooksPaths(repo), []);
  });
});
