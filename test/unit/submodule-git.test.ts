import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { protectedPathList } from "../../src/sandbox/protected-paths.js";
import { moduleGitDirEntries, submoduleWorktreeEntries } from "../../src/sandbox/submodule-git.js";

const base = mkdtempSync(join(tmpdir(), "csm-"));
after(() => rmSync(base, { recursive: true, force: true }));

function git(dir: string, ...args: string[]): string {
  const r = spawnSync("git", ["-C", dir, "-c", "protocol.file.allow=always", "-c", "user.name=t", "-c", "user.email=t@t", ...args], { encoding: "utf8" });
  assert.equal(r.status, 0, `git ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
}

function repository(name: string): string {
  const dir = join(base, name);
  git(base, "init", "-q", dir);
  git(dir, "commit", "-q", "--allow-empty", "-m", name);
  return dir;
}

const ENTRIES = ["config", "config.worktree", "commondir", "hooks/", "info/", "worktrees/"];
const entriesOf = (dir: string) => ENTRIES.map((e) => `${dir}/${e}`);

describe("submodule git: what of a project's submodules steers the host's git", () => {
  let project: string;
  before(() => {
    const inner = repository("inner");
    const lib = repository("lib");
    git(lib, "submodule", "add", "-q", inner, "deep");
    git(lib, "commit", "-qm", "deep");
    project = repository("project");
    git(project, "submodule", "add", "-q", lib, "vendor/lib");
    git(project, "submodule", "add", "-q", "--name", "tools/fmt", inner, "tools/fmt");
    git(project, "commit", "-qm", "submodules");
    git(project, "submodule", "update", "-q", "--init", "--recursive");
  });

  it("finds every submodule git dir under .git/modules, nested ones and names with a slash included", () => {
    assert.deepEqual(moduleGitDirEntries(join(project, ".git")).sort(), [
      ...entriesOf("modules/tools/fmt"),
      ...entriesOf("modules/vendor/lib"),
      ...entriesOf("modules/vendor/lib/modules/deep"),
    ].sort());
  });

  it("finds each populated submodule's .git file and the .gitmodules of one that has submodules", () => {
    assert.deepEqual(submoduleWorktreeEntries(project).sort(), ["tools/fmt/.git", "vendor/lib/.git", "vendor/lib/.gitmodules", "vendor/lib/deep/.git"].sort());
  });

  it("adds them to the project's protected paths", () => {
    const list = protectedPathList([], true, project).paths;
    for (const path of [".git/modules/vendor/lib/config", ".git/modules/vendor/lib/modules/deep/hooks/", "vendor/lib/deep/.git"]) assert.ok(list.includes(path), path);
  });

  it("protects an embedded git dir (a submodule made before git absorbed them) like a module git dir", () => {
    const old = repository("old-style");
    const embedded = repository("embedded-src");
    git(old, "clone", "-q", embedded, "sub");
    writeFileSync(join(old, ".gitmodules"), `[submodule "sub"]\n\tpath = sub\n\turl = ${embedded}\n`);
    assert.deepEqual(submoduleWorktreeEntries(old), entriesOf("sub/.git"));
  });

  it("skips an unpopulated submodule, paths that leave their directory, and symlinked module dirs", () => {
    const odd = repository("odd");
    const paths = ["missing", "../outside", "/abs", "a/../b", "./c", "d/.git"];
    writeFileSync(join(odd, ".gitmodules"), paths.map((p, i) => `[submodule "s${i}"]\n\tpath = ${p}\n`).join(""));
    for (const p of ["b", "c", "d/.git"]) mkdirSync(join(odd, p, ".git"), { recursive: true });
    mkdirSync(join(base, "outside", ".git"), { recursive: true });
    assert.deepEqual(submoduleWorktreeEntries(odd), []);

    const elsewhere = join(base, "elsewhere-gitdir");
    mkdirSync(elsewhere);
    writeFileSync(join(elsewhere, "HEAD"), "ref: refs/heads/main\n");
    mkdirSync(join(odd, ".git", "modules"));
    symlinkSync(elsewhere, join(odd, ".git", "modules", "linked"));
    assert.deepEqual(moduleGitDirEntries(join(odd, ".git")), []);
  });

  it("finds nothing in a repository without submodules, nor without git", () => {
    const plain = repository("plain");
    assert.deepEqual(moduleGitDirEntries(join(plain, ".git")), []);
    assert.deepEqual(submoduleWorktreeEntries(plain), []);
    const noGit = join(base, "no-git");
    mkdirSync(noGit);
    writeFileSync(join(noGit, ".gitmodules"), '[submodule "x"]\n\tpath = x\n');
    mkdirSync(join(noGit, "x", ".git"), { recursive: true });
    assert.deepEqual(protectedPathList([], false, noGit).paths.filter((p) => p.startsWith("x/")), []);
  });
});
