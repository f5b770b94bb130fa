import assert from "node:assert/strict";
import { chownSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { foreignInstanceError, isPermissionDenied } from "../../src/config/foreign-instance.js";

/** A user other than the one running the tests, to own an instance: nobody (uid 65534 on Debian). */
const OTHER_UID = 65534;
const asRoot = process.getuid?.() === 0;

describe("foreignInstanceError: permission denied on an instance's files", () => {
  it("names the entry that keeps the caller out, its owner, and says to run as that user or use an instance of one's own", { skip: !asRoot && "needs root to give a directory to another user" }, () => {
    const base = mkdtempSync(join(tmpdir(), "cloister-foreign-"));
    try {
      const home = join(base, "h");
      mkdirSync(home);
      chownSync(home, OTHER_UID, OTHER_UID);
      // run/ is not there to look at (as behind a 0700 directory): the deepest entry that is, is named.
      const socket = join(home, "run", "guardian.sock");
      assert.equal(
        foreignInstanceError("reach the guardian", socket).oneLine(),
        `cannot reach the guardian at ${socket}: permission denied, as ${home} belongs to nobody (each user has an instance of their own: run this as nobody, or set CLOISTER_HOME to a directory of your own)`,
      );
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });

  it("of the caller's own files, says to check their permissions instead", () => {
    const base = mkdtempSync(join(tmpdir(), "cloister-foreign-"));
    try {
      assert.equal(
        foreignInstanceError("read the audit log", join(base, "state", "audit")).oneLine(),
        `cannot read the audit log at ${join(base, "state", "audit")}: permission denied (check the owners and permissions of the directories on that path)`,
      );
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });

  it("isPermissionDenied: EACCES and EPERM, nothing else", () => {
    const coded = (code: string) => Object.assign(new Error(code), { code });
    assert.equal(isPermissionDenied(coded("EACCES")), true);
    assert.equal(isPermissionDenied(coded("EPERM")), true);
    assert.equal(isPermissionDenied(coded("ENOENT")), false);
    assert.equal(isPermissionDenied(undefined), false);
  });
});
