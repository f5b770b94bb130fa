import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { z } from "zod";

import { keyPath } from "../../src/config/load.js";
import { DEFAULT_HOSTEXEC_RULES, HOSTEXEC_DEFAULTS, HostexecSchema, ProjectHostexecSchema } from "../../src/config/hostexec-schema.js";
import { keysAt } from "../../src/config/schema.js";
import { compileCommandRules, evaluateCommand, type CommandVerdict } from "../../src/policy/commands.js";

// As the config files nest it, so issue paths read as the loader reports them.
const GlobalFile = z.strictObject({ hostexec: HostexecSchema });
const ProjectFile = z.strictObject({ hostexec: ProjectHostexecSchema });

const MiB = 1024 ** 2;

function globalSection(hostexec: unknown) {
  const result = GlobalFile.safeParse({ hostexec });
  assert.ok(result.success, result.success ? "" : JSON.stringify(result.error.issues));
  return result.data.hostexec;
}

/** The problems zod reports for a global `hostexec:` value, as [key path, message]. */
function problems(hostexec: unknown, file: z.ZodType = GlobalFile): [string, string][] {
  const result = file.safeParse({ hostexec });
  assert.ok(!result.success, "expected the config to be refused");
  return result.error.issues.map((issue) => [keyPath(issue.path), issue.message]);
}

function assertProblem(hostexec: unknown, key: string, fragment: string, file: z.ZodType = GlobalFile): void {
  const found = problems(hostexec, file);
  assert.ok(
    found.some(([path, message]) => path === key && message.includes(fragment)),
    `no problem at ${key} containing ${JSON.stringify(fragment)}; got ${JSON.stringify(found)}`,
  );
}

describe("HostexecSchema: defaults", () => {
  const defaults = {
    rules: [...DEFAULT_HOSTEXEC_RULES],
    timeout: 5 * 60_000,
    approval_timeout: 5 * 60_000,
    max_output: 16 * MiB,
    rate_limit: 30,
  };
  for (const [title, value] of [
    ["a missing section", undefined],
    ["an empty section", null],
    ["an empty mapping", {}],
  ] as const) {
    it(title, () => assert.deepEqual(globalSection(value), defaults));
  }
  it("the documented defaults are the parsed defaults", () => {
    assert.deepEqual(HOSTEXEC_DEFAULTS, { timeout: "5m", approval_timeout: "5m", max_output: "16MiB", rate_limit: 30 });
  });
  it("a project section defaults to no rules", () => {
    for (const value of [undefined, null, {}]) {
      const result = ProjectFile.safeParse({ hostexec: value });
      assert.ok(result.success);
      assert.deepEqual(result.data.hostexec, { rules: [] });
    }
  });
  it("the parsed config survives JSON (the effective config is cached as JSON)", () => {
    const parsed = globalSection({ rules: [{ allow: ["make", { regex: "test" }] }, { deny: { regex: "rm .*" } }] });
    assert.deepEqual(JSON.parse(JSON.stringify(parsed)), parsed);
  });
});

describe("HostexecSchema: the default rules", () => {
  const rules = compileCommandRules(globalSection({}).rules);
  const cases: [string[], CommandVerdict][] = [
    [["docker", "ps"], "allow"],
    [["docker", "ps", "-a"], "allow"],
    [["docker", "ps", "-q"], "deny"],
    [["docker", "ps", "-a", "-q"], "deny"],
    [["docker", "run", "alpine"], "deny"],
    [["docker"], "deny"],
    [["gh", "pr", "view", "12"], "ask"],
    [["gh", "pr", "list"], "ask"],
    [["gh", "pr", "status"], "ask"],
    [["gh", "pr", "checks", "12"], "ask"],
    [["gh", "pr", "diff", "12"], "ask"],
    [["gh", "pr", "merge", "12"], "deny"],
    [["gh", "pr", "create"], "deny"],
    [["gh", "issue", "view", "3"], "ask"],
    [["gh", "issue", "list", "--state", "open"], "ask"],
    [["gh", "issue", "close", "3"], "deny"],
    [["gh", "repo", "view"], "ask"],
    [["gh", "repo", "delete", "x"], "deny"],
    [["gh", "run", "list"], "ask"],
    [["gh", "run", "view", "99", "--log"], "ask"],
    [["gh", "run", "rerun", "99"], "deny"],
    [["gh", "api", "/user"], "deny"],
    [["gh", "auth", "token"], "deny"],
    [["git", "status"], "deny"],
    [["sh", "-c", "docker ps"], "deny"],
  ];
  for (const [argv, verdict] of cases) {
    it(`${JSON.stringify(argv)} → ${verdict}`, () => assert.equal(evaluateCommand({ global: rules, project: [] }, argv).verdict, verdict));
  }
});

describe("HostexecSchema: accepted settings", () => {
  const cases: [string, Record<string, unknown>, Record<string, unknown>][] = [
    ["durations", { timeout: "90s", approval_timeout: "1h" }, { timeout: 90_000, approval_timeout: 3_600_000 }],
    ["compound durations", { timeout: "1h30m" }, { timeout: 5_400_000 }],
    ["a size", { max_output: "64KiB" }, { max_output: 65_536 }],
    ["a size in bytes", { max_output: 4096 }, { max_output: 4096 }],
    ["an SI size", { max_output: "1MB" }, { max_output: 1_000_000 }],
    ["the largest size", { max_output: "1GiB" }, { max_output: 1024 ** 3 }],
    ["a rate limit", { rate_limit: 1 }, { rate_limit: 1 }],
    ["a rate limit as text", { rate_limit: "10000" }, { rate_limit: 10_000 }],
    ["an empty rules key", { rules: null }, { rules: [] }],
    ["an empty rule list", { rules: [] }, { rules: [] }],
    ["the longest timeout", { timeout: "24d" }, { timeout: 24 * 86_400_000 }],
  ];
  for (const [title, input, expected] of cases) {
    it(title, () => {
      const parsed = globalSection(input) as Record<string, unknown>;
      for (const [key, value] of Object.entries(expected)) assert.deepEqual(parsed[key], value, key);
    });
  }

  it("rules come out as written, in order", () => {
    const rules = [
      { allow: ["docker", "ps"] },
      { allow: ["docker", "ps", "**"] },
      { ask: ["gh", "pr", { one_of: ["view", "list", "status", "checks", "diff"] }, "**"] },
      { ask: ["gh", "run", "view", "*"] },
      { deny: { regex: "git push .*--force.*" } },
      { allow: ["make", { regex: "test(-[a-z]+)?" }] },
      { allow: ["echo", "", { one_of: ["*"] }] },
    ];
    assert.deepEqual(globalSection({ rules }).rules, rules);
  });

  it("a project's rules", () => {
    const result = ProjectFile.safeParse({ hostexec: { rules: [{ ask: ["make", "*"] }] } });
    assert.ok(result.success);
    assert.deepEqual(result.data.hostexec.rules, [{ ask: ["make", "*"] }]);
  });
});

describe("HostexecSchema: refused rules, each at its own key", () => {
  const cases: [string, unknown, string, string][] = [
    ["rules as a mapping", { rules: { allow: ["x"] } }, "hostexec.rules", "expected a list of rules, found a mapping"],
    ["rules as text", { rules: "allow docker" }, "hostexec.rules", 'expected a list of rules, found text "allow docker"'],
    ["a rule as text", { rules: ["allow docker ps"] }, "hostexec.rules[0]", 'expected a rule such as {allow: [docker, ps]}, {ask: [...]} or {deny: [...]}, found text "allow docker ps"'],
    ["an empty rule", { rules: [null] }, "hostexec.rules[0]", "found an empty value"],
    ["a rule with no verdict", { rules: [{}] }, "hostexec.rules[0]", "exactly one of allow, ask or deny (found none)"],
    ["a rule with two verdicts", { rules: [{ allow: ["x"], deny: ["x"] }] }, "hostexec.rules[0]", "(found allow and deny)"],
    ["a rule with three verdicts", { rules: [{ allow: ["x"], ask: ["x"], deny: ["x"] }] }, "hostexec.rules[0]", "(found allow and ask and deny)"],
    ["an empty verdict", { rules: [{ allow: null }] }, "hostexec.rules[0].allow", "found an empty value"],
    ["a verdict as text", { rules: [{ deny: "git" }] }, "hostexec.rules[0].deny", 'a list of argument patterns like [docker, ps, "**"], or {regex: \'PATTERN\'}, found text "git"'],
    ["an empty list", { rules: [{ allow: [] }] }, "hostexec.rules[0].allow", "cannot be empty"],
    ['"*" as the program', { rules: [{ allow: ["*", "ps"] }] }, "hostexec.rules[0].allow[0]", '"*" cannot stand for the program'],
    ['"**" as the program', { rules: [{ ask: ["**"] }] }, "hostexec.rules[0].ask[0]", '"**" cannot stand for the program'],
    ["a regex as the program", { rules: [{ allow: [{ regex: "docker|podman" }, "ps"] }] }, "hostexec.rules[0].allow[0]", "a regex cannot stand for the program"],
    ["a number", { rules: [{ allow: ["head", "-n", 10] }] }, "hostexec.rules[0].allow[2]", "found the number 10"],
    ["a boolean", { rules: [{ allow: ["x", true] }] }, "hostexec.rules[0].allow[1]", "found true"],
    ["a list inside the list", { rules: [{ allow: ["x", ["y"]] }] }, "hostexec.rules[0].allow[1]", "found a list"],
    ["a mapping of unknown shape", { rules: [{ allow: ["x", { literal: "y" }] }] }, "hostexec.rules[0].allow[1]", "expected an argument pattern"],
    ["a number in one_of", { rules: [{ allow: ["x", { one_of: ["a", 1] }] }] }, "hostexec.rules[0].allow[1].one_of[1]", 'write it in quotes, "1"'],
    ["one_of as text", { rules: [{ allow: ["x", { one_of: "a" }] }] }, "hostexec.rules[0].allow[1].one_of", 'expected a list of arguments, found text "a"'],
    ["an empty one_of", { rules: [{ allow: ["x", { one_of: [] }] }] }, "hostexec.rules[0].allow[1].one_of", "at least one value"],
    ["one_of with regex", { rules: [{ allow: ["x", { one_of: ["a"], regex: "b" }] }] }, "hostexec.rules[0].allow[1].regex", 'unknown key "regex"'],
    ["regex flags", { rules: [{ allow: ["x", { regex: "a", flags: "i" }] }] }, "hostexec.rules[0].allow[1].flags", 'unknown key "flags"'],
    ["a regex that is not text", { rules: [{ allow: ["x", { regex: 5 }] }] }, "hostexec.rules[0].allow[1].regex", "expected a regular expression, found the number 5"],
    ["an invalid argument regex", { rules: [{}, {}, { allow: ["x", { regex: "(" }] }] }, "hostexec.rules[2].allow[1].regex", "Invalid regular expression"],
    ["an invalid whole-argv regex", { rules: [{ deny: { regex: "git [push" } }] }, "hostexec.rules[0].deny.regex", "Invalid regular expression"],
    ["an anchor-escaping regex", { rules: [{ deny: { regex: "a)|(b" } }] }, "hostexec.rules[0].deny.regex", "Invalid regular expression"],
    ["a misspelt regex key", { rules: [{ deny: { regx: "a" } }] }, "hostexec.rules[0].deny.regx", 'unknown key "regx"'],
    ["NUL in a literal", { rules: [{ allow: ["echo", "a\0"] }] }, "hostexec.rules[0].allow[1]", "NUL"],
    ["NUL in a regex", { rules: [{ deny: { regex: "a\0" } }] }, "hostexec.rules[0].deny.regex", "NUL"],
    ["NUL in one_of", { rules: [{ ask: ["x", { one_of: ["\0"] }] }] }, "hostexec.rules[0].ask[1].one_of[0]", "NUL"],
    ["an empty program", { rules: [{ allow: [""] }] }, "hostexec.rules[0].allow[0]", "the program name cannot be empty"],
  ];
  for (const [title, hostexec, key, fragment] of cases) it(`${title} → ${key}`, () => assertProblem(hostexec, key, fragment));

  it("the same checks apply to project rules", () => {
    assertProblem({ rules: [{ allow: ["x", { regex: "(" }] }] }, "hostexec.rules[0].allow[1].regex", "Invalid regular expression", ProjectFile);
    assertProblem({ rules: [{ allow: ["**"] }] }, "hostexec.rules[0].allow[0]", "cannot stand for the program", ProjectFile);
  });

  it("every bad element of a rule list is reported", () => {
    const found = problems({ rules: [{ allow: ["x", 1, { one_of: [2] }] }, { ask: { regex: "(" } }] });
    assert.deepEqual(
      found.map(([key]) => key),
      ["hostexec.rules[0].allow[1]", "hostexec.rules[0].allow[2].one_of[0]", "hostexec.rules[1].ask.regex"],
    );
  });

  it("a misspelt verdict is an unknown key, with valid keys for a did-you-mean", () => {
    const result = GlobalFile.safeParse({ hostexec: { rules: [{ alow: ["x"] }] } });
    assert.ok(!result.success);
    assert.deepEqual(
      result.error.issues.map((issue) => [issue.code, keyPath(issue.path)]),
      [["unrecognized_keys", "hostexec.rules[0]"]],
    );
    assert.deepEqual(keysAt(GlobalFile, ["hostexec", "rules", 0]), ["allow", "ask", "deny"]);
  });
});

describe("HostexecSchema: refused settings", () => {
  const cases: [string, unknown, string, string][] = [
    ["an unknown key", { rule: [] }, "hostexec", ""],
    ["a section that is a list", [], "hostexec", "expected a mapping of keys, found a list"],
    ["a zero timeout", { timeout: "0s" }, "hostexec.timeout", "must be more than 0"],
    ["a timeout without a unit", { timeout: 90 }, "hostexec.timeout", "needs a unit"],
    ["a timeout beyond setTimeout", { timeout: "25d" }, "hostexec.timeout", "at most 24 days"],
    ["a timeout of none", { timeout: "none" }, "hostexec.timeout", "is not a duration"],
    ["a negative timeout", { timeout: "-5m" }, "hostexec.timeout", "negative"],
    ["a boolean timeout", { timeout: true }, "hostexec.timeout", "expected a duration like 90s, 5m or 1h, found true"],
    ["a zero approval timeout", { approval_timeout: "0m" }, "hostexec.approval_timeout", "must be more than 0"],
    ["an approval timeout that is junk", { approval_timeout: "soon" }, "hostexec.approval_timeout", "is not a duration"],
    ["a zero output limit", { max_output: 0 }, "hostexec.max_output", "must be more than 0"],
    ["an output limit too large", { max_output: "2GiB" }, "hostexec.max_output", "at most 1GiB"],
    ["an output limit that is junk", { max_output: "lots" }, "hostexec.max_output", "is not a size"],
    ["an output limit that is a list", { max_output: [] }, "hostexec.max_output", "found a list"],
    ["a zero rate limit", { rate_limit: 0 }, "hostexec.rate_limit", "from 1 to 10000"],
    ["a rate limit too large", { rate_limit: 10_001 }, "hostexec.rate_limit", "from 1 to 10000"],
    ["a fractional rate limit", { rate_limit: 1.5 }, "hostexec.rate_limit", "from 1 to 10000"],
    ["a negative rate limit", { rate_limit: -1 }, "hostexec.rate_limit", "from 1 to 10000"],
    ["a rate limit with a unit", { rate_limit: "30/m" }, "hostexec.rate_limit", "from 1 to 10000"],
  ];
  for (const [title, hostexec, key, fragment] of cases) it(`${title} → ${key}`, () => assertProblem(hostexec, key, fragment));

  it("a project cannot set the limits", () => {
    for (const key of ["timeout", "approval_timeout", "max_output", "rate_limit"]) {
      const result = ProjectFile.safeParse({ hostexec: { [key]: "5m" } });
      assert.ok(!result.success);
      assert.deepEqual(result.error.issues[0]?.code, "unrecognized_keys");
    }
  });

  it("the section's keys are known to the loader's did-you-mean", () => {
    assert.deepEqual(keysAt(GlobalFile, ["hostexec"]), ["rules", "timeout", "approval_timeout", "max_output", "rate_limit"]);
    assert.deepEqual(keysAt(ProjectFile, ["hostexec"]), ["rules"]);
  });
});
