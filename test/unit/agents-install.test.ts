/** Managed copies of agents: a failed first install leaves nothing, and uninstall tells a copy from what is not one. */
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { installManagedAgent, removeManagedAgent } from "../../src/agents/install.js";
import { resolveAgent } from "../../src/agents/registry.js";
import { CloisterError } from "../../src/errors.js";

const base = mkdtempSync(join(tmpdir(), "agents-install-"));
after(() => rmSync(base, { recursive: true, force: true }));

const codex = resolveAgent("codex", {});

/** A PATH whose npm makes the prefix it is given, as npm does (with the codex command when `installs`), then exits with `code`. */
function fakeNpm(code: number, installs = false): NodeJS.ProcessEnv {
  const bin = join(base, `npm-${code}-${installs}`);
  mkdirSync(bin, { recursive: true });
  const install = installs ? `mkdir -p "$3/node_modules/.bin" && echo "$6" > "$3/node_modules/.bin/codex"\n` : "";
  writeFileSync(join(bin, "npm"), `#!/bin/sh\nmkdir -p "$3"\n${install}exit ${code}\n`);
  chmodSync(join(bin, "npm"), 0o755);
  return { PATH: `${bin}:/usr/bin:/bin` };
}

/** Runs `work` with cloister's progress lines on stderr silenced. */
async function quietly<T>(work: () => Promise<T>): Promise<T> {
  const stderr = process.stderr.write;
  process.stderr.write = () => true;
  try {
    return await work();
  } finally {
    process.stderr.write = stderr;
  }
}

describe("managed copies", () => {
  test("a first install that fails leaves no directory behind", async () => {
    const managed = join(base, "failed");
    await assert.rejects(quietly(() => installManagedAgent(codex, managed, "99.99.99", fakeNpm(1))), (error: unknown) => error instanceof CloisterError && /npm install @openai\/codex@99\.99\.99 failed/.test(error.message));
    assert.ok(!existsSync(join(managed, "codex")));
  });

  test("a version that is no version or tag is refused before npm runs: npm would install from a path or URL there", async () => {
    const managed = join(base, "specs");
    for (const version of ["file:/etc", "git+https://example.com/x.git", "1 --registry=http://evil", "../../x", "https://example.com/x.tgz", "-1"]) {
      await assert.rejects(installManagedAgent(codex, managed, version, fakeNpm(0, true)), (error: unknown) => error instanceof CloisterError && /is not a version or tag of @openai\/codex/.test(error.message), version);
    }
    assert.ok(!existsSync(join(managed, "codex")), "npm ran");
    for (const version of ["0.169.0", "^0.169", "~1.2.3", "1.0.0-beta.1", "latest", "next"]) await quietly(() => installManagedAgent(codex, managed, version, fakeNpm(0, true)));
  });

  test("an install replaces the copy only once it holds the command: a failed one leaves the copy working", async () => {
    const managed = join(base, "replace");
    await quietly(() => installManagedAgent(codex, managed, "1.0.0", fakeNpm(0, true)));
    const command = join(managed, "codex", "node_modules", ".bin", "codex");
    assert.equal(readFileSync(command, "utf8"), "@openai/codex@1.0.0\n");
    await assert.rejects(quietly(() => installManagedAgent(codex, managed, "9.9.9", fakeNpm(1, true))), /failed \(exit code 1\)/);
    await assert.rejects(quietly(() => installManagedAgent(codex, managed, "9.9.9", fakeNpm(0))), /installed no codex command/);
    assert.equal(readFileSync(command, "utf8"), "@openai/codex@1.0.0\n");
    await quietly(() => installManagedAgent(codex, managed, "latest", fakeNpm(0, true)));
    assert.equal(readFileSync(command, "utf8"), "@openai/codex@latest\n");
    assert.deepEqual(readdirSync(managed), ["codex"], "no staging directory is left");
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

  test("a copy a running cloister may use is moved aside, not deleted, and removed once none runs with the agent", async () => {
    const managed = join(base, "in-use");
    await quietly(() => installManagedAgent(codex, managed, "1.0.0", fakeNpm(0, true)));
    // What a running cloister holds: the old copy's directory (its bind keeps that one, not the path).
    const held = readdirSync(join(managed, "codex", "node_modules", ".bin"));
    const oldCommand = join(managed, "codex", "node_modules", ".bin", "codex");
    let running = true;
    await quietly(() => installManagedAgent(codex, managed, "2.0.0", fakeNpm(0, true), () => running));
    assert.equal(readFileSync(oldCommand, "utf8"), "@openai/codex@2.0.0\n");
    const retired = readdirSync(managed).filter((entry) => entry.startsWith(".codex.retired-"));
    assert.equal(retired.length, 1);
    assert.deepEqual(readdirSync(join(managed, retired[0] ?? "", "node_modules", ".bin")), held);
    assert.equal(readFileSync(join(managed, retired[0] ?? "", "node_modules", ".bin", "codex"), "utf8"), "@openai/codex@1.0.0\n", "the running cloister's copy changed");
    assert.equal(removeManagedAgent(codex, managed, () => running), true);
    assert.equal(readdirSync(managed).filter((entry) => entry.startsWith(".codex.retired-")).length, 2);
    running = false;
    await quietly(() => installManagedAgent(codex, managed, "3.0.0", fakeNpm(0, true), () => running));
    assert.deepEqual(readdirSync(managed), ["codex"], "retired copies were left once no cloister ran with codex");
  });
});
