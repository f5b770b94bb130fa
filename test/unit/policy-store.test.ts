import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { ConfigError } from "../../src/config/load.js";
import { resolvePaths } from "../../src/config/paths.js";
import { CloisterError } from "../../src/errors.js";
import type { AuditLog } from "../../src/audit/log.js";
import { Egress, loadPolicy } from "../../src/guardian/egress.js";
import { SessionDecisionStore } from "../../src/guardian/session-decisions.js";
import { decisionsFile, PolicyStore, recordCommandDecision, recordDecision, removeDecision, sessionRuleSet } from "../../src/guardian/policy-store.js";
import { decide, emptyPolicy } from "../../src/policy/egress.js";
import { canonicalHost } from "../../src/policy/hosts.js";

const base = mkdtempSync(join(tmpdir(), "cps-"));
after(() => rmSync(base, { recursive: true, force: true }));
let counter = 0;
function instance() {
  return resolvePaths({ CLOISTER_HOME: join(base, String(counter++)) });
}
const host = (name: string) => canonicalHost(name);

describe("policy store: tiers from config and decision files", () => {
  it("builds the global tier from the built-in allowlist and a project's tier from its files", async () => {
    const paths = instance();
    mkdirSync(paths.projectConfigDir, { recursive: true });
    writeFileSync(join(paths.projectConfigDir, "shop.yaml"), "proxy:\n  allow: [api.shop.example]\n  deny: [registry.npmjs.org]\n");
    const store = await PolicyStore.load(paths, ["shop"]);
    const policy = store.policyFor("shop", emptyPolicy().session);
    assert.equal(decide(policy, host("api.anthropic.com"), 443).rule?.tier, "global");
    assert.equal(decide(policy, host("api.shop.example"), 443).verdict, "allow");
    // A project's deny beats the global allow.
    assert.equal(decide(policy, host("registry.npmjs.org"), 443).verdict, "deny");
  });

  it("refuses to decide for a project whose tier was never loaded", async () => {
    const store = await PolicyStore.load(instance());
    assert.throws(() => store.policyFor("other", emptyPolicy().session), /not loaded/);
  });

  it("names the file, line and key of a bad decision file", async () => {
    const paths = instance();
    const file = decisionsFile(paths, "global");
    mkdirSync(join(file, ".."), { recursive: true });
    writeFileSync(file, "proxy:\n  allow:\n    - '*.com'\n");
    await assert.rejects(PolicyStore.load(paths), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.file, file);
      assert.equal(error.line, 3);
      assert.equal(error.key, "proxy.allow[0]");
      return true;
    });
  });

  it("names every problem of the config and decision files of both tiers at once, file by file (QA: policy explain named only the global file's)", async () => {
    const paths = instance();
    mkdirSync(paths.projectConfigDir, { recursive: true });
    writeFileSync(paths.globalConfigFile, "proxy:\n  alow: []\n");
    const projectFile = join(paths.projectConfigDir, "shop.yaml");
    writeFileSync(projectFile, "proxy:\n  deny: [a.example]\nproxy:\n  deny: [b.example]\n");
    const projectDecisions = decisionsFile(paths, "project", "shop");
    mkdirSync(join(projectDecisions, ".."), { recursive: true });
    writeFileSync(projectDecisions, "proxy:\n  allow:\n    - '*.com'\n");
    await assert.rejects(PolicyStore.load(paths, ["shop"]), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.problems.map((p) => [p.file, p.line, p.key]), [[paths.globalConfigFile, 2, "proxy.alow"], [projectFile, 3, ""], [projectDecisions, 3, "proxy.allow[0]"]]);
      return true;
    });
    writeFileSync(paths.globalConfigFile, "");
    const store = await PolicyStore.load(paths);
    await assert.rejects(store.ensureProject("shop"), (error: unknown) => error instanceof ConfigError && error.problems.length === 2, "a project's tier loaded later names both of its files' problems too");
  });
});

describe("recordDecision: the guardian's writes", () => {
  it("adds a rule once, atomically, 0600, with the canonical text, and it takes effect on the next load", async () => {
    const paths = instance();
    assert.equal(await recordDecision(paths, "project", "shop", "allow", "API.Example.com."), true);
    assert.equal(await recordDecision(paths, "project", "shop", "allow", "api.example.com"), false, "the same rule again is not added");
    assert.equal(await recordDecision(paths, "project", "shop", "allow", { rule: "db.internal:5432", private: true }), true);
    const file = decisionsFile(paths, "project", "shop");
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const text = readFileSync(file, "utf8");
    assert.match(text, /^# Written by the cloister guardian/);
    assert.match(text, /- api\.example\.com\n/);
    assert.match(text, /rule: db\.internal:5432\n\s+private: true/);
    const policy = (await PolicyStore.load(paths, ["shop"])).policyFor("shop", emptyPolicy().session);
    assert.equal(decide(policy, host("api.example.com"), 443).verdict, "allow");
    assert.equal(decide(policy, host("db.internal"), 5432).allowPrivate, true);
  });

  it("keeps every one of many decisions made at once (none lost to a read-change-write race)", async () => {
    const paths = instance();
    const hosts = Array.from({ length: 12 }, (_, i) => `bad${i}.example.com`);
    const results = await Promise.all(hosts.flatMap((name, i) => [recordDecision(paths, "global", undefined, "deny", name), recordCommandDecision(paths, "global", undefined, { allow: ["tool", String(i)] })]));
    assert.ok(results.every(Boolean));
    const policy = (await PolicyStore.load(paths, ["shop"])).policyFor("shop", emptyPolicy().session);
    for (const name of hosts) assert.equal(decide(policy, host(name), 443).verdict, "deny", name);
    const text = readFileSync(decisionsFile(paths, "global"), "utf8");
    assert.equal(text.match(/bad\d+\.example\.com/g)?.length, hosts.length);
    assert.equal(text.match(/- tool\n/g)?.length, hosts.length);
  });

  it("keeps what a person wrote in the file: comments, flow lists, an empty key", async () => {
    const paths = instance();
    const file = decisionsFile(paths, "project", "shop");
    mkdirSync(join(file, ".."), { recursive: true });
    const handWritten = "# my notes: db access for team X\nproxy:\n  allow: [keep.example.com] # needed by tests\n  deny:\n";
    writeFileSync(file, handWritten);
    assert.equal(await recordDecision(paths, "project", "shop", "deny", "bad.example.com"), true);
    assert.equal(await recordDecision(paths, "project", "shop", "allow", "new.example.com"), true);
    assert.equal(await removeDecision(paths, "project", "shop", "allow", "keep.example.com"), true);
    assert.equal(await removeDecision(paths, "project", "shop", "allow", "keep.example.com"), false);
    const text = readFileSync(file, "utf8");
    assert.match(text, /^# my notes: db access for team X\n/);
    assert.match(text, /# needed by tests/);
    assert.doesNotMatch(text, /keep\.example\.com/);
    const policy = (await PolicyStore.load(paths, ["shop"])).policyFor("shop", emptyPolicy().session);
    assert.equal(decide(policy, host("bad.example.com"), 443).verdict, "deny");
    assert.equal(decide(policy, host("new.example.com"), 443).verdict, "allow");
  });

  it("refuses to edit a decision file that does not load, naming it, and leaves it as it was", async () => {
    const paths = instance();
    const file = decisionsFile(paths, "global");
    mkdirSync(join(file, ".."), { recursive: true });
    writeFileSync(file, "proxy:\n  alow: [a.example.com]\n");
    await assert.rejects(recordDecision(paths, "global", undefined, "allow", "b.example.com"), (error: unknown) => error instanceof ConfigError && error.file === file && error.key === "proxy.alow");
    assert.equal(readFileSync(file, "utf8"), "proxy:\n  alow: [a.example.com]\n");
  });

  it("never persists a rule that does not parse", async () => {
    const paths = instance();
    await assert.rejects(recordDecision(paths, "global", undefined, "allow", "*"));
    assert.throws(() => readFileSync(decisionsFile(paths, "global")), /ENOENT/);
  });

  it("refuses a project name that is not a safe file name", async () => {
    await assert.rejects(recordDecision(instance(), "project", "../x", "deny", "example.com"), CloisterError);
  });
});

describe("sessionRuleSet: --allow, --deny, --allow-private, --resolve", () => {
  it("parses each list, marking --allow-private rules", () => {
    const rules = sessionRuleSet({ allow: ["a.example.com"], deny: ["b.example.com"], allowPrivate: ["db.test:5432"], resolve: { "db.test": "127.0.0.1" } });
    assert.deepEqual(rules.allow.map((r) => [r.text, r.private]), [["a.example.com", false], ["db.test:5432", true]]);
    assert.deepEqual(rules.deny.map((r) => r.text), ["b.example.com"]);
  });

  it("names the option (the CLI says its flag) and the rule in its error", () => {
    assert.throws(() => sessionRuleSet({ allow: [], deny: ["*.co.uk"], allowPrivate: [], resolve: {} }), /options\.deny \*\.co\.uk: /);
    // A --deny of every host is refused in words about denying (QA: it spoke of allowing).
    assert.throws(() => sessionRuleSet({ allow: [], deny: ["*"], allowPrivate: [], resolve: {} }), /^CloisterError: options\.deny \*: .*a bare '\*' would deny every host; .*proxy\.unlisted: deny$/);
    assert.throws(() => sessionRuleSet({ allow: [], deny: [], allowPrivate: [], resolve: { "api.test": "nope" } }), /options\.resolve api\.test=nope: .*not an IP address/);
    assert.throws(() => sessionRuleSet({ allow: [], deny: [], allowPrivate: [], resolve: { "10.0.0.1": "10.0.0.2" } }), /only names can be mapped/);
  });
});

describe("the guardian's egress policy while the configuration does not load", () => {
  const egressOf = async (paths: ReturnType<typeof instance>) =>
    new Egress(paths, await loadPolicy(paths), {
      audit: { append: () => undefined } as unknown as AuditLog,
      sessionDecisions: new SessionDecisionStore(join(paths.stateDir, "sessions")),
      askDomain: () => Promise.reject(new Error("no human here")),
    });

  it("names every problem it started on, and after a failed reload those found then, not those fixed since", async () => {
    const paths = instance();
    const decisions = decisionsFile(paths, "global");
    mkdirSync(join(decisions, ".."), { recursive: true });
    writeFileSync(paths.globalConfigFile, "proxy:\n  alow: []\n");
    writeFileSync(decisions, "proxy:\n  deny: 7\n");
    const egress = await egressOf(paths);
    assert.equal(egress.currentStore, undefined);
    assert.deepEqual(egress.policyProblems?.map((p) => [p.file, p.line, p.key]), [[paths.globalConfigFile, 2, "proxy.alow"], [decisions, 2, "proxy.deny"]]);
    // Every problem, as a launch's warning and the guardian's log give it (they named the first only).
    assert.match(egress.policyError ?? "", /^2 problems in 2 config files: .*config\.yaml:2:3: proxy\.alow: unknown key; .*:2:9: proxy\.deny: /);

    writeFileSync(decisions, "");
    await assert.rejects(egress.reload(), ConfigError);
    assert.deepEqual(egress.policyProblems?.map((p) => p.file), [paths.globalConfigFile]);

    writeFileSync(paths.globalConfigFile, "");
    await egress.reload();
    assert.equal(egress.policyError, undefined);
    assert.equal(egress.policyProblems, undefined);
    // With a policy in force, a reload that fails keeps it, and egress is not refused.
    writeFileSync(paths.globalConfigFile, "proxy:\n  alow: []\n");
    await assert.rejects(egress.reload(), ConfigError);
    assert.ok(egress.currentStore);
    assert.equal(egress.policyError, undefined);
  });

  it("an error that is not about problems (a file it may not read) is the reason, without problems", async () => {
    const paths = instance();
    mkdirSync(paths.globalConfigFile, { recursive: true });
    const egress = await egressOf(paths);
    assert.match(egress.policyError ?? "", /config\.yaml/);
    assert.equal(egress.policyProblems, undefined);
  });
});
