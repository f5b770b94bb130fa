/** removeTree (remove-tree.ts): rmSync's recursive removal, in slices between which the event loop runs. */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { removeTree } from "../../src/sandbox/remove-tree.js";

const base = mkdtempSync(join(tmpdir(), "crmtree-"));
after(() => rmSync(base, { recursive: true, force: true }));

let made = 0;
/** A fresh directory under the test's base. */
function freshDir(): string {
  const dir = join(base, `t${made++}`);
  mkdirSync(dir);
  return dir;
}

/** Files and subdirectories mixed, more of them than one read of a directory returns, three levels deep. */
function makeTree(root: string): void {
  for (let i = 0; i < 120; i++) writeFileSync(join(root, `f${i}`), "x");
  for (let d = 0; d < 4; d++) {
    const sub = join(root, `d${d}`, "deeper", "deepest");
    mkdirSync(sub, { recursive: true });
    for (let i = 0; i < 50; i++) writeFileSync(join(root, `d${d}`, `g${i}`), "y");
    writeFileSync(join(sub, "last"), "z");
  }
  mkdirSync(join(root, "empty"));
}

/** A directory outside the tree with one file, for links to point at. */
function outsideTarget(): { dir: string; file: string } {
  const dir = freshDir();
  const file = join(dir, "precious");
  writeFileSync(file, "keep me");
  return { dir, file };
}

describe("removeTree", () => {
  it("removes a tree of files and directories, however deep, and its root", async () => {
    const root = join(freshDir(), "home");
    mkdirSync(root);
    makeTree(root);
    await removeTree(root);
    assert.equal(existsSync(root), false);
  });

  it("removes symlinks in the tree as links, never what they point to", async () => {
    const target = outsideTarget();
    const root = join(freshDir(), "home");
    mkdirSync(join(root, "sub"), { recursive: true });
    symlinkSync(target.dir, join(root, "to-dir"));
    symlinkSync(target.file, join(root, "sub", "to-file"));
    symlinkSync(join(base, "nothing-here"), join(root, "dangling"));
    await removeTree(root);
    assert.equal(existsSync(root), false);
    assert.equal(readFileSync(target.file, "utf8"), "keep me");
  });

  it("removes a root that is itself a symlink as the link, and a root that is a file", async () => {
    const target = outsideTarget();
    const link = join(freshDir(), "home");
    symlinkSync(target.dir, link);
    await removeTree(link);
    assert.equal(existsSync(link), false);
    assert.equal(readFileSync(target.file, "utf8"), "keep me");

    const file = join(freshDir(), "plain");
    writeFileSync(file, "x");
    await removeTree(file);
    assert.equal(existsSync(file), false);
  });

  it("does nothing for a root that is not there", async () => {
    await removeTree(join(base, "never-made"));
  });

  it("lets other work run between its slices, while the tree is still there", async () => {
    const root = join(freshDir(), "home");
    mkdirSync(root);
    makeTree(root);
    let seenMidway: boolean | undefined;
    setImmediate(() => (seenMidway = existsSync(root)));
    await removeTree(root, 0);
    assert.equal(seenMidway, true, "nothing else ran before the removal ended");
    assert.equal(existsSync(root), false);
  });

  it("fails as rmSync does on what it cannot remove", async () => {
    const file = join(freshDir(), "plain");
    writeFileSync(file, "x");
    const below = join(file, "below");
    assert.throws(() => rmSync(below, { recursive: true, force: true }), { code: "ENOTDIR" });
    await assert.rejects(removeTree(below), { code: "ENOTDIR" });
  });
});
