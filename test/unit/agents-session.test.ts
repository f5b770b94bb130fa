/** The agent of a running cloister: only the one it was set up for, and a refusal that reads as one sentence. */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { writeAgentMarker } from "../../src/agents/marker.js";
import { agentForRunningCloister } from "../../src/agents/session.js";
import { effectiveConfig, parseConfigText } from "../../src/config/load.js";
import { CloisterError } from "../../src/errors.js";
import type { CloisterRecord } from "../../src/sandbox/records.js";

const runtimeDir = mkdtempSync(join(tmpdir(), "csess-"));
after(() => rmSync(runtimeDir, { recursive: true, force: true }));

describe("agentForRunningCloister", () => {
  test("refuses another agent than the one the cloister was set up for, in one sentence without nested parentheses", async () => {
    writeAgentMarker(runtimeDir, { name: "claude", command: "claude" });
    const record = { name: "proj1", id: "0123abcd", runtimeDir } as CloisterRecord;
    const config = effectiveConfig(parseConfigText("", "config.yaml", "global"), parseConfigText("", "proj1.yaml", "project"));
    await assert.rejects(agentForRunningCloister(record, { agent: "codex", warn: () => undefined }, config), (error: unknown) => {
      assert.ok(error instanceof CloisterError);
      assert.equal(error.oneLine(), "cloister proj1 is running set up for claude, not codex: an agent is set up when its cloister starts (stop it with `cloister stop proj1`, then start it again with options.agent codex)");
      return true;
    });
  });

  test("a lookup cut off by the caller's abort ends the call, where a failed one only costs a shell its credential", async () => {
    writeAgentMarker(runtimeDir, { name: "claude", command: "claude" });
    const record = { name: "proj1", id: "0123abcd", runtimeDir } as CloisterRecord;
    const config = effectiveConfig(parseConfigText("", "config.yaml", "global"), parseConfigText("", "proj1.yaml", "project"));
    const warnings: string[] = [];
    const failing = async (): Promise<never> => Promise.reject(new CloisterError("the vault is locked"));
    const shell = await agentForRunningCloister(record, { credentials: failing, warn: (w) => warnings.push(w) }, config);
    assert.deepEqual([shell?.env, warnings], [{}, ["claude's credential is not available: the vault is locked"]]);
    const aborted = new AbortController();
    const reason = new CloisterError("interrupted (SIGINT) while starting");
    aborted.abort(reason);
    await assert.rejects(agentForRunningCloister(record, { credentials: failing, warn: (w) => warnings.push(w), signal: aborted.signal }, config), (error: unknown) => error === reason);
    assert.equal(warnings.length, 1, "an abort is not said as a missing credential");
  });
});
