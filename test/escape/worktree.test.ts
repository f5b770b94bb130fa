/**
 * Escape suite, worktree cloisters (FILESYSTEM section of SECURITY.md): the attacker runs in a
 * worktree cloister (`start -b`), where the main repository's git dir is mounted so that git works.
 * It tries to plant code the host's git runs later: a hook in the shared hooks/, core.hooksPath or
 * core.fsmonitor in the shared config, a repointed .git file or admin dir (commondir, gitdir) that
 * leads the host's git into a repository the attacker wrote. An attacker in the project's main
 * cloister tries the same through the worktree's admin dir. Then the host runs git status and git
 * commit in the main repository and in the worktree, with hooks and the repository's config in
 * effect: no marker may appear, the host's git files are unchanged, no canary leaks, and a fresh
 * cloister still runs. Last, the same for a submodule of the worktree, whose git dir git keeps
 * under the worktree's admin dir.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createInstance, type TestInstance } from "../helpers/cloister.js";
import {
  assertLive,
  assertNoCanaryAnywhere,
  assertRefused,
  diffSnapshots,
  hostGit,
  hostSensitiveSnapshot,
  marker,
  mergeSnapshots,
  parseSteps,
  presentMarkers,
  removeMarkers,
  SH_PRELUDE,
  snapshotTree,
  type Snapshot,
} from "../helpers/oracles.js";

const HOOKS = ["pre-commit", "prepare-commit-msg", "commit-msg", "post-commit", "post-checkout", "post-index-change"];

/** Shell lines that write `content` to `path` as one step (so a refusal is the write's own). */
function writeStep(name: string, path: string, content: string, append = false): string {
  return `step ${name} sh -c 'printf "%s\\n" "$1" ${append ? ">>" : ">"} "$2"' - '${content}' '${path}'\n`;
}

/** The attack from inside the worktree cloister; `m(name)` is the marker each payload touches. */
function worktreeAttack(common: string, admin: string, m: (name: string) => string): string {
  const hook = (name: string) => `#!/bin/sh\ntouch ${m(name)}\n`;
  const evilConfig = `[core]\n\trepositoryformatversion = 0\n\tbare = false\n\thooksPath = /work/evil-hooks\n\tfsmonitor = touch ${m("evil-fsmonitor")}; false\n`;
  return `${SH_PRELUDE}
WT=$(dirname "$(cat '${admin}/gitdir')")
mkdir -p /work/evil-hooks
for h in ${HOOKS.join(" ")}; do printf '%s' '${hook("evil-hook")}' > /work/evil-hooks/$h; chmod +x /work/evil-hooks/$h; done
git init -q /work/evil && printf '%s' '${evilConfig}' > /work/evil/.git/config
cp /work/evil-hooks/* /work/evil/.git/hooks/
${HOOKS.map((h) => writeStep(`hook:${h}`, `${common}/hooks/${h}`, hook("shared-hook"))).join("")}
step hooks-chmod chmod 777 '${common}/hooks'
step hooks-rename mv '${common}/hooks' '${common}/hooks.old'
step config-hookspath git config core.hooksPath /work/evil-hooks
step config-fsmonitor git config core.fsmonitor 'touch ${m("config-fsmonitor")}; false'
step config-worktree-extension git config extensions.worktreeConfig true
${writeStep("config-append", `${common}/config`, `[core]\n\tfsmonitor = touch ${m("config-append")}; false`, true)}
${writeStep("info-attributes", `${common}/info/attributes`, "* filter=evil")}
${writeStep("info-exclude", `${common}/info/exclude`, "*")}
step info-exclude-rename mv '${common}/info/exclude' '${common}/info/exclude.old'
step config-worktree-flag git config --worktree core.hooksPath /work/evil-hooks
${writeStep("admin-config-worktree", `${admin}/config.worktree`, `[core]\n\thooksPath = /work/evil-hooks`)}
${writeStep("admin-commondir", `${admin}/commondir`, "/work/evil/.git")}
${writeStep("admin-gitdir", `${admin}/gitdir`, "/tmp/elsewhere/.git")}
step admin-commondir-rename mv '${admin}/commondir' '${admin}/commondir.old'
${writeStep("gitfile-write", "/work/.git", "gitdir: $WT/evil/.git")}
step gitfile-rename mv /work/.git /work/dotgit.old
step gitfile-replace sh -c 'printf "gitdir: %s/evil/.git\\n" "$0" > /work/gitfile.new && mv /work/gitfile.new /work/.git' "$WT"
step gitfile-unlink rm -f /work/.git
step objects-swap sh -c 'mv "$0/objects" "$0/objects.old" && ln -s /work/evil/.git/objects "$0/objects"' '${common}'
# New names in the shared dir land in the cloister's scratch space, never in the host's repository:
printf '%s\\n' /work/evil/.git > '${common}/commondir' 2>/dev/null
printf '[core]\\n\\thooksPath = /work/evil-hooks\\n' > '${common}/config.worktree' 2>/dev/null
true
`;
}

describe("escape/worktree: planting code for the host's git from a worktree cloister", () => {
  let t: TestInstance;
  let worktree: string;
  let common: string;
  let admin: string;
  let gitBefore: Snapshot;
  const markers: string[] = [];
  const m = (name: string): string => {
    const path = marker(`worktree-${name}`);
    if (!markers.includes(path)) markers.push(path);
    return path;
  };
  /** The host files that steer git in the main repository and in the worktree. */
  const gitSnapshot = (): Snapshot =>
    mergeSnapshots(
      hostSensitiveSnapshot(t),
      snapshotTree(join(worktree, ".git"), "worktree/.git"),
      snapshotTree(admin, "admin", (rel) => !["commondir", "gitdir", "config.worktree", "locked"].includes(rel)),
    );

  before(async () => {
    t = createInstance("wtesc");
    worktree = join(t.home, "data", "worktrees", "proj", "feature");
    common = join(t.project, ".git");
    admin = join(common, "worktrees", "feature");
    const r = await t.cli(["start", "-d", "-b", "feature"]);
    assert.equal(r.code, 0, r.stderr);
    gitBefore = gitSnapshot();
  });
  after(async () => {
    removeMarkers(markers);
    await t.teardown();
  });

  it("hooks, config, the .git file and the admin dir's pointers all refuse the attacker", async () => {
    const r = await t.cli(["exec", "proj-feature", "--", "sh", "-c", worktreeAttack(common, admin, m)]);
    const steps = parseSteps(r.stdout);
    assert.ok(steps.size >= 20, `too few steps ran:\n${r.stdout}\n${r.stderr}`);
    assertRefused(steps, [...steps.keys()], ["FAIL"], r.stderr);
    assert.deepEqual(diffSnapshots(gitBefore, gitSnapshot()), []);
    assert.equal(readFileSync(join(worktree, ".git"), "utf8"), `gitdir: ${admin}\n`);
    assertNoCanaryAnywhere(t, r.stdout, r.stderr);
  });

  it("an attacker in the project's main cloister cannot repoint the worktree's git dir either", async () => {
    const r = await t.cli([
      "run",
      "--",
      "sh",
      "-c",
      `${SH_PRELUDE}git init -q /work/evil2 && git -C /work/evil2 config core.fsmonitor 'touch ${m("main-fsmonitor")}; false'
${writeStep("main-commondir", "/work/.git/worktrees/feature/commondir", `${worktree}/evil2/.git`)}
${writeStep("main-config-worktree", "/work/.git/worktrees/feature/config.worktree", `[core]\n\tfsmonitor = touch ${m("main-config-worktree")}; false`)}
step main-unlock rm -f /work/.git/worktrees/feature/locked
step main-remove git worktree remove --force --force '${worktree}'
step main-admin-rename mv /work/.git/worktrees/feature /work/.git/worktrees/feature.old
step main-worktrees-rename mv /work/.git/worktrees /work/.git/worktrees.old
step main-objects-swap sh -c 'mv /work/.git/objects /work/.git/objects.old && ln -s /work /work/.git/objects'
step main-refs-rename mv /work/.git/refs /work/.git/refs.old
`,
    ]);
    const steps = parseSteps(r.stdout);
    assert.equal(steps.size, 8, `${r.stdout}\n${r.stderr}`);
    assertRefused(steps, [...steps.keys()], ["FAIL"], r.stderr);
    assert.deepEqual(diffSnapshots(gitBefore, gitSnapshot()), []);
  });

  it("afterwards the host's git status and git commit, in the repository and in the worktree, run nothing planted", async () => {
    assert.equal((await t.cli(["stop", "--all"])).code, 0);
    assert.deepEqual(presentMarkers(markers), []);
    for (const dir of [t.project, worktree]) {
      assert.equal(hostGit(dir, ["status", "--short"], { home: t.hostHome }), 0, dir);
      assert.equal(hostGit(dir, ["commit", "-q", "--allow-empty", "-m", "on the host"], { home: t.hostHome }), 0, dir);
    }
    assert.equal((await t.cli(["worktree", "list"])).code, 0);
    assert.deepEqual(presentMarkers(markers), []);
  });

  it("a worktree cloister and the guardian keep working (liveness)", async () => {
    const r = await t.cli(["run", "-b", "feature", "--", "git", "log", "-1", "--format=%s"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "on the host\n");
    await assertLive(t);
  });
});

describe("escape/worktree: a submodule of a worktree cloister", () => {
  let t: TestInstance;
  let worktree: string;
  let moduleDir: string;
  let sources: string;
  const planted = marker("worktree-submodule");
  before(async () => {
    t = createInstance("wtsub");
    sources = mkdtempSync(join(tmpdir(), "cloister-escape-wtsub-"));
    const lib = join(sources, "lib");
    const files = ["-c", "protocol.file.allow=always"];
    assert.equal(hostGit(sources, ["init", "-q", lib]), 0);
    assert.equal(hostGit(lib, ["commit", "-q", "--allow-empty", "-m", "lib"]), 0);
    assert.equal(hostGit(t.project, [...files, "submodule", "add", "-q", lib, "lib"]), 0);
    assert.equal(hostGit(t.project, ["commit", "-qm", "submodule"]), 0);
    const started = await t.cli(["start", "-d", "-b", "feature"]);
    assert.equal(started.code, 0, started.stderr);
    worktree = join(t.home, "data", "worktrees", "proj", "feature");
    // Git keeps a linked worktree's submodule git dirs under the worktree's admin dir.
    assert.equal(hostGit(worktree, [...files, "submodule", "update", "-q", "--init"]), 0);
    moduleDir = join(t.project, ".git", "worktrees", "feature", "modules", "lib");
    assert.ok(existsSync(join(moduleDir, "config")));
    assert.equal((await t.cli(["stop", "proj-feature"])).code, 0);
  });
  after(async () => {
    removeMarkers([planted]);
    await t.teardown();
    rmSync(sources, { recursive: true, force: true });
  });

  it("its git dir's config, hooks and pointers and the checkout's .git refuse the attacker; the host's git runs nothing planted", async () => {
    // What git inside may change in the module git dir (its index, objects, refs) is left out.
    const steering = () => snapshotTree(moduleDir, "module", (rel) => /^(objects|refs|logs|index)(\/|$)/.test(rel));
    const before = steering();
    const run = `touch ${planted}; false`;
    const r = await t.cli([
      "run",
      "-b",
      "feature",
      "--",
      "sh",
      "-c",
      `${SH_PRELUDE}
${writeStep("config", `${moduleDir}/config`, `[core]\n\tfsmonitor = ${run}`, true)}
${writeStep("hook", `${moduleDir}/hooks/pre-commit`, `#!/bin/sh\n${run}`)}
${writeStep("commondir", `${moduleDir}/commondir`, "/work/evil")}
step worktrees mkdir '${moduleDir}/worktrees/x'
step rename-module mv '${moduleDir}' '${moduleDir}.old'
step rename-modules mv '${moduleDir}/..' '${moduleDir}/../../modules.old'
${writeStep("repoint", "/work/lib/.git", "gitdir: /work/evil")}
step rename-checkout mv /work/lib /work/lib.old
`,
    ]);
    const steps = parseSteps(r.stdout);
    assert.equal(steps.size, 8, `${r.stdout}\n${r.stderr}`);
    assertRefused(steps, [...steps.keys()], ["FAIL"], r.stderr);
    assert.deepEqual(diffSnapshots(before, steering()), []);
    assert.equal(hostGit(worktree, ["status", "--short"], { home: t.hostHome }), 0);
    assert.equal(hostGit(join(worktree, "lib"), ["commit", "-q", "--allow-empty", "-m", "on the host"], { home: t.hostHome }), 0);
    assert.deepEqual(presentMarkers([planted]), []);
  });
});
