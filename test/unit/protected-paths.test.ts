import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { gitConfigPaths } from "../../src/sandbox/git-config-paths.js";
import { MANDATORY_PROTECTED, prepareProtectedPaths, protectedPathList, removePlaceholders } from "../../src/sandbox/protected-paths.js";

const repo = mkdtempSync(join(tmpdir(), "cpp-"));
spawnSync("git", ["init", "-q", repo]);
after(() => rmSync(repo, { recursive: true, force: true }));
const git = (...args: string[]) => spawnSync("git", ["-C", repo, ...args]);

// The user's and system's config files of the test, not the machine's.
const userHome = mkdtempSync(join(tmpdir(), "cpp-home-"));
after(() => rmSync(userHome, { recursive: true, force: true }));
const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: userHome, GIT_CONFIG_NOSYSTEM: "1" };
const hookDirs = (root = repo, vars = env) => gitConfigPaths(root, vars).hookDirs;

describe("gitConfigPaths: hook directories git's config points into the worktree", () => {
  it("finds none by default", () => {
    assert.deepEqual(hookDirs(), []);
  });

  it("protects a relative hooksPath (husky) and an absolute one inside the project", () => {
    git("config", "core.hooksPath", ".husky");
    assert.deepEqual(hookDirs(), [".husky"]);
    git("config", "core.hooksPath", join(repo, "tools/hooks"));
    assert.deepEqual(hookDirs(), ["tools/hooks"]);
    assert.ok(protectedPathList([], true, repo).paths.includes("tools/hooks"));
  });

  it("finds a hooksPath spelt in any case, as git does (the file is read before git is asked)", () => {
    git("config", "--unset-all", "core.hooksPath");
    appendFileSync(join(repo, ".git/config"), "[CORE]\n\tHOOKSPATH = tools/Hooks\n");
    assert.deepEqual(hookDirs(), ["tools/Hooks"]);
    git("config", "--unset-all", "core.hooksPath");
  });

  it("ignores a hooksPath outside the project (the cloister cannot write there anyway)", () => {
    git("config", "core.hooksPath", "/etc/git-hooks");
    assert.deepEqual(hookDirs(), []);
    git("config", "core.hooksPath", "../elsewhere");
    assert.deepEqual(hookDirs(), []);
    git("config", "--unset-all", "core.hooksPath");
  });

  it("protects all of .husky for husky v9's .husky/_, whose scripts run .husky/<hook>", () => {
    git("config", "core.hooksPath", ".husky/_");
    assert.deepEqual(hookDirs(), [".husky"]);
    git("config", "--unset-all", "core.hooksPath");
  });

  it("finds a hooksPath in a file included only on another branch (includeIf onbranch:): the agent can switch branches inside", () => {
    writeFileSync(join(userHome, ".gitconfig"), '[includeIf "onbranch:feature/**"]\n\tpath = ~/.gitconfig-feature\n');
    writeFileSync(join(userHome, ".gitconfig-feature"), "[core]\n\thooksPath = .feature-hooks\n");
    assert.deepEqual(hookDirs(), [".feature-hooks"]);
    rmSync(join(userHome, ".gitconfig"));
    rmSync(join(userHome, ".gitconfig-feature"));
  });

  it("protects a hooksPath through a symlink in the project as written, so that preparing it refuses the link (the agent could re-point it)", () => {
    mkdirSync(join(repo, "real-tools", "hooks"), { recursive: true });
    symlinkSync("real-tools", join(repo, "tools"));
    git("config", "core.hooksPath", "tools/hooks");
    assert.deepEqual(hookDirs(), ["tools/hooks"]);
    const list = protectedPathList([], true, repo);
    assert.throws(() => prepareProtectedPaths(repo, list.paths, [], "plan", list.heldByFile), /cannot protect tools.* symbolic link/);
    git("config", "--unset-all", "core.hooksPath");
    rmSync(join(repo, "tools"));
    rmSync(join(repo, "real-tools"), { recursive: true });
  });

  it("finds a relative hooksPath set in the user's own config (~/.gitconfig, GIT_CONFIG_GLOBAL), which host git applies in the project", () => {
    writeFileSync(join(userHome, ".gitconfig"), "[core]\n\thooksPath = .githooks\n");
    assert.deepEqual(hookDirs(), [".githooks"]);
    rmSync(join(userHome, ".gitconfig"));
    const global = join(userHome, "team.gitconfig");
    writeFileSync(global, "[core]\n\thooksPath = .team-hooks\n");
    assert.deepEqual(hookDirs(repo, { ...env, GIT_CONFIG_GLOBAL: global }), [".team-hooks"]);
  });
});

describe("gitConfigPaths: config files included from inside the project", () => {
  after(() => git("config", "--unset-all", "include.path"));
  it("protects an included file in the worktree or in .git, and what it sets", () => {
    writeFileSync(join(repo, ".gitconfig-project"), "[core]\n\thooksPath = .husky\n");
    git("config", "--add", "include.path", "../.gitconfig-project");
    git("config", "--add", "include.path", "config.local");
    const found = gitConfigPaths(repo, env);
    assert.deepEqual(found.includedFiles, [".gitconfig-project", ".git/config.local"]);
    assert.deepEqual(found.hookDirs, [".husky"]);
    const list = protectedPathList([], true, repo);
    assert.ok(list.paths.includes(".gitconfig-project") && list.paths.includes(".git/config.local"));
    assert.ok(list.heldByFile.has(".git/config.local"));
  });

  it("holds a missing included file with a comment-only file, which git reads as no settings (a directory would break git), and removes it after", () => {
    const list = protectedPathList([], true, repo);
    const made = prepareProtectedPaths(repo, list.paths, [], "create", list.heldByFile);
    assert.ok(made.placeholders.includes(".git/config.local"));
    assert.match(readFileSync(join(repo, ".git/config.local"), "utf8"), /^# cloister: [^\n]*\n$/);
    assert.equal(git("status", "--short").status, 0);
    removePlaceholders(repo, made.placeholders);
    assert.throws(() => readFileSync(join(repo, ".git/config.local")), /ENOENT/);
  });

  it("ignores included files outside the project", () => {
    git("config", "--unset-all", "include.path");
    git("config", "--add", "include.path", join(userHome, "outside.gitconfig"));
    assert.deepEqual(gitConfigPaths(repo, env).includedFiles, []);
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
