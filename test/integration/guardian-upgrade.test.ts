/**
 * After an upgrade (or a rebuild) the guardian that is still running is another build: the next
 * command replaces it, and the running cloister keeps running, adopted by the new guardian.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createInstance, REPO_ROOT, type TestInstance } from "../helpers/cloister.js";

describe("guardian of another build", () => {
  let t: TestInstance;
  const buildFile = join(REPO_ROOT, "dist", "build-id");
  const original = readFileSync(buildFile, "utf8");
  const pid = () => Number(readFileSync(join(t.home, "run", "guardian.pid"), "utf8"));

  before(() => {
    t = createInstance("gu");
  });
  after(async () => {
    writeFileSync(buildFile, original);
    await t.teardown();
  });

  it("is restarted by the next command, and the running cloister stays", async () => {
    assert.equal((await t.cli(["start", "-d", "--name", "upg"])).code, 0);
    const before = pid();
    writeFileSync(buildFile, "an-upgrade\n");
    try {
      const r = await t.cli(["exec", "upg", "--", "echo", "still here"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "still here\n");
      assert.match(r.stderr, /the running guardian \(pid \d+\) is from another build of cloister; restarting it/);
      assert.notEqual(pid(), before);
      const again = await t.cli(["exec", "upg", "--", "true"]);
      assert.doesNotMatch(again.stderr, /another build/, "restarted only once");
    } finally {
      writeFileSync(buildFile, original);
    }
  });

  it("is replaced by `run` too, whose cloister then reaches the new guardian's proxy", async () => {
    // `run` asks for its grant without a status call first; the old guardian's grant is dropped
    // with it, and the grant that counts comes from the new one.
    const before = pid();
    writeFileSync(buildFile, "another-upgrade\n");
    try {
      const r = await t.cli(["run", "--", "sh", "-c", 'curl -s -o /dev/null -w "%{http_code}" -x "$HTTP_PROXY" http://unlisted.example/']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "403", "the proxy that answers knows this cloister's token");
      assert.match(r.stderr, /is from another build of cloister; restarting it/);
      assert.notEqual(pid(), before);
    } finally {
      writeFileSync(buildFile, original);
    }
  });
});
