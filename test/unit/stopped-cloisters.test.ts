/**
 * Stopped persistent cloisters without a sandbox (src/stopped.ts, src/sandbox/homes.ts): which HOMEs
 * count as stopped cloisters and whose project they are, and what `removeCloister` removes and
 * refuses. Running, stopping and the CLI: test/integration/remove.test.ts.
 */
import assert from "node:assert/strict";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, beforeEach, describe, it } from "node:test";
import { CloisterError, removeCloister, resolvePaths, stoppedCloisters, type CloisterPaths } from "../../src/index.js";
import { claimHome } from "../../src/sandbox/home-owner.js";
import { removeHome } from "../../src/sandbox/homes.js";
import { processStartTime, writeRecord } from "../../src/sandbox/records.js";
import { sampleRecord } from "../helpers/records.js";

const base = mkdtempSync(join(tmpdir(), "cstop-"));
after(() => rmSync(base, { recursive: true, force: true }));

let paths: CloisterPaths;
let victim: string;
let count = 0;

/** A HOME as a start leaves it: the directory, a file in it, and its owner (unless `owner` is null). */
function home(name: string, owner: string | null = "/projects/api"): string {
  const dir = join(paths.homesDir, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, ".bash_history"), "ls\n");
  if (owner !== null) claimHome(dir, name, owner);
  return dir;
}

/** Fails unless `call` rejects with a CloisterError whose message and hint match. */
async function refused(call: Promise<unknown>, message: RegExp, hint?: RegExp): Promise<void> {
  await assert.rejects(call, (error: unknown) => {
    assert.ok(error instanceof CloisterError, String(error));
    assert.match(error.message, message);
    if (hint) assert.match(error.hint ?? "", hint);
    return true;
  });
}

beforeEach(() => {
  const instance = join(base, `i${++count}`);
  paths = resolvePaths({ CLOISTER_HOME: instance });
  // Outside the instance, where nothing of a removal may land.
  victim = join(base, `victim${count}`);
  mkdirSync(join(victim, "sub"), { recursive: true });
  writeFileSync(join(victim, "sub", "keep"), "precious\n");
});

const victimIntact = () => assert.equal(readFileSync(join(victim, "sub", "keep"), "utf8"), "precious\n");

describe("stoppedCloisters", () => {
  it("lists every HOME under a cloister's name that no record names, with its project where known", async () => {
    mkdirSync(paths.projectConfigDir, { recursive: true });
    writeFileSync(join(paths.projectConfigDir, "api.yaml"), "path: /projects/api\n");
    home("api");
    home("orphan", null);
    home("gone", "/projects/unregistered");
    // A worktree cloister's HOME belongs to its worktree, which names the project.
    home("api-feat", join(paths.dataDir, "worktrees", "api", "feat"));
    home("running");
    writeRecord(paths, sampleRecord("running", { keeperPid: process.pid, keeperStartTime: processStartTime(process.pid) }));
    // run's HOMEs, the owners and a removal's leftovers are not cloisters'.
    home(".run-0123abcd", null);
    home(".removing-old-1234", null);
    assert.deepEqual(await stoppedCloisters(paths), [
      { name: "api", project: "api", projectRoot: "/projects/api", homeDir: join(paths.homesDir, "api") },
      { name: "api-feat", project: "api", projectRoot: join(paths.dataDir, "worktrees", "api", "feat"), homeDir: join(paths.homesDir, "api-feat") },
      { name: "gone", project: null, projectRoot: "/projects/unregistered", homeDir: join(paths.homesDir, "gone") },
      { name: "orphan", project: null, projectRoot: null, homeDir: join(paths.homesDir, "orphan") },
    ]);
  });

  it("is empty for an instance that never started a cloister", async () => {
    assert.deepEqual(await stoppedCloisters(paths), []);
  });
});

describe("removeCloister", () => {
  it("removes the HOME and its owner, so that the next start, of any project, gets a fresh one", async () => {
    const dir = home("api");
    assert.deepEqual(await removeCloister("api", { paths }), { name: "api", homeDir: dir, stopped: false });
    assert.ok(!existsSync(dir));
    assert.ok(!existsSync(join(paths.homesDir, ".owners", "api")));
    assert.deepEqual(await stoppedCloisters(paths), []);
    claimHome(dir, "api", "/projects/other");
  });

  it("refuses names that are not a cloister's, and removes nothing", async () => {
    home("api");
    symlinkSync(victim, join(paths.homesDir, ".run-abc"));
    for (const name of ["../x", "/etc", victim, ".run-abc", ".owners", "..", ".", "api\n", "a\nb", "API", "", "a/b"]) {
      await refused(removeCloister(name, { paths }), /invalid cloister name/, /lower-case letters/);
    }
    victimIntact();
    assert.ok(existsSync(join(paths.homesDir, "api", ".bash_history")));
    assert.ok(lstatSync(join(paths.homesDir, ".run-abc")).isSymbolicLink());
  });

  it("says which stopped cloisters there are when the name is none of them", async () => {
    await refused(removeCloister("nope", { paths }), /no stopped cloister named "nope"/, /there are none; see `cloister list --all`/);
    home("api");
    home("web");
    await refused(removeCloister("nope", { paths }), /no stopped cloister named "nope"/, /the stopped ones are api, web/);
  });

  it("removes a HOME that is a symlink as the link: what it points to stays", async () => {
    mkdirSync(paths.homesDir, { recursive: true });
    symlinkSync(victim, join(paths.homesDir, "linked"));
    assert.deepEqual((await stoppedCloisters(paths)).map((c) => c.name), ["linked"]);
    await removeCloister("linked", { paths });
    assert.throws(() => lstatSync(join(paths.homesDir, "linked")), { code: "ENOENT" });
    victimIntact();
  });

  it("does not follow the symlinks inside a HOME (a cloister may have put them there)", async () => {
    const dir = home("api");
    symlinkSync(victim, join(dir, "to-dir"));
    symlinkSync(join(victim, "sub", "keep"), join(dir, "to-file"));
    mkdirSync(join(dir, "deep", "er"), { recursive: true });
    symlinkSync(join(victim, "sub"), join(dir, "deep", "er", "sub"));
    await removeCloister("api", { paths });
    assert.ok(!existsSync(dir));
    victimIntact();
  });

  it("refuses a running cloister and one being started, and says to stop it first", async () => {
    const dir = home("api");
    writeRecord(paths, sampleRecord("api", { keeperPid: process.pid, keeperStartTime: processStartTime(process.pid) }));
    await refused(removeCloister("api", { paths }), /cloister api is running: its HOME is in use/, /cloister stop api.*cloister rm -f api/);
    writeRecord(paths, sampleRecord("api", { keeperPid: undefined, launcherPid: process.pid, launcherStartTime: processStartTime(process.pid) }));
    await refused(removeCloister("api", { paths }), /cloister api is starting/);
    assert.ok(existsSync(join(dir, ".bash_history")));
  });

  it("refuses a `run` cloister's name: such a cloister keeps no HOME", async () => {
    writeRecord(paths, sampleRecord("api-run-abc123", { persistent: false, ephemeralHome: true, keeperPid: process.pid, keeperStartTime: processStartTime(process.pid) }));
    await refused(removeCloister("api-run-abc123", { paths, force: true }), /is a `cloister run` one, which keeps no HOME/);
  });

  it("refuses, under the records lock, a HOME whose cloister was started again after the caller stopped it", async () => {
    const dir = home("api");
    writeRecord(paths, sampleRecord("api"));
    await refused(removeHome(paths, "api"), /cloister api was started again meanwhile/);
    assert.ok(existsSync(join(dir, ".bash_history")));
  });

  it("removes what an earlier removal set aside and did not finish", async () => {
    home(".removing-old-0badf00d", null);
    home("api");
    await removeCloister("api", { paths });
    assert.ok(!existsSync(join(paths.homesDir, ".removing-old-0badf00d")));
    assert.deepEqual(await stoppedCloisters(paths), []);
  });

  it("checks its arguments as the library's other calls do", async () => {
    await refused(removeCloister("api", { paths, forse: true } as never), /options\.forse is not an option/, /did you mean options\.force\?/);
    await refused(removeCloister("api", { paths, force: "yes" } as never), /options\.force must be true or false/);
    await refused(removeCloister(42 as never, { paths }), /name must be a string/);
    await refused(stoppedCloisters({} as never), /paths must be the object resolvePaths\(\) returns/);
  });
});
