/** removeTree (remove-tree.ts): rmSync's recursive removal, in slices between which the event loop runs. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { removeTree } from "../../src/sandbox/remove-tree.js";

const REPO_ROOT = join(import.meta.dirname, "..", "..");

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

  it("empties directories made read-only inside (as Go's module cache does), also where permissions bind root", () => {
    const target = outsideTarget();
    chmodSync(target.dir, 0o555);
    const root = join(freshDir(), "home");
    const cache = join(root, "go", "pkg", "mod", "example.com", "lib@v1");
    mkdirSync(join(cache, "sub"), { recursive: true });
    writeFileSync(join(cache, "sub", "a.go"), "package a\n", { mode: 0o444 });
    writeFileSync(join(cache, "b.go"), "package b\n", { mode: 0o444 });
    symlinkSync(target.dir, join(cache, "to-outside"));
    for (const dir of [join(cache, "sub"), cache, join(root, "go", "pkg", "mod", "example.com")]) chmodSync(dir, 0o555);
    chmodSync(join(cache, "sub"), 0o000);
    // Root passes every permission check: the removal runs without the capabilities that let it,
    // in a process of its own (an ordinary user is refused there as root is then).
    const script = `import { removeTree } from ${JSON.stringify(join(REPO_ROOT, "src", "sandbox", "remove-tree.ts"))}; await removeTree(process.argv[1]);`;
    const node = [process.execPath, "--import", "tsx", "--input-type=module", "-e", script, root];
    const asRoot = process.getuid?.() === 0;
    const r = asRoot ? spawnSync("setpriv", ["--bounding-set", "-dac_override,-dac_read_search,-fowner", "--", ...node], { cwd: REPO_ROOT, encoding: "utf8" }) : spawnSync(node[0] ?? "", node.slice(1), { cwd: REPO_ROOT, encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(existsSync(root), false);
    // The link's target kept its mode and content.
    assert.equal(statSync(target.dir).mode & 0o777, 0o555);
    assert.equal(readFileSync(target.file, "utf8"), "keep me");
    chmodSync(target.dir, 0o755);
  });

  it("fails as rmSync does on what it cannot remove", async () => {
    const file = join(freshDir(), "plain");
    writeFileSync(file, "x");
    const below = join(file, "below");
    assert.throws(() => rmSync(below, { recursive: true, force: true }), { code: "ENOTDIR" });
    await assert.rejects(removeTree(below), { code: "ENOTDIR" });
  });
});
