/**
 * Worktree cloisters without a sandbox: where a branch comes from (local, origin/, new from HEAD),
 * names, reuse, removal, and the git view a worktree cloister gets (what is writable, what read-only,
 * what is not mounted at all), including the protected paths of a worktree and of the main repository.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { after, before, describe, it } from "node:test";
import { SAFE_NAME_RE } from "../../src/config/names.js";
import type { CloisterError } from "../../src/errors.js";
import { resolvePaths, type CloisterPaths } from "../../src/config/paths.js";
import { planMounts, WORK_DIR, type MountOp } from "../../src/sandbox/bwrap/mounts.js";
import { isClean } from "../../src/sandbox/host-git.js";
import { prepareLinkedGitView } from "../../src/sandbox/linked-git.js";
import { gitConfigPaths } from "../../src/sandbox/git-config-paths.js";
import { pinnedPathList, prepareProtectedPaths, protectedPathList, removePlaceholders } from "../../src/sandbox/protected-paths.js";
import { branchSlug, managedWorktreeAt, managedWorktrees, openWorktree, planWorktree, worktreeCloisterName, type Worktree } from "../../src/sandbox/worktree.js";
import { deleteWorktree, missingRepositoryOf } from "../../src/sandbox/worktree-git.js";

const base = realpathSync(mkdtempSync(join(tmpdir(), "cwt-")));
after(() => rmSync(base, { recursive: true, force: true }));

const IDENTITY = { GIT_AUTHOR_NAME: "T", GIT_AUTHOR_EMAIL: "t@example.com", GIT_COMMITTER_NAME: "T", GIT_COMMITTER_EMAIL: "t@example.com" };

function git(dir: string, ...args: string[]): string {
  const r = spawnSync("git", ["-C", dir, ...args], { encoding: "utf8", env: { ...process.env, ...IDENTITY } });
  assert.equal(r.status, 0, `git ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
}

/** A repository with one commit, and a bare "origin" it fetched `from-origin` from. */
function makeRepository(name: string): string {
  const main = join(base, name);
  mkdirSync(main);
  git(main, "init", "-q", "-b", "main");
  writeFileSync(join(main, "README.md"), "hello\n");
  git(main, "add", ".");
  git(main, "commit", "-qm", "init");
  const origin = join(base, `${name}-origin.git`);
  git(base, "init", "-q", "--bare", origin);
  git(main, "remote", "add", "origin", origin);
  git(main, "push", "-q", "origin", `${git(main, "commit-tree", "-p", "HEAD", "-m", "on origin", "HEAD^{tree}")}:refs/heads/from-origin`);
  git(main, "fetch", "-q", "origin");
  return main;
}

const notes: string[] = [];
const note = (message: string) => void notes.push(message);

/** A launch's two steps: the worktree planned (its branch name checked), then opened. */
async function openNamed(paths: CloisterPaths, mainRoot: string, project: string, branch: string): Promise<Worktree> {
  return openWorktree(paths, mainRoot, await planWorktree(mainRoot, project, branch), note);
}

describe("branch names", () => {
  it("sanitizes a branch like project names, keeping apart what sanitizing would lose", () => {
    assert.equal(branchSlug("feature/Auth"), "feature-auth");
    assert.equal(branchSlug("fix_1.2"), "fix_1.2");
    assert.match(branchSlug("日本"), /^branch-[0-9a-f]{6}$/);
    assert.match(branchSlug("x/日本"), /^x-[0-9a-f]{6}$/, "characters outside ASCII dropped: a hash keeps x/日本 apart from x");
    assert.notEqual(branchSlug("x/日本"), branchSlug("x/中文"));
    assert.match(branchSlug("café"), /^cafe-[0-9a-f]{6}$/);
    assert.equal(branchSlug("x"), "x");
    const long = "x".repeat(80);
    assert.notEqual(branchSlug(long), branchSlug(`${long}y`));
    for (const branch of ["feature/Auth", "日本", long, "-.-a", "UPPER/lower"]) assert.match(branchSlug(branch), SAFE_NAME_RE, branch);
  });

  it("names the cloister <project>-<branch>, within 63 characters", () => {
    assert.equal(worktreeCloisterName("app", branchSlug("feature/x")), "app-feature-x");
    const name = worktreeCloisterName("p".repeat(60), branchSlug("feature"));
    assert.equal(name.length, 63);
    assert.match(name, SAFE_NAME_RE);
    assert.notEqual(name, worktreeCloisterName("p".repeat(60), branchSlug("feature2")));
  });
});

describe("opening worktrees", () => {
  let main: string;
  let paths: CloisterPaths;
  before(() => {
    main = makeRepository("proj");
    paths = resolvePaths({ CLOISTER_HOME: join(base, "home") });
  });

  it("uses a local branch as it is", async () => {
    git(main, "branch", "local-one");
    const w = await openNamed(paths, main, "proj", "local-one");
    assert.equal(w.dir, join(paths.dataDir, "worktrees", "proj", "local-one"));
    assert.equal(git(w.dir, "symbolic-ref", "--short", "HEAD"), "local-one");
    assert.equal(git(w.dir, "rev-parse", "HEAD"), git(main, "rev-parse", "main"));
    assert.match(notes.pop() ?? "", /on branch local-one$/);
  });

  it("else branches from origin/BRANCH, without writing an upstream to .git/config", async () => {
    const configBefore = readFileSync(join(main, ".git", "config"), "utf8");
    const w = await openNamed(paths, main, "proj", "from-origin");
    assert.equal(git(w.dir, "log", "-1", "--format=%s"), "on origin");
    assert.equal(readFileSync(join(main, ".git", "config"), "utf8"), configBefore, "the protected .git/config was rewritten");
    assert.match(notes.pop() ?? "", /new branch from-origin from origin\/from-origin \(no upstream set/);
  });

  it("else creates the branch from HEAD; the cloister is <project>-<branch>", async () => {
    const w = await openNamed(paths, main, "proj", "feature/New");
    assert.equal(w.cloisterName, "proj-feature-new");
    assert.equal(w.dir, join(paths.dataDir, "worktrees", "proj", "feature-new"));
    assert.equal(git(main, "rev-parse", "feature/New"), git(main, "rev-parse", "HEAD"));
    assert.match(notes.pop() ?? "", /new branch feature\/New from HEAD$/);
  });

  it("reuses an existing worktree, locked against pruning from other views of the repository", async () => {
    const first = await openNamed(paths, main, "proj", "reuse");
    writeFileSync(join(first.dir, "work.txt"), "in progress\n");
    notes.length = 0;
    const again = await openNamed(paths, main, "proj", "reuse");
    assert.deepEqual(again, first);
    assert.deepEqual(notes, []);
    assert.equal(readFileSync(join(again.dir, "work.txt"), "utf8"), "in progress\n");
    assert.match(git(main, "worktree", "list", "--porcelain"), new RegExp(`worktree ${again.dir}\\nHEAD [0-9a-f]+\\nbranch refs/heads/reuse\\nlocked cloister`));
    assert.equal(again.git.commonDir, join(main, ".git"));
    assert.equal(again.git.adminDir, join(main, ".git", "worktrees", "reuse"));
  });

  it("refuses a worktree that now holds another branch (two branches that sanitize alike)", async () => {
    await openNamed(paths, main, "proj", "Same");
    await assert.rejects(openNamed(paths, main, "proj", "same"), /has branch Same checked out, not same/);
  });

  it("refuses names git would read as something else", async () => {
    for (const bad of ["-x", "a..b", "@{-1}", "HEAD", "x.lock", "a b"]) {
      await assert.rejects(openNamed(paths, main, "proj", bad), /is not a valid branch name/, bad);
    }
  });

  it("finds managed worktrees by directory and lists them", () => {
    const dirs = managedWorktrees(paths, "proj").map((w) => w.slug);
    assert.deepEqual(dirs, ["feature-new", "from-origin", "local-one", "reuse", "same"]);
    assert.equal(managedWorktreeAt(paths, join(paths.dataDir, "worktrees", "proj", "reuse"))?.cloisterName, "proj-reuse");
    assert.equal(managedWorktreeAt(paths, main), undefined);
    assert.equal(managedWorktreeAt(paths, join(paths.dataDir, "worktrees", "proj")), undefined);
    // A name given on the command line (project remove, --project) never reaches outside the worktrees dir.
    assert.deepEqual(managedWorktrees(paths, "../worktrees/proj"), []);
  });

  it("checks for changes without entering a nested repository the agent registered (its fsmonitor, its filters)", async () => {
    const w = await openNamed(paths, main, "proj", "nested");
    const planted = join(base, "planted-by-nested-repo");
    const lib = join(w.dir, "vendor", "lib");
    mkdirSync(lib, { recursive: true });
    git(lib, "init", "-q");
    writeFileSync(join(lib, ".gitattributes"), "* filter=evil\n");
    git(lib, "add", ".");
    git(lib, "commit", "-qm", "lib");
    git(lib, "config", "core.fsmonitor", `touch ${planted}; false`);
    git(lib, "config", "filter.evil.clean", `touch ${planted}; cat`);
    writeFileSync(join(lib, "changed"), "x\n");
    git(w.dir, "update-index", "--add", "--cacheinfo", `160000,${git(lib, "rev-parse", "HEAD")},vendor/lib`);
    assert.equal(await isClean(w.dir), false, "the new gitlink is a change");
    assert.ok(!existsSync(planted), "host git ran a command from the nested repository's config");
  });

  it("refuses a new branch in a repository without commits, leaving nothing under the data dir", async () => {
    const empty = join(base, "empty");
    mkdirSync(empty);
    git(empty, "init", "-q", "-b", "main");
    await assert.rejects(openNamed(paths, empty, "empty", "feat"), (error: Error) => /has no commit yet/.test(error.message) && /commit something first/.test((error as CloisterError).hint ?? ""));
    assert.ok(!existsSync(join(paths.dataDir, "worktrees", "empty")));
  });

  it("tells clean from dirty, and removes a worktree but keeps its branch", async () => {
    const w = await openNamed(paths, main, "proj", "gone");
    assert.equal(await isClean(w.dir), true);
    writeFileSync(join(w.dir, "untracked.txt"), "x\n");
    assert.equal(await isClean(w.dir), false);
    await deleteWorktree(main, w.dir);
    assert.ok(!existsSync(w.dir));
    assert.doesNotMatch(git(main, "worktree", "list"), /gone/);
    assert.equal(git(main, "rev-parse", "--verify", "-q", "gone"), git(main, "rev-parse", "HEAD"));
  });
});

describe("a worktree whose repository is missing", () => {
  let paths: CloisterPaths;
  let moved: string;
  let w: Worktree;
  before(async () => {
    const main = makeRepository("orphaned");
    paths = resolvePaths({ CLOISTER_HOME: join(base, "home-orphaned") });
    w = await openNamed(paths, main, "orphaned", "orphan");
    moved = join(base, "orphaned-moved");
    renameSync(main, moved);
  });

  it("is told by where its repository was; a worktree of a present repository is not", async () => {
    assert.equal(missingRepositoryOf(w.dir), join(base, "orphaned"));
    assert.equal(missingRepositoryOf(moved), undefined);
  });

  it("is deleted without the repository, which git worktree repair could still find when it moved", async () => {
    await deleteWorktree(join(base, "orphaned"), w.dir);
    assert.ok(!existsSync(w.dir));
    assert.ok(!existsSync(join(paths.dataDir, "worktrees", "orphaned")), "the project's directory under the data dir goes with its last worktree");
  });
});

describe("the git view of a worktree cloister", () => {
  let main: string;
  let w: Worktree;
  let scratch: string;
  let mounts: MountOp[];
  let placeholders: string[];
  const common = () => join(main, ".git");
  const admin = () => w.git.adminDir;
  before(async () => {
    main = makeRepository("view");
    w = await openNamed(resolvePaths({ CLOISTER_HOME: join(base, "home-view") }), main, "view", "feature");
    scratch = join(base, "scratch");
    mkdirSync(scratch);
    ({ mounts, placeholders } = prepareLinkedGitView(w.dir, w.git, scratch, []));
  });

  const at = (dest: string) => mounts.filter((m) => "dest" in m && m.dest === dest).map((m) => m.op);

  it("puts a private scratch tmpfs where the shared git dir is, first", () => {
    assert.deepEqual(mounts[0], { op: "tmpfs", dest: common(), sizeBytes: 16 << 20, mode: 0o755 });
  });

  it("binds objects, refs and logs writable, and the worktree's own git dir", () => {
    for (const dir of ["objects", "refs", "logs"]) assert.deepEqual(at(join(common(), dir)), ["bind"], dir);
    assert.deepEqual(at(admin()), ["bind"]);
  });

  it("binds hooks, info and the other worktrees' git dirs read-only; the admin dir's pointers on top of it", () => {
    for (const dir of ["hooks", "info", "worktrees"]) assert.deepEqual(at(join(common(), dir)), ["ro-bind"], dir);
    for (const file of ["commondir", "gitdir", "config.worktree"]) assert.deepEqual(at(join(admin(), file)), ["ro-bind"], file);
    const order = (dest: string) => mounts.findIndex((m) => "dest" in m && m.dest === dest);
    assert.ok(order(join(common(), "worktrees")) < order(admin()) && order(admin()) < order(join(admin(), "gitdir")));
  });

  it("shows config, HEAD and packed-refs as read-only copies from the cloister's scratch dir", () => {
    for (const file of ["config", "HEAD", "packed-refs"]) {
      const op = mounts.find((m) => "dest" in m && m.dest === join(common(), file));
      assert.deepEqual(op, { op: "ro-bind", src: join(scratch, "git", file), dest: join(common(), file) }, file);
    }
    assert.equal(readFileSync(join(scratch, "git", "config"), "utf8"), readFileSync(join(common(), "config"), "utf8"));
    assert.equal(readFileSync(join(scratch, "git", "packed-refs"), "utf8"), "", "no packed-refs on the host: an empty one");
  });

  it("mounts nothing else of the main repository: not its working tree, not its index or own state", () => {
    const touched = mounts.flatMap((m) => ("src" in m ? [m.src, m.dest] : [m.dest])).filter((p) => p === main || p.startsWith(`${main}/`));
    assert.deepEqual(touched.filter((p) => !p.startsWith(`${common()}/`) && p !== common()), []);
    for (const name of ["index", "config.worktree", "commondir", "COMMIT_EDITMSG", "description"]) assert.deepEqual(at(join(common(), name)), [], name);
  });

  it("holds a missing config.worktree with an empty file placeholder, released like the project's", () => {
    const file = join(admin(), "config.worktree");
    assert.ok(lstatSync(file).isFile());
    assert.equal(readFileSync(file, "utf8"), "");
    assert.equal(join(w.dir, placeholders[0] ?? ""), file);
    removePlaceholders(w.dir, placeholders);
    assert.ok(!existsSync(file));
  });

  it("comes after the project view in the full mount plan", () => {
    const plan = planMounts({
      systemEntries: [],
      hiddenFiles: [],
      hiddenDirs: [],
      procReadOnly: [],
      procHidden: [],
      projectRoot: w.dir,
      homeSource: "/h",
      homeDest: "/home/u",
      pinnedAncestors: [],
      protectedPaths: [".git"],
      gitMounts: mounts,
      refs: [],
      extraMounts: [],
      initBinary: "/init",
      agentMounts: [],
      tmpfsBytes: 1,
    });
    const index = (dest: string) => plan.findIndex((m) => "dest" in m && m.dest === dest);
    assert.ok(index(`${WORK_DIR}/.git`) < index(common()) && index(common()) >= 0);
  });

  it("binds the config, hooks and pointers of the worktree's submodule git dirs read-only, their parents pinned first", () => {
    const moduleDir = join(admin(), "modules", "lib");
    mkdirSync(join(moduleDir, "hooks"), { recursive: true });
    writeFileSync(join(moduleDir, "HEAD"), "ref: refs/heads/main\n");
    writeFileSync(join(moduleDir, "config"), "[core]\n");
    const view = prepareLinkedGitView(w.dir, w.git, mkdtempSync(join(base, "s-")), []);
    const op = (dest: string) => view.mounts.findIndex((m) => "dest" in m && m.dest === dest);
    for (const entry of ["config", "hooks", "info", "commondir", "config.worktree", "worktrees"]) {
      assert.equal(view.mounts[op(join(moduleDir, entry))]?.op, "ro-bind", entry);
    }
    assert.ok(op(admin()) < op(join(admin(), "modules")) && op(join(admin(), "modules")) < op(moduleDir) && op(moduleDir) < op(join(moduleDir, "config")));
    assert.equal(view.mounts[op(moduleDir)]?.op, "bind");
    removePlaceholders(w.dir, view.placeholders);
    rmSync(join(admin(), "modules"), { recursive: true });
  });

  it("gives a populated submodule a .git naming its git dir by absolute path, and a config whose core.worktree is under /work", () => {
    const moduleDir = join(admin(), "modules", "lib");
    mkdirSync(join(moduleDir, "refs"), { recursive: true });
    mkdirSync(join(moduleDir, "objects"));
    writeFileSync(join(moduleDir, "HEAD"), "ref: refs/heads/main\n");
    writeFileSync(join(moduleDir, "config"), `[core]\n\tbare = false\n\tworktree = ${relative(moduleDir, join(w.dir, "lib"))}\n`);
    writeFileSync(join(w.dir, ".gitmodules"), '[submodule "lib"]\n\tpath = lib\n\turl = ../lib\n');
    mkdirSync(join(w.dir, "lib"));
    writeFileSync(join(w.dir, "lib", ".git"), `gitdir: ${relative(join(w.dir, "lib"), moduleDir)}\n`);
    const view = prepareLinkedGitView(w.dir, w.git, mkdtempSync(join(base, "s-")), []);
    const last = (dest: string) => view.mounts.filter((m) => "dest" in m && m.dest === dest).at(-1);
    const dotGit = last(`${WORK_DIR}/lib/.git`);
    const config = last(join(moduleDir, "config"));
    assert.ok(dotGit?.op === "ro-bind" && config?.op === "ro-bind", "read-only copies on top");
    assert.equal(readFileSync(dotGit.src, "utf8"), `gitdir: ${moduleDir}\n`);
    assert.equal(spawnSync("git", ["config", "--file", config.src, "core.worktree"], { encoding: "utf8" }).stdout, `${WORK_DIR}/lib\n`);
    assert.equal(spawnSync("git", ["config", "--file", config.src, "core.bare"], { encoding: "utf8" }).stdout, "false\n", "the rest of the config kept");
    assert.match(readFileSync(join(w.dir, "lib", ".git"), "utf8"), /^gitdir: \.\.\//, "the host's file is not touched");
    removePlaceholders(w.dir, view.placeholders);
    rmSync(join(admin(), "modules"), { recursive: true });
    rmSync(join(w.dir, "lib"), { recursive: true });
    rmSync(join(w.dir, ".gitmodules"));
  });

  it("lists the worktree's placeholders after the repository's own excludes, in a copy only the cloister reads", () => {
    const exclude = join(common(), "info", "exclude");
    const own = readFileSync(exclude, "utf8");
    writeFileSync(join(w.dir, ".mcp.json"), "");
    mkdirSync(join(w.dir, ".vscode"));
    const view = prepareLinkedGitView(w.dir, w.git, mkdtempSync(join(base, "s-")), [".mcp.json", ".vscode"]);
    const copy = view.mounts.find((m) => "dest" in m && m.dest === exclude);
    assert.ok(copy?.op === "ro-bind");
    const text = readFileSync(copy.src, "utf8");
    assert.ok(text.startsWith(own), "the repository's own patterns first");
    assert.match(text.slice(own.length), /^# >>> cloister: .*\n\/\.mcp\.json\n\/\.vscode\/\n# <<< cloister\n$/);
    assert.equal(readFileSync(exclude, "utf8"), own, "the repository's file is not touched");
    assert.equal(prepareLinkedGitView(w.dir, w.git, mkdtempSync(join(base, "s-")), []).mounts.find((m) => "dest" in m && m.dest === exclude), undefined);
    rmSync(join(w.dir, ".mcp.json"));
    rmSync(join(w.dir, ".vscode"), { recursive: true });
  });

  it("fails closed when a bound entry or copied file is a symlink", () => {
    const cases: [string, () => void][] = [
      ["hooks", () => renameSync(join(common(), "hooks"), join(common(), "hooks.real"))],
      ["packed-refs", () => writeFileSync(join(base, "secret"), "secret\n")],
    ];
    for (const [name, prepare] of cases) {
      prepare();
      const target = name === "hooks" ? join(common(), "hooks.real") : join(base, "secret");
      symlinkSync(target, join(common(), name));
      const scratchDir = mkdtempSync(join(base, "s-"));
      assert.throws(() => prepareLinkedGitView(w.dir, w.git, scratchDir, []), /is a symlink/, name);
      rmSync(join(common(), name));
      if (name === "hooks") renameSync(target, join(common(), "hooks"));
    }
  });
});

describe("protected paths of a worktree and of its main repository", () => {
  let main: string;
  let w: Worktree;
  before(async () => {
    main = makeRepository("prot");
    w = await openNamed(resolvePaths({ CLOISTER_HOME: join(base, "home-prot") }), main, "prot", "feature");
  });

  it("protects the worktree's .git file instead of .git/... entries, keeping the rest of the list", () => {
    const list = protectedPathList([], true, w.dir).paths;
    assert.ok(list.includes(".git"));
    assert.deepEqual(list.filter((p) => p.startsWith(".git/")), []);
    assert.ok(list.includes(".gitmodules") && list.includes(".vscode/"));
    assert.deepEqual(pinnedPathList(true, w.dir), []);
  });

  it("keeps the main repository's list, with its worktrees' git dirs read-only and objects/refs/logs pinned", () => {
    const list = protectedPathList([], true, main).paths;
    for (const p of [".git/hooks/", ".git/config", ".git/commondir", ".git/config.worktree", ".git/worktrees/"]) assert.ok(list.includes(p), p);
    assert.ok(!list.includes(".git"));
    assert.deepEqual(pinnedPathList(true, main), [".git/objects", ".git/refs", ".git/logs"]);
  });

  it("keeps the main repository's .git/worktrees non-empty while protected, so git never removes it under a cloister", () => {
    const prepared = prepareProtectedPaths(main, protectedPathList([], true, main).paths, pinnedPathList(true, main));
    const keeper = join(main, ".git", "worktrees", ".cloister-keep");
    assert.ok(existsSync(join(keeper, "locked")));
    assert.doesNotMatch(git(main, "worktree", "list", "--porcelain"), /cloister-keep/);
    git(main, "worktree", "prune");
    assert.ok(existsSync(keeper), "git does not prune it");
    removePlaceholders(main, prepared.placeholders);
    assert.ok(!existsSync(keeper));
    assert.ok(existsSync(join(main, ".git", "worktrees", "feature")), "the real worktree stays");
  });

  it("protects a hooks directory the shared config points into the worktree (husky)", () => {
    git(main, "config", "core.hooksPath", ".husky");
    assert.deepEqual(gitConfigPaths(w.dir).hookDirs, [".husky"]);
    assert.ok(protectedPathList([], true, w.dir).paths.includes(".husky"));
  });
});
