import assert from "node:assert/strict";
import { chownSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { CloisterError } from "../../src/errors.js";
import { checkOwnInstance, foreignInstanceError, isPermissionDenied } from "../../src/config/foreign-instance.js";
import { resolvePaths } from "../../src/config/paths.js";

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

describe("checkOwnInstance: before anything is written, the instance must be the caller's", () => {
  const hint = "(each user has an instance of their own: run this as nobody, or set CLOISTER_HOME to a directory of your own)";
  const refused = (dir: string) => `cannot use the cloister instance at ${dir}, as it belongs to nobody; nothing was written there ${hint}`;

  it("refuses a CLOISTER_HOME, or any of its four directories, of another user; takes one not made yet", { skip: !asRoot && "needs root to give a directory to another user" }, () => {
    const base = mkdtempSync(join(tmpdir(), "cloister-own-"));
    try {
      const home = join(base, "h");
      const paths = resolvePaths({ CLOISTER_HOME: home });
      checkOwnInstance(paths); // nothing there yet: the caller will make it
      mkdirSync(home);
      checkOwnInstance(paths);
      chownSync(home, OTHER_UID, OTHER_UID);
      assert.throws(() => checkOwnInstance(paths), (error: unknown) => error instanceof CloisterError && error.oneLine() === refused(home));
      chownSync(home, 0, 0);
      mkdirSync(paths.stateDir);
      chownSync(paths.stateDir, OTHER_UID, OTHER_UID);
      assert.throws(() => checkOwnInstance(paths), (error: unknown) => error instanceof CloisterError && error.oneLine() === refused(paths.stateDir));
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });

  it("without CLOISTER_HOME, looks at cloister's own XDG directories, not at the shared ones above them (/tmp, ~/.config)", { skip: !asRoot && "needs root to give a directory to another user" }, () => {
    const base = mkdtempSync(join(tmpdir(), "cloister-own-"));
    try {
      const shared = (name: string) => {
        const dir = join(base, name);
        mkdirSync(dir);
        chownSync(dir, OTHER_UID, OTHER_UID);
        return dir;
      };
      const paths = resolvePaths({ HOME: base, XDG_CONFIG_HOME: shared("config"), XDG_STATE_HOME: shared("state"), XDG_DATA_HOME: shared("data"), XDG_RUNTIME_DIR: shared("run") });
      mkdirSync(paths.configDir);
      checkOwnInstance(paths);
      chownSync(paths.configDir, OTHER_UID, OTHER_UID);
      assert.throws(() => checkOwnInstance(paths), (error: unknown) => error instanceof CloisterError && error.oneLine() === refused(paths.configDir));
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});

