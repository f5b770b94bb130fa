/**
 * A read-only bind over a single protected file is lifted inside a running cloister when the host
 * replaces that file by rename — which `git config` does. The attacker waits for the user to run
 * such a command, then writes `.git/config` to get code run by the host's next commit. The guardian
 * watches protected files and kills the cloister the moment one is replaced.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createInstance, spawnCli, waitUntil, type TestInstance } from "../helpers/cloister.js";

describe("escape: protected files replaced on the host", () => {
  let t: TestInstance;
  const name = "prot";
  const running = async () => ((JSON.parse((await t.cli(["list", "--json"])).stdout) as { name: string }[]).some((c) => c.name === name));

  before(() => {
    t = createInstance("pf");
  });
  after(() => t.teardown());

  let attack: { stdout: string; config: string; before: string } | undefined;

  it("the host's `git config` stops (kills at once) the cloister whose .git/config lost its protection", async () => {
    assert.equal((await t.cli(["start", "-d", "--name", name])).code, 0);
    // The attacker waits inside for .git/config to become writable, then plants a hooks path.
    const attacker = spawnCli(t, ["exec", name, "--", "sh", "-c", "for i in $(seq 1 600); do if printf '[core]\\n\\thooksPath = /work/evil\\n' >> /work/.git/config 2>/dev/null; then echo PLANTED; exit 0; fi; sleep 0.05; done; echo GAVE-UP"]);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const before = readFileSync(join(t.project, ".git", "config"), "utf8");
    assert.equal(spawnSync("git", ["-C", t.project, "config", "user.signingkey", "none"]).status, 0);
    await waitUntil("the cloister to be stopped", async () => !(await running()));
    attack = { stdout: (await attacker.done).stdout, config: readFileSync(join(t.project, ".git", "config"), "utf8"), before };
    const audit = (await t.cli(["audit", "tail", "-n", "50", "--json"])).stdout;
    assert.match(audit, /"type":"cloister.protection-lost".*"file":"[^"]*\.git\/config"/);
  });

  it(
    "an attacker polling for the moment of the rename gets no write in before the kill",
    {
      todo: "KNOWN RACE (docs/sandbox.md): the guardian reacts to the rename within milliseconds, but a process polling every 50 ms sometimes writes first on a loaded machine. Closing it needs a mount design for .git that a host rename cannot lift.",
    },
    () => {
      assert.ok(attack, "the previous case ran");
      assert.doesNotMatch(attack.stdout, /PLANTED/);
      assert.doesNotMatch(attack.config, /hooksPath/);
      assert.equal(attack.config.startsWith(attack.before.trimEnd()), true);
    },
  );

  it("started again, the cloister protects the new file", async () => {
    assert.equal((await t.cli(["start", "-d", "--name", name])).code, 0);
    const r = await t.cli(["exec", name, "--", "sh", "-c", "echo x >> /work/.git/config && echo WRITABLE || echo read-only"]);
    assert.match(r.stdout, /read-only/);
    await t.cli(["stop", name]);
  });
});
