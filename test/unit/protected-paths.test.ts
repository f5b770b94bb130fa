import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { MANDATORY_PROTECTED, prepareProtectedPaths, protectedPathList, removePlaceholders, repositoryHooksPaths } from "../../src/sandbox/protected-paths.js";

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

describe("prepareProtectedPaths planned: what a launch records before it makes anything", () => {
  const project = mkdtempSync(join(tmpdir(), "cpp-plan-"));
  spawnSync("git", ["init", "-q", project]);
  after(() => rmSync(project, { recursive: true, force: true }));
  const tree = () => spawnSync("find", [project, "-path", join(project, ".git", "objects"), "-prune", "-o", "-print"], { encoding: "utf8" }).stdout;
  const exclude = () => readFileSync(join(project, ".git", "info", "exclude"), "utf8");

  it("writes nothing, and lists exactly the placeholders that preparing then makes", () => {
    const before = { tree: tree(), exclude: exclude() };
    const planned = prepareProtectedPaths(project, MANDATORY_PROTECTED, [], "plan");
    assert.deepEqual({ tree: tree(), exclude: exclude() }, before);
    const made = prepareProtectedPaths(project, MANDATORY_PROTECTED);
    assert.ok(made.placeholders.length > 10, made.placeholders.join(" "));
    assert.deepEqual(planned, made);
    removePlaceholders(project, made.placeholders);
    assert.deepEqual({ tree: tree(), exclude: exclude() }, before);
  });

  it("is safe to remove as planned whatever became of it: a file the user wrote there stays", () => {
    const planned = prepareProtectedPaths(project, MANDATORY_PROTECTED, [], "plan");
    writeFileSync(join(project, ".envrc"), "export MINE=1\n");
    removePlaceholders(project, planned.placeholders);
    assert.deepEqual(readdirSync(project).sort(), [".envrc", ".git"]);
  });

  it("removes a file placeholder cut off before its content was written (a killed launcher), and no file with other content", () => {
    writeFileSync(join(project, ".mcp.json"), "");
    writeFileSync(join(project, ".envrc"), "");
    mkdirSync(join(project, ".claude"));
    writeFileSync(join(project, ".claude", "settings.json"), "{ }\n");
    removePlaceholders(project, [".mcp.json", ".envrc", ".claude", ".claude/settings.json"]);
    assert.deepEqual(readdirSync(project).sort(), [".claude", ".envrc", ".git"]);
    rmSync(join(project, ".claude"), { recursive: true });
  });

  it("refuses a symlinked protected path before anything exists", () => {
    symlinkSync("/etc", join(project, ".vscode"));
    const before = tree();
    assert.throws(() => prepareProtectedPaths(project, MANDATORY_PROTECTED, [], "plan"), /cannot protect \.vscode in the project: it is a symbolic link/);
    assert.equal(tree(), before);
  });
});
