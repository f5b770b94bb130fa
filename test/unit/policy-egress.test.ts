import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { TIERS, decide, denyOverriding, emptyPolicy, refusalMessage, type Decision, type Policy, type Tier } from "../../src/policy/egress.js";
import { canonicalHost, parseAuthority } from "../../src/policy/hosts.js";
import { parseRule } from "../../src/policy/rules.js";

interface TierRules {
  allow?: string[];
  deny?: string[];
  /** Allow rules that opt in to non-public addresses. */
  allowPrivate?: string[];
}

/** A policy from rule texts, tier by tier; private allow rules come after the plain ones. */
function policy(rules: Partial<Record<Tier, TierRules>>): Policy {
  const result = emptyPolicy();
  for (const tier of TIERS) {
    const given = rules[tier] ?? {};
    result[tier] = {
      allow: [...(given.allow ?? []).map((t) => parseRule(t)), ...(given.allowPrivate ?? []).map((t) => parseRule(t, { private: true }))],
      deny: (given.deny ?? []).map((t) => parseRule(t)),
    };
  }
  return result;
}

function decideFor(p: Policy, authority: string): Decision {
  const { host, port } = parseAuthority(authority);
  return decide(p, host, port);
}

describe("emptyPolicy", () => {
  it("has every tier, empty, and a fresh object each time", () => {
    const a = emptyPolicy();
    assert.deepEqual(a, { global: { allow: [], deny: [] }, project: { allow: [], deny: [] }, session: { allow: [], deny: [] } });
    assert.notEqual(a, emptyPolicy());
    assert.notEqual(a.global, emptyPolicy().global);
  });

  it("leaves everything unlisted", () => {
    for (const authority of ["example.com:443", "127.0.0.1:80", "[::1]:443", "169.254.169.254:80"]) {
      assert.deepEqual(decideFor(emptyPolicy(), authority), { verdict: "unlisted", allowPrivate: false });
    }
  });
});

describe("decide: allow, deny, unlisted", () => {
  const p = policy({
    global: { allow: ["api.anthropic.com", "*.npmjs.org"], deny: ["evil.npmjs.org"] },
    project: { allow: ["example.com:8443", "db.internal:5432"] },
    session: { allow: ["*.example.com"] },
  });
  const cases: [string, Decision][] = [
    ["api.anthropic.com:443", { verdict: "allow", rule: { text: "api.anthropic.com", tier: "global", list: "allow" }, allowPrivate: false }],
    ["api.anthropic.com:80", { verdict: "allow", rule: { text: "api.anthropic.com", tier: "global", list: "allow" }, allowPrivate: false }],
    ["api.anthropic.com:22", { verdict: "unlisted", allowPrivate: false }],
    ["registry.npmjs.org:443", { verdict: "allow", rule: { text: "*.npmjs.org", tier: "global", list: "allow" }, allowPrivate: false }],
    ["npmjs.org:443", { verdict: "unlisted", allowPrivate: false }],
    ["evil.npmjs.org:443", { verdict: "deny", rule: { text: "evil.npmjs.org", tier: "global", list: "deny" }, allowPrivate: false }],
    ["example.com:8443", { verdict: "allow", rule: { text: "example.com:8443", tier: "project", list: "allow" }, allowPrivate: false }],
    ["example.com:443", { verdict: "unlisted", allowPrivate: false }],
    ["www.example.com:443", { verdict: "allow", rule: { text: "*.example.com", tier: "session", list: "allow" }, allowPrivate: false }],
    ["db.internal:5432", { verdict: "allow", rule: { text: "db.internal:5432", tier: "project", list: "allow" }, allowPrivate: false }],
    ["evilexample.com:443", { verdict: "unlisted", allowPrivate: false }],
    ["api.anthropic.com.evil.net:443", { verdict: "unlisted", allowPrivate: false }],
  ];
  for (const [authority, expected] of cases) {
    it(`${authority}: ${expected.verdict}`, () => assert.deepEqual(decideFor(p, authority), expected));
  }
});

describe("decide: deny beats allow across all tiers", () => {
  const pairs: [Tier, Tier][] = TIERS.flatMap((denyTier) => TIERS.map((allowTier): [Tier, Tier] => [denyTier, allowTier]));
  for (const [denyTier, allowTier] of pairs) {
    it(`a ${denyTier} deny wins over a ${allowTier} allow`, () => {
      const p = emptyPolicy();
      p[denyTier] = { ...p[denyTier], deny: [parseRule("*.example.com")] };
      p[allowTier] = { ...p[allowTier], allow: [parseRule("www.example.com")] };
      assert.deepEqual(decideFor(p, "www.example.com:443"), {
        verdict: "deny",
        rule: { text: "*.example.com", tier: denyTier, list: "deny" },
        allowPrivate: false,
      });
    });
  }

  it("also over an allow that opts in to private addresses and over an IP rule", () => {
    const p = policy({ global: { deny: ["10.0.0.1:5432", "db.internal:5432"] }, session: { allow: ["10.0.0.1:5432"], allowPrivate: ["db.internal:5432"] } });
    assert.equal(decideFor(p, "10.0.0.1:5432").verdict, "deny");
    assert.equal(decideFor(p, "db.internal:5432").verdict, "deny");
    assert.equal(decideFor(p, "db.internal:5432").allowPrivate, false);
  });

  it("a deny only applies to its own ports", () => {
    const p = policy({ global: { deny: ["example.com:80"] }, project: { allow: ["example.com"] } });
    assert.equal(decideFor(p, "example.com:80").verdict, "deny");
    assert.equal(decideFor(p, "example.com:443").verdict, "allow");
  });

  it("a deny without a port covers every port of its host, in any tier, over an allow naming the port", () => {
    for (const tier of TIERS) {
      const p = policy({ global: { allow: ["*.example.com:22,8080", "x.worse.example.com:5432"] } });
      p[tier] = { ...p[tier], deny: [parseRule("bad.example.com"), parseRule("*.worse.example.com")] };
      for (const target of ["bad.example.com:8080", "bad.example.com:22", "bad.example.com:443", "x.worse.example.com:5432"]) {
        assert.deepEqual(decideFor(p, target).rule, { text: target.startsWith("bad") ? "bad.example.com" : "*.worse.example.com", tier, list: "deny" }, `${tier}: ${target}`);
      }
      assert.equal(decideFor(p, "good.example.com:8080").verdict, "allow", "other hosts under the allow are not touched");
    }
  });

  it("reports the first deny in tier order global, project, session", () => {
    const p = policy({ session: { deny: ["www.example.com"] }, project: { deny: ["*.example.com"] }, global: { deny: ["*.example.com:443"] } });
    assert.deepEqual(decideFor(p, "www.example.com:443").rule, { text: "*.example.com:443", tier: "global", list: "deny" });
    assert.deepEqual(decideFor(p, "www.example.com:80").rule, { text: "*.example.com", tier: "project", list: "deny" });
    assert.equal(decideFor(policy({ session: { deny: ["*.example.com", "a.example.com"] } }), "a.example.com:443").rule?.text, "*.example.com", "and within a tier, list order");
  });
});

describe("decide: which allow rule is reported, and allowPrivate", () => {
  it("reports the first allow in tier order when none opts in", () => {
    const p = policy({ session: { allow: ["www.example.com"] }, project: { allow: ["*.example.com"] } });
    assert.deepEqual(decideFor(p, "www.example.com:443"), {
      verdict: "allow",
      rule: { text: "*.example.com", tier: "project", list: "allow" },
      allowPrivate: false,
    });
  });

  it("prefers a matching allow rule that opts in, in any tier", () => {
    const p = policy({ global: { allow: ["*.internal.example.com"] }, session: { allowPrivate: ["db.internal.example.com:80,443,5432"] } });
    assert.deepEqual(decideFor(p, "db.internal.example.com:443"), {
      verdict: "allow",
      rule: { text: "db.internal.example.com:80,443,5432", tier: "session", list: "allow" },
      allowPrivate: true,
    });
    assert.deepEqual(decideFor(p, "web.internal.example.com:443"), {
      verdict: "allow",
      rule: { text: "*.internal.example.com", tier: "global", list: "allow" },
      allowPrivate: false,
    });
  });

  it("an opt-in rule that does not match the port does not count", () => {
    const p = policy({ global: { allow: ["db.example.com"] }, project: { allowPrivate: ["db.example.com:5432"] } });
    assert.deepEqual(decideFor(p, "db.example.com:443"), {
      verdict: "allow",
      rule: { text: "db.example.com", tier: "global", list: "allow" },
      allowPrivate: false,
    });
    assert.equal(decideFor(p, "db.example.com:5432").allowPrivate, true);
  });

  it("a private wildcard opts in for all its subdomains", () => {
    const p = policy({ project: { allowPrivate: ["*.svc.cluster.local:8080"] } });
    assert.deepEqual(decideFor(p, "api.ns.svc.cluster.local:8080"), {
      verdict: "allow",
      rule: { text: "*.svc.cluster.local:8080", tier: "project", list: "allow" },
      allowPrivate: true,
    });
  });
});

describe("decide: IP literal hosts", () => {
  const p = policy({
    global: { allow: ["*.example.com", "localhost:3000"], allowPrivate: ["db.example.com"] },
    project: { allow: ["10.1.2.3:5432", "[2001:db8::1]:443", "8.8.8.8:53"] },
  });

  it("are allowed only by an IP rule naming that address, which opts in for it", () => {
    assert.deepEqual(decideFor(p, "10.1.2.3:5432"), { verdict: "allow", rule: { text: "10.1.2.3:5432", tier: "project", list: "allow" }, allowPrivate: true });
    assert.deepEqual(decideFor(p, "[2001:db8::1]:443"), { verdict: "allow", rule: { text: "[2001:db8::1]:443", tier: "project", list: "allow" }, allowPrivate: true });
    assert.deepEqual(decideFor(p, "8.8.8.8:53"), { verdict: "allow", rule: { text: "8.8.8.8:53", tier: "project", list: "allow" }, allowPrivate: true });
  });

  const refused = [
    "10.1.2.3:443", // the named address, another port
    "10.1.2.4:5432", // another address
    "[::ffff:10.1.2.3]:5432", // the IPv6 spelling of the named address is another address
    "127.0.0.1:3000", // localhost's address is not localhost
    "127.1:3000",
    "2130706433:3000",
    "0x7f000001:3000",
    "[::1]:3000",
    "[::ffff:127.0.0.1]:3000",
    "169.254.169.254:80",
    "0xa9fea9fe:80",
    "[fd00:ec2::254]:80",
    "0:443",
    "93.184.216.34:443", // a public address, no rule
  ];
  for (const authority of refused) {
    it(`${authority} is unlisted`, () => assert.deepEqual(decideFor(p, authority), { verdict: "unlisted", allowPrivate: false }));
  }

  it("the other spellings of a named address are that address", () => {
    for (const authority of ["10.1.2.3:5432", "10.1.515:5432", "0xa010203:5432", "167838211:5432", "012.1.2.3:5432"]) {
      assert.equal(decideFor(p, authority).verdict, "allow", authority);
    }
  });
});

describe("refusalMessage", () => {
  const p = policy({
    global: { deny: ["*.evil.example"] },
    project: { deny: ["tracker.example.com"], allow: ["api.example.com"] },
    session: { deny: ["ads.example.com:443"] },
  });

  it("unlisted name: the host:port, not on any allowlist, and both ways to allow it", () => {
    const host = canonicalHost("Unknown.Example.org.");
    const message = refusalMessage(decide(p, host, 8443), host, 8443);
    assert.equal(
      message,
      "egress to unknown.example.org:8443 refused: unknown.example.org:8443 is not on any allowlist. To allow it, run `cloister allow unknown.example.org:8443 --project PROJECT` on the host, or pass `--allow unknown.example.org:8443` to cloister run/start.",
    );
  });

  it("unlisted IPv4 literal: says an address needs a rule naming it", () => {
    const host = canonicalHost("127.1");
    const message = refusalMessage(decide(p, host, 80), host, 80);
    assert.match(message, /^egress to 127\.0\.0\.1:80 refused: /);
    assert.ok(message.includes("an IP address is reached only when a rule names that address"));
    assert.ok(message.includes("`cloister allow 127.0.0.1:80 --project PROJECT`"));
    assert.ok(message.includes("`--allow 127.0.0.1:80`"));
  });

  it("unlisted IPv6 literal: brackets, quoted for the shell", () => {
    const host = canonicalHost("[::ffff:127.0.0.1]");
    const message = refusalMessage(decide(p, host, 443), host, 443);
    assert.match(message, /^egress to \[::ffff:7f00:1\]:443 refused: /);
    assert.ok(message.includes("`cloister allow '[::ffff:7f00:1]:443' --project PROJECT`"));
    assert.ok(message.includes("`--allow '[::ffff:7f00:1]:443'`"));
  });

  it("unlisted non-public IP literal: never asked about, and only the deliberate opt-in as the remedy (QA: a plain allow of the metadata endpoint)", () => {
    const host = canonicalHost("169.254.169.254");
    const message = refusalMessage(decide(p, host, 80), host, 80, { project: "shop", nonPublic: "metadata" });
    assert.equal(
      message,
      "egress to 169.254.169.254:80 refused: 169.254.169.254 is not a public address (metadata), and such an address is never put to a human, whatever proxy.unlisted says: it is reached only through a rule that names it and opts in to non-public addresses. To allow it deliberately, run `cloister allow 169.254.169.254:80 --private --project shop` on the host, or pass `--allow-private 169.254.169.254:80` to cloister run/start.",
    );
    assert.doesNotMatch(message, /--allow 169|allow 169\.254\.169\.254:80 --project/);
  });

  const denies: [string, string, Tier, string][] = [
    ["www.evil.example:443", "*.evil.example", "global", "remove that rule from the global deny list"],
    ["tracker.example.com:80", "tracker.example.com", "project", "remove that rule from the project's deny list"],
    ["ads.example.com:443", "ads.example.com:443", "session", "start the cloister again without that `--deny` rule"],
  ];
  for (const [authority, ruleText, tier, remedy] of denies) {
    it(`denied by a ${tier} rule: names the rule, its tier, and the remedy`, () => {
      const { host, port } = parseAuthority(authority);
      const decision = decide(p, host, port);
      assert.equal(decision.verdict, "deny");
      assert.equal(
        refusalMessage(decision, host, port),
        `egress to ${authority} refused: it matches the deny rule "${ruleText}" in the ${tier} policy, and a deny rule wins over every allow rule. To allow it, ${remedy}.`,
      );
    });
  }

  it("denied by a human's answer for the session: says so, and that a new cloister undoes it (QA: it told to drop a --deny nobody gave)", () => {
    const answered = emptyPolicy();
    answered.session = { allow: [], deny: [{ ...parseRule("unl2.test:18080"), answered: true }] };
    const host = canonicalHost("unl2.test");
    const decision = decide(answered, host, 18080);
    assert.deepEqual(decision.rule, { text: "unl2.test:18080", tier: "session", list: "deny", answered: true });
    assert.equal(
      refusalMessage(decision, host, 18080, { cloister: "sess" }),
      'egress to unl2.test:18080 refused: a human denied it for this cloister\'s session (rule "unl2.test:18080"), and a deny wins over every allow rule. That answer lasts as long as the cloister and cannot be undone: to allow it, start the cloister anew on the host (`cloister stop sess` then `cloister start`, or another `cloister run`) and allow it when asked.',
    );
  });

  it("allowed, then refused for a non-public address: names the rule and the opt-in", () => {
    const host = canonicalHost("api.example.com");
    const decision = decide(p, host, 443);
    assert.deepEqual(decision, { verdict: "allow", rule: { text: "api.example.com", tier: "project", list: "allow" }, allowPrivate: false });
    assert.equal(
      refusalMessage(decision, host, 443),
      'egress to api.example.com:443 refused: api.example.com resolves to a non-public address (loopback, private, CGNAT, link-local or cloud metadata), and the allow rule "api.example.com" in the project policy does not opt in to those. To allow it, run `cloister allow api.example.com:443 --private --project PROJECT` on the host, or pass `--allow-private api.example.com:443` to cloister run/start.',
    );
  });

  it("is one line", () => {
    for (const authority of ["a.example.org:1", "www.evil.example:443", "api.example.com:443", "[::1]:443"]) {
      const { host, port } = parseAuthority(authority);
      assert.doesNotMatch(refusalMessage(decide(p, host, port), host, port), /[\r\n]/);
    }
  });
});

describe("denyOverriding: the deny rule that still wins over an allow being added", () => {
  const p = policy({ global: { deny: ["echo.test:9000", "*.bad.example.com"] }, project: { deny: ["10.0.0.1", "one.good.example.com"] } });
  const cases: [string, string | undefined][] = [
    ["echo.test:9000", "echo.test:9000"],
    ["echo.test:22,9000", "echo.test:9000"],
    ["echo.test", undefined],
    ["x.bad.example.com:8080", "*.bad.example.com"],
    ["*.bad.example.com", "*.bad.example.com"],
    ["*.sub.bad.example.com:22", "*.bad.example.com"],
    ["10.0.0.1:5432", "10.0.0.1"],
    ["*.good.example.com", undefined],
    ["one.good.example.com", "one.good.example.com"],
  ];
  for (const [allow, deny] of cases) {
    it(`allow ${allow}: ${deny ?? "no deny"}`, () => assert.equal(denyOverriding(p, parseRule(allow))?.text, deny));
  }
});
