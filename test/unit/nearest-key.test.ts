import assert from "node:assert/strict";
import { test } from "node:test";
import { levenshtein, nearestKey } from "../../src/nearest-key.js";

test("nearestKey: within 3 edits, and not for very short candidates", () => {
  assert.equal(nearestKey("memroy", ["memory", "pids"]), "memory");
  assert.equal(nearestKey("MEMORY", ["memory"]), "memory");
  assert.equal(nearestKey("protectt", ["protect", "env"]), "protect");
  assert.equal(nearestKey("abcdefg", ["memory"]), undefined);
  assert.equal(nearestKey("foo", ["ui"]), undefined);
  assert.equal(levenshtein("kitten", "sitting"), 3);
  assert.equal(levenshtein("", "abc"), 3);
  assert.equal(levenshtein("same", "same"), 0);
});
