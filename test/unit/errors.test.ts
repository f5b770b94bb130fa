import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { CloisterError, fileSystemError } from "../../src/errors.js";

function thrownBy(action: () => unknown): unknown {
  try {
    action();
  } catch (error) {
    return error;
  }
  assert.fail("nothing was thrown");
}

describe("fileSystemError: node's file system errors in words", () => {
  test("names what was done, the path and why, with what to check", () => {
    const dir = mkdtempSync(join(tmpdir(), "cloister-errors-"));
    try {
      const error = fileSystemError(thrownBy(() => readFileSync(join(dir, "missing"))));
      assert.ok(error instanceof CloisterError);
      assert.equal(error.message, `cannot open ${join(dir, "missing")}: ENOENT`);
      const notDir = fileSystemError(thrownBy(() => mkdirSync(join(dir, "missing", "x", "y"))));
      assert.match(notDir?.oneLine() ?? "", /^cannot create the directory .*missing\/x\/y: ENOENT$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("permission problems say what to check, and name CLOISTER_HOME for a path in it", () => {
    const denied = Object.assign(new Error("EACCES: permission denied, mkdir '/srv/home/config'"), { code: "EACCES", syscall: "mkdir", path: "/srv/home/config" });
    const saved = process.env.CLOISTER_HOME;
    try {
      process.env.CLOISTER_HOME = "/srv/home";
      assert.equal(
        fileSystemError(denied)?.oneLine(),
        "cannot create the directory /srv/home/config: permission denied (check the owners and permissions of the directories on that path; CLOISTER_HOME must be a directory you can write)",
      );
      process.env.CLOISTER_HOME = "/elsewhere";
      assert.equal(fileSystemError(denied)?.hint, "check the owners and permissions of the directories on that path");
    } finally {
      if (saved === undefined) delete process.env.CLOISTER_HOME;
      else process.env.CLOISTER_HOME = saved;
    }
  });

  test("leaves errors without a path alone", () => {
    assert.equal(fileSystemError(new Error("plain")), undefined);
    assert.equal(fileSystemError(Object.assign(new Error("x"), { code: "ECONNREFUSED" })), undefined);
    assert.equal(fileSystemError("a string"), undefined);
  });
});
