/** A persistent cloister's HOME serves only the project that first used it (home-owner.ts). */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { claimHome } from "../../src/sandbox/home-owner.js";

const homes = mkdtempSync(join(tmpdir(), "chome-"));
after(() => rmSync(homes, { recursive: true, force: true }));

describe("claimHome", () => {
  it("claims a HOME for its first project, keeps the owner out of the HOME, and lets that project use it again; only the first claim names the owner file it wrote (a failed launch takes that back)", () => {
    const home = join(homes, "api");
    assert.equal(claimHome(home, "api", "/p1/api"), join(homes, ".owners", "api"));
    assert.equal(readFileSync(join(homes, ".owners", "api"), "utf8"), "/p1/api\n");
    assert.equal(claimHome(home, "api", "/p1/api"), undefined);
  });

  it("refuses another project's cloister of the same name, and says how to go on", () => {
    assert.throws(
      () => claimHome(join(homes, "api"), "api", "/p2/api"),
      (error: Error & { hint?: string }) => /holds what a cloister of another project left there \(\/p1\/api\)/.test(error.message) && /options\.name/.test(error.hint ?? ""),
    );
  });
});
