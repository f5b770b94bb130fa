import assert from "node:assert/strict";
import { PassThrough, Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, it } from "node:test";
import { mulberry32 as prng } from "../helpers/prng.js";

import { NeedleFoundError, NeedleScanner, relayScanned, scanningStream } from "../../src/guardian/broker/scanner.js";

const b = (text: string): Buffer => Buffer.from(text, "latin1");

/** The reference: the needle that completes first (earliest end, then earliest start, then lowest index). */
function naive(data: Buffer, needles: readonly Buffer[]): { found?: number; start: number } {
  for (let end = 1; end <= data.length; end++) {
    let best: { found: number; start: number } | undefined;
    needles.forEach((needle, index) => {
      if (needle.length === 0 || needle.length > end) return;
      const start = end - needle.length;
      if (!data.subarray(start, end).equals(needle)) return;
      if (best === undefined || start < best.start) best = { found: index, start };
    });
    if (best !== undefined) return best;
  }
  return { start: data.length };
}

/** Feeds `data` in the given chunk sizes; returns everything passed and what was found. */
function scanChunks(needles: readonly Buffer[], data: Buffer, sizes: readonly number[]): { out: Buffer; found?: number } {
  const scanner = new NeedleScanner(needles);
  const parts: Buffer[] = [];
  let offset = 0;
  for (const size of sizes) {
    const { pass, found } = scanner.push(data.subarray(offset, offset + size));
    parts.push(pass);
    offset += size;
    if (found !== undefined) return { out: Buffer.concat(parts), found };
  }
  parts.push(scanner.flush());
  return { out: Buffer.concat(parts) };
}

function randomSizes(random: () => number, total: number, max: number): number[] {
  const sizes: number[] = [];
  for (let left = total; left > 0; ) {
    const size = Math.min(left, 1 + Math.floor(random() * max));
    sizes.push(size);
    left -= size;
  }
  return sizes;
}

describe("NeedleScanner", () => {
  it("finds a needle split across every possible chunk boundary, and in 1-byte chunks", () => {
    const needle = b("sk-ant-api03-PLACEHOLDER");
    const data = b(`{"key":"${needle.toString("latin1")}","x":1}`);
    const start = data.indexOf(needle);
    for (let cut = 0; cut <= data.length; cut++) {
      const result = scanChunks([needle], data, [cut, data.length - cut]);
      assert.equal(result.found, 0, `cut at ${cut}`);
      assert.deepEqual(result.out, data.subarray(0, start));
    }
    const ones = scanChunks([needle], data, Array.from({ length: data.length }, () => 1));
    assert.equal(ones.found, 0);
    assert.deepEqual(ones.out, data.subarray(0, start));
  });

  it("holds nothing back when the tail is not a needle prefix: an SSE event goes out whole", () => {
    const scanner = new NeedleScanner([b("PLACEHOLDER-123")]);
    const event = b('data: {"delta":"hello"}\n\n');
    const { pass, found } = scanner.push(event);
    assert.equal(found, undefined);
    assert.equal(pass, event, "the very chunk, not a copy");
    assert.equal(scanner.flush().length, 0);
  });

  it("holds back exactly the longest tail that could grow into a needle, and returns it later", () => {
    const scanner = new NeedleScanner([b("abcd"), b("bcx")]);
    assert.deepEqual(scanner.push(b("xxab")).pass, b("xx"));
    assert.deepEqual(scanner.push(b("c")).pass, b(""), "abc: a prefix of abcd (and bc of bcx)");
    assert.deepEqual(scanner.push(b("q")).pass, b("abcq"));
    assert.deepEqual(scanner.push(b("zzb")).pass, b("zz"));
    assert.deepEqual(scanner.flush(), b("b"));
    assert.deepEqual(scanner.flush(), b(""));
  });

  it("reports the needle's index in the constructor's list, empty needles ignored", () => {
    const scanner = new NeedleScanner([b(""), b("zzz"), b("needle")]);
    assert.deepEqual(scanner.push(b("a needle here")), { pass: b("a "), found: 2 });
    assert.throws(() => scanner.push(b("more")), /after a needle was found/);
  });

  it("overlapping needles and a needle that is a prefix of another: the first to complete wins", () => {
    assert.deepEqual(scanChunks([b("abcdef"), b("abc")], b("xxabcdef"), [8]), { out: b("xx"), found: 1 });
    assert.deepEqual(scanChunks([b("abcdefg"), b("bcd")], b("abcdefg"), [7]), { out: b("a"), found: 1 });
    assert.deepEqual(scanChunks([b("abcdefg"), b("bcd")], b("abcdefg"), [4, 3]), { out: b("a"), found: 1 });
    // same end: the one that starts earlier, so none of its bytes pass
    assert.deepEqual(scanChunks([b("bcd"), b("abcd")], b("abcd"), [4]), { out: b(""), found: 1 });
    assert.deepEqual(scanChunks([b("aab")], b("aaaab"), [1, 1, 1, 1, 1]), { out: b("aa"), found: 0 });
  });

  it("with no needles passes every chunk through untouched", () => {
    const scanner = new NeedleScanner([]);
    const chunk = b("anything");
    assert.equal(scanner.push(chunk).pass, chunk);
    assert.equal(scanner.flush().length, 0);
  });

  it("agrees with a naive search under random data, needles and chunkings", () => {
    for (let seed = 1; seed <= 2000; seed++) {
      const random = prng(seed);
      // a tiny alphabet makes partial matches, overlaps and prefixes common
      const alphabet = "abc";
      const text = (length: number): string => Array.from({ length }, () => alphabet[Math.floor(random() * alphabet.length)]).join("");
      const needles = Array.from({ length: 1 + Math.floor(random() * 3) }, () => b(text(1 + Math.floor(random() * 6))));
      if (random() < 0.5) needles.forEach((needle, i) => (needles[i] = Buffer.concat([b("x"), needle])));
      const data = b(text(Math.floor(random() * 60)));
      const expected = naive(data, needles);
      const sizes = randomSizes(random, data.length, 1 + Math.floor(random() * 10));
      const result = scanChunks(needles, data, sizes);
      const context = `seed ${seed}: needles ${needles.map(String).join(",")} data ${data} sizes ${sizes.join(",")}`;
      assert.equal(result.found, expected.found, context);
      assert.deepEqual(result.out, data.subarray(0, expected.start), context);
    }
  });

  it("is fast on large chunks (64 MiB in 64 KiB chunks, 3 needles)", () => {
    const random = prng(42);
    const chunk = Buffer.alloc(64 * 1024);
    for (let i = 0; i < chunk.length; i++) chunk[i] = 32 + Math.floor(random() * 95);
    const needles = [b("sk-ant-api03-0123456789abcdefghijklmnopqrstuvwxyz"), b("ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"), b("AIzaSyNOTAREALKEY0123456789abcdefghijk")];
    const scanner = new NeedleScanner(needles);
    const total = 64 * 1024 * 1024;
    let passed = 0;
    const started = process.hrtime.bigint();
    for (let done = 0; done < total; done += chunk.length) {
      const { pass, found } = scanner.push(chunk);
      assert.equal(found, undefined);
      passed += pass.length;
    }
    passed += scanner.flush().length;
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    assert.equal(passed, total);
    console.log(`NeedleScanner: ${(total / 1024 / 1024 / seconds).toFixed(0)} MB/s (64 MiB, 64 KiB chunks, 3 needles)`);
  });
});

async function runStream(needles: readonly Buffer[], chunks: readonly Buffer[], onFound?: (needle: number) => void): Promise<{ out: Buffer; error?: unknown }> {
  const parts: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      parts.push(chunk);
      callback();
    },
  });
  try {
    await pipeline(Readable.from(chunks), scanningStream(needles, onFound), sink);
    return { out: Buffer.concat(parts) };
  } catch (error) {
    return { out: Buffer.concat(parts), error };
  }
}

describe("scanningStream", () => {
  it("passes a clean stream through, held tail included at the end", async () => {
    const { out, error } = await runStream([b("SECRET")], [b("hello "), b("world SEC"), b("RE")]);
    assert.equal(error, undefined);
    assert.deepEqual(out, b("hello world SECRE"));
  });

  it("ends with NeedleFoundError, calls onFound once, and never emits the needle or anything after it", async () => {
    const seen: number[] = [];
    const needles = [b("nope"), b("PLACEHOLDER")];
    const chunks = [b("data: a\n\n"), b("data: PLACE"), b("HOLDER tail\n\n"), b("data: PLACEHOLDER again\n\n")];
    const { out, error } = await runStream(needles, chunks, (needle) => seen.push(needle));
    assert.ok(error instanceof NeedleFoundError);
    assert.equal(error.needle, 1);
    assert.deepEqual(seen, [1]);
    assert.equal(out.indexOf(b("PLACE")), -1);
    assert.equal(out.indexOf(b("tail")), -1);
    assert.ok(b("data: a\n\ndata: ").subarray(0, out.length).equals(out), `output is a clean prefix: ${out}`);
  });

  it("never emits a needle under random chunkings", async () => {
    const needle = b("sk-proj-XYZ");
    for (let seed = 1; seed <= 200; seed++) {
      const random = prng(seed);
      const data = b(`${"a".repeat(Math.floor(random() * 50))}sk-proj-${"b".repeat(Math.floor(random() * 5))}sk-proj-XYZ${"c".repeat(20)}`);
      let offset = 0;
      const chunks = randomSizes(random, data.length, 8).map((size) => data.subarray(offset, (offset += size)));
      const { out, error } = await runStream([needle], chunks);
      assert.ok(error instanceof NeedleFoundError, `seed ${seed}`);
      assert.equal(out.indexOf(needle), -1, `seed ${seed}`);
      assert.ok(data.subarray(0, out.length).equals(out), `seed ${seed}`);
    }
  });

  it("a throwing onFound still ends the stream with NeedleFoundError, the throw as its cause", async () => {
    const { error } = await runStream([b("x")], [b("axb")], () => {
      throw new Error("audit down");
    });
    assert.ok(error instanceof NeedleFoundError);
    assert.match(String((error.cause as Error).message), /audit down/);
  });

  it("with no needles is a plain pass-through", async () => {
    const stream = scanningStream([b("")]);
    assert.ok(stream instanceof PassThrough);
    const chunk = b("data: x\n\n");
    const { out } = await runStream([], [chunk]);
    assert.deepEqual(out, chunk);
  });
});

describe("relayScanned", () => {
  /** Relays chunks into a collecting writable; resolves with what arrived and what `done` got. */
  function relay(needles: Buffer[], chunks: Buffer[]): Promise<{ out: Buffer; error: Error | null; found: number[]; destroyed: boolean }> {
    return new Promise((resolve) => {
      const received: Buffer[] = [];
      const found: number[] = [];
      const to = new Writable({
        write(chunk: Buffer, _encoding, callback) {
          received.push(chunk);
          callback();
        },
      });
      relayScanned(Readable.from(chunks, { objectMode: false }), to, needles, (index) => found.push(index), (error) =>
        // The writable finishes (or is destroyed) before `done`; let its events settle.
        setImmediate(() => resolve({ out: Buffer.concat(received), error, found, destroyed: to.destroyed && !to.writableFinished })),
      );
    });
  }

  it("passes a clean body through whole and ends the writable", async () => {
    const { out, error, found } = await relay([b("SECRET")], [b("data: one\n\n"), b("data: SECR")]);
    assert.equal(error, null);
    assert.deepEqual(found, []);
    assert.equal(out.toString(), "data: one\n\ndata: SECR");
  });

  it("cuts the body before a needle split across chunks, reports it, and destroys the writable", async () => {
    const { out, error, found, destroyed } = await relay([b("SECRET")], [b("ok SEC"), b("RET and more"), b("never")]);
    assert.ok(error instanceof NeedleFoundError);
    assert.deepEqual(found, [0]);
    assert.ok(destroyed);
    assert.equal(out.indexOf(b("SECRET")), -1);
    assert.ok(!out.toString().includes("more") && !out.toString().includes("never"));
  });

  it("with no needles is a plain relay", async () => {
    const { out, error } = await relay([], [b("a"), b("b")]);
    assert.equal(error, null);
    assert.equal(out.toString(), "ab");
  });
});
