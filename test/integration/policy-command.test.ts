/**
 * `cloister policy command -- ARGV`: what hostexec would meet for an argv, from the real config and
 * decision files, without running anything.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { readOr } from "../helpers/host-processes.js";
import { createInstance, type TestInstance } from "../helpers/cloister.js";

describe("cloister policy command", () => {
  let t: TestInstance;

  before(() => {
    t = createInstance("pc");
  });
  after(() => t.teardown());

  it("names the deciding rule for allowed, asked and refused commands", async () => {
    const allowed = await t.cli(["policy", "command", "--", "docker", "ps"]);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.match(allowed.stdout, /^docker ps: allowed by global rule allow \[docker, ps\]/);
    assert.match((await t.cli(["policy", "command", "--", "gh", "pr", "view", "12"])).stdout, /needs approval \(global rule ask \[gh, pr/);
    assert.match((await t.cli(["policy", "command", "--", "rm", "-rf", "/"])).stdout, /denied: no rule allows this command/);
  });

  it("shows hazards and the allow rule they made it pass over, as JSON too", async () => {
    const r = await t.cli(["policy", "command", "--json", "--", "docker", "ps", "-a", "--format", "$(id)"]);
    const result = JSON.parse(r.stdout) as { verdict: string; hazards: string[]; argv: string[] };
    assert.equal(result.verdict, "deny");
    assert.deepEqual(result.argv, ["docker", "ps", "-a", "--format", "$(id)"]);
    const git = JSON.parse((await t.cli(["policy", "command", "--json", "--", "git", "-c", "core.pager=evil", "log"])).stdout) as { hazards: string[] };
    assert.ok(git.hazards.some((h) => h.includes("-c")), JSON.stringify(git.hazards));
  });

  it("refuses an argv that could never run, with a message", async () => {
    const r = await t.cli(["policy", "command", "--", ""]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /cloister: /);
  });
});

describe("cloister policy explain", () => {
  let t: TestInstance;
  before(() => {
    t = createInstance("pe");
  });
  after(() => t.teardown());

  it("names the rule that decides a host, in words and as JSON", async () => {
    const r = await t.cli(["policy", "explain", "registry.npmjs.org"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^registry\.npmjs\.org:443: allowed for project proj, by allow rule registry\.npmjs\.org \(global\)/);
    // QA: a host answered for a cloister's session was "unlisted" with a footnote naming only --allow/--deny.
    assert.match(r.stdout, /\n {2}\(a running cloister's session rules are not included: neither --allow\/--deny given to it nor answers for its session\)\n$/);
    const json = JSON.parse((await t.cli(["policy", "explain", "--json", "registry.npmjs.org:80"])).stdout) as { verdict: string; rule: string };
    assert.deepEqual([json.verdict, json.rule], ["allow", "registry.npmjs.org"]);
  });

  it("a non-public IP literal is refused at once, as the proxy refuses it, with the deliberate opt-in as the remedy (QA: it said a human is asked)", async () => {
    for (const [target, authority, kind] of [["169.254.169.254:80", "169.254.169.254:80", "metadata"], ["127.0.0.1", "127.0.0.1:443", "loopback"], ["10.0.0.1", "10.0.0.1:443", "private"]] as const) {
      const r = await t.cli(["policy", "explain", target]);
      assert.equal(r.code, 0, r.stderr);
      const [first, told = ""] = r.stdout.split("\n");
      assert.equal(first, `${authority}: refused for project proj, no rule matches: the proxy refuses a non-public address at once and never asks a human about it (an approval would open it with one click)`);
      assert.ok(told.startsWith(`  a cloister is told: egress to ${authority} refused: ${authority.replace(/:\d+$/, "")} is not a public address (${kind})`), told);
      assert.ok(told.endsWith(`run \`cloister allow ${authority} --private --project proj\` on the host, or pass \`--allow-private ${authority}\` to cloister run/start.`), told);
      const json = JSON.parse((await t.cli(["policy", "explain", target, "--json"])).stdout) as { verdict: string; unlisted: string | null };
      assert.deepEqual([json.verdict, json.unlisted], ["unlisted", "refuse-non-public"]);
    }
    // A public address is unlisted like any name; an allowed host has no unlisted handling.
    const publicAddress = JSON.parse((await t.cli(["policy", "explain", "203.0.113.7", "--json"])).stdout) as { unlisted: string | null };
    assert.notEqual(publicAddress.unlisted, "refuse-non-public");
    assert.equal((JSON.parse((await t.cli(["policy", "explain", "registry.npmjs.org", "--json"])).stdout) as { unlisted: string | null }).unlisted, null);
  });

  it("allow, deny and the policy commands name a project that exists: outside any repository or known project they write nothing, and the hint names only their own options (QA: --global for policy explain)", async () => {
    const elsewhere = mkdtempSync(join(tmpdir(), "pe-nowhere-"));
    try {
      const commands = [
        { command: ["allow"], operands: ["x.example.com"], global: true },
        { command: ["deny"], operands: ["x.example.com"], global: true },
        { command: ["policy", "explain"], operands: ["x.example.com"], global: false },
        { command: ["policy", "command"], operands: ["--", "git", "push"], global: false },
      ];
      for (const { command, operands, global } of commands) {
        const r = await t.cli([...command, ...operands], { cwd: elsewhere });
        assert.equal(r.code, 125, `${command.join(" ")}: ${r.stderr}`);
        assert.match(r.stderr, /in no git repository nor in a project cloister knows.*--project NAME/);
        assert.equal(r.stderr.includes("--global"), global, r.stderr);
        const help = (await t.cli([...command, "--help"])).stdout;
        for (const option of r.stderr.match(/--[a-z-]+/g) ?? []) assert.ok(help.includes(`${option} `), `${command.join(" ")} has no ${option}, which its hint names`);
      }
      assert.ok(!existsSync(join(t.home, "config", "decisions", "projects", `${basename(elsewhere)}.yaml`)));
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
  });

  it("deny of a request id that no longer waits is refused, not written as a rule for a host of that name", async () => {
    const r = await t.cli(["deny", "614dee76135ea52d123d6645bea808ae"]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /no waiting request matches "614dee76135ea52d123d6645bea808ae" \(answered, timed out or withdrawn already\)/);
    // QA: a full id is no host name; the hint offered a deny rule for "614dee….:443".
    assert.match(r.stderr, /see `cloister approvals` for what waits and the recent decisions/);
    assert.doesNotMatch(r.stderr, /:443|trailing dot/);
    assert.doesNotMatch(readOr(join(t.home, "config", "decisions", "projects", "proj.yaml")), /614dee/);
  });

  it("a host that reads as a start of an id is denied on every port with a trailing dot, which the hint offers (QA: it offered HOST:443, that port only)", async () => {
    const word = await t.cli(["deny", "facade"]);
    assert.equal(word.code, 125);
    assert.match(word.stderr, /to deny the host facade on every port instead, write it with a trailing dot: `cloister deny facade\.`/);
    const dotted = await t.cli(["deny", "facade."]);
    assert.equal(dotted.code, 0, dotted.stderr);
    assert.match(dotted.stderr, /^Denied facade on every port for project proj/);
    assert.match(readOr(join(t.home, "config", "decisions", "projects", "proj.yaml")), /- facade\n/);
    const scoped = await t.cli(["deny", "facade", "--scope", "session"]);
    assert.match(scoped.stderr, /write it with a trailing dot and without --scope \(--project or --global say where\): `cloister deny facade\.`/);
    assert.equal((await t.cli(["deny", "--remove", "facade."])).code, 0);
  });

  it("a rule for every host is refused in the words of the command: deny speaks of denying (QA: it spoke of allowing)", async () => {
    const deny = await t.cli(["deny", "*"]);
    assert.equal(deny.code, 125);
    assert.equal(deny.stderr, `cloister: egress rule "*": a bare '*' would deny every host; name the hosts to deny, e.g. "tracker.example.com" or "*.example.com"; to refuse every host no rule allows, set proxy.unlisted: deny\n`);
    const allow = await t.cli(["allow", "*"]);
    assert.equal(allow.code, 125);
    assert.match(allow.stderr, /^cloister: egress rule "\*": a bare '\*' would allow every host; list the hosts instead/);
    assert.doesNotMatch(readOr(join(t.home, "config", "decisions", "projects", "proj.yaml")), /'\*'/);
  });

  it("given a URL, says to give the host (it said the port was not a number)", async () => {
    const r = await t.cli(["policy", "explain", "https://api.anthropic.com/v1"]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /is a URL; policy explain takes a host.*api\.anthropic\.com:443/);
  });
});
