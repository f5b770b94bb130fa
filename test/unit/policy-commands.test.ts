import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { describe, it } from "node:test";

import {
  CommandRequestError,
  CommandRuleError,
  MAX_ARGUMENTS,
  MAX_REQUEST_BYTES,
  canonicalQuote,
  checkCommandRequest,
  compileCommandRule,
  compileCommandRules,
  decisionText,
  evaluateCommand,
  exactCommandRule,
  hazardText,
  hazards,
  ruleText,
  type CommandDecision,
  type CommandPatternEntry,
  type CommandRuleEntry,
} from "../../src/policy/commands.js";

// ---------------------------------------------------------------------------------------------------
// Helpers

function decide(global: CommandRuleEntry[], argv: string[], project: CommandRuleEntry[] = []): CommandDecision {
  return evaluateCommand({ global: compileCommandRules(global), project: compileCommandRules(project) }, argv);
}

/** Whether `pattern` matches `argv`, hazards aside: an ask rule matches regardless of them. */
function matches(pattern: CommandPatternEntry, argv: string[]): boolean {
  return decide([{ ask: pattern }], argv).verdict === "ask";
}

/** A table of [pattern, argv, whether it matches]. */
function describeMatches(title: string, cases: [CommandPatternEntry, string[], boolean][]): void {
  describe(title, () => {
    for (const [pattern, argv, expected] of cases) {
      const name = `${ruleText({ ask: pattern })} ${expected ? "matches" : "does not match"} ${JSON.stringify(argv)}`;
      it(name, () => assert.equal(matches(pattern, argv), expected));
    }
  });
}

function assertRuleError(entry: CommandRuleEntry, path: (string | number)[], fragment: string): void {
  assert.throws(
    () => compileCommandRule(entry),
    (error: unknown) => {
      assert.ok(error instanceof CommandRuleError, `expected CommandRuleError, got ${String(error)}`);
      assert.deepEqual(error.path, path);
      assert.ok(error.message.includes(fragment), `message ${JSON.stringify(error.message)} lacks ${JSON.stringify(fragment)}`);
      return true;
    },
  );
}

function assertRequestError(argv: readonly string[], fragment: string): void {
  assert.throws(
    () => evaluateCommand({ global: [], project: [] }, argv),
    (error: unknown) => {
      assert.ok(error instanceof CommandRequestError, `expected CommandRequestError, got ${String(error)}`);
      assert.ok(error.message.includes(fragment), `message ${JSON.stringify(error.message)} lacks ${JSON.stringify(fragment)}`);
      return true;
    },
  );
}

/** The argv index of each hazard, for compact tables. */
function hazardIndexes(argv: string[]): number[] {
  return hazards(argv).map((hazard) => hazard.index);
}

/** A table of [argv, the indexes of its hazards]. */
function itFindsHazards(cases: [string[], number[]][]): void {
  for (const [argv, indexes] of cases) it(`${JSON.stringify(argv)} → ${JSON.stringify(indexes)}`, () => assert.deepEqual(hazardIndexes(argv), indexes));
}

const PIECES = ["a", "Z", "0", "-", "_", ".", "/", "=", ":", ",", "@", "%", "+", " ", "  ", "'", "''", '"', "\\", "\n", "\t", "$", "$(id)", "`id`", ";", "|", "&&", "*", "?", "~", "#", "!", "{", "}", "é", "😀", "\u202e", "\u200b", "日本"];

/**
 * argvs built from every ordered pair of awkward pieces: joined in one argument, split over two,
 * and mixed with an empty argument. Enumerated rather than random, so every pair is always tried.
 */
const PAIR_ARGVS: string[][] = PIECES.flatMap((a) => PIECES.flatMap((b) => [[a + b], [a, b], ["x", a, "", b + a]]));

/**
 * A POSIX-sh word splitter for the subset canonicalQuote writes: bare characters, single-quoted runs
 * and backslash escapes outside quotes, words separated by single spaces. Written here, separately
 * from the code under test, so the round trip checks the quoting against the shell's rules.
 */
function shellWords(line: string): string[] {
  const words: string[] = [];
  let word: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const char = line[i];
    if (char === " ") {
      if (word !== null) words.push(word);
      word = null;
    } else if (char === "'") {
      const end = line.indexOf("'", i + 1);
      assert.ok(end > i, `unterminated quote in ${JSON.stringify(line)}`);
      word = (word ?? "") + line.slice(i + 1, end);
      i = end;
    } else if (char === "\\") {
      word = (word ?? "") + (line[i + 1] ?? "");
      i++;
    } else {
      word = (word ?? "") + char;
    }
  }
  if (word !== null) words.push(word);
  return words;
}

// ---------------------------------------------------------------------------------------------------
// Compiling rules

describe("compileCommandRule: refused rules", () => {
  const cases: [string, CommandRuleEntry, (string | number)[], string][] = [
    ["an empty list", { allow: [] }, ["allow"], "cannot be empty"],
    ["an empty list (deny)", { deny: [] }, ["deny"], "cannot be empty"],
    ['"*" as the program', { allow: ["*"] }, ["allow", 0], '"*" cannot stand for the program'],
    ['"**" as the program', { ask: ["**", "ps"] }, ["ask", 0], '"**" cannot stand for the program'],
    ["a regex as the program", { allow: [{ regex: "docker" }, "ps"] }, ["allow", 0], "a regex cannot stand for the program"],
    ["an empty program", { allow: ["", "ps"] }, ["allow", 0], "the program name cannot be empty"],
    ["an empty program in one_of", { allow: [{ one_of: ["docker", ""] }] }, ["allow", 0, "one_of"], "the program name cannot be empty"],
    ["an empty one_of", { allow: ["gh", { one_of: [] }] }, ["allow", 1, "one_of"], "at least one value"],
    ["an empty one_of as the program", { allow: [{ one_of: [] }] }, ["allow", 0, "one_of"], "at least one value"],
    ["NUL in a literal", { allow: ["echo", "a\0b"] }, ["allow", 1], "NUL"],
    ["NUL in the program", { allow: ["ec\0ho"] }, ["allow", 0], "NUL"],
    ["NUL in one_of", { allow: ["echo", { one_of: ["a", "b\0"] }] }, ["allow", 1, "one_of", 1], "NUL"],
    ["NUL in an argument regex", { allow: ["echo", { regex: "a\0" }] }, ["allow", 1, "regex"], "NUL"],
    ["NUL in a whole-argv regex", { deny: { regex: "rm\0" } }, ["deny", "regex"], "NUL"],
    ["an unterminated group", { allow: ["make", { regex: "(test" }] }, ["allow", 1, "regex"], "Invalid regular expression"],
    ["an unmatched bracket", { deny: { regex: "git [push" } }, ["deny", "regex"], "Invalid regular expression"],
    ["a lone quantifier", { ask: { regex: "*git" } }, ["ask", "regex"], "Nothing to repeat"],
    ["an escape invalid under flag u", { allow: ["ls", { regex: "\\-a" }] }, ["allow", 1, "regex"], "Invalid regular expression"],
    ["a trailing backslash", { allow: ["ls", { regex: "a\\" }] }, ["allow", 1, "regex"], "Invalid regular expression"],
    // Wrapped in ^(?:…)$ this would balance into two unanchored alternatives; it must be refused alone.
    ["a group-closing escape from the anchor", { allow: ["ls", { regex: "a)|(b" }] }, ["allow", 1, "regex"], "Invalid regular expression"],
    ["a group-closing escape in a whole-argv regex", { deny: { regex: "x)|(.*" } }, ["deny", "regex"], "Invalid regular expression"],
  ];
  for (const [title, entry, path, fragment] of cases) it(title, () => assertRuleError(entry, path, fragment));

  it("the first problem of a rule is reported, at its own path", () => {
    assertRuleError({ allow: ["ls", { regex: "(" }, { regex: "[" }] }, ["allow", 1, "regex"], "Invalid regular expression");
  });
});

describe("compileCommandRule: accepted rules", () => {
  const cases: CommandRuleEntry[] = [
    { allow: ["docker", "ps"] },
    { allow: ["docker", "ps", "**"] },
    { ask: ["gh", "pr", { one_of: ["view", "list"] }, "**"] },
    { ask: ["gh", "run", "view", "*"] },
    { deny: { regex: "git push .*--force.*" } },
    { allow: ["make", { regex: "test(-[a-z]+)?" }] },
    { allow: [{ one_of: ["docker", "podman"] }, "ps"] },
    { allow: ["echo", ""] },
    { allow: ["echo", { one_of: ["*", "**"] }] },
    { allow: ["echo", { regex: "" }] },
    { deny: { regex: "" } },
    { allow: ["x", "**", "**", "*", "**"] },
    { allow: ["日本", "é", "😀"] },
  ];
  for (const entry of cases) {
    it(ruleText(entry), () => {
      const rule = compileCommandRule(entry);
      assert.equal(rule.text, ruleText(entry));
      assert.equal(rule.verdict, Object.keys(entry)[0]);
    });
  }

  it("compileCommandRules keeps order", () => {
    const rules = compileCommandRules([{ deny: ["a"] }, { ask: ["b"] }, { allow: ["c"] }]);
    assert.deepEqual(
      rules.map((rule) => rule.text),
      ["deny [a]", "ask [b]", "allow [c]"],
    );
  });
});

// ---------------------------------------------------------------------------------------------------
// Matching

describeMatches("literal lists match the whole argv, never a prefix or a part", [
  [["docker", "ps"], ["docker", "ps"], true],
  [["docker", "ps"], ["docker", "ps", "-a"], false],
  [["docker", "ps"], ["docker"], false],
  [["docker", "ps"], ["docker", "ps", ""], false],
  [["docker", "ps"], ["docker", "psx"], false],
  [["docker", "ps"], ["docker", "p"], false],
  [["docker", "ps"], ["docker", " ps"], false],
  [["docker", "ps"], ["docker", "ps "], false],
  [["docker", "ps"], ["docker", "PS"], false],
  [["docker", "ps"], ["Docker", "ps"], false],
  [["docker", "ps"], ["docker ps"], false],
  [["docker", "ps"], ["docker", "ps; rm -rf /"], false],
  [["docker", "ps"], ["docker", "ps", "&&", "rm", "-rf", "/"], false],
  [["docker", "ps"], ["docker", "ps\n"], false],
  [["docker", "ps"], ["xdocker", "ps"], false],
  [["docker", "ps"], ["/usr/bin/docker", "ps"], false],
  [["docker", "ps"], ["ps", "docker"], false],
  [["docker", "ps", "-a"], ["docker", "ps", "-a"], true],
  [["docker", "ps", "-a"], ["docker", "ps", "-aq"], false],
  [["docker", "ps", "-a"], ["docker", "ps"], false],
  [["echo", ""], ["echo", ""], true],
  [["echo", ""], ["echo"], false],
  [["echo", ""], ["echo", " "], false],
  [["echo"], ["echo", ""], false],
  [["é"], ["é"], true],
  // Unicode is compared as written: NFC é is not NFD e + combining acute.
  [["é"], ["e\u0301"], false],
  [["echo", "😀"], ["echo", "😀"], true],
  [["echo", "a\u200bb"], ["echo", "ab"], false],
]);

describeMatches('"*" is exactly one argument', [
  [["gh", "run", "view", "*"], ["gh", "run", "view", "123"], true],
  [["gh", "run", "view", "*"], ["gh", "run", "view", ""], true],
  [["gh", "run", "view", "*"], ["gh", "run", "view", "1 2; rm -rf /"], true],
  [["gh", "run", "view", "*"], ["gh", "run", "view"], false],
  [["gh", "run", "view", "*"], ["gh", "run", "view", "1", "2"], false],
  [["a", "*", "*"], ["a", "x", "y"], true],
  [["a", "*", "*"], ["a", "x"], false],
  [["a", "*", "*"], ["a", "x", "y", "z"], false],
  [["a", "*", "b"], ["a", "x", "b"], true],
  [["a", "*", "b"], ["a", "b"], false],
  [["a", "*", "b"], ["a", "x", "y", "b"], false],
  [["a", "*"], ["a", "*"], true],
]);

describeMatches('"**" is zero or more arguments, anywhere, any number of times', [
  [["docker", "ps", "**"], ["docker", "ps"], true],
  [["docker", "ps", "**"], ["docker", "ps", "-a"], true],
  [["docker", "ps", "**"], ["docker", "ps", "-a", "--format", "{{.ID}}"], true],
  [["docker", "ps", "**"], ["docker"], false],
  [["docker", "ps", "**"], ["docker", "run"], false],
  [["docker", "ps", "**"], ["docker", "psx"], false],
  [["a", "**", "z"], ["a", "z"], true],
  [["a", "**", "z"], ["a", "b", "z"], true],
  [["a", "**", "z"], ["a", "b", "c", "z"], true],
  [["a", "**", "z"], ["a", "z", "z"], true],
  [["a", "**", "z"], ["a", "z", "b"], false],
  [["a", "**", "z"], ["a"], false],
  [["a", "**", "b", "**"], ["a", "b"], true],
  [["a", "**", "b", "**"], ["a", "x", "b", "y"], true],
  [["a", "**", "b", "**"], ["a", "x", "y"], false],
  [["a", "**", "b", "**", "c"], ["a", "b", "c"], true],
  [["a", "**", "b", "**", "c"], ["a", "c", "b", "c"], true],
  [["a", "**", "b", "**", "c"], ["a", "c", "b"], false],
  [["a", "**", "b", "**", "c"], ["a", "b", "b", "c", "c"], true],
  [["a", "**", "**"], ["a"], true],
  [["a", "**", "**"], ["a", "1", "2", "3"], true],
  [["a", "**", "*"], ["a"], false],
  [["a", "**", "*"], ["a", "1"], true],
  [["a", "*", "**"], ["a"], false],
  [["a", "*", "**", "*"], ["a", "1"], false],
  [["a", "*", "**", "*"], ["a", "1", "2"], true],
  [["a", "*", "**", "*"], ["a", "1", "2", "3", "4"], true],
  [["a", "**", "b", "*"], ["a", "b", "b"], true],
  [["a", "**", "b", "*"], ["a", "x", "b"], false],
]);

describeMatches("one_of is any listed literal", [
  [["gh", "pr", { one_of: ["view", "list"] }, "**"], ["gh", "pr", "view"], true],
  [["gh", "pr", { one_of: ["view", "list"] }, "**"], ["gh", "pr", "list", "--json", "x"], true],
  [["gh", "pr", { one_of: ["view", "list"] }, "**"], ["gh", "pr", "merge"], false],
  [["gh", "pr", { one_of: ["view", "list"] }, "**"], ["gh", "pr", "views"], false],
  [["gh", "pr", { one_of: ["view", "list"] }, "**"], ["gh", "pr", "vie"], false],
  [["gh", "pr", { one_of: ["view", "list"] }, "**"], ["gh", "pr", "view|list"], false],
  [["gh", "pr", { one_of: ["view", "list"] }, "**"], ["gh", "pr"], false],
  [["echo", { one_of: ["*"] }], ["echo", "*"], true],
  [["echo", { one_of: ["*"] }], ["echo", "x"], false],
  [["echo", { one_of: ["**"] }], ["echo", "**"], true],
  [["echo", { one_of: ["**"] }], ["echo"], false],
  [["echo", { one_of: ["**"] }], ["echo", "a", "b"], false],
  [["echo", { one_of: [""] }], ["echo", ""], true],
  [[{ one_of: ["docker", "podman"] }, "ps"], ["podman", "ps"], true],
  [[{ one_of: ["docker", "podman"] }, "ps"], ["nerdctl", "ps"], false],
]);

describeMatches("per-argument regexes match the whole argument", [
  [["make", { regex: "test(-[a-z]+)?" }], ["make", "test"], true],
  [["make", { regex: "test(-[a-z]+)?" }], ["make", "test-unit"], true],
  [["make", { regex: "test(-[a-z]+)?" }], ["make", "test-"], false],
  [["make", { regex: "test(-[a-z]+)?" }], ["make", "test-Unit"], false],
  [["make", { regex: "test" }], ["make", "test; rm -rf /"], false],
  [["make", { regex: "test" }], ["make", "xtest"], false],
  [["make", { regex: "test" }], ["make", "testx"], false],
  [["make", { regex: "test" }], ["make", "test\n"], false],
  [["make", { regex: "test" }], ["make", "\ntest"], false],
  [["make", { regex: "test" }], ["make", "x\ntest"], false],
  [["make", { regex: "test" }], ["make", "TEST"], false],
  [["make", { regex: "test" }], ["make"], false],
  [["make", { regex: "test" }], ["make", "test", "test"], false],
  // Alternation is inside the anchoring group: a|b is (a|b) as a whole, not ^a or b$.
  [["x", { regex: "a|b" }], ["x", "a"], true],
  [["x", { regex: "a|b" }], ["x", "b"], true],
  [["x", { regex: "a|b" }], ["x", "ab"], false],
  [["x", { regex: "a|b" }], ["x", "ax"], false],
  [["x", { regex: "a|b" }], ["x", "xb"], false],
  [["x", { regex: "^a$" }], ["x", "a"], true],
  [["x", { regex: "^a$" }], ["x", "a\nb"], false],
  [["x", { regex: "[0-9]+" }], ["x", "123"], true],
  [["x", { regex: "[0-9]+" }], ["x", "123a"], false],
  [["x", { regex: "[0-9]+" }], ["x", ""], false],
  [["x", { regex: "" }], ["x", ""], true],
  [["x", { regex: "" }], ["x", "a"], false],
  [["x", { regex: ".*" }], ["x", "anything at all"], true],
  // Flag s: "." matches a newline too, so a deny pattern with ".*" cannot be dodged with one.
  [["x", { regex: ".*" }], ["x", "a\nb"], true],
  // Flag u: "." is one code point, so an emoji is one character.
  [["x", { regex: "." }], ["x", "😀"], true],
  [["x", { regex: "\\p{L}+" }], ["x", "日本語"], true],
  // No i flag.
  [["x", { regex: "abc" }], ["x", "ABC"], false],
  [["x", { regex: "(?<word>a)\\k<word>" }], ["x", "aa"], true],
  [["x", { regex: "(a)\\1" }], ["x", "aa"], true],
]);

describeMatches("whole-argv regexes match the canonical quoting, anchored", [
  [{ regex: "git push .*--force.*" }, ["git", "push", "origin", "--force"], true],
  [{ regex: "git push .*--force.*" }, ["git", "push", "--force"], true],
  [{ regex: "git push .*--force.*" }, ["git", "push"], false],
  [{ regex: "git push .*--force.*" }, ["git", "push", "x", "--force-with-lease"], true],
  [{ regex: "git push .*--force.*" }, ["git", "pushx", "x", "--force"], false],
  [{ regex: "git push .*--force.*" }, ["xgit", "push", "x", "--force"], false],
  // An argument with a newline before --force does not hide it (flag s).
  [{ regex: "git push .*--force.*" }, ["git", "push", "a\nb", "--force"], true],
  [{ regex: "git push .*--force.*" }, ["git", "push", "x", "--force\n"], true],
  [{ regex: "echo a b" }, ["echo", "a", "b"], true],
  [{ regex: "echo a b" }, ["echo", "a b"], false],
  [{ regex: "echo 'a b'" }, ["echo", "a b"], true],
  [{ regex: "echo 'a b'" }, ["echo", "'a", "b'"], false],
  [{ regex: "echo" }, ["echo", ""], false],
  [{ regex: "echo ''" }, ["echo", ""], true],
  [{ regex: "echo ''" }, ["echo", "''"], false],
  [{ regex: "ls" }, ["ls"], true],
  [{ regex: "ls" }, ["ls", "-l"], false],
  [{ regex: "ls" }, ["xls"], false],
  [{ regex: "ls.*" }, ["ls", "-l"], true],
  [{ regex: "ls|rm" }, ["rm"], true],
  [{ regex: "ls|rm" }, ["ls", "x"], false],
  [{ regex: "ls|rm" }, ["rm", "-rf", "/"], false],
  [{ regex: "echo [a-z]+" }, ["echo", "abc"], true],
  [{ regex: "echo [a-z]+" }, ["echo", "abc; rm -rf /"], false],
  [{ regex: "echo [a-z]+" }, ["echo", "$(rm -rf /)"], false],
  [{ regex: "echo [a-z]+" }, ["echo", "`rm -rf /`"], false],
  [{ regex: "echo [a-z]+" }, ["echo", "a|b"], false],
  [{ regex: "echo [a-z]+" }, ["echo", "a&&b"], false],
  [{ regex: "echo [a-z]+" }, ["echo", "a\nb"], false],
  [{ regex: "echo [^ ]+" }, ["echo", "a", "b"], false],
  // A quote inside an argument is quoted too: no argument can close the quoting early.
  [{ regex: "echo 'a' b" }, ["echo", "a' b"], false],
  [{ regex: "echo 'a'\\\\''b'" }, ["echo", "a'b"], true],
  [{ regex: "echo 'a;b'" }, ["echo", "a;b"], true],
  [{ regex: "echo '\\$\\(id\\)'" }, ["echo", "$(id)"], true],
  [{ regex: "echo '`id`'" }, ["echo", "`id`"], true],
  [{ regex: "echo '日本'" }, ["echo", "日本"], true],
]);

describe("whole-argv regexes cannot be fooled by argument boundaries", () => {
  it("a regex built from one argv's quoting matches exactly that argv", () => {
    const programs = PAIR_ARGVS.filter((argv) => argv[0] !== "");
    for (const [index, argv] of programs.entries()) {
      const regex = canonicalQuote(argv).replace(/[\\^$.*+?()[\]{}|]/g, "\\$&");
      const neighbour = programs[(index + 1) % programs.length] ?? argv;
      assert.equal(matches({ regex }, argv), true, JSON.stringify(argv));
      assert.equal(matches({ regex }, neighbour), JSON.stringify(argv) === JSON.stringify(neighbour), JSON.stringify([argv, neighbour]));
    }
  });
});

describe("matching cost", () => {
  it("thousands of hazards against a rule that names one answer at once", () => {
    const argv = ["git", ...Array.from({ length: 4000 }, () => "-c")];
    const started = Date.now();
    const decision = decide([{ allow: ["git", "**", "-c", "**"] }], argv);
    assert.equal(decision.verdict, "deny");
    assert.equal(decision.skipped?.hazard.index, 1);
    assert.ok(Date.now() - started < 2000, "took too long");
  });

  it("many ** against many arguments answers at once (no backtracking)", () => {
    const pattern: CommandPatternEntry = ["x", ...Array.from({ length: 40 }, () => ["**", "a"]).flat(), "b"];
    const argv = ["x", ...Array.from({ length: 4000 }, () => "a")];
    const started = Date.now();
    assert.equal(matches(pattern, argv), false);
    assert.ok(Date.now() - started < 2000, "took too long");
  });
});

// ---------------------------------------------------------------------------------------------------
// Canonical quoting

describe("canonicalQuote", () => {
  const cases: [string[], string][] = [
    [["docker", "ps"], "docker ps"],
    [["echo", "a b"], "echo 'a b'"],
    [["echo", "a", "b"], "echo a b"],
    [["echo", ""], "echo ''"],
    [[""], "''"],
    [["echo", "it's"], "echo 'it'\\''s'"],
    [["echo", "'"], "echo ''\\'''"],
    [["echo", "''"], "echo ''\\'''\\'''"],
    [["echo", "a\nb"], "echo 'a\nb'"],
    [["echo", "$(id)"], "echo '$(id)'"],
    [["echo", "`id`"], "echo '`id`'"],
    [["echo", "a;b"], "echo 'a;b'"],
    [["echo", "a|b"], "echo 'a|b'"],
    [["echo", "a&&b"], "echo 'a&&b'"],
    [["echo", "*"], "echo '*'"],
    [["echo", "~"], "echo '~'"],
    [["echo", "#x"], "echo '#x'"],
    [["echo", "\\"], "echo '\\'"],
    [["echo", '"'], "echo '\"'"],
    [["echo", "é"], "echo 'é'"],
    [["git", "--git-dir=/x", "-C/tmp", "a,b", "user@host:path", "100%", "a+b"], "git --git-dir=/x -C/tmp a,b user@host:path 100% a+b"],
    [["A-Z_a-z0-9@%+=:,./-"], "A-Z_a-z0-9@%+=:,./-"],
  ];
  for (const [argv, quoted] of cases) it(`${JSON.stringify(argv)} → ${quoted}`, () => assert.equal(canonicalQuote(argv), quoted));

  it("every other ASCII character is quoted", () => {
    for (let code = 0; code < 128; code++) {
      const char = String.fromCharCode(code);
      const bare = /[A-Za-z0-9_@%+=:,./-]/.test(char);
      assert.equal(canonicalQuote([char]) === char, bare, JSON.stringify(char));
    }
  });

  it("the test's shell word splitter inverts canonicalQuote (so no two argvs share a quoting)", () => {
    for (const argv of PAIR_ARGVS) assert.deepEqual(shellWords(canonicalQuote(argv)), argv, JSON.stringify(argv));
  });

  it("no two of the sample argvs share a quoting", () => {
    const quotings = new Map(PAIR_ARGVS.map((argv) => [canonicalQuote(argv), JSON.stringify(argv)]));
    assert.equal(quotings.size, new Set(PAIR_ARGVS.map((argv) => JSON.stringify(argv))).size);
  });

  it("/bin/sh reads canonicalQuote back as the same argv", () => {
    const samples = PAIR_ARGVS.filter((_, index) => index % 40 === 0);
    const script = samples.map((argv) => `printf '%s\\0' ${canonicalQuote(argv)}; printf '\\1'`).join("\n");
    const output = execFileSync("/bin/sh", ["-c", script], { encoding: "utf8" });
    const read = output.split("\u0001").slice(0, -1).map((chunk) => chunk.split("\0").slice(0, -1));
    assert.deepEqual(read, samples);
  });
});

// ---------------------------------------------------------------------------------------------------
// Hazards

describe("hazards: the program itself", () => {
  const wrappers = [
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "fish", "csh", "tcsh", "env", "xargs", "nice", "ionice", "timeout", "nohup",
    "stdbuf", "setsid", "sudo", "doas", "su", "runuser", "chroot", "unshare", "nsenter", "flock", "taskset", "chrt", "time",
    "watch", "script", "parallel", "busybox", "strace", "ltrace", "gdb", "eval", "exec", "command", "builtin",
  ];
  for (const wrapper of wrappers) {
    it(`${wrapper} runs other programs`, () => {
      assert.deepEqual(hazards([wrapper, "ls"]), [{ index: 0, token: wrapper, why: "runs another program or shell code" }]);
    });
  }
  for (const runner of ["awk", "gawk", "mawk", "sed"]) {
    it(`${runner} scripts cannot be vetted: the program is the hazard`, () => {
      assert.deepEqual(hazardIndexes([runner, "{print}"]), [0]);
      assert.match(hazards([runner, "x"])[0]?.why ?? "", /script/);
    });
  }
  const cases: [string[], number[]][] = [
    [["LD_PRELOAD=x.so", "ls"], [0]],
    [["PAGER=evil", "git", "log"], [0]],
    [["A=", "ls"], [0]],
    [["./build.sh"], [0]],
    [["../x"], [0]],
    [["bin/tool", "run"], [0]],
    [["/usr/bin/ls", "-l"], [0]],
    [["/bin/sh", "-c", "x"], [0]],
    [["BASH", "-c", "x"], [0]],
    [["Sudo", "ls"], [0]],
    [["bash5", "-c", "x"], [0]],
    [["ls", "-l"], []],
    [["docker", "ps"], []],
    [["make", "test"], []],
    // An assignment or path later in argv is only an argument.
    [["echo", "LD_PRELOAD=x.so"], []],
    [["cat", "./file"], []],
    [["shx"], []],
    [["bashful"], []],
    [["envoy"], []],
  ];
  itFindsHazards(cases);

  it("one hazard per argument: the first reason wins", () => {
    assert.deepEqual(hazards(["/usr/bin/env", "x"]), [{ index: 0, token: "/usr/bin/env", why: "is a path, not a program name: it could run a file the agent wrote" }]);
    assert.match(hazards(["A=/bin/sh"])[0]?.why ?? "", /environment assignment/);
  });

  it("an empty argv has none", () => assert.deepEqual(hazards([]), []));
});

describe("hazards: interpreters with inline code", () => {
  const cases: [string[], number[]][] = [
    [["python", "-c", "print(1)"], [1]],
    [["python3", "-c", "print(1)"], [1]],
    [["python2", "-c", "x"], [1]],
    [["python3.12", "-c", "x"], [1]],
    [["/usr/bin/python3", "-c", "x"], [0, 1]],
    [["python3", "-Ic", "x"], [1]],
    [["python3", "-cprint(1)"], [1]],
    [["python3", "-B", "-c", "x"], [2]],
    [["python3", "-"], [1]],
    [["python3", "script.py"], []],
    [["python3", "-m", "pytest", "-q"], []],
    [["pypy3", "-c", "x"], [1]],
    [["perl", "-e", "print 1"], [1]],
    [["perl", "-le", "print 1"], [1]],
    [["perl", "-E", "say 1"], [1]],
    [["perl", "-MPOSIX", "x.pl"], [1]],
    [["perl", "-mstrict", "x.pl"], [1]],
    [["perl5.36", "-e", "x"], [1]],
    [["perl", "x.pl"], []],
    [["ruby", "-e", "puts 1"], [1]],
    [["ruby", "-rjson", "x.rb"], [1]],
    [["ruby", "x.rb"], []],
    [["node", "-e", "1"], [1]],
    [["node", "--eval", "1"], [1]],
    [["node", "--eval=1"], [1]],
    [["node", "-p", "1"], [1]],
    [["node", "--print", "1"], [1]],
    [["node", "-pe", "1"], [1]],
    [["node", "-r", "./x.js", "y.js"], [1]],
    [["node", "--require=./x.js", "y.js"], [1]],
    [["node", "--import", "./x.mjs", "y.js"], [1]],
    [["node", "--loader=./x.mjs", "y.js"], [1]],
    [["node", "--experimental-loader", "./x.mjs"], [1]],
    [["node", "x.js"], []],
    [["node", "--version"], []],
    [["node20", "-e", "1"], [1]],
    [["nodejs", "-e", "1"], [1]],
    [["bun", "-e", "1"], [1]],
    [["bun", "--preload", "./x.ts", "y.ts"], [1]],
    [["deno", "eval", "1"], [1]],
    [["deno", "run", "x.ts"], []],
    [["php", "-r", "echo 1;"], [1]],
    [["php", "-B", "x", "-R", "y", "-E", "z"], [1, 3, 5]],
    [["php", "--run", "echo 1;"], [1]],
    [["php8.2", "-r", "x"], [1]],
    [["php", "x.php"], []],
    [["lua", "-e", "print(1)"], [1]],
    [["lua5.4", "-e", "x"], [1]],
    [["lua", "-lsocket", "x.lua"], [1]],
    [["luajit", "-e", "x"], [1]],
    [["lua", "x.lua"], []],
    [["tclsh", "x.tcl"], []],
    [["tclsh", "-"], [1]],
    // Options are scanned past "--": a value may be "--" itself, so "--" proves nothing.
    [["node", "--", "-e", "1"], [2]],
    [["python3", "x.py", "-c"], [2]],
  ];
  itFindsHazards(cases);
});

describe("hazards: find", () => {
  for (const option of ["-exec", "-execdir", "-ok", "-okdir", "-fprint", "-fprint0", "-fprintf", "-fls", "-delete"]) {
    it(`find ${option}`, () => assert.deepEqual(hazards(["find", ".", "-name", "*.o", option, "rm", "{}", ";"]).map((h) => [h.index, h.token]), [[4, option]]));
  }
  const cases: [string[], number[]][] = [
    [["find", ".", "-name", "x"], []],
    [["find", ".", "-executable"], []],
    [["find", ".", "-print"], []],
    [["find", ".", "-okay"], []],
    [["find", ".", "--", "-exec", "x", ";"], [3]],
    [["find", "-exec"], [1]],
    [["/usr/bin/find", ".", "-delete"], [0, 2]],
    [["FIND", ".", "-delete"], [2]],
    [["find", ".", "-exec", "a", ";", "-exec", "b", ";"], [2, 5]],
    [["ls", "-exec"], []],
  ];
  itFindsHazards(cases);
});

describe("hazards: git options, in every spelling", () => {
  const cases: [string[], number[]][] = [
    [["git", "status"], []],
    [["git", "log", "--oneline", "-n", "5"], []],
    [["git", "diff", "--cached", "--stat"], []],
    [["git", "log", "--color=always"], []],
    [["git", "commit", "-m", "fix the thing"], []],
    [["git", "branch", "-a", "-vv"], []],
    [["git", "clean", "-fdx"], []],
    [["git", "-c", "core.pager=evil", "log"], [1]],
    [["git", "-ccore.pager=evil", "log"], [1]],
    [["git", "-C", "/tmp", "status"], [1]],
    [["git", "-C/tmp", "status"], [1]],
    [["git", "--git-dir=/x", "log"], [1]],
    [["git", "--git-dir", "/x", "log"], [1]],
    [["git", "--git-d=/x", "log"], [1]],
    [["git", "--git-d", "/x", "log"], [1]],
    [["git", "--work-tree=/x", "status"], [1]],
    [["git", "--work-t", "/x", "status"], [1]],
    [["git", "--exec-path=/x", "status"], [1]],
    [["git", "--exec-pa=/x", "status"], [1]],
    [["git", "--exec-path"], [1]],
    [["git", "--config-env=core.pager=EVIL", "log"], [1]],
    [["git", "--config-env", "core.pager=EVIL", "log"], [1]],
    [["git", "--config-e=core.pager=EVIL", "log"], [1]],
    [["git", "--namespace=x", "log"], [1]],
    [["git", "--namespace", "x", "log"], [1]],
    [["git", "fetch", "--upload-pack=evil", "repo"], [2]],
    [["git", "fetch", "--upload-pack", "evil", "repo"], [2]],
    [["git", "fetch", "--upload-p=evil", "repo"], [2]],
    [["git", "fetch", "--upload", "evil", "repo"], [2]],
    [["git", "fetch", "-u", "evil", "repo"], [2]],
    [["git", "fetch", "-uevil", "repo"], [2]],
    [["git", "fetch", "-qu", "evil", "repo"], [2]],
    [["git", "ls-remote", "-u", "evil", "repo"], [2]],
    [["git", "fetch", "--upload-pack", "evil"], [2]],
    [["git", "push", "--receive-pack=evil"], [2]],
    [["git", "push", "--receive-pa", "evil"], [2]],
    [["git", "push", "--exec=evil"], [2]],
    [["git", "send-pack", "--exec", "evil"], [2]],
    [["git", "fetch", "--template=/x", "repo"], [2]],
    [["git", "fetch", "--config", "core.sshCommand=evil", "repo"], [2]],
    [["git", "fetch", "-c", "core.sshCommand=evil", "repo"], [2]],
    [["git", "grep", "-Ovim", "x"], [2]],
    [["git", "grep", "--open-files-in-pager=vim", "x"], [2]],
    [["git", "difftool", "--extcmd=evil"], [1, 2]],
    [["git", "fetch", "ext::sh -c evil"], [2]],
    [["git", "--help"], [1]],
    [["git", "log", "--help"], [2]],
    // Any prefix counts: git may resolve an abbreviation to a hazard (and refuses ambiguous ones anyway).
    [["git", "log", "--e"], [2]],
    [["GIT", "-c", "x=y", "status"], [1]],
    [["/usr/bin/git", "-c", "x=y", "status"], [0, 1]],
    [["git", "-c", "a=b", "-c", "c=d", "status"], [1, 3]],
    // Scanning does not stop at "--": "-o" takes "--" as its value here, and "-u" is an option again.
    [["git", "fetch", "-o", "--", "-u", "evil", "repo"], [4]],
    // The cost of that: a path spelled like an option is a hazard too.
    [["git", "log", "--", "-c"], [3]],
    [["git", "log", "--", "--upload-pack=x"], [3]],
    // Short options are matched anywhere in a cluster, over-matching attached values rather than parsing them.
    [["git", "push", "-u", "origin", "main"], [2]],
    [["git", "diff", "-C"], [2]],
    [["git", "commit", "-mCleanup"], [2]],
  ];
  itFindsHazards(cases);

  it("the token is the argument as written", () => {
    assert.deepEqual(
      hazards(["git", "--upload-p=evil", "-ck=v"]).map((h) => h.token),
      ["--upload-p=evil", "-ck=v"],
    );
  });
});

describe("hazards: git writing or reading files anywhere on the host", () => {
  const cases: [string[], number[]][] = [
    // Options that name a file to write or read, of any command, in every spelling.
    [["git", "log", "-1", "--format=format:touch x", "--output=/home/u/.bashrc"], [4]],
    [["git", "log", "--output", "/home/u/.bashrc"], [2]],
    [["git", "show", "--out=x"], [2]],
    [["git", "diff", "--no-index", "/dev/null", "/home/u/.ssh/id_ed25519"], [2, 3, 4]],
    [["git", "grep", "--no-index", "key"], [2]],
    [["git", "blame", "--contents", "/etc/shadow", "README.md"], [2]],
    [["git", "format-patch", "--output-directory=/home/u/.local/bin", "HEAD~1"], [2]],
    [["git", "apply", "--unsafe-paths", "--directory=/home/u"], [2, 3]],
    [["git", "fast-export", "--export-marks=/home/u/.profile"], [2]],
    [["git", "commit-graph", "write", "--object-dir=/home/u/x"], [3]],
    [["git", "grep", "--file=/home/u/.netrc"], [2]],
    // Short options, by command: the same letter means something harmless elsewhere.
    [["git", "commit", "-F", "/home/u/.netrc"], [2]],
    [["git", "commit", "-qF/home/u/.netrc"], [2]],
    [["git", "commit", "-t", "/home/u/.netrc"], [2]],
    [["git", "tag", "-a", "v1", "-F", "/home/u/.netrc"], [4]],
    [["git", "grep", "-f", "/home/u/.ssh/id_rsa"], [2]],
    [["git", "format-patch", "-o", "/home/u/.local/bin", "HEAD~1"], [2]],
    [["git", "archive", "-o", "/home/u/.bashrc", "HEAD"], [2]],
    [["git", "grep", "-F", "needle"], []],
    [["git", "push", "-o", "ci.skip", "origin", "main"], []],
    [["git", "log", "-F", "--grep=x"], []],
    // Commands whose arguments are paths on the host: every one that is not an option.
    [["git", "worktree", "add", "/home/u/.local/bin", "evil"], [2, 3, 4]],
    [["git", "clone", "--depth", "1", "https://example.com/r.git", "/home/u/.local/bin"], [3, 4, 5]],
    [["git", "init", "/home/u/.config/autostart"], [2]],
    [["git", "hash-object", "-w", "/home/u/.ssh/id_ed25519"], [3]],
    [["git", "bundle", "create", "/home/u/.bashrc", "HEAD"], [2, 3, 4]],
    [["git", "merge-file", "/home/u/.bashrc", "base", "theirs"], [2, 3, 4]],
    [["git", "am", "--continue"], []],
    // Other commands' paths stay git's own business: it refuses pathspecs outside the repository.
    [["git", "log", "--oneline", "--", "/etc/passwd"], []],
    [["git", "push", "--force", "origin", "main"], []],
  ];
  itFindsHazards(cases);

  it("says what the hazard is", () => {
    assert.match(hazards(["git", "log", "--output=x"])[0]?.why ?? "", /write or read a file it names, anywhere on the host/);
    assert.match(hazards(["git", "worktree", "add", "x"])[0]?.why ?? "", /a path git writes to or reads from/);
  });

  it("a wildcard allow rule passes none of them, a rule naming the argument does", () => {
    const rules: CommandRuleEntry[] = [{ allow: ["git", "log", "**"] }, { allow: ["git", "worktree", "list"] }];
    assert.equal(decide(rules, ["git", "log", "--output=/home/u/.bashrc"]).verdict, "deny");
    assert.equal(decide(rules, ["git", "log", "--oneline"]).verdict, "allow");
    assert.equal(decide(rules, ["git", "worktree", "list"]).verdict, "allow");
    assert.equal(decide(rules, ["git", "worktree", "add", "/tmp/x"]).verdict, "deny");
  });
});

describe("hazards: more of git's ways to write or read a file it is given", () => {
  const cases: [string[], number[]][] = [
    // --pathspec-from-file, in every command that has it, written in full, abbreviated, with = or apart.
    ...["add", "stage", "commit", "reset", "restore", "checkout", "rm", "stash"].flatMap((command): [string[], number[]][] => [
      [["git", command, "--pathspec-from-file=/home/u/.ssh/id_rsa"], [2]],
      [["git", command, "--pathspec-from-file", "/home/u/.ssh/id_rsa"], [2]],
      [["git", command, "--pathspec-from=/home/u/.ssh/id_rsa"], [2]],
      [["git", command, "--pathspec-f", "/home/u/.ssh/id_rsa"], [2]],
    ]),
    [["git", "stash", "push", "--pathspec-from-file=/home/u/.git-credentials", "--pathspec-file-nul"], [3]],
    // blame and its old names: revisions from a file.
    [["git", "blame", "--ignore-revs-file=/home/u/.git-credentials", "README.md"], [2]],
    [["git", "blame", "--ignore-revs-file", "/home/u/.git-credentials", "README.md"], [2]],
    [["git", "blame", "--ignore-revs-f=/home/u/.git-credentials", "README.md"], [2]],
    [["git", "annotate", "--ignore-revs-file=/x", "README.md"], [2]],
    [["git", "pickaxe", "--ignore-revs=/x", "README.md"], [2]],
    [["git", "blame", "-S", "/home/u/.git-credentials", "README.md"], [2]],
    [["git", "blame", "-wS/x", "README.md"], [2]],
    [["git", "annotate", "-S", "/x", "README.md"], [2]],
    // ... but --ignore-rev is an option of its own, which git takes as written.
    [["git", "blame", "--ignore-rev", "abc123", "README.md"], []],
    [["git", "blame", "--ignore-rev=abc123", "README.md"], []],
    [["git", "blame", "-s", "-w", "-L", "1,5", "README.md"], []],
    // format-patch: a signature read from a file; a suffix with "/" writes patches anywhere.
    [["git", "format-patch", "--stdout", "--signature-file=/home/u/.ssh/id_rsa", "-1"], [3]],
    [["git", "format-patch", "--stdout", "--signature-file", "/home/u/.ssh/id_rsa", "-1"], [3]],
    [["git", "format-patch", "--stdout", "--signature-f=/home/u/.ssh/id_rsa", "-1"], [3]],
    [["git", "format-patch", "-1", "--suffix=/../../../home/u/.bashrc"], [3]],
    [["git", "format-patch", "-1", "--suff", "/../x"], [3]],
    [["git", "format-patch", "--stdout", "--signature=Bob", "-1"], []],
    [["git", "format-patch", "--stdout", "--signature", "Bob", "-1"], []],
    [["git", "format-patch", "--stdout", "--no-signature", "--subject-prefix=PATCH v2", "-1"], []],
    // interpret-trailers: every file it is given is shown, and rewritten with --in-place.
    [["git", "interpret-trailers", "--in-place", "--trailer", "x: $(touch /tmp/p)", "/home/u/.bashrc"], [4, 5]],
    [["git", "interpret-trailers", "/home/u/.ssh/id_rsa"], [2]],
    // The path rule over-matches a trailer's text (standard input is empty on the host anyway).
    [["git", "interpret-trailers", "--trailer", "Signed-off-by: A <a@b>"], [3]],
    [["git", "interpret-trailers", "--parse"], []],
    // archive: an untracked file added to the archive (--add-virtual-file's content is given, not read).
    [["git", "archive", "--add-file=/home/u/.ssh/id_rsa", "HEAD"], [2]],
    [["git", "archive", "--add-file", "/home/u/.ssh/id_rsa", "HEAD"], [2]],
    [["git", "archive", "--add-f=/x", "HEAD"], [2]],
    [["git", "archive", "--add-virtual-file=a.txt:hello", "--format=tar", "HEAD"], []],
    // Messages read from a file.
    [["git", "commit-tree", "-F", "/home/u/.ssh/id_rsa", "HEAD^{tree}"], [2]],
    [["git", "fmt-merge-msg", "-F", "/home/u/.ssh/id_rsa"], [2]],
    [["git", "fmt-merge-msg", "--file=/x"], [2]],
    // ls-files and read-tree: exclude patterns from a file (an oracle on its lines), an index written anywhere.
    [["git", "ls-files", "-o", "-i", "--exclude-from=/home/u/.ssh/id_rsa"], [4]],
    [["git", "ls-files", "-o", "-i", "--exclude-f", "/home/u/.ssh/id_rsa"], [4]],
    [["git", "ls-files", "-oiX", "/home/u/.ssh/id_rsa"], [2]],
    [["git", "ls-files", "--exclude-per-directory=../../.ssh/id_rsa"], [2]],
    [["git", "ls-files", "-o", "--exclude=*.o", "--exclude-standard"], []],
    [["git", "read-tree", "--index-output=/home/u/.bashrc", "HEAD"], [2]],
    [["git", "read-tree", "--index-o", "/home/u/.bashrc", "HEAD"], [2]],
    [["git", "stash", "apply", "--index"], []],
    [["git", "update-index", "--add", "--chmod=+x", "run.sh"], []],
    // Where apply and am put files, where checkout-index writes the index's files.
    [["git", "apply", "--directory=../../../home/u"], [2]],
    [["git", "apply", "--build-fake-ancestor=/home/u/.bashrc"], [2]],
    [["git", "am", "--directory=../../x"], [2]],
    [["git", "checkout-index", "-a", "--prefix=/home/u/"], [3]],
    [["git", "checkout-index", "-a", "--pre=/home/u/"], [3]],
    // Repositories and directories elsewhere on the host.
    [["git", "init", "--separate-git-dir=/home/u/.local/x"], [2]],
    [["git", "init-db", "/home/u/.config/autostart"], [2]],
    [["git", "clone", "--reference=/home/u/private-repo"], [2]],
    [["git", "clone", "--bundle-uri=/home/u/x.bundle"], [2]],
    [["git", "repack", "-a", "--expire-to=/home/u/x"], [3]],
    [["git", "multi-pack-index", "write", "--bitmap", "--refs-snapshot=/home/u/.netrc"], [4]],
    [["git", "fast-import", "--allow-unsafe-features"], [2]],
    [["git", "fast-import", "--export-pack-edges=/home/u/.bashrc"], [2]],
    [["git", "verify-pack", "-v", "/home/u/other/.git/objects/pack/pack-1.idx"], [3]],
    [["git", "mailsplit", "-o/home/u/.local/bin", "mbox"], [2, 3]],
    [["git", "index-pack", "-o/home/u/.bashrc", "pack"], [2, 3]],
    [["git", "bugreport", "-o", "/home/u/.config"], [2]],
    [["git", "bugreport", "--suffix=/../../x"], [2]],
    [["git", "diagnose", "-s", "/../x"], [2]],
    [["git", "bisect", "replay", "/home/u/.ssh/id_rsa"], [2]],
    // git diff compares files outside the repository as git diff --no-index does.
    [["git", "diff", "/dev/null", "/home/u/.ssh/id_rsa"], [2, 3]],
    [["git", "diff", "--stat", "--", "README.md", "../../../home/u/.ssh/id_rsa"], [5]],
    [["git", "diff", ".."], [2]],
    [["git", "diff", "HEAD~1..HEAD", "--", "src/a.ts"], []],
    [["git", "diff", "origin/main...HEAD", "--stat"], []],
    [["git", "diff", "--cached", "--relative=src"], []],
  ];
  itFindsHazards(cases);

  const safe: string[][] = [
    ["git", "status", "--short", "--branch"],
    ["git", "status", "--porcelain=v2", "--", "src"],
    ["git", "log", "--oneline", "-n", "20", "--", "src/a.ts"],
    ["git", "log", "-p", "--stat", "--format=%H %s", "origin/main..HEAD"],
    ["git", "log", "--exclude=refs/stash", "--all"],
    ["git", "diff", "--stat", "HEAD~3"],
    ["git", "diff", "--cached", "--", "src/a.ts", "test/b.ts"],
    ["git", "diff", "main", "feature", "--", "docs"],
    ["git", "show", "HEAD:src/a.ts"],
    ["git", "push", "--force-with-lease", "origin", "main"],
    ["git", "push", "--set-upstream", "origin", "feature"],
    ["git", "fetch", "--all", "--prune"],
    ["git", "fetch", "origin", "main"],
    ["git", "pull", "--rebase", "origin", "main"],
    ["git", "pull", "--ff-only"],
    ["git", "add", "--all"],
    ["git", "add", "src/a.ts", "docs"],
    ["git", "commit", "-m", "Fix the parser", "--signoff"],
    ["git", "commit", "--amend", "--no-edit"],
    ["git", "restore", "--staged", "src/a.ts"],
    ["git", "checkout", "main"],
    ["git", "switch", "--create", "feature"],
    ["git", "reset", "--hard", "HEAD~1"],
    ["git", "rm", "--cached", "x"],
    ["git", "stash", "push", "-m", "wip"],
    ["git", "stash", "pop", "--index"],
    ["git", "tag", "--sign", "v1.0", "-m", "v1.0"],
    ["git", "notes", "--ref=review", "show"],
    ["git", "cat-file", "--filters", "--path=src/a.ts", "HEAD:src/a.ts"],
    ["git", "ls-remote", "--refs", "origin"],
    ["git", "branch", "-a"],
    ["git", "rev-parse", "--show-toplevel"],
    ["git", "prune", "--expire=now"],
    ["git", "reflog", "expire", "--expire=90.days.ago", "--all"],
    ["git", "merge", "--allow-unrelated-histories", "other"],
    ["git", "remote", "-v"],
    ["git", "remote", "add", "origin", "https://github.com/o/r.git"],
    ["git", "check-ignore", "-v", "build/x.o"],
    ["git", "rerere", "status"],
    ["gh", "pr", "view", "--json", "title"],
    ["gh", "pr", "create", "--fill"],
  ];
  for (const argv of safe) it(`${JSON.stringify(argv)} has no hazard`, () => assert.deepEqual(hazards(argv), []));

  const commands = [
    "merge-index", "merge-one-file", "for-each-repo", "submodule--helper", "bisect--helper", "difftool--helper",
    "upload-archive", "upload-archive--writer", "http-backend", "http-fetch", "svn", "p4", "cvsimport",
    "cvsexportcommit", "cvsserver", "archimport", "quiltimport", "credential-libsecret", "credential-gcloud.sh",
  ];
  for (const command of commands) {
    it(`git ${command}`, () => assert.deepEqual(hazards(["git", command, "x"]).map((h) => [h.index, h.token]), [[1, command]]));
  }

  it("says what the hazard is", () => {
    assert.match(hazards(["git", "add", "--pathspec-from-file=x"])[0]?.why ?? "", /write or read a file it names, anywhere on the host/);
    assert.match(hazards(["git", "interpret-trailers", "x"])[0]?.why ?? "", /a path git writes to or reads from/);
    assert.match(hazards(["git", "diff", "/x", "y"])[0]?.why ?? "", /outside the repository.*--no-index/);
    assert.match(hazards(["git", "merge-index", "x"])[0]?.why ?? "", /run programs/);
  });

  it("[git, \"**\"] passes none of them; a rule naming the argument does", () => {
    const rules: CommandRuleEntry[] = [{ allow: ["git", "**"] }, { allow: ["git", "blame", "--ignore-revs-file", ".git-blame-ignore-revs", "**"] }];
    for (const argv of [
      ["git", "interpret-trailers", "--in-place", "--trailer", "x: y", "/home/u/.bashrc"],
      ["git", "format-patch", "--stdout", "--signature-file=/home/u/.ssh/id_rsa", "-1"],
      ["git", "add", "--pathspec-from=/home/u/.ssh/id_rsa"],
      ["git", "diff", "/dev/null", "/home/u/.ssh/id_rsa"],
    ]) {
      assert.equal(decide(rules, argv).verdict, "deny", JSON.stringify(argv));
    }
    assert.equal(decide(rules, ["git", "blame", "--ignore-revs-file", ".git-blame-ignore-revs", "README.md"]).verdict, "allow");
    assert.equal(decide(rules, ["git", "diff", "--stat", "HEAD~1"]).verdict, "allow");
  });
});

describe("hazards: git commands that run programs", () => {
  const commands = [
    "daemon", "filter-branch", "difftool", "mergetool", "config", "credential", "upload-pack", "receive-pack", "shell",
    "web--browse", "instaweb", "send-email", "help", "hook", "maintenance", "remote-ext", "imap-send",
  ];
  for (const command of commands) {
    it(`git ${command}`, () => assert.deepEqual(hazards(["git", command, "x"]).map((h) => [h.index, h.token]), [[1, command]]));
  }
  const cases: [string[], number[]][] = [
    [["git", "--bare", "daemon"], [2]],
    [["git", "--no-pager", "config", "user.name", "x"], [2]],
    [["git", "-p", "config", "--list"], [2]],
    [["git", "-C", "/x", "daemon"], [1, 3]],
    [["git", "-c", "a=b", "config", "x"], [1, 3]],
    // The value of a global option is not the command.
    [["git", "-C", "daemon", "status"], [1]],
    [["git", "--git-dir", "config", "log"], [1]],
    [["git", "--attr-source", "daemon", "log"], []],
    // Only the command position counts.
    [["git", "log", "daemon"], []],
    [["git", "show", "config"], []],
    [["git", "submodule", "foreach", "make"], [2]],
    [["git", "submodule", "--quiet", "foreach", "make"], [3]],
    [["git", "submodule", "update", "--init"], []],
    [["git", "bisect", "run", "make"], [2]],
    [["git", "bisect", "start"], []],
    [["git", "rebase", "-x", "make", "main"], [2]],
    [["git", "rebase", "-xmake", "main"], [2]],
    [["git", "rebase", "-ix", "make", "main"], [2]],
    [["git", "rebase", "--exec=make", "main"], [2]],
    [["git", "rebase", "--exe", "make", "main"], [2]],
    [["git", "rebase", "-i", "main"], []],
    [["git", "rebase", "main"], []],
    [["git", "archive", "--remote=x", "HEAD"], [2]],
    [["git", "archive", "--rem=x", "HEAD"], [2]],
    [["git", "archive", "--remote", "x", "HEAD"], [2]],
    [["git", "archive", "--format=tar", "HEAD"], []],
    [["git", "cherry-pick", "-x", "abc"], []],
    [["git"], []],
    [["git", "-c", "x=y"], [1]],
  ];
  itFindsHazards(cases);
});

// ---------------------------------------------------------------------------------------------------
// Hazards against rules

describe("an allow rule passes a hazard only where a literal or one_of names it", () => {
  const argv = ["git", "-c", "core.pager=x", "status"];
  const cases: [string, CommandPatternEntry, string[], boolean][] = [
    ["literal", ["git", "-c", "*", "status"], argv, true],
    ["one_of", ["git", { one_of: ["-c", "-C"] }, "*", "status"], argv, true],
    ["literal then **", ["git", "-c", "**"], argv, true],
    ["*", ["git", "*", "*", "status"], argv, false],
    ["**", ["git", "**"], argv, false],
    ["** status", ["git", "**", "status"], argv, false],
    ["per-argument regex", ["git", { regex: "-c" }, "*", "status"], argv, false],
    ["per-argument regex .*", ["git", { regex: ".*" }, "*", "status"], argv, false],
    ["one of two named", ["git", "-c", "**"], ["git", "-c", "a=b", "-c", "c=d"], false],
    ["both named", ["git", "-c", "*", "-c", "*"], ["git", "-c", "a=b", "-c", "c=d"], true],
    ["both named around **", ["git", "**", "-c", "**", "-c", "**"], ["git", "-c", "a", "-c", "b"], true],
    // The literal can take either -c, but then ** covers the other: no alignment names both.
    ["** -c ** against two", ["git", "**", "-c", "**"], ["git", "-c", "a", "-c", "b"], false],
    ["** -c ** against one", ["git", "**", "-c", "**"], ["git", "-c", "a", "b"], true],
    ["no hazard, wildcards fine", ["git", "**"], ["git", "status", "--short"], true],
    ["find with -exec named", ["find", ".", "-exec", "**"], ["find", ".", "-exec", "rm", "{}", ";"], true],
    ["find with -exec unnamed", ["find", "**"], ["find", ".", "-exec", "rm", "{}", ";"], false],
    ["python -c named", ["python3", "-c", "*"], ["python3", "-c", "print(1)"], true],
    ["python -c by wildcard", ["python3", "*", "*"], ["python3", "-c", "print(1)"], false],
    ["git daemon named", ["git", "daemon", "**"], ["git", "daemon", "--export-all"], true],
    ["git daemon by wildcard", ["git", "*", "**"], ["git", "daemon", "--export-all"], false],
    ["submodule foreach by wildcard", ["git", "submodule", "**"], ["git", "submodule", "foreach", "x"], false],
    ["submodule foreach named", ["git", "submodule", "foreach", "*"], ["git", "submodule", "foreach", "x"], true],
    ["hazard after -- by wildcard", ["git", "log", "--", "*"], ["git", "log", "--", "-c"], false],
    ["hazard after -- named", ["git", "log", "--", "-c"], ["git", "log", "--", "-c"], true],
    // The program is always named (the first element must be a literal or one_of).
    ["wrapper program", ["sh", "-c", "*"], ["sh", "-c", "echo hi"], true],
    ["path program", ["./build.sh", "**"], ["./build.sh", "x"], true],
    ["env assignment program", [{ one_of: ["A=1", "B=2"] }, "**"], ["A=1", "ls"], true],
  ];
  for (const [title, pattern, args, allowed] of cases) {
    it(`${title}: ${ruleText({ allow: pattern })} ${allowed ? "allows" : "does not allow"} ${JSON.stringify(args)}`, () => {
      const decision = decide([{ allow: pattern }], args);
      assert.equal(decision.verdict, allowed ? "allow" : "deny");
      assert.equal(decision.skipped === null, allowed);
    });
  }
});

describe("a whole-argv allow regex names a hazard by containing its token", () => {
  const cases: [string, string, string[], boolean][] = [
    ["token in the source", "git -c [a-z.]+=[a-z]+ status", ["git", "-c", "core.x=y", "status"], true],
    ["token absent", "git .* status", ["git", "-c", "core.x=y", "status"], false],
    ["catch-all", ".*", ["git", "-c", "core.x=y", "status"], false],
    ["program token", "sh -c .*", ["sh", "-c", "echo hi"], true],
    ["program not written out", "(ba)?sh -c .*", ["bash", "-c", "echo hi"], false],
    ["assignment written out", "LD_PRELOAD=x.so ls", ["LD_PRELOAD=x.so", "ls"], true],
    // The check is on the text of the source: an escaped form does not contain the token.
    ["assignment escaped", "LD_PRELOAD=x\\.so ls", ["LD_PRELOAD=x.so", "ls"], false],
    ["path", "\\./build\\.sh", ["./build.sh"], false],
    ["no hazards", "ls( -[a-z]+)*", ["ls", "-la"], true],
  ];
  for (const [title, regex, argv, allowed] of cases) {
    it(`${title}: /${regex}/ ${allowed ? "allows" : "does not allow"} ${JSON.stringify(argv)}`, () => {
      assert.equal(decide([{ allow: { regex } }], argv).verdict, allowed ? "allow" : "deny");
    });
  }
});

describe("ask and deny rules match whatever the hazards", () => {
  const argv = ["git", "-c", "core.pager=x", "log"];
  it("ask", () => assert.equal(decide([{ ask: ["git", "**"] }], argv).verdict, "ask"));
  it("ask by regex", () => assert.equal(decide([{ ask: { regex: "git .*" } }], argv).verdict, "ask"));
  it("deny", () => assert.equal(decide([{ deny: ["git", "**"] }, { allow: ["git", "-c", "**"] }], argv).verdict, "deny"));
  it("a skipped allow falls through to a later ask", () => {
    const decision = decide([{ allow: ["git", "**"] }, { ask: ["git", "**"] }], argv);
    assert.equal(decision.verdict, "ask");
    assert.deepEqual(decision.rule, { text: "ask [git, **]", tier: "global", index: 1 });
    assert.deepEqual(decision.skipped, {
      rule: { text: "allow [git, **]", tier: "global", index: 0 },
      hazard: { index: 1, token: "-c", why: "is a git option that can run programs or point git at other repositories and config" },
    });
  });
  it("a skipped allow falls through to a later allow that names the hazard", () => {
    const decision = decide([{ allow: ["git", "**"] }], argv, [{ allow: ["git", "-c", "*", "log"] }]);
    assert.equal(decision.verdict, "allow");
    assert.deepEqual(decision.rule, { text: "allow [git, -c, *, log]", tier: "project", index: 0 });
    assert.equal(decision.skipped?.rule.tier, "global");
  });
  it("the first skipped allow is the one recorded", () => {
    const decision = decide([{ allow: ["git", "**"] }, { allow: ["git", "*", "**"] }], argv);
    assert.equal(decision.skipped?.rule.index, 0);
  });
  it("of several hazards, the one the rule cannot name is reported", () => {
    const decision = decide([{ allow: ["git", "-c", "*", "**"] }], ["git", "-c", "a=b", "-C", "/x", "log"]);
    assert.equal(decision.verdict, "deny");
    assert.deepEqual(decision.skipped?.hazard, { index: 3, token: "-C", why: "is a git option that can run programs or point git at other repositories and config" });
  });
});

// ---------------------------------------------------------------------------------------------------
// Evaluation order

describe("evaluateCommand: order and defaults", () => {
  it("no rules: deny, by no rule", () => {
    assert.deepEqual(decide([], ["ls"]), { verdict: "deny", rule: null, skipped: null });
  });
  it("no matching rule: deny", () => {
    assert.deepEqual(decide([{ allow: ["docker", "ps"] }], ["docker", "run", "x"]), { verdict: "deny", rule: null, skipped: null });
  });
  it("the first match wins", () => {
    assert.equal(decide([{ ask: ["x"] }, { allow: ["x"] }], ["x"]).verdict, "ask");
    assert.equal(decide([{ allow: ["x"] }, { deny: ["x"] }], ["x"]).verdict, "allow");
    assert.equal(decide([{ deny: ["x", "**"] }, { allow: ["x"] }], ["x"]).verdict, "deny");
  });
  it("global rules come before project rules", () => {
    const global = decide([{ deny: ["docker", "ps"] }], ["docker", "ps"], [{ allow: ["docker", "ps"] }]);
    assert.deepEqual(global.rule, { text: "deny [docker, ps]", tier: "global", index: 0 });
    assert.equal(decide([{ allow: ["docker", "ps"] }], ["docker", "ps"], [{ deny: ["docker", "ps"] }]).verdict, "allow");
  });
  it("project rules decide what global rules leave", () => {
    const decision = decide([{ allow: ["docker", "ps"] }], ["make", "test"], [{ deny: ["rm", "**"] }, { ask: ["make", "*"] }]);
    assert.deepEqual(decision, { verdict: "ask", rule: { text: "ask [make, *]", tier: "project", index: 1 }, skipped: null });
  });
  it("the deciding rule's index is its place in its tier", () => {
    const decision = decide([{ deny: ["a"] }, { deny: ["b"] }, { allow: ["c"] }], ["c"]);
    assert.deepEqual(decision.rule, { text: "allow [c]", tier: "global", index: 2 });
  });
  it("a whole-argv regex deny guards an allow after it", () => {
    const rules: CommandRuleEntry[] = [{ deny: { regex: "git push .*--force.*" } }, { allow: ["git", "push", "**"] }];
    assert.equal(decide(rules, ["git", "push", "origin", "main"]).verdict, "allow");
    assert.equal(decide(rules, ["git", "push", "origin", "main", "--force"]).verdict, "deny");
    assert.equal(decide(rules, ["git", "push", "x\ny", "--force"]).verdict, "deny");
  });
});

// ---------------------------------------------------------------------------------------------------
// Requests

describe("checkCommandRequest", () => {
  const refused: [string, readonly string[], string][] = [
    ["empty argv", [], "the command is empty"],
    ["empty program", [""], "the program name is empty"],
    ["empty program with arguments", ["", "x"], "the program name is empty"],
    ["NUL in the program", ["l\0s"], "the program name contains a NUL"],
    ["NUL in an argument", ["ls", "a", "b\0c"], "argument 2 contains a NUL"],
    ["a lone high surrogate", ["echo", "a\ud800"], "argument 1 is not valid Unicode"],
    ["a lone low surrogate", ["echo", "\udc00b"], "argument 1 is not valid Unicode"],
    ["too many arguments", ["x", ...Array.from({ length: MAX_ARGUMENTS }, () => "a")], "4097 arguments; at most 4096"],
    ["too long", ["x", "a".repeat(MAX_REQUEST_BYTES)], "longer than 262144 bytes"],
    ["too long in bytes, not characters", ["x", "é".repeat(MAX_REQUEST_BYTES / 2)], "longer than 262144 bytes"],
    ["not a list", "ls" as unknown as string[], "the command is empty"],
    ["an argument that is not text", ["ls", 5 as unknown as string], "argument 1 is not text"],
    ["a null argument", ["ls", null as unknown as string], "argument 1 is not text"],
  ];
  for (const [title, argv, fragment] of refused) it(`refuses ${title}`, () => assertRequestError(argv, fragment));

  const accepted: [string, readonly string[]][] = [
    ["one program", ["ls"]],
    ["an empty argument", ["echo", ""]],
    ["exactly 4096 arguments", ["x", ...Array.from({ length: MAX_ARGUMENTS - 1 }, () => "a")]],
    ["exactly 256 KiB", ["x", "a".repeat(MAX_REQUEST_BYTES - 1)]],
    ["an emoji (a surrogate pair)", ["echo", "😀"]],
    ["control characters", ["echo", "\x1b[31m\n\t\r\x7f"]],
  ];
  for (const [title, argv] of accepted) it(`accepts ${title}`, () => assert.doesNotThrow(() => checkCommandRequest(argv)));

  it("is checked before any rule, even a rule that would match", () => {
    assert.throws(() => decide([{ ask: ["ls", "**"] }], ["ls", "a\0"]), CommandRequestError);
  });
});

// ---------------------------------------------------------------------------------------------------
// Text

describe("ruleText", () => {
  const cases: [CommandRuleEntry, string][] = [
    [{ allow: ["docker", "ps"] }, "allow [docker, ps]"],
    [{ allow: ["docker", "ps", "**"] }, "allow [docker, ps, **]"],
    [{ ask: ["gh", "pr", { one_of: ["view", "list"] }, "**"] }, "ask [gh, pr, {view|list}, **]"],
    [{ ask: ["gh", "run", "view", "*"] }, "ask [gh, run, view, *]"],
    [{ deny: { regex: "git push .*--force.*" } }, "deny /git push .*--force.*/"],
    [{ allow: ["make", { regex: "test(-[a-z]+)?" }] }, "allow [make, /test(-[a-z]+)?/]"],
    [{ allow: ["echo", { one_of: ["*", "**"] }] }, "allow [echo, {'*'|'**'}]"],
    [{ allow: ["echo", "a b", "", "it's"] }, "allow [echo, 'a b', '', 'it'\\''s']"],
    [{ allow: ["echo", "a, b"] }, "allow [echo, 'a, b']"],
    [{ allow: ["echo", "a|b", "{x}"] }, "allow [echo, 'a|b', '{x}']"],
    [{ allow: ["git", "--git-dir=/x", "-C/tmp"] }, "allow [git, --git-dir=/x, -C/tmp]"],
  ];
  for (const [entry, text] of cases) it(text, () => assert.equal(ruleText(entry), text));
});

describe("exactCommandRule", () => {
  const argvs: string[][] = [
    ["docker", "ps"],
    ["echo", "*", "**", "a b", ""],
    ["git", "-c", "core.pager=x", "log"],
    ["sh", "-c", "rm -rf /"],
  ];
  for (const argv of argvs) {
    it(`matches exactly ${JSON.stringify(argv)}, hazards named`, () => {
      const rule = exactCommandRule("allow", argv);
      assert.equal(decide([rule], argv).verdict, "allow");
      assert.equal(decide([rule], [...argv, "x"]).verdict, "deny");
      assert.equal(decide([rule], argv.slice(0, -1)).verdict, "deny");
    });
  }
  it("writes wildcards as one_of literals", () => {
    assert.deepEqual(exactCommandRule("deny", ["echo", "*", "**"]), { deny: ["echo", { one_of: ["*"] }, { one_of: ["**"] }] });
    assert.equal(decide([exactCommandRule("allow", ["echo", "*"])], ["echo", "x"]).verdict, "deny");
  });
});

describe("decisionText", () => {
  it("allow", () => assert.equal(decisionText(decide([{ allow: ["docker", "ps"] }], ["docker", "ps"])), "allowed by global rule allow [docker, ps]"));
  it("ask", () => assert.equal(decisionText(decide([], ["make"], [{ ask: ["make"] }])), "needs approval (project rule ask [make])"));
  it("deny by a rule", () => assert.equal(decisionText(decide([{ deny: { regex: "rm .*" } }], ["rm", "-rf", "/"])), "denied by global rule deny /rm .*/"));
  it("deny by default", () => assert.equal(decisionText(decide([], ["rm"])), "denied: no rule allows this command"));
  it("a skipped allow says which argument and why", () => {
    assert.equal(
      decisionText(decide([{ allow: ["git", "**"] }], ["git", "-c", "core.pager=x", "log"])),
      "denied: no rule allows this command; global rule allow [git, **] was passed over because argument 1 (-c) is a git option that can run programs or point git at other repositories and config, and an allow rule must name that argument literally",
    );
  });
  it("the program as a hazard", () => {
    assert.equal(
      decisionText(decide([{ allow: { regex: ".*" } }], ["LD_PRELOAD=x.so", "ls"])),
      "denied: no rule allows this command; global rule allow /.*/ was passed over because the program (LD_PRELOAD=x.so) is an environment assignment (like LD_PRELOAD=x.so), which can make a program load other code, and an allow rule must name that argument literally",
    );
  });
  it("hazardText quotes the token like an argument", () => {
    assert.equal(hazardText({ index: 2, token: "a b'", why: "is odd" }), "argument 2 ('a b'\\''') is odd");
  });
});
