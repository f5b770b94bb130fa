/** Managed copies of agents: a failed first install leaves nothing, and uninstall tells a copy from what is not one. */
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { installManagedAgent, removeManagedAgent } from "../../src/agents/install.js";
import { resolveAgent } from "../../src/agents/registry.js";
import { CloisterError } from "../../src/errors.js";

const base = mkdtempSync(join(tmpdir(), "agents-install-"));
after(() => rmSync(base, { recursive: true, force: true }));

const codex = resolveAgent("codex", {});

/** A PATH whose npm makes the prefix it is given, as npm does, then exits with `code`. */
function fakeNpm(code: number): NodeJS.ProcessEnv {
  const bin = join(base, `npm-${code}`);
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(bin, "npm"), `#!/bin/sh\nmkdir -p "$3"\nexit ${code}\n`);
  chmodSync(join(bin, "npm"), 0o755);
  return { PATH: `${bin}:/usr/bin:/bin` };
}

describe("managed copies", () => {
  test("a first install that fails leaves no directory behind", async () => {
    const managed = join(base, "failed");
    const stderr = process.stderr.write;
    process.stderr.write = () => true;
    try {
      await assert.rejects(installManagedAgent(codex, managed, "99.99.99", fakeNpm(1)), (error: unknown) => error instanceof CloisterError && /npm install @openai\/codex@99\.99\.99 failed/.test(error.message));
    } finally {
      process.stderr.write = stderr;
    }
    assert.ok(!existsSync(join(managed, "codex")));
  });

  test("uninstall says there was no copy when there is only an empty prefix, and removes it", () => {
    const managed = join(base, "empty");
    mkdirSync(join(managed, "codex"), { recursive: true });
    assert.equal(removeManagedAgent(codex, managed), false);
    assert.ok(!existsSync(join(managed, "codex")));
  });

  test("uninstall removes an installed copy", () => {
    const managed = join(base, "installed");
    const bin = join(managed, "codex", "node_modules", ".bin");
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(managed, "codex", "cli.js"), "");
    symlinkSync(join(managed, "codex", "cli.js"), join(bin, "codex"));
    assert.equal(removeManagedAgent(codex, managed), true);
    assert.ok(!existsSync(join(managed, "codex")));
  });
});
