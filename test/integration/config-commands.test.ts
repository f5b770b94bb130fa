/**
 * The commands that read and write the configuration (`config show|init|edit`, `project show`): what
 * they say, what they write (and what they must not), and their exit status: 0 done, 1 a file has
 * problems (each listed, as `config validate` lists them), 125 cloister could not do it.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createInstance, type TestInstance } from "../helpers/cloister.js";

describe("config and project commands", () => {
  let t: TestInstance;
  let configFile: string;
  let testSettings: string;
  before(() => {
    t = createInstance("cfc");
    configFile = join(t.home, "config", "config.yaml");
    testSettings = readFileSync(configFile, "utf8");
  });
  after(() => t.teardown());

  /** Runs `body` with config.yaml holding `text`, or absent for undefined; the test settings come back after. */
  async function withGlobalConfig(text: string | undefined, body: () => Promise<void>): Promise<void> {
    if (text === undefined) rmSync(configFile);
    else writeFileSync(configFile, text);
    try {
      await body();
    } finally {
      writeFileSync(configFile, testSettings);
    }
  }

  it("config show without a config file shows the defaults and writes nothing (QA: it created the file)", async () => {
    await withGlobalConfig(undefined, async () => {
      const shown = await t.cli(["config", "show"], { cwd: t.home });
      assert.equal(shown.code, 0, shown.stderr);
      assert.ok(shown.stdout.startsWith(`# no ${configFile} yet: these are the defaults (\`cloister config init\` writes that file)\n`), shown.stdout);
      assert.match(shown.stdout, /^ {2}unlisted: ask$/m);
      const json = await t.cli(["config", "show", "--json"], { cwd: t.home });
      assert.equal((JSON.parse(json.stdout) as { proxy: { unlisted: string } }).proxy.unlisted, "ask");
      assert.equal(existsSync(configFile), false, "config show wrote the config file");
    });
  });

  it("config init writes the defaults where there is no file, and keeps a file that is there, saying so and how to edit or reset it (QA)", async () => {
    await withGlobalConfig(undefined, async () => {
      const wrote = await t.cli(["config", "init"]);
      assert.equal(wrote.code, 0, wrote.stderr);
      assert.equal(wrote.stderr, `Wrote the default config to ${configFile}: every setting is there, commented; \`cloister config edit\` edits it.\n`);
      assert.match(readFileSync(configFile, "utf8"), /^ {2}unlisted: ask$/m);
    });
    const kept = await t.cli(["config", "init"]);
    assert.equal(kept.code, 0, kept.stderr);
    assert.equal(kept.stderr, `Kept the config file already at ${configFile} (config init never overwrites it): \`cloister config edit\` edits it; to start again from the defaults, remove it and run \`cloister config init\`.\n`);
    assert.equal(readFileSync(configFile, "utf8"), testSettings);
    const help = await t.cli(["config", "init", "--help"]);
    assert.match(help.stdout, /Exit status: 0 when the file was written, or is there already and valid; 1 when the file already there has problems/);
  });

  it("config init on a file with problems keeps it and lists every problem, exiting 1 as config validate does", async () => {
    const broken = "limits:\n  memroy: 4GiB\nproxy:\n  connect_timout: 5s\n";
    await withGlobalConfig(broken, async () => {
      const r = await t.cli(["config", "init"]);
      assert.equal(r.code, 1, r.stderr);
      const lines = r.stderr.split("\n");
      assert.match(lines[0] ?? "", /^Kept the config file already at /);
      assert.deepEqual(lines.slice(1), [
        `${configFile}:2:3: limits.memroy: unknown key (did you mean "memory"?)`,
        `${configFile}:4:3: proxy.connect_timout: unknown key (did you mean "connect_timeout"?)`,
        "2 problems: fix them with `cloister config edit`.",
        "",
      ]);
      assert.equal(readFileSync(configFile, "utf8"), broken);
    });
  });
});
