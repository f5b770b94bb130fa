/**
 * What the environment and the configuration can point a cloister at: a CLOISTER_HOME that lies in
 * the project, and refs or mounts of the host's system paths. Each attack is the configuration an
 * agent's user might be talked into (or write by mistake); the secure outcome is a refused launch.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CLI, createInstance, startCommand, type TestInstance } from "../helpers/cloister.js";

describe("escape: a CLOISTER_HOME inside the project", () => {
  let t: TestInstance;
  before(() => {
    t = createInstance("relh");
  });
  after(async () => {
    const env = { ...t.env, CLOISTER_HOME: join(t.project, ".ch") };
    await startCommand(process.execPath, [CLI, "guardian", "stop"], { env, cwd: t.project, timeoutMs: 30_000 }).done;
    await t.teardown();
  });

  it("is refused on its first use: the cloister never sees the guardian's socket or the instance's keys", async () => {
    // Relative, so that it names a directory in the project from there (QA); fresh, so that nothing of it exists yet.
    const env = { ...t.env, CLOISTER_HOME: ".ch" };
    const probe = "ls /work/.ch/run/guardian.sock /work/.ch/state/audit/signing-key.pem && echo REACHED";
    const r = await startCommand(process.execPath, [CLI, "run", "--", "sh", "-c", probe], { env, cwd: t.project, timeoutMs: 60_000 }).done;
    assert.equal(r.code, 125, r.stdout + r.stderr);
    assert.doesNotMatch(r.stdout, /REACHED/);
    assert.match(r.stderr, /^cloister: CLOISTER_HOME="\.ch" is a relative path, .*\(give an absolute path, e\.g\. CLOISTER_HOME=\/\S+\/\.ch\)\n$/);
    assert.equal(existsSync(join(t.project, ".ch")), false, "nothing of it is made");
  });

  it("is refused when it names a directory in the project absolutely, too", async () => {
    const env = { ...t.env, CLOISTER_HOME: join(t.project, ".ch") };
    const probe = "ls /work/.ch/run/guardian.sock /work/.ch/state/audit/signing-key.pem && echo REACHED";
    const r = await startCommand(process.execPath, [CLI, "run", "--", "sh", "-c", probe], { env, cwd: t.project, timeoutMs: 60_000 }).done;
    assert.equal(r.code, 125, r.stdout + r.stderr);
    assert.doesNotMatch(r.stdout, /REACHED/);
    assert.match(r.stderr, /overlaps cloister's own files in .*\/\.ch\//);
  });
});

describe("escape: refs and mounts of the host's system paths", () => {
  let t: TestInstance;
  before(async () => {
    t = createInstance("sysref");
    assert.equal((await t.cli(["run", "--", "true"])).code, 0);
  });
  after(() => t.teardown());

  const projectFile = () => join(t.home, "config", "projects", "proj.yaml");
  const withRefs = (refs: Record<string, string>) => writeFileSync(projectFile(), `path: ${t.project}\nrefs:\n${Object.entries(refs).map(([k, v]) => `  ${k}: ${v}\n`).join("")}`);

  const kernelViews: [string, string][] = [
    ["hostproc", "/proc"],
    ["hostsys", "/sys/class"],
    ["hostdev", "/dev"],
  ];
  for (const [name, source] of kernelViews) {
    it(`refuses a ref of ${source}: the host's processes and devices stay out of sight`, async () => {
      withRefs({ [name]: source });
      const r = await t.cli(["run", "--", "sh", "-c", `ls /refs/${name} | head -3; echo REACHED`]);
      assert.equal(r.code, 125, r.stdout);
      assert.doesNotMatch(r.stdout, /REACHED/);
      assert.match(r.stderr, /kernel's view of the host/);
    });
  }

  it("refuses a ref that holds or lies in what the system view covers (/etc/shadow, /etc/ssl/private; as root every file in /etc others may not read)", async () => {
    for (const source of ["/etc", ...["/etc/ssl/private"].filter((path) => existsSync(path))]) {
      withRefs({ sys: source });
      const r = await t.cli(["run", "--", "sh", "-c", "cat /refs/sys/shadow /refs/sys/* 2>/dev/null | head -c 100; echo REACHED"]);
      assert.equal(r.code, 125, `${source}: ${r.stdout}`);
      assert.doesNotMatch(r.stdout, /REACHED/);
      assert.match(r.stderr, /which cloisters' view of the system hides/);
    }
  });

  it("still mounts a plain system directory (liveness)", async () => {
    withRefs({ docs: "/usr/share/doc" });
    const r = await t.cli(["run", "--", "sh", "-c", "test -d /refs/docs && echo mounted"]);
    assert.equal(r.stdout, "mounted\n", r.stderr);
  });
});

describe("escape: a bwrap planted where the user's PATH looks (node_modules/.bin)", () => {
  let t: TestInstance;
  const marker = `/tmp/ESCAPED-planted-bwrap-${process.pid}`;
  before(() => {
    t = createInstance("pbw");
  });
  after(async () => {
    rmSync(marker, { force: true });
    await t.teardown();
  });

  it("is never the one a launch runs, on an absolute or a relative PATH entry", async () => {
    // What the agent can do from inside: write an executable into the project.
    const bin = join(t.project, "node_modules", ".bin");
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, "bwrap"), `#!/bin/sh\ntouch ${marker}\nexit 0\n`, { mode: 0o755 });
    const path = t.env.PATH;
    try {
      for (const entry of [bin, "node_modules/.bin"]) {
        t.env.PATH = `${entry}:${path ?? ""}`;
        const r = await t.cli(["run", "--", "sh", "-c", "echo inside"]);
        assert.equal(r.stdout, "inside\n", r.stderr);
        assert.equal(existsSync(marker), false, `the planted bwrap ran on the host (PATH entry ${entry})`);
      }
    } finally {
      t.env.PATH = path;
    }
  });
});
