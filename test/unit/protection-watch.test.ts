/**
 * The guardian's watch on protected files: a file replaced or removed on the host is reported for
 * every cloister watching it; an event about the file from before it was watched is not.
 */
import assert from "node:assert/strict";
import { mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { ProtectionWatch } from "../../src/guardian/protection-watch.js";

const dir = mkdtempSync(join(tmpdir(), "cpw-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A watch whose reports are collected as "cloister file" lines. */
function collectingWatch(): { watch: ProtectionWatch; lost: string[] } {
  const lost: string[] = [];
  return { watch: new ProtectionWatch((cloister, file) => lost.push(`${cloister.id} ${file}`)), lost };
}

/** Long enough for inotify events to reach the watcher's callback. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 100));

describe("ProtectionWatch", () => {
  it("ignores the creation of a file it only started watching afterwards (another launch's placeholder)", async () => {
    const { watch, lost } = collectingWatch();
    writeFileSync(join(dir, "config"), "[core]\n");
    watch.watch("a", "name-a", [join(dir, "config")]); // the directory is watched from here on
    await settle();
    // Another launch of the project creates a placeholder; this one finds it and watches it before
    // the creation's event has been read.
    writeFileSync(join(dir, "commondir"), ".\n", { flag: "wx" });
    watch.watch("a", "name-a", [join(dir, "commondir")]);
    await settle();
    assert.deepEqual(lost, []);
    watch.close();
  });

  it("reports a file replaced by rename, for every cloister watching it, and a removed one", async () => {
    const { watch, lost } = collectingWatch();
    const config = join(dir, "config");
    const commondir = join(dir, "commondir");
    watch.watch("a", "name-a", [config, commondir]);
    watch.watch("b", "name-b", [config]);
    // As git config does: a lock file renamed over the file, twice in a row (the second new file may
    // get the first one's freed inode number).
    for (const value of ["1", "2"]) {
      writeFileSync(`${config}.lock`, `[core]\n\tx = ${value}\n`);
      renameSync(`${config}.lock`, config);
    }
    unlinkSync(commondir);
    await settle();
    assert.deepEqual([...new Set(lost)].sort(), [`a ${commondir}`, `a ${config}`, `b ${config}`]);
    watch.close();
  });

  it("does not report a write in place (the read-only mount stays on the file)", async () => {
    const { watch, lost } = collectingWatch();
    const config = join(dir, "config");
    watch.watch("a", "name-a", [config]);
    writeFileSync(config, "[core]\n\ty = 1\n");
    await settle();
    assert.deepEqual(lost, []);
    watch.close();
  });
});
