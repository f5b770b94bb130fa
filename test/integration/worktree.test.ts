/**
 * Worktree cloisters, for real: `start -d -b BRANCH` makes a git worktree under the data dir and a
 * cloister `<project>-<branch>` on it, where git status, commit and log work and land in the main
 * repository, while the repository's hooks and config, the worktree's .git file and its admin dir's
 * pointers stay read-only and the main working tree stays out of sight. It runs beside the main
 * cloister; `worktree list`, `worktree remove` and `path` manage it; the host is unchanged otherwise.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createInstance, spawnCli, type TestInstance } from "../helpers/cloister.js";
import { diffSnapshots, hostSensitiveSnapshot, snapshotTree, type Snapshot } from "../helpers/oracles.js";

function hostGit(t: TestInstance, ...args: string[]): string {
  const r = spawnSync("git", ["-C", t.project, ...args], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

interface Listed {
  name: string;
  project: string;
  projectRoot: string;
  running: boolean;
}

describe("worktree cloisters (start -b, worktree list/remove, path)", () => {
  let t: TestInstance;
  let worktree: string;
  let common: string;
  let admin: string;
  let hostBefore: Snapshot;
  let treeBefore: Snapshot;
  const workingTree = (): Snapshot => snapshotTree(t.project, "project", (rel) => rel === ".git");
  const inside = (name: string, script: string) => t.cli(["exec", name, "--", "sh", "-c", script]);

  before(() => {
    t = createInstance("wt");
    worktree = join(t.home, "data", "worktrees", "proj", "feature");
    common = join(t.project, ".git");
    admin = join(common, "worktrees", "feature");
    hostBefore = hostSensitiveSnapshot(t);
    treeBefore = workingTree();
  });
  after(async () => {
    await t.teardown();
  });

  it("start -d -b feature creates the worktree from HEAD and starts <project>-feature on it", async () => {
    const r = await t.cli(["start", "-d", "-b", "feature"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /created the worktree .*feature on a new branch feature from HEAD/);
    const listed = JSON.parse((await t.cli(["list", "--json"])).stdout) as Listed[];
    assert.deepEqual(listed.map((c) => [c.name, c.project, c.projectRoot, c.running]), [["proj-feature", "proj", worktree, true]]);
    assert.equal(hostGit(t, "rev-parse", "feature"), hostGit(t, "rev-parse", "HEAD"));
    // Started again, it says how to enter it: by its branch, not the main cloister's `cloister start` (QA A4).
    const again = await t.cli(["start", "-d", "-b", "feature"]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /Cloister proj-feature is already running\. Enter it with: cloister start -b feature\n/);
  });

  it("two `start -d -b NEWBRANCH` at once: one makes the worktree, both succeed (QA A3: one failed on git's ref lock)", async () => {
    const starts = await Promise.all([t.cli(["start", "-d", "-b", "race"]), t.cli(["start", "-d", "-b", "race"])]);
    for (const r of starts) assert.equal(r.code, 0, r.stderr);
    assert.equal(starts.filter((r) => /created the worktree .*race on a new branch race from HEAD/.test(r.stderr)).length, 1, starts.map((r) => r.stderr).join(""));
    assert.equal(starts.filter((r) => /Started cloister proj-race/.test(r.stderr)).length, 1, starts.map((r) => r.stderr).join(""));
    assert.equal((await t.cli(["stop", "proj-race"])).code, 0);
    assert.equal((await t.cli(["worktree", "remove", "race"])).code, 0);
    hostGit(t, "branch", "-D", "race");
  });

  it("git status, commit and log work inside, and the commit is the main repository's", async () => {
    const r = await inside("proj-feature", "git status >/dev/null && echo x > f.txt && git add f.txt && git -c user.name=A -c user.email=a@example.com commit -qm 'from the cloister' && git log --format=%s");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), "from the cloister\ninit");
    assert.equal(hostGit(t, "log", "-1", "--format=%s", "feature"), "from the cloister");
    assert.equal(hostGit(t, "log", "-1", "--format=%s", "HEAD"), "init", "the main worktree's branch did not move");
  });

  it("deleting a ref with its old value checked fails inside, loose or packed; update-ref -d without one deletes a loose ref, as docs/worktrees.md says", async () => {
    const r = await inside("proj-feature", "git branch doc-loose && git branch -d doc-loose; echo rc=$?; git update-ref -d refs/heads/doc-loose && echo deleted");
    assert.match(r.stderr, /could not delete reference refs\/heads\/doc-loose: error replacing .*\/packed-refs: Device or resource busy/);
    assert.equal(r.stdout, "rc=1\ndeleted\n");
    assert.equal(spawnSync("git", ["-C", t.project, "rev-parse", "--verify", "-q", "doc-loose"]).status, 1, "the branch is gone on the host");
  });

  it("the repository's hooks and config, the worktree's .git file and its admin dir's gitdir cannot be written", async () => {
    const targets = [join(common, "hooks", "x"), join(common, "config"), "/work/.git", join(worktree, ".git"), join(admin, "gitdir"), join(admin, "commondir")];
    const script = targets.map((p) => `if echo junk >> '${p}' 2>/dev/null; then echo "WROTE ${p}"; fi`).join("\n");
    const r = await inside("proj-feature", `${script}\ngit config core.hooksPath /tmp && echo WROTE-config\ngit config --worktree core.fsmonitor true && echo WROTE-worktree-config\ntrue`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "");
    assert.ok(!existsSync(join(common, "hooks", "x")));
    assert.equal(readFileSync(join(admin, "gitdir"), "utf8"), `${join(worktree, ".git")}\n`);
    assert.equal(readFileSync(join(worktree, ".git"), "utf8"), `gitdir: ${admin}\n`);
  });

  it("the main working tree is not visible inside", async () => {
    const r = await inside("proj-feature", `ls -A '${t.project}'; test -e '${t.project}/README.md' && echo VISIBLE; true`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, ".git\n");
  });

  it("runs beside the project's main cloister, which sees the commit too", async () => {
    assert.equal((await t.cli(["start", "-d"])).code, 0);
    const listed = JSON.parse((await t.cli(["list", "--json"])).stdout) as Listed[];
    assert.deepEqual(listed.filter((c) => c.running).map((c) => c.name).sort(), ["proj", "proj-feature"]);
    const main = await inside("proj", "git log -1 --format=%s feature && git status >/dev/null");
    assert.equal(main.code, 0, main.stderr);
    assert.equal(main.stdout, "from the cloister\n");
    assert.equal((await inside("proj-feature", "git status --short -- f.txt README.md")).stdout, "");
  });

  it("run -b feature runs one command in a fresh cloister on the same worktree", async () => {
    const r = await t.cli(["run", "-b", "feature", "--", "sh", "-c", "cat f.txt && git log -1 --format=%s"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "x\nfrom the cloister\n");
  });

  it("in the worktree's directory on the host, commands without -b mean the worktree's cloister", async () => {
    const exec = await t.cli(["exec", "--", "git", "branch", "--show-current"], { cwd: worktree });
    assert.equal(exec.stdout, "feature\n", exec.stderr);
    const run = await t.cli(["run", "--", "cat", "f.txt"], { cwd: worktree });
    assert.equal(run.stdout, "x\n", run.stderr);
    assert.equal(existsSync(join(t.home, "config", "projects", "feature.yaml")), false, "the worktree is not a project of its own");
  });

  it("worktree list --json shows project, branch, directory, running cloisters and changes", async () => {
    const r = await t.cli(["worktree", "list", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const [entry, ...more] = JSON.parse(r.stdout) as { dirty: unknown }[];
    assert.deepEqual(more, []);
    assert.deepEqual({ ...entry, dirty: typeof entry?.dirty }, { project: "proj", branch: "feature", dir: worktree, cloister: "proj-feature", running: ["proj-feature"], dirty: "boolean", missingRepository: null });
  });

  it("--project takes the project's name as worktree list shows it, unless a directory of that name exists (QA: the name was refused as a missing directory)", async () => {
    const byName = JSON.parse((await t.cli(["worktree", "list", "--json", "--project", "proj"], { cwd: t.home })).stdout) as { dir: string }[];
    assert.deepEqual(byName.map((w) => w.dir), [worktree]);
    const remove = await t.cli(["worktree", "remove", "no-such-branch", "--project", "proj"], { cwd: t.home });
    assert.match(remove.stderr, /project proj has no worktree for no-such-branch/);
    const unknown = await t.cli(["worktree", "list", "--project", "no-such-project"], { cwd: t.home });
    assert.equal(unknown.code, 125);
    assert.match(unknown.stderr, /no project named or at "no-such-project".*cloister project list/s);
    const plain = mkdtempSync(join(tmpdir(), "wt-name-"));
    try {
      mkdirSync(join(plain, "proj"));
      const directory = await t.cli(["worktree", "list", "--project", "proj"], { cwd: plain });
      assert.equal(directory.code, 125);
      assert.match(directory.stderr, /is not inside a git repository/, "the directory proj wins over the project proj");
    } finally {
      rmSync(plain, { recursive: true, force: true });
    }
    for (const command of ["list", "remove"]) {
      const help = (await t.cli(["worktree", command, "--help"])).stdout.replace(/\s+/g, " ");
      assert.ok(help.includes("its name (see `cloister project list`) or directory; a directory of that name wins"), help);
    }
  });

  it("worktree remove refuses while the cloister runs and while there are changes; -f removes it, keeping the branch", async () => {
    const running = await t.cli(["worktree", "remove", "feature"]);
    assert.notEqual(running.code, 0);
    assert.match(running.stderr, /cloister proj-feature is running/);
    assert.equal((await t.cli(["stop", "proj-feature"])).code, 0);
    assert.ok(!existsSync(join(admin, "config.worktree")), "the placeholder went with the worktree's last cloister");
    assert.equal((await t.cli(["path", "proj-feature"])).stdout, `${worktree}\n`, "path knows a stopped worktree cloister");
    const stopped = JSON.parse((await t.cli(["worktree", "list", "--json"])).stdout) as { running: string[]; dirty: boolean }[];
    assert.deepEqual(stopped.map((w) => [w.running, w.dirty]), [[[], false]]);
    writeFileSync(join(worktree, "wip.txt"), "not committed\n");
    const dirty = await t.cli(["worktree", "remove", "feature"]);
    assert.notEqual(dirty.code, 0);
    assert.match(dirty.stderr, /uncommitted changes/);
    assert.ok(existsSync(join(worktree, "wip.txt")));
    const forced = await t.cli(["worktree", "remove", "-f", "feature"]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.ok(!existsSync(worktree));
    assert.doesNotMatch(hostGit(t, "worktree", "list"), /feature/);
    assert.equal(hostGit(t, "log", "-1", "--format=%s", "feature"), "from the cloister");
    assert.equal((await t.cli(["worktree", "list", "--json"])).stdout, "[]\n");
    assert.notEqual((await t.cli(["path", "proj-feature"])).code, 0);
  });

  it("project remove refuses while the project has worktrees, naming each and how to remove it (QA: it left them behind without a word)", async () => {
    assert.equal((await t.cli(["run", "-b", "leftover", "--", "true"])).code, 0);
    assert.equal((await t.cli(["stop", "--all"])).code, 0);
    const leftover = join(t.home, "data", "worktrees", "proj", "leftover");
    const refused = await t.cli(["project", "remove", "proj"], { cwd: t.home });
    assert.equal(refused.code, 125);
    assert.ok(refused.stderr.includes(`project proj has worktrees: leftover (${leftover})`), refused.stderr);
    assert.ok(refused.stderr.includes("`cloister worktree remove BRANCH --project proj`"), refused.stderr);
    assert.ok(existsSync(leftover));
    assert.match((await t.cli(["project", "list"])).stdout, /^proj\b/m, "still registered");
    assert.equal((await t.cli(["worktree", "remove", "leftover", "--project", "proj"], { cwd: t.home })).code, 0);
    const removed = await t.cli(["project", "remove", "proj"], { cwd: t.home });
    assert.equal(removed.code, 0, removed.stderr);
  });

  it("afterwards the host is unchanged otherwise: git config and hooks, the main working tree, no placeholder left", async () => {
    assert.equal((await t.cli(["stop", "--all"])).code, 0);
    assert.deepEqual(diffSnapshots(hostBefore, hostSensitiveSnapshot(t)), []);
    assert.deepEqual(diffSnapshots(treeBefore, workingTree()), []);
    const left = existsSync(join(common, "worktrees")) ? readdirSync(join(common, "worktrees")) : [];
    assert.deepEqual(left, [], "the worktree's git dir and the main cloister's keeper entry are gone");
  });
});

describe("worktree cloisters: a project with a submodule", () => {
  let t: TestInstance;
  let sources: string;
  let worktree: string;
  const files = ["-c", "protocol.file.allow=always"];
  const inside = (script: string) => t.cli(["exec", "proj-feature", "--", "sh", "-c", script]);

  before(async () => {
    t = createInstance("wtsm");
    sources = mkdtempSync(join(tmpdir(), "cloister-wtsm-"));
    const who = ["-c", "user.name=A", "-c", "user.email=a@example.com"];
    // lib, which has a submodule of its own (deep).
    const [lib, deep] = [join(sources, "lib"), join(sources, "deep")];
    for (const repo of [deep, lib]) {
      assert.equal(spawnSync("git", ["init", "-q", repo]).status, 0);
      assert.equal(spawnSync("git", ["-C", repo, ...who, "commit", "-q", "--allow-empty", "-m", "first"]).status, 0);
    }
    assert.equal(spawnSync("git", ["-C", lib, ...files, "submodule", "add", "-q", deep, "deep"]).status, 0);
    assert.equal(spawnSync("git", ["-C", lib, ...who, "commit", "-qm", "deep"]).status, 0);
    hostGit(t, ...files, "submodule", "add", "-q", lib, "lib");
    hostGit(t, ...who, "commit", "-qm", "submodule");
    assert.equal((await t.cli(["start", "-d", "-b", "feature"])).code, 0);
    worktree = join(t.home, "data", "worktrees", "proj", "feature");
    // Populated on the host (as a user would), then the cloister started again: it plans its view at launch.
    assert.equal(spawnSync("git", ["-C", worktree, ...files, "submodule", "update", "-q", "--init", "--recursive"]).status, 0);
    assert.equal((await t.cli(["stop", "proj-feature"])).code, 0);
    assert.equal((await t.cli(["start", "-d", "-b", "feature"])).code, 0);
  });
  after(async () => {
    await t.teardown();
    rmSync(sources, { recursive: true, force: true });
  });

  it("git status is clean inside (the submodule checked, the protected-path placeholders not listed)", async () => {
    const r = await inside("git status --porcelain");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "");
  });

  /**
   * Inside, in the submodule at `path`: a clean status, then a file added and committed; the commit's
   * subject, and the parent's status (the submodule moved), as git prints them inside and on the host.
   */
  async function commitInSubmodule(path: string, subject: string): Promise<void> {
    const r = await inside(`cd ${path} && git status --porcelain && echo x > added && git add added && git -c user.name=A -c user.email=a@example.com commit -qm '${subject}' && git log -1 --format=%s && cd .. && git status --porcelain`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${subject}\n M ${basename(path)}\n`);
    assert.equal(spawnSync("git", ["-C", join(worktree, path), "log", "-1", "--format=%s"], { encoding: "utf8" }).stdout, `${subject}\n`);
  }

  it("git works in the submodule: status, add and commit; the host sees the commit", async () => {
    await commitInSubmodule("lib", "in the submodule");
  });

  it("git works in a submodule of the submodule too; the host sees that commit as well", async () => {
    await commitInSubmodule("lib/deep", "two levels down");
  });

  it("the submodule's .git and its git dir's config stay read-only inside, and the host's keep their own paths", async () => {
    const r = await inside("echo junk >> lib/.git && echo WROTE-dotgit; git -C lib config core.fsmonitor true && echo WROTE-config; true");
    assert.equal(r.stdout, "");
    assert.match(readFileSync(join(worktree, "lib", ".git"), "utf8"), /^gitdir: \.\.\/.*\/\.git\/worktrees\/feature\/modules\/lib\n$/);
    const hostWorktree = spawnSync("git", ["-C", join(worktree, "lib"), "config", "core.worktree"], { encoding: "utf8" });
    assert.match(hostWorktree.stdout, /^\.\.\/.*feature\/lib\n$/);
    assert.equal(spawnSync("git", ["-C", join(worktree, "lib"), "config", "core.fsmonitor"]).status, 1, "no fsmonitor set on the host");
  });
});

describe("a worktree made with `git worktree add` on the host", () => {
  let t: TestInstance;
  let worktree: string;
  before(() => {
    t = createInstance("hw");
    worktree = join(t.home, "hostmade");
    hostGit(t, "worktree", "add", "-q", "-b", "hostmade", worktree);
  });
  after(async () => {
    await t.teardown();
  });

  it("git works in a cloister of it (its git dir lives in the main repository's), with the repository's hooks and config read-only", async () => {
    const script = [
      "git status --porcelain",
      "echo x > f.txt && git add f.txt && git -c user.name=A -c user.email=a@example.com commit -qm 'from the cloister' && git log -1 --format=%s",
      `echo junk >> '${join(t.project, ".git", "hooks", "x")}' 2>/dev/null && echo WROTE-hook`,
      "git config core.hooksPath /tmp 2>/dev/null && echo WROTE-config",
      "true",
    ].join("\n");
    const r = await t.cli(["run", "--", "sh", "-c", script], { cwd: worktree });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "from the cloister\n");
    assert.equal(hostGit(t, "log", "-1", "--format=%s", "hostmade"), "from the cloister");
    assert.equal(spawnSync("git", ["-C", t.project, "config", "core.hooksPath"]).status, 1);
  });
});

describe("worktree cloisters: a repository without commits, and one moved or deleted", () => {
  let t: TestInstance;
  let worktree: string;
  const moved = (): string => `${t.project}-moved`;

  before(() => {
    t = createInstance("wtgone");
    worktree = join(t.home, "data", "worktrees", "proj", "orphan");
  });
  after(async () => {
    if (existsSync(moved())) renameSync(moved(), t.project);
    await t.teardown();
  });

  it("-b in a repository without commits says to commit first, and leaves nothing under the data dir", async () => {
    const empty = join(t.home, "..", "empty");
    assert.equal(spawnSync("git", ["init", "-q", empty]).status, 0);
    const r = await t.cli(["run", "-b", "feat", "--", "true"], { cwd: empty });
    assert.equal(r.code, 125);
    assert.match(r.stderr, /has no commit yet to start the branch feat from \(commit something first/);
    assert.ok(!existsSync(join(t.home, "data", "worktrees", "empty")));
  });

  it("-b in a plain directory is refused before anything is registered (QA A14: it left a project behind)", async () => {
    const plain = join(dirname(t.project), "plain-for-branch");
    mkdirSync(plain, { recursive: true });
    const before = (await t.cli(["project", "list", "--json"])).stdout;
    const r = await t.cli(["run", "--allow-no-git", "-b", "x", "--", "true"], { cwd: plain });
    assert.equal(r.code, 125);
    assert.match(r.stderr, /--branch needs a git repository/);
    assert.equal((await t.cli(["project", "list", "--json"])).stdout, before);
  });

  it("-b with a bad option is refused before the worktree or its branch is made (QA: it made both first)", async () => {
    for (const bad of [["--memory", "lots"], ["--pids", "0"], ["--timeout", "soon"]]) {
      const r = await t.cli(["start", "-d", "-b", "not-made", ...bad]);
      assert.equal(r.code, 125, r.stderr);
      assert.match(r.stderr, new RegExp(bad[0] as string));
      assert.doesNotMatch(r.stderr, /created the worktree/);
    }
    assert.ok(!existsSync(join(t.home, "data", "worktrees", "proj", "not-made")));
    assert.equal(spawnSync("git", ["-C", t.project, "rev-parse", "--verify", "-q", "not-made"]).status, 1, "no branch not-made");
  });

  it("worktree commands outside a repository do not suggest --allow-no-git, which they do not take", async () => {
    const r = await t.cli(["worktree", "remove", "x"], { cwd: t.home });
    assert.equal(r.code, 125);
    assert.match(r.stderr, /is not inside a git repository/);
    assert.doesNotMatch(r.stderr, /--allow-no-git/);
  });

  it("a run stopped by worktree remove -f says that it was stopped, not that the machine needs cloister doctor", async () => {
    const live = spawnCli(t, ["run", "-b", "stopme", "--", "sh", "-c", "echo ready; sleep 60"]);
    await live.waitFor("ready");
    const removed = await t.cli(["worktree", "remove", "-f", "stopme"]);
    assert.equal(removed.code, 0, removed.stderr);
    // …and remove -f says what it stopped.
    assert.match(removed.stderr, /^Stopped cloister proj-run-[0-9a-f]{6}, which ran on it\nRemoved the worktree /);
    const r = await live.done;
    assert.equal(r.code, 125);
    assert.match(r.stderr, /^cloister: the cloister was stopped from outside by a stop request \(`cloister stop`, `rm -f`, `worktree remove -f`, a library's stop\(\)\) while the command ran \(/m);
    assert.doesNotMatch(r.stderr, /doctor|start it again/);
  });

  it("path prints a project's directory while no cloister of it runs", async () => {
    assert.equal((await t.cli(["run", "--", "true"])).code, 0, "registers the project");
    const r = await t.cli(["path", "proj"], { cwd: t.home });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${t.project}\n`);
    assert.match((await t.cli(["path", "nope"])).stderr, /no cloister or project named "nope"/);
  });

  it("worktree list says when a worktree's repository is missing, and where it was", async () => {
    assert.equal((await t.cli(["run", "-b", "orphan", "--", "true"])).code, 0);
    renameSync(t.project, moved());
    const r = await t.cli(["worktree", "list"], { cwd: t.home });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /proj +\(repository missing\) +proj-orphan +stopped +unknown/);
    assert.ok(r.stderr.includes(`the worktree ${worktree} belongs to the repository ${t.project}, which was moved or deleted`), r.stderr);
    assert.ok(r.stderr.includes(`git worktree repair ${worktree}`), r.stderr);
    const [entry] = JSON.parse((await t.cli(["worktree", "list", "--json"], { cwd: t.home })).stdout) as { missingRepository: string | null }[];
    assert.equal(entry?.missingRepository, t.project);
  });

  it("worktree remove finds it by the project's old path; refuses without -f, and with -f deletes it", async () => {
    const refused = await t.cli(["worktree", "remove", "orphan", "--project", t.project], { cwd: t.home });
    assert.equal(refused.code, 125);
    assert.match(refused.stderr, /which was moved or deleted/);
    assert.ok(existsSync(worktree));
    const forced = await t.cli(["worktree", "remove", "-f", "orphan", "--project", t.project], { cwd: t.home });
    assert.equal(forced.code, 0, forced.stderr);
    assert.ok(!existsSync(join(t.home, "data", "worktrees", "proj")), "the worktree and its project's directory are gone");
    assert.ok(forced.stderr.includes(`git worktree unlock ${worktree} && git worktree prune`), forced.stderr);
  });
});

describe("a worktree made on the host inside the project, while the project's cloister runs", () => {
  let t: TestInstance;
  let nested: string;
  before(() => {
    t = createInstance("hn");
    nested = join(t.project, ".worktrees", "nested");
    hostGit(t, "worktree", "add", "-q", "-b", "nested", nested);
  });
  after(async () => {
    await t.teardown();
  });

  it("its .git file is read-only in the project's cloister, so host git there cannot be pointed at a git dir the agent made", async () => {
    assert.equal((await t.cli(["start", "-d"])).code, 0);
    const r = await t.cli(["exec", "proj", "--", "sh", "-c", "echo 'gitdir: /work/evil' > /work/.worktrees/nested/.git && echo WROTE; mv /work/.worktrees/nested/.git /work/x 2>/dev/null && echo MOVED; true"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "");
    assert.match(readFileSync(join(nested, ".git"), "utf8"), /^gitdir: .*\.git\/worktrees\/nested\n$/);
    assert.equal((await t.cli(["stop", "proj"])).code, 0);
  });

  it("gets no cloister of its own: the running one could swap the directories on its path (to HOME) while it launches", async () => {
    assert.equal((await t.cli(["start", "-d"])).code, 0);
    const r = await t.cli(["run", "--", "true"], { cwd: nested });
    assert.equal(r.code, 125);
    assert.match(r.stderr, /this project lies inside the project of cloister proj .* which runs and can change anything there/);
    assert.match(r.stderr, /cloister stop proj/);
    assert.equal((await t.cli(["stop", "proj"])).code, 0);
    const after = await t.cli(["run", "--", "git", "status", "--porcelain"], { cwd: nested });
    assert.equal(after.code, 0, after.stderr);
  });
});
