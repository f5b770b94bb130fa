import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LruMap } from "../../src/lru-map.js";

describe("LruMap", () => {
  it("keeps at most its limit, dropping the least recently set first and handing each dropped value over", () => {
    const dropped: string[] = [];
    const map = new LruMap<string, number>(2, (value, key) => dropped.push(`${key}=${value}`));
    map.set("a", 1);
    map.set("b", 2);
    map.set("c", 3);
    assert.equal(map.size, 2);
    assert.deepEqual(dropped, ["a=1"]);
    assert.equal(map.peek("a"), undefined);
    assert.deepEqual([...map.values()], [2, 3]);
  });

  it("use() makes an entry the most recent; peek() does not", () => {
    const map = new LruMap<string, number>(2);
    map.set("a", 1);
    map.set("b", 2);
    assert.equal(map.peek("a"), 1);
    map.set("c", 3);
    assert.equal(map.peek("a"), undefined, "peeked, still the oldest: dropped");
    assert.equal(map.use("b"), 2);
    map.set("d", 4);
    assert.deepEqual([...map.values()], [2, 4], "used, so c went instead");
  });

  it("setting a key again replaces it without dropping anything", () => {
    const dropped: number[] = [];
    const map = new LruMap<string, number>(2, (value) => dropped.push(value));
    map.set("a", 1);
    map.set("b", 2);
    map.set("a", 10);
    assert.deepEqual(dropped, []);
    assert.deepEqual([...map.values()], [2, 10]);
    assert.equal(map.delete("b"), true);
    map.clear();
    assert.equal(map.size, 0);
  });
});
