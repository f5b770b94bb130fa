/**
 * Which host tools a launch runs (native.ts): bubblewrap runs on the host with the user's rights, so a
 * `bwrap` an agent can write (in the project's node_modules/.bin, a relative PATH entry) must never be it.
 */
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { bwrapPath, findTool } from "../../src/sandbox/native.js";

const base = mkdtempSync(join(tmpdir(), "ctools-"));
after(() => rmSync(base, { recursive: true, force: true }));

function tool(dir: string, name: string, mode = 0o755): string {
  mkdirSync(join(base, dir), { recursive: true });
  const path = join(base, dir, name);
  writeFileSync(path, "#!/bin/sh\nexit 0\n");
  chmodSync(path, mode);
  return path;
}

describe("findTool", () => {
  it("takes the system's copy over any PATH entry, and never a relative entry", () => {
    const planted = tool("project/node_modules/.bin", "sh");
    const found = findTool("sh", `${join(base, "project/node_modules/.bin")}:node_modules/.bin:.`);
    assert.notEqual(found, planted);
    assert.match(found ?? "", /^\/(usr\/)?s?bin\/sh$/);
  });

  it("finds a tool only on an absolute PATH entry, and only an executable file", () => {
    const name = `cloister-test-tool-${process.pid}`;
    tool("plain", name, 0o644);
    const runnable = tool("runnable", name);
    mkdirSync(join(base, "adir", name), { recursive: true });
    assert.equal(findTool(name, `${join(base, "plain")}:${join(base, "adir")}:${join(base, "runnable")}`), runnable);
    assert.equal(findTool(name, "runnable"), undefined);
  });
});

describe("bwrapPath", () => {
  it("takes CLOISTER_BWRAP when it names an executable file by an absolute path, and refuses anything else", () => {
    const chosen = tool("custom", "bwrap");
    assert.equal(bwrapPath({ CLOISTER_BWRAP: chosen, PATH: "" }), chosen);
    assert.throws(() => bwrapPath({ CLOISTER_BWRAP: "custom/bwrap" }), /CLOISTER_BWRAP=custom\/bwrap is not an executable file named by an absolute path/);
    assert.throws(() => bwrapPath({ CLOISTER_BWRAP: tool("custom", "plain", 0o644) }), /not an executable file/);
  });
});
