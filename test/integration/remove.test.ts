/**
 * Stopped persistent cloisters, for real: `list --all` shows what `stop` leaves (the HOME), `rm`
 * removes it so that the next start begins afresh, refuses a running one unless -f (which stops it
 * first), names the stopped ones when given another name, refuses names that are not a cloister's,
 * and never reaches outside the homes dir (a HOME that is a symlink goes as the link). A worktree
 * cloister's worktree stays. As an ordinary user, a HOME with read-only directories is removed too.
 */
import assert from "node:assert/strict";
import { existsSync, lstatSync, mkdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { asUserSkipReason, createUserInstance, type UserInstance } from "../helpers/as-user.js";
import { createInstance, type TestInstance } from "../helpers/cloister.js";
import { hostTree, waitGone } from "../helpers/host-processes.js";

interface ListEntry {
  name: string;
  project: string | null;
  projectRoot: string | null;
  persistent: boolean;
  running: boolean;
  status: string;
  network?: boolean;
  createdAt?: string;
  limits?: string;
  home?: string;
}

async function list(t: TestInstance, ...flags: string[]): Promise<ListEntry[]> {
  const r = await t.cli(["list", "--json", ...flags]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as ListEntry[];
}

async function ok(t: TestInstance, args: string[]): Promise<string> {
  const r = await t.cli(args);
  assert.equal(r.code, 0, `cloister ${args.join(" ")}: ${r.stderr}`);
  return r.stderr;
}

function keeperOf(t: TestInstance, name: string): number | undefined {
  const file = join(t.home, "state", "cloisters", `${name}.json`);
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as { keeperPid?: number }).keeperPid : undefined;
}

describe("stopped cloisters: list --all and rm", () => {
  let t: TestInstance;
  let homes = "";
  let projectRoot = "";

  before(() => {
    t = createInstance("rm");
    homes = join(t.home, "data", "homes");
    projectRoot = realpathSync(t.project);
  });
  after(() => t.teardown());

  it("list --all shows a stopped cloister (its HOME kept), list does not; rm removes it and the next start has a fresh HOME", async () => {
    await ok(t, ["start", "-d"]);
    await ok(t, ["exec", "--", "sh", "-c", "echo remembered > ~/.bash_history"]);
    const [running] = await list(t, "--all");
    assert.deepEqual(Object.keys(running ?? {}).sort(), ["createdAt", "egressUp", "limits", "name", "network", "persistent", "project", "projectRoot", "running", "status"]);
    assert.equal(running?.status, "running");
    await ok(t, ["stop"]);

    assert.deepEqual(await list(t), []);
    assert.deepEqual(await list(t, "-a"), [{ name: "proj", project: "proj", projectRoot, persistent: true, running: false, status: "stopped", home: join(homes, "proj") }]);
    const table = await t.cli(["list", "--all"]);
    assert.match(table.stdout, /^NAME +PROJECT +STATUS +KIND +NETWORK +CREATED\nproj +proj +stopped +start +- +-\n$/);
    assert.equal((await t.cli(["list"])).stdout, "No cloisters.\n");

    // Stopping kept the HOME: a start now would find the history again.
    assert.equal(readFileSync(join(homes, "proj", ".bash_history"), "utf8"), "remembered\n");
    assert.equal(await ok(t, ["rm", "proj"]), `Removed cloister proj (its HOME ${join(homes, "proj")})\n`);
    assert.ok(!existsSync(join(homes, "proj")));
    assert.ok(!existsSync(join(homes, ".owners", "proj")));
    assert.deepEqual(await list(t, "--all"), []);

    await ok(t, ["start", "-d"]);
    assert.equal((await t.cli(["exec", "--", "sh", "-c", "cat ~/.bash_history 2>/dev/null || echo fresh"])).stdout, "fresh\n");
  });

  it("rm refuses a running cloister and leaves it running; rm -f stops it first, then removes it (alias remove)", async () => {
    const keeper = keeperOf(t, "proj");
    assert.ok(keeper);
    const procs = hostTree(keeper);
    assert.ok(procs.length >= 1);
    const refused = await t.cli(["rm", "proj"]);
    assert.equal(refused.code, 125);
    assert.equal(refused.stderr, "cloister: cloister proj is running: its HOME is in use (stop it first with `cloister stop proj`, or stop and remove it at once with `cloister rm -f proj`)\n");
    assert.equal((await t.cli(["exec", "--", "echo", "alive"])).stdout, "alive\n");
    assert.ok(existsSync(join(homes, "proj")));

    assert.equal(await ok(t, ["remove", "-f", "proj"]), `Stopped cloister proj\nRemoved cloister proj (its HOME ${join(homes, "proj")})\n`);
    await waitGone(procs, "rm -f");
    assert.ok(!existsSync(join(homes, "proj")));
    assert.deepEqual(await list(t, "--all"), []);
  });

  it("rm of an unknown name names the stopped cloisters there are", async () => {
    assert.equal((await t.cli(["rm", "nope"])).stderr, 'cloister: no stopped cloister named "nope" (there are none; see `cloister list --all`)\n');
    for (const name of ["one", "two"]) {
      await ok(t, ["start", "-d", "--name", name]);
      await ok(t, ["stop", name]);
    }
    const r = await t.cli(["rm", "nope"]);
    assert.equal(r.code, 125);
    assert.equal(r.stderr, 'cloister: no stopped cloister named "nope" (the stopped ones are one, two; see `cloister list --all`)\n');
    // Several names, in order.
    assert.equal(await ok(t, ["rm", "one", "two"]), `Removed cloister one (its HOME ${join(homes, "one")})\nRemoved cloister two (its HOME ${join(homes, "two")})\n`);
  });

  it("rm refuses names that are not a cloister's, and removes nothing they would name", async () => {
    // What the names would reach if they were joined to the homes dir as given.
    mkdirSync(join(t.home, "data", "x"), { recursive: true });
    writeFileSync(join(t.home, "data", "x", "keep"), "");
    mkdirSync(join(homes, ".run-abc"), { recursive: true });
    for (const name of ["../x", "/etc", ".run-abc", ".owners", "..", "a\nb", "Proj"]) {
      const r = await t.cli(["rm", "-f", name]);
      assert.equal(r.code, 125, name);
      assert.equal(r.stderr, `cloister: invalid cloister name ${JSON.stringify(name)} (a cloister's name is 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit; see \`cloister list --all\`)\n`);
    }
    assert.ok(existsSync(join(t.home, "data", "x", "keep")));
    assert.ok(existsSync(join(homes, ".run-abc")));
    assert.ok(existsSync("/etc/passwd"));
    assert.ok(!(await list(t, "--all")).some((entry) => entry.name.startsWith(".")), "a run's HOME was listed as a stopped cloister");
  });

  it("a HOME that is a symlink out of the homes dir is listed, and rm removes the link, never its target", async () => {
    const target = join(t.home, "outside");
    mkdirSync(join(target, "sub"), { recursive: true });
    writeFileSync(join(target, "sub", "keep"), "precious\n");
    symlinkSync(target, join(homes, "linked"));
    assert.deepEqual((await list(t, "--all")).map((entry) => [entry.name, entry.status, entry.project]), [["linked", "stopped", null]]);
    assert.match((await t.cli(["list", "--all"])).stdout, /\nlinked +- +stopped/);
    await ok(t, ["rm", "linked"]);
    assert.throws(() => lstatSync(join(homes, "linked")), { code: "ENOENT" });
    assert.equal(readFileSync(join(target, "sub", "keep"), "utf8"), "precious\n");
  });

  it("rm of a worktree cloister removes its HOME, not its worktree", async () => {
    await ok(t, ["start", "-d", "-b", "feat"]);
    await ok(t, ["stop", "proj-feat"]);
    const worktree = join(t.home, "data", "worktrees", "proj", "feat");
    assert.deepEqual((await list(t, "--all")).map((entry) => [entry.name, entry.project, entry.projectRoot]), [["proj-feat", "proj", worktree]]);
    await ok(t, ["rm", "proj-feat"]);
    assert.ok(!existsSync(join(homes, "proj-feat")));
    assert.ok(existsSync(join(worktree, "README.md")), "the worktree went with the HOME");
    assert.match((await t.cli(["rm", "--help"])).stdout, /A worktree cloister's worktree \(the branch's files\) stays: `cloister worktree remove BRANCH` removes it/);
  });
});

describe("rm as an ordinary user", { skip: asUserSkipReason() }, () => {
  let u: UserInstance;
  before(() => {
    u = createUserInstance("rmu");
  });
  after(() => u.teardown());

  it("removes a HOME that holds read-only directories (as Go's module cache makes them)", async () => {
    await ok(u, ["start", "-d"]);
    await ok(u, ["exec", "--", "sh", "-c", "mkdir -p ~/go/pkg/mod/m@v1/sub && touch ~/go/pkg/mod/m@v1/sub/f && chmod -R a-w ~/go/pkg/mod && chmod 0 ~/go/pkg/mod/m@v1/sub"]);
    await ok(u, ["stop"]);
    await ok(u, ["rm", "proj"]);
    assert.ok(!existsSync(join(u.home, "data", "homes", "proj")));
    assert.deepEqual(await list(u, "--all"), []);
  });
});
