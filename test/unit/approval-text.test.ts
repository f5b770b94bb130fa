/**
 * The terminal lines of `cloister approvals`, `approve`, `deny` and `undo`: an exact-argv rule holds
 * the agent's bytes and is shown through visible(), like the argv it came from (QA: it was raw).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { DecisionView } from "../../src/guardian/approvals/types.js";
import { ruleText } from "../../src/policy/commands.js";
import { answeredLine, describeDecision, undoneLine } from "../../src/cli/approval-text.js";

const argv = ["sleep", "a\u202eb\x1b[31m"];

const decision: DecisionView = {
  id: "d1",
  requestId: "r1",
  kind: "command",
  cloister: "c1",
  project: "p",
  subject: argv,
  verdict: "deny",
  scope: "global",
  rule: ruleText({ deny: argv }),
  by: "cli",
  at: "2025-01-01T00:00:00.000Z",
  undoable: true,
  undone: false,
};

/** No escape, bidi control or other control character reaches the terminal. */
function assertInert(line: string): void {
  assert.doesNotMatch(line, /[\x00-\x1f\x7f-\x9f\u202e]/u, JSON.stringify(line));
}

describe("approval lines", () => {
  it("the recent-decisions line shows the rule's control and bidi characters as escapes", () => {
    const line = describeDecision(decision);
    assertInert(line);
    assert.ok(line.includes("rule deny [sleep, 'a\\u{202e}b\\e[31m']"), line);
    assert.ok(line.includes("sleep 'a\\u{202e}b\\e[31m'"), line);
  });

  it("so do the confirmations of an answer and an undo", () => {
    const answered = answeredLine(decision);
    assertInert(answered);
    assert.equal(answered, "Denied sleep 'a\\u{202e}b\\e[31m' for c1, scope global (rule deny [sleep, 'a\\u{202e}b\\e[31m']).");
    const undone = undoneLine(decision);
    assertInert(undone);
    assert.equal(undone, "Undone: the global rule deny [sleep, 'a\\u{202e}b\\e[31m'] is no longer in the deny list.");
  });

  it("a decision without a rule says so", () => {
    assert.match(describeDecision({ ...decision, rule: null }), / rule - /);
  });
});
