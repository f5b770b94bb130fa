import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ConfigError, type ConfigProblem } from "../../src/config/config-error.js";
import type { CloisterPaths } from "../../src/config/paths.js";
import { CloisterError } from "../../src/errors.js";
import { guardianCall, guardianStatus } from "../../src/guardian/control-client.js";
import { errorFromReply, errorReply } from "../../src/guardian/control-errors.js";
import { serveControl } from "../../src/guardian/control-server.js";
import { changeDecisions } from "../../src/guardian/policy-store.js";

const GLOBAL: ConfigProblem = { file: "/c/config.yaml", line: 3, column: 1, key: "bogus_key", problem: "unknown key", hint: "see `cloister config show`" };
const PROJECT: ConfigProblem = { file: "/c/projects/app.yaml", line: 2, column: 5, key: "limits.pids", problem: "expected a number" };
const bothFiles = () => new ConfigError([GLOBAL, PROJECT]);

/** What the CLI makes of `error` after it crossed the socket as JSON. */
const crossed = (error: unknown, status = 400) => errorFromReply(status, JSON.parse(JSON.stringify(errorReply(error))) as unknown);

describe("ConfigError with a lead (what failed because of the problems)", () => {
  it("puts the lead before the first problem and its own hint after it; several problems go under the lead's heading", () => {
    const lead = { lead: "nothing was changed: the configuration does not load", hint: "fix it, then try again" };
    const one = new ConfigError([GLOBAL], lead);
    assert.equal(one.oneLine(), "nothing was changed: the configuration does not load: /c/config.yaml:3:1: bogus_key: unknown key (see `cloister config show`) (fix it, then try again)");
    assert.deepEqual(one.terminalLines(), [one.oneLine()]);
    assert.deepEqual(new ConfigError([GLOBAL, PROJECT], lead).terminalLines(), [
      "nothing was changed: the configuration does not load: 2 problems in 2 config files (fix each; `cloister config validate` checks them all again):",
      "  /c/config.yaml:3:1: bogus_key: unknown key (see `cloister config show`)",
      "  /c/projects/app.yaml:2:5: limits.pids: expected a number",
    ]);
  });
});

describe("control errors: encoded by the guardian, rebuilt by the CLI", () => {
  it("a ConfigError crosses with every problem: the CLI prints each and gives them all with --json", () => {
    const error = crossed(bothFiles());
    assert.ok(error instanceof ConfigError);
    assert.deepEqual(error.problems, [GLOBAL, PROJECT]);
    assert.deepEqual(error.terminalLines(), bothFiles().terminalLines());
    assert.deepEqual(error.jsonDetails(), { problems: [GLOBAL, PROJECT] });
    assert.equal(error.oneLine(), bothFiles().oneLine());
  });

  it("keeps a ConfigError's lead and hint", () => {
    const sent = new ConfigError([GLOBAL, PROJECT], { lead: "nothing was changed", hint: "fix it, then try again" });
    const error = crossed(sent);
    assert.ok(error instanceof ConfigError);
    assert.deepEqual(error.terminalLines(), sent.terminalLines());
    assert.equal(error.oneLine(), sent.oneLine());
  });

  it("any other error crosses as its message and hint", () => {
    const error = crossed(new CloisterError("no such cloister", "see `cloister list`"));
    assert.ok(!(error instanceof ConfigError));
    assert.equal(error.oneLine(), "no such cloister (see `cloister list`)");
    assert.deepEqual(errorReply(new Error("boom")), { error: "boom", hint: undefined });
  });

  it("an answer of an older guardian (no problems) gives its message and hint", () => {
    const error = errorFromReply(400, { error: "/c/config.yaml:3:1: bogus_key: unknown key", hint: "see `cloister config show`" });
    assert.ok(!(error instanceof ConfigError));
    assert.equal(error.oneLine(), "/c/config.yaml:3:1: bogus_key: unknown key (see `cloister config show`)");
  });

  it("problems that are not all whole are not trusted: the CLI gives the message and hint, and does not crash", () => {
    const malformed: unknown[] = [
      "3 problems",
      [],
      {},
      [null],
      [GLOBAL, "and another"],
      [{ ...GLOBAL, line: "3" }],
      [{ ...GLOBAL, line: 0 }],
      [{ ...GLOBAL, column: 1.5 }],
      [{ ...GLOBAL, file: "" }],
      [{ ...GLOBAL, file: 7 }],
      [{ ...GLOBAL, key: undefined }],
      [{ ...GLOBAL, problem: "" }],
      [{ ...GLOBAL, hint: { text: "x" } }],
    ];
    for (const problems of malformed) {
      const error = errorFromReply(400, { error: "the configuration does not load", hint: "fix it", problems });
      assert.ok(!(error instanceof ConfigError), JSON.stringify(problems));
      assert.equal(error.oneLine(), "the configuration does not load (fix it)", JSON.stringify(problems));
    }
    const badLead = errorFromReply(400, { error: "nothing was changed", problems: [GLOBAL], lead: 42 });
    assert.ok(!(badLead instanceof ConfigError));
  });

  it("copies only a problem's own fields, and fields of the wrong type are left out", () => {
    const error = errorFromReply(400, { error: "x", problems: [{ ...PROJECT, hint: undefined, injected: "\u001b[2J" }] });
    assert.ok(error instanceof ConfigError);
    assert.deepEqual(error.problems, [PROJECT]);
    for (const body of [null, "text", 7, [], { error: 7, hint: ["x"] }, { error: "" }]) {
      const plain = errorFromReply(502, body);
      assert.ok(plain instanceof CloisterError && !(plain instanceof ConfigError));
      assert.equal(plain.oneLine(), "guardian answered 502", JSON.stringify(body));
    }
  });
});

describe("control errors over a real control socket", () => {
  let dir: string;
  let servers: Server[] = [];
  const pathsFor = (socket: string) => ({ guardianSocket: join(dir, socket) }) as CloisterPaths;
  const refusedChange = () =>
    changeDecisions(
      () => Promise.reject(bothFiles()),
      () => Promise.resolve(true),
    );

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ce-"));
    servers.push(
      await serveControl(join(dir, "guardian.sock"), {
        "POST /v1/reload": () => Promise.reject(bothFiles()),
        "POST /v1/decisions": refusedChange,
        "GET /v1/status": () => ({ pid: 1, policyError: GLOBAL.problem, policyProblems: [GLOBAL, PROJECT] }),
      }),
    );
    // Guardians that say something else than they should about the policy's problems.
    for (const [name, policyProblems] of [
      ["malformed.sock", [GLOBAL, { file: "/c/x.yaml" }]],
      ["older.sock", undefined],
    ] as const) {
      const server = createServer((_req, res) => res.end(JSON.stringify({ pid: 1, policyError: "broken", policyProblems })));
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(join(dir, name), resolve));
    }
  });
  after(() => {
    for (const server of servers) server.close();
    servers = [];
    rmSync(dir, { recursive: true, force: true });
  });

  it("a reload that fails on both files rejects with a ConfigError naming both", async () => {
    await assert.rejects(guardianCall(pathsFor("guardian.sock"), "POST", "/v1/reload"), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.problems, [GLOBAL, PROJECT]);
      return true;
    });
  });

  it("a decision refused because the configuration does not load says nothing changed, and names every problem", async () => {
    await assert.rejects(guardianCall(pathsFor("guardian.sock"), "POST", "/v1/decisions", {}), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.terminalLines(), [
        "nothing was changed: the configuration does not load: 2 problems in 2 config files (fix each; `cloister config validate` checks them all again):",
        "  /c/config.yaml:3:1: bogus_key: unknown key (see `cloister config show`)",
        "  /c/projects/app.yaml:2:5: limits.pids: expected a number",
      ]);
      assert.equal(error.hint, "fix it (`cloister config validate` names the file and line), then try again");
      return true;
    });
  });

  it("guardian status has every problem of an invalid policy; none when they are malformed or the guardian is older", async () => {
    assert.deepEqual((await guardianStatus(pathsFor("guardian.sock")))?.policyProblems, [GLOBAL, PROJECT]);
    assert.equal((await guardianStatus(pathsFor("malformed.sock")))?.policyProblems, null);
    assert.equal((await guardianStatus(pathsFor("older.sock")))?.policyProblems, null);
  });
});
