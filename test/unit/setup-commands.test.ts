/**
 * `cloister setup`'s check of a credential's shape: a warning, never a refusal, for a value that
 * does not look like the agent's key or token (QA: `notakey` and `garbage` were stored without one).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { shapeWarning } from "../../src/cli/setup-commands.js";
import { BUILTIN_RULES } from "../../src/policy/injection.js";

const ANTHROPIC_KEY = `sk-ant-api03-${"Ab3dEf6hIj9kLm2nOp5q-_".repeat(4)}`;
const ANTHROPIC_TOKEN = `sk-ant-oat01-${"Ab3dEf6hIj9kLm2nOp5q-_".repeat(4)}`;

describe("setup: the shape of a credential", () => {
  it("the agents' keys and tokens of the known shapes pass without a word", () => {
    assert.equal(shapeWarning("claude", "api_key", ANTHROPIC_KEY), undefined);
    assert.equal(shapeWarning("claude", "oauth_token", ANTHROPIC_TOKEN), undefined);
    assert.equal(shapeWarning("codex", "api_key", "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"), undefined);
    assert.equal(shapeWarning("gemini", "api_key", "AIzaSyAb3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"), undefined);
  });

  it("anything else is warned about, with the shape expected and how to store it again", () => {
    assert.match(shapeWarning("gemini", "api_key", "notakey") ?? "", /^this does not look like a Gemini API key, which starts with AIza .* stored all the same .*`cloister setup gemini` again$/);
    assert.match(shapeWarning("claude", "oauth_token", "garbage") ?? "", /does not look like an OAuth token \(Claude Pro\/Max subscription\), which starts with sk-ant-oat01-/);
    // The right start with what a key never holds: a paste with its header or quotes.
    assert.match(shapeWarning("claude", "api_key", `Bearer ${ANTHROPIC_KEY}`) ?? "", /does not look like an Anthropic API key/);
    assert.match(shapeWarning("codex", "api_key", `"sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"`) ?? "", /does not look like an OpenAI API key/);
  });

  it("a credential of the agent's other kind is named as such", () => {
    assert.equal(
      shapeWarning("claude", "oauth_token", ANTHROPIC_KEY),
      "this looks like an Anthropic API key, not an OAuth token (Claude Pro/Max subscription); it was given as one all the same. If that was a slip, run `cloister setup claude --api-key`",
    );
  });

  it("the prefixes are those the built-in injection rules keep in placeholders", () => {
    for (const rule of BUILTIN_RULES.filter((r) => r.prefix !== undefined)) {
      const [agent = "", kind] = rule.secret.split(".");
      assert.equal(shapeWarning(agent, kind as "api_key" | "oauth_token", `${rule.prefix ?? ""}Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z`), undefined, rule.secret);
    }
  });
});
