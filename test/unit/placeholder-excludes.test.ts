/**
 * Placeholders for protected paths stay out of `git status` (and so out of an agent's `git add -A`)
 * and out of reach of `git clean -d` and `git stash -u`: listed in the repository's info/exclude
 * while they exist, the user's own lines kept.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { MANDATORY_PROTECTED, prepareProtectedPaths, removePlaceholders } from "../../src/sandbox/protected-paths.js";

const made: string[] = [];
after(() => made.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

function repo(): string {
  const dir = mkdtempSync(join(tmpdir(), "cpx-"));
  made.push(dir);
  spawnSync("git", ["init", "-q", dir]);
  return dir;
}

const status = (dir: string) => spawnSync("git", ["-C", dir, "status", "--porcelain", "--untracked-files=all"], { encoding: "utf8" }).stdout;

describe("placeholder excludes", () => {
  it("hides file placeholders from git status while they exist, and keeps the user's own excludes", () => {
    const dir = repo();
    mkdirSync(join(dir, ".git", "info"), { recursive: true });
    writeFileSync(join(dir, ".git", "info", "exclude"), "# mine\n*.log");
    const prepared = prepareProtectedPaths(dir, MANDATORY_PROTECTED);
    assert.ok(prepared.placeholders.includes(".mcp.json"));
    assert.equal(readFileSync(join(dir, ".mcp.json"), "utf8").trim().startsWith("{"), true);
    assert.equal(status(dir), "", "placeholders show in git status");
    const exclude = readFileSync(join(dir, ".git", "info", "exclude"), "utf8");
    assert.match(exclude, /^# mine\n\*\.log\n# >>> cloister/);
    assert.match(exclude, /^\/\.mcp\.json$/m);
    assert.match(exclude, /^\/\.claude\/settings\.json$/m);

    // Preparing again (a second cloister) adds nothing twice.
    prepareProtectedPaths(dir, MANDATORY_PROTECTED);
    assert.equal(readFileSync(join(dir, ".git", "info", "exclude"), "utf8"), exclude);

    removePlaceholders(dir, prepared.placeholders);
    assert.equal(readFileSync(join(dir, ".git", "info", "exclude"), "utf8"), "# mine\n*.log\n");
  });

  it("edits info/exclude in place: a worktree cloister's copy bound over the file stays attached (a rename would lift it)", () => {
    const dir = repo();
    mkdirSync(join(dir, ".git", "info"), { recursive: true });
    writeFileSync(join(dir, ".git", "info", "exclude"), "# mine\n");
    const inode = statSync(join(dir, ".git", "info", "exclude")).ino;
    const prepared = prepareProtectedPaths(dir, MANDATORY_PROTECTED);
    assert.equal(statSync(join(dir, ".git", "info", "exclude")).ino, inode);
    removePlaceholders(dir, prepared.placeholders);
    assert.equal(statSync(join(dir, ".git", "info", "exclude")).ino, inode);
    assert.equal(readFileSync(join(dir, ".git", "info", "exclude"), "utf8"), "# mine\n");
  });

  it("a placeholder the user filled in stays, and shows in git status again", () => {
    const dir = repo();
    const prepared = prepareProtectedPaths(dir, MANDATORY_PROTECTED);
    writeFileSync(join(dir, ".mcp.json"), '{ "mcpServers": { "mine": {} } }\n');
    removePlaceholders(dir, prepared.placeholders);
    assert.match(status(dir), /\?\? \.mcp\.json/);
    assert.doesNotMatch(readFileSync(join(dir, ".git", "info", "exclude"), "utf8"), /cloister/);
  });

  it("lists directory placeholders too, so git clean -d and git stash -u leave them (inside, a mount is there); not the ancestors made for a protected path", () => {
    const dir = repo();
    const prepared = prepareProtectedPaths(dir, MANDATORY_PROTECTED);
    const exclude = readFileSync(join(dir, ".git", "info", "exclude"), "utf8");
    assert.match(exclude, /^\/\.vscode\/$/m);
    assert.match(exclude, /^\/\.claude\/commands\/$/m);
    assert.doesNotMatch(exclude, /^\/\.claude\/?$/m, ".claude itself may get the agent's files");
    assert.doesNotMatch(exclude, /^\/\.git\//m);
    const clean = spawnSync("git", ["-C", dir, "clean", "-nd"], { encoding: "utf8" });
    assert.equal(clean.stdout, "", "git clean -d would remove a placeholder");
    removePlaceholders(dir, prepared.placeholders);
    assert.doesNotMatch(readFileSync(join(dir, ".git", "info", "exclude"), "utf8"), /cloister/, "every line goes with the placeholders");
  });

  it("holds a missing .gitmodules with an empty file, which git reads as no submodules", () => {
    const dir = repo();
    const prepared = prepareProtectedPaths(dir, MANDATORY_PROTECTED);
    assert.equal(readFileSync(join(dir, ".gitmodules"), "utf8"), "");
    const fetch = spawnSync("git", ["-C", dir, "submodule", "status"], { encoding: "utf8" });
    assert.equal(fetch.status, 0, fetch.stderr);
    assert.equal(fetch.stderr, "");
    removePlaceholders(dir, prepared.placeholders);
    assert.equal(status(dir), "");
  });

  it("does nothing outside a git repository", () => {
    const dir = mkdtempSync(join(tmpdir(), "cpx-"));
    made.push(dir);
    const prepared = prepareProtectedPaths(dir, MANDATORY_PROTECTED.filter((p) => !p.startsWith(".git/")));
    removePlaceholders(dir, prepared.placeholders);
  });
});
