/**
 * Escape suite, `cloister rm` (FILESYSTEM section of SECURITY.md): a cloister's HOME is the
 * attacker's to fill, and the host removes it later. The attacker plants symlinks to host places
 * (a directory outside everything, the host's ~/.ssh, the project) at every depth of its HOME, under
 * names with newlines, and leaves a process running that keeps swapping a directory of its HOME for
 * a symlink to the victim, racing the removal's walk. The secure outcome: `rm` refuses while the
 * cloister runs, `rm -f` stops it (and the racer) before removing anything, every link goes as a
 * link, and the victim, the host's HOME and the project are unchanged. A HOME that was itself
 * replaced by a symlink to the host's HOME goes as the link too.
 */
import assert from "node:assert/strict";
import { existsSync, lstatSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createInstance, type TestInstance } from "../helpers/cloister.js";
import { hostTree, waitGone } from "../helpers/host-processes.js";
import { assertLive, assertNoCanaryAnywhere, diffSnapshots, hostSensitiveSnapshot, mergeSnapshots, snapshotTree, type Snapshot } from "../helpers/oracles.js";

describe("escape: what a cloister leaves in its HOME steers `cloister rm` outside the homes dir", () => {
  let t: TestInstance;
  let victim = "";
  let homes = "";
  let before_: Snapshot;
  const snapshot = () => mergeSnapshots(hostSensitiveSnapshot(t), snapshotTree(victim, "victim"), snapshotTree(join(t.project, "README.md"), "project/README.md"));

  before(async () => {
    t = createInstance("rmesc");
    homes = join(t.home, "data", "homes");
    victim = join(dirname(t.home), "victim");
    mkdirSync(join(victim, "sub"), { recursive: true });
    writeFileSync(join(victim, "sub", "keep"), "precious\n");
    before_ = snapshot();
    assert.equal((await t.cli(["start", "-d"])).code, 0);
  });
  after(() => t.teardown());

  it("links to host places anywhere in the HOME and a racing swapper: rm refuses while it runs, rm -f stops it first and removes links as links", async () => {
    const targets = [victim, join(victim, "sub", "keep"), join(t.hostHome, ".ssh"), join(t.hostHome, ".ssh", "id_canary"), t.project, join(t.project, "README.md")];
    const links = targets.map((target, i) => `ln -s '${target}' ~/l${i}; mkdir -p ~/deep/a/b; ln -s '${target}' ~/deep/a/b/l${i}; mkdir -p "$HOME/$(printf 'n\\nl')$i"; ln -s '${target}' "$HOME/$(printf 'n\\nl')$i/x"`).join("\n");
    // Swaps ~/swap/d between a directory with files and a symlink to the victim, as fast as it can.
    const swapper = `while :; do mkdir -p ~/swap/d; touch ~/swap/d/f1 ~/swap/d/f2; mv ~/swap/d ~/swap/old; ln -s '${victim}' ~/swap/d; rm -rf ~/swap/old; rm -f ~/swap/d; done`;
    const plant = await t.cli(["exec", "--", "sh", "-c", `${links}\nprintf '%s\\n' "${swapper}" > ~/swapper.sh\nsetsid sh ~/swapper.sh </dev/null >/dev/null 2>&1 &\necho planted`]);
    assert.equal(plant.stdout, "planted\n", plant.stderr);

    const keeper = (JSON.parse(readFileSync(join(t.home, "state", "cloisters", "proj.json"), "utf8")) as { keeperPid: number }).keeperPid;
    const procs = hostTree(keeper);
    assert.ok(procs.some((p) => p.cmd?.includes("swapper.sh")), "the swapper does not run");

    const refused = await t.cli(["rm", "proj"]);
    assert.equal(refused.code, 125);
    assert.match(refused.stderr, /cloister proj is running/);
    assert.ok(existsSync(join(homes, "proj", "swapper.sh")), "a refused rm removed some of the HOME");

    const removed = await t.cli(["rm", "-f", "proj"]);
    assert.equal(removed.code, 0, removed.stderr);
    await waitGone(procs, "rm -f");
    assert.ok(!existsSync(join(homes, "proj")));
    assert.deepEqual(diffSnapshots(before_, snapshot()), []);
    assertNoCanaryAnywhere(t, plant.stdout, plant.stderr, removed.stderr);
    await assertLive(t);
  });

  it("a HOME replaced by a symlink to the host's HOME: rm removes the link, the host's HOME stays", async () => {
    assert.equal((await t.cli(["start", "-d", "--name", "swapped"])).code, 0);
    assert.equal((await t.cli(["stop", "swapped"])).code, 0);
    renameSync(join(homes, "swapped"), join(homes, ".swapped-real"));
    symlinkSync(t.hostHome, join(homes, "swapped"));
    const r = await t.cli(["rm", "swapped"]);
    assert.equal(r.code, 0, r.stderr);
    assert.throws(() => lstatSync(join(homes, "swapped")), { code: "ENOENT" });
    assert.deepEqual(diffSnapshots(before_, snapshot()), []);
    rmSync(join(homes, ".swapped-real"), { recursive: true });
  });
});
