import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { visible, visibleArgv } from "../../src/policy/visible.js";

/**
 * The inverse of visible, written here from the escape forms alone: if it recovers every input,
 * visible is unambiguous (no two strings look the same).
 */
function unescape(text: string): string {
  const named: Record<string, string> = { "\\": "\\", n: "\n", t: "\t", r: "\r", e: "\x1b" };
  return text.replace(/\\(?:x([0-9a-f]{2})|u\{([0-9a-f]+)\}|(.))/gsu, (_, hex2?: string, hexN?: string, char?: string) => {
    const hex = hex2 ?? hexN;
    if (hex !== undefined) return String.fromCodePoint(parseInt(hex, 16));
    const value = named[char ?? ""];
    assert.ok(value !== undefined, `unknown escape \\${char ?? ""}`);
    return value;
  });
}

function hex(code: number, digits: number): string {
  return code.toString(16).padStart(digits, "0");
}

/** A test that `code`, between two letters, is written as \u{XXXX}. */
function itEscapesCodePoint(code: number, name = `U+${hex(code, 4)}`): void {
  it(name, () => assert.equal(visible(`a${String.fromCodePoint(code)}b`), `a\\u{${hex(code, 4)}}b`));
}

describe("visible: C0 controls and DEL", () => {
  const named: Record<number, string> = { 0x09: "\\t", 0x0a: "\\n", 0x0d: "\\r", 0x1b: "\\e" };
  for (let code = 0; code < 0x20; code++) {
    const expected = named[code] ?? `\\x${hex(code, 2)}`;
    it(`U+${hex(code, 4)} → ${expected}`, () => assert.equal(visible(String.fromCharCode(code)), expected));
  }
  it("DEL → \\x7f", () => assert.equal(visible("\x7f"), "\\x7f"));
  it("BEL → \\x07", () => assert.equal(visible("\x07"), "\\x07"));
  it("NUL → \\x00", () => assert.equal(visible("a\0b"), "a\\x00b"));
});

describe("visible: C1 controls", () => {
  for (let code = 0x80; code < 0xa0; code++) {
    it(`U+${hex(code, 4)} → \\u{${hex(code, 2)}}`, () => assert.equal(visible(String.fromCharCode(code)), `\\u{${hex(code, 2)}}`));
  }
  it("NEL → \\u{85}", () => assert.equal(visible("\u0085"), "\\u{85}"));
  it("CSI → \\u{9b}", () => assert.equal(visible("\u009b31m"), "\\u{9b}31m"));
});

describe("visible: bidi controls", () => {
  const bidi = [0x061c, 0x200e, 0x200f, 0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069];
  for (const code of bidi) itEscapesCodePoint(code);
  it("a right-to-left override cannot disguise a file name", () => {
    assert.equal(visible("invoice\u202Efdp.exe"), "invoice\\u{202e}fdp.exe");
  });
});

describe("visible: zero-width and invisible characters", () => {
  const invisible = [0x200b, 0x200c, 0x200d, 0x2060, 0x2061, 0x2062, 0x2063, 0x2064, 0xfeff, 0x00ad];
  for (const code of invisible) itEscapesCodePoint(code);
  const alsoHidden: [string, number][] = [
    ["line separator", 0x2028],
    ["paragraph separator", 0x2029],
    ["no-break space", 0x00a0],
    ["ideographic space", 0x3000],
    ["narrow no-break space", 0x202f],
    ["em space", 0x2003],
    ["Hangul filler", 0x3164],
    ["Mongolian vowel separator", 0x180e],
    ["tag latin small letter a", 0xe0061],
    ["language tag", 0xe0001],
    ["interlinear annotation anchor", 0xfff9],
    ["lone high surrogate", 0xd800],
    ["lone low surrogate", 0xdfff],
  ];
  for (const [name, code] of alsoHidden) itEscapesCodePoint(code, `${name} (U+${hex(code, 4)})`);
});

describe("visible: backslash", () => {
  const cases: [string, string][] = [
    ["\\", "\\\\"],
    ["a\\nb", "a\\\\nb"],
    ["\\x07", "\\\\x07"],
    ["\\u{202e}", "\\\\u{202e}"],
  ];
  for (const [input, output] of cases) it(`${JSON.stringify(input)} → ${JSON.stringify(output)}`, () => assert.equal(visible(input), output));
  it("a literal backslash-n and a newline look different", () => assert.notEqual(visible("\\n"), visible("\n")));
});

describe("visible: text that stays as it is", () => {
  const unchanged = [
    "",
    "docker ps -a",
    "git push --force origin main",
    "'quotes' \"and\" `backticks` $(and) ;|&<>",
    "é ß ñ ø ü Ç",
    "ÿ",
    "日本語のテキスト",
    "한국어",
    "Ελληνικά Кириллица",
    "مرحبا بالعالم",
    "שלום",
    "हिन्दी",
    "😀🎉🚀",
    "👍🏽",
    "🇫🇷",
    "e\u0301",
    "❤\ufe0f",
    "∑∫√ → ← ™ © €",
  ];
  for (const text of unchanged) it(JSON.stringify(text), () => assert.equal(visible(text), text));

  it("every printable ASCII character but backslash", () => {
    for (let code = 0x20; code < 0x7f; code++) {
      const char = String.fromCharCode(code);
      if (char !== "\\") assert.equal(visible(char), char);
    }
  });
});

describe("visible: unambiguous and one line", () => {
  const pieces = ["a", "\\", "n", "x", "u", "{", "}", "0", "7", "\n", "\t", "\r", "\x1b", "\x07", "\x7f", "\x85", "\u202e", "\u200b", "\u00ad", "\u2028", "\ud800", "é", "😀", " ", "'"];
  // Every sequence of three pieces: escapes next to the characters that could extend or fake them.
  const samples = pieces.flatMap((a) => pieces.flatMap((b) => pieces.map((c) => a + b + c)));

  it("the escapes read back to the input", () => {
    for (const sample of samples) assert.equal(unescape(visible(sample)), sample, JSON.stringify(sample));
  });
  it("the output has no control, bidi or invisible characters", () => {
    for (const sample of samples) assert.doesNotMatch(visible(sample), /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u, JSON.stringify(sample));
  });
});

describe("visibleArgv", () => {
  const cases: [string[], string][] = [
    [["docker", "ps"], "docker ps"],
    [["echo", "a b"], "echo 'a b'"],
    [["echo", "a\nb"], "echo 'a\\nb'"],
    [["echo", ""], "echo ''"],
    [["echo", "it's"], "echo 'it'\\''s'"],
    [["rm", "invoice\u202Efdp.exe"], "rm 'invoice\\u{202e}fdp.exe'"],
    [["printf", "\x1b[2J"], "printf '\\e[2J'"],
    [["echo", "a\\b"], "echo 'a\\\\b'"],
    [["echo", "日本"], "echo '日本'"],
    // A newline shown as \n is not the same line as a backslash and an n.
    [["echo", "\\n"], "echo '\\\\n'"],
  ];
  for (const [argv, line] of cases) it(`${JSON.stringify(argv)} → ${line}`, () => assert.equal(visibleArgv(argv), line));

  it("an argument with a newline and two arguments do not look alike", () => {
    assert.notEqual(visibleArgv(["echo", "a\nb"]), visibleArgv(["echo", "a", "b"]));
    assert.notEqual(visibleArgv(["echo", "a b"]), visibleArgv(["echo", "a", "b"]));
  });
});
