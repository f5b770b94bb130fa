import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { MIN_RANDOM_CHARS, placeholderFor } from "../../src/policy/placeholders.js";

const KEY = Buffer.from("0123456789abcdef0123456789abcdef", "hex");
const OTHER_KEY = Buffer.from("fedcba9876543210fedcba9876543210", "hex");

/** A fixed, key-like string of `length` characters from `alphabet` (no randomness: tests stay reproducible). */
function fake(alphabet: string, length: number, seed = 7): string {
  let out = "";
  let state = seed;
  for (let i = 0; i < length; i++) {
    state = (state * 1103515245 + 12345) % 2147483648;
    out += alphabet[(state >>> 16) % alphabet.length];
  }
  return out;
}

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B64URL = ALNUM + "-_";

// Bodies that start with 12 alphanumerics, so the inferred prefix cannot run on into the key material.
const ANTHROPIC = `sk-ant-api03-${fake(ALNUM, 12)}${fake(B64URL, 83, 3)}AA`;
const OPENAI = `sk-proj-${fake(ALNUM, 12)}${fake(B64URL, 144, 5)}`;
const GEMINI = `AIza${fake(B64URL, 35, 11)}`;
const GITHUB = `ghp_${fake(ALNUM, 36, 13)}`;

describe("placeholderFor: determinism and separation", () => {
  it("is the same for the same (key, cloister, secret)", () => {
    assert.equal(placeholderFor(KEY, "c1", "anthropic", ANTHROPIC), placeholderFor(Buffer.from(KEY), "c1", "anthropic", ANTHROPIC));
  });

  it("differs across cloister ids, secret names and keys", () => {
    const base = placeholderFor(KEY, "c1", "anthropic", ANTHROPIC);
    const variants = [
      placeholderFor(KEY, "c2", "anthropic", ANTHROPIC),
      placeholderFor(KEY, "c1", "openai", ANTHROPIC),
      placeholderFor(OTHER_KEY, "c1", "anthropic", ANTHROPIC),
      // the field separator keeps ("c1", "xa") and ("c1x", "a") apart
      placeholderFor(KEY, "c1x", "nthropic", ANTHROPIC),
    ];
    for (const variant of variants) assert.notEqual(variant, base);
    assert.equal(new Set(variants).size, variants.length);
  });

  it("does not depend on the real value beyond its shape", () => {
    const other = `sk-ant-api03-${fake(ALNUM, 12, 99)}${fake(B64URL, 83, 98)}AA`;
    assert.equal(placeholderFor(KEY, "c1", "anthropic", ANTHROPIC), placeholderFor(KEY, "c1", "anthropic", other));
  });
});

describe("placeholderFor: shape", () => {
  function assertShape(real: string, placeholder: string, prefix: string, body: RegExp): void {
    assert.ok(placeholder.startsWith(prefix), `${placeholder} keeps ${prefix}`);
    assert.equal(placeholder.length, real.length);
    assert.match(placeholder.slice(prefix.length), body);
    assert.notEqual(placeholder, real);
  }

  it("Anthropic API key: sk-ant-api03- and 95+2 base64url characters", () => {
    assert.equal(ANTHROPIC.length, 13 + 95 + 2);
    assertShape(ANTHROPIC, placeholderFor(KEY, "c", "a", ANTHROPIC), "sk-ant-api03-", /^[A-Za-z0-9_-]{97}$/);
    const oauth = `sk-ant-oat01-${fake(ALNUM, 12)}${fake(B64URL, 83, 3)}AA`;
    assertShape(oauth, placeholderFor(KEY, "c", "a", oauth), "sk-ant-oat01-", /^[A-Za-z0-9_-]{97}$/);
  });

  it("OpenAI project key: sk-proj- and base64url", () => {
    assertShape(OPENAI, placeholderFor(KEY, "c", "o", OPENAI), "sk-proj-", /^[A-Za-z0-9_-]+$/);
    const legacy = `sk-${fake(ALNUM, 48, 17)}`;
    assertShape(legacy, placeholderFor(KEY, "c", "o", legacy), "sk-", /^[A-Za-z0-9]{48}$/);
  });

  it("Gemini key: AIza (given, it has no separator) and 35 base64url characters", () => {
    assertShape(GEMINI, placeholderFor(KEY, "c", "g", GEMINI, "AIza"), "AIza", /^[A-Za-z0-9_-]{35}$/);
  });

  it("a given prefix the real value does not start with falls back to inference", () => {
    assertShape(GITHUB, placeholderFor(KEY, "c", "gh", GITHUB, "AIza"), "ghp_", /^[A-Za-z0-9]{36}$/);
  });

  it("GitHub tokens: ghp_ and github_pat_ with alphanumerics", () => {
    assertShape(GITHUB, placeholderFor(KEY, "c", "gh", GITHUB), "ghp_", /^[A-Za-z0-9]{36}$/);
    const pat = `github_pat_${fake(ALNUM, 82, 19)}`;
    assertShape(pat, placeholderFor(KEY, "c", "gh", pat), "github_pat_", /^[A-Za-z0-9]{82}$/);
    const slack = `xoxb-${fake("0123456789", 12, 23)}`;
    assert.ok(placeholderFor(KEY, "c", "s", slack).startsWith("xoxb-"));
  });

  it("hex and digit tokens keep their alphabet", () => {
    const lower = fake("0123456789abcdef", 40, 29);
    assertShape(lower, placeholderFor(KEY, "c", "h", lower), "", /^[0-9a-f]{40}$/);
    const upper = fake("0123456789ABCDEF", 64, 31);
    assertShape(upper, placeholderFor(KEY, "c", "h", upper), "", /^[0-9A-F]{64}$/);
    const digits = fake("0123456789", 30, 37);
    assertShape(digits, placeholderFor(KEY, "c", "d", digits), "", /^[0-9]{30}$/);
  });

  it("base64 keeps the real value's padding", () => {
    const real = `${fake(ALNUM + "+/", 42, 41)}==`;
    const placeholder = placeholderFor(KEY, "c", "b", real);
    assertShape(real, placeholder, "", /^[A-Za-z0-9+/]{42}==$/);
  });

  it("anything else (a JWT with dots) gets base64url of the same length", () => {
    const jwt = `eyJhbGciOiJIUzI1NiJ9.${fake(B64URL, 40, 43)}.${fake(B64URL, 43, 47)}`;
    assertShape(jwt, placeholderFor(KEY, "c", "j", jwt), "", /^[A-Za-z0-9_-]+$/);
  });

  it(`has at least ${MIN_RANDOM_CHARS} random characters, however short the real value`, () => {
    assert.equal(MIN_RANDOM_CHARS, 24);
    assert.match(placeholderFor(KEY, "c", "s", "abc123"), /^[0-9a-f]{24}$/);
    assert.match(placeholderFor(KEY, "c", "s", "ghp_short"), /^ghp_[A-Za-z0-9]{24}$/);
    assert.match(placeholderFor(KEY, "c", "s", "1234"), /^[0-9]{24}$/);
    assert.match(placeholderFor(KEY, "c", "s", "QUJD=="), /^[A-Za-z0-9+/]{24}==$/);
    // a value that is nothing but a prefix keeps no prefix: all of it is random
    assert.match(placeholderFor(KEY, "c", "s", "sk-"), /^[A-Za-z0-9_-]{24}$/);
  });

  it("rejects inputs that would make the derivation weak or ambiguous", () => {
    assert.throws(() => placeholderFor(Buffer.alloc(0), "c", "s", "x"));
    assert.throws(() => placeholderFor(KEY, "c", "s", ""));
    assert.throws(() => placeholderFor(KEY, "c\0d", "s", "x"));
  });
});

describe("placeholderFor: never the real value", () => {
  it("neither equals nor contains the real value, even for one-character secrets", () => {
    for (let i = 0; i < 500; i++) {
      for (const real of ["7", "a", "Z", "ab", "0f", "-"]) {
        const placeholder = placeholderFor(KEY, `c${i}`, "s", real);
        assert.ok(!placeholder.includes(real), `${placeholder} contains ${real}`);
      }
    }
  });
});

describe("placeholderFor: no modulo bias", () => {
  // 62 and 10 do not divide 256: folding bytes with a bare modulo would make the first 256 % n
  // characters of the alphabet more likely than the rest, by 5/4 (62) or 26/25 (10). 4,000
  // placeholders of 40 characters give ~2,600 (62) or ~16,000 (10) per character, so the bands
  // below are several standard deviations wide for uniform output and miss the modulo version
  // (this relies on the module's alphabet order: upper, lower, digits).
  for (const [name, alphabet] of [
    ["alphanumeric", ALNUM],
    ["digits", "0123456789"],
    ["base64url", B64URL],
  ] as const) {
    it(`${name}: character frequencies are near uniform`, () => {
      const real = alphabet.repeat(Math.ceil(40 / alphabet.length));
      const counts = new Map<string, number>([...alphabet].map((char) => [char, 0]));
      let total = 0;
      for (let i = 0; i < 4000; i++) {
        for (const char of placeholderFor(KEY, `cloister-${i}`, "secret", real)) {
          counts.set(char, (counts.get(char) ?? 0) + 1);
          total++;
        }
      }
      assert.equal(counts.size, alphabet.length, "no character outside the alphabet");
      const expected = total / alphabet.length;
      for (const [char, count] of counts) {
        assert.ok(Math.abs(count - expected) / expected < 0.1, `${char}: ${count} vs ${expected.toFixed(0)}`);
      }
      const favoured = 256 % alphabet.length;
      if (favoured === 0) return;
      const mean = (chars: string): number => [...chars].reduce((sum, char) => sum + (counts.get(char) ?? 0), 0) / chars.length;
      const ratio = mean(alphabet.slice(0, favoured)) / mean(alphabet.slice(favoured));
      // half the modulo version's excess: 1 / floor(256 / n) / 2
      assert.ok(Math.abs(ratio - 1) < 0.5 / Math.floor(256 / alphabet.length), `first ${favoured} characters vs the rest: ${ratio.toFixed(4)}`);
    });
  }
});
