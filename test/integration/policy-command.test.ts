/**
 * `cloister policy command -- ARGV`: what hostexec would meet for an argv, from the real config and
 * decision files, without running anything.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createInstance, type TestInstance } from "../helpers/cloister.js";

describe("cloister policy command", () => {
  let t: TestInstance;

  before(() => {
    t = createInstance("pc");
  });
  after(() => t.teardown());

  it("names the deciding rule for allowed, asked and refused commands", async () => {
    const allowed = await t.cli(["policy", "command", "--", "docker", "ps"]);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.match(allowed.stdout, /^docker ps: allowed by global rule allow \[docker, ps\]/);
    assert.match((await t.cli(["policy", "command", "--", "gh", "pr", "view", "12"])).stdout, /needs approval \(global rule ask \[gh, pr/);
    assert.match((await t.cli(["policy", "command", "--", "rm", "-rf", "/"])).stdout, /denied: no rule allows this command/);
  });

  it("shows hazards and the allow rule they made it pass over, as JSON too", async () => {
    const r = await t.cli(["policy", "command", "--json", "--", "docker", "ps", "-a", "--format", "$(id)"]);
    const result = JSON.parse(r.stdout) as { verdict: string; hazards: string[]; argv: string[] };
    assert.equal(result.verdict, "deny");
    assert.deepEqual(result.argv, ["docker", "ps", "-a", "--format", "$(id)"]);
    const git = JSON.parse((await t.cli(["policy", "command", "--json", "--", "git", "-c", "core.pager=evil", "log"])).stdout) as { hazards: string[] };
    assert.ok(git.hazards.some((h) => h.includes("-c")), JSON.stringify(git.hazards));
  });

  it("refuses an argv that could never run, with a message", async () => {
    const r = await t.cli(["policy", "command", "--", ""]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /cloister: /);
  });
});
