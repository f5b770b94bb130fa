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
});
