/**
 * The audit log's rotation settings with a real guardian: `guardian reload` applies audit.max_size
 * and audit.keep, both ways, without a restart (QA: the guardian kept its start's settings and said
 * it had reloaded, so a small max_size set once went on deleting history after it was put back).
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createInstance, waitUntil, withConfig, type TestInstance } from "../helpers/cloister.js";

describe("audit rotation settings", () => {
  let t: TestInstance;
  let auditFile: (name: string) => string;
  before(() => {
    t = createInstance("aur");
    auditFile = (name) => join(t.home, "state", "audit", name);
  });
  after(() => t.teardown());

  /** `count` reloads, each of which the guardian records (a guardian.reload record of ~400 bytes). */
  async function reloads(count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      const reload = await t.cli(["guardian", "reload"]);
      assert.equal(reload.code, 0, reload.stderr);
    }
  }

  it("`guardian reload` applies audit.max_size and audit.keep, and applies them again when they are put back", async () => {
    assert.equal((await t.cli(["guardian", "start"])).code, 0);
    const small = (config: string) => config.replace(/^ {2}max_size: 64MiB$/m, "  max_size: 2KiB").replace(/^ {2}keep: 10$/m, "  keep: 2");
    await withConfig(t, small, async () => {
      await reloads(24);
      await waitUntil("rotation at 2 KiB", () => existsSync(auditFile("audit.2.jsonl")));
      assert.ok(!existsSync(auditFile("audit.3.jsonl")), "no more than keep (2) rotated files");
      assert.ok(statSync(auditFile("audit.1.jsonl")).size <= 2048, "a rotated file stays within max_size");
    });
    // withConfig put 64MiB and 10 back and reloaded: from here on nothing rotates.
    const rotated = readFileSync(auditFile("audit.1.jsonl"), "utf8");
    await reloads(12);
    await waitUntil("audit.jsonl to grow past 2 KiB", () => statSync(auditFile("audit.jsonl")).size > 2048);
    assert.equal(readFileSync(auditFile("audit.1.jsonl"), "utf8"), rotated, "audit.1.jsonl is as it was: no rotation since");
    const verify = await t.cli(["audit", "verify"]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });
});
