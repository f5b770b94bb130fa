/**
 * What the environment and the configuration can point a cloister at: a CLOISTER_HOME that lies in
 * the project, and refs or mounts of the host's system paths. Each attack is the configuration an
 * agent's user might be talked into (or write by mistake); the secure outcome is a refused launch.
 */
import assert from "node:assert/strict";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CLI, createInstance, startCommand, type TestInstance } from "../helpers/cloister.js";

describe("escape: a relative CLOISTER_HOME inside the project", () => {
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
    // Relative, so that it names a directory in the project; fresh, so that nothing of it exists yet.
    const env = { ...t.env, CLOISTER_HOME: ".ch" };
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
