import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { canonicalHost, type Host } from "../../src/policy/hosts.js";
import { DEFAULT_PORTS, RuleError, parseRule, ruleMatches, type EgressRule } from "../../src/policy/rules.js";

/** Asserts a RuleError that names the rule and contains every fragment. */
function assertRuleError(text: string, ...fragments: string[]): void {
  assert.throws(
    () => parseRule(text),
    (error: unknown) => {
      assert.ok(error instanceof RuleError, `expected RuleError, got ${String(error)}`);
      assert.ok(error.message.startsWith(`egress rule ${JSON.stringify(text.trim())}: `), `message does not name the rule: ${error.message}`);
      for (const fragment of fragments) {
        assert.ok(error.message.includes(fragment), `message ${JSON.stringify(error.message)} lacks ${JSON.stringify(fragment)}`);
      }
      return true;
    },
  );
}

const matches = (rule: string, host: string, port: number): boolean => ruleMatches(parseRule(rule), "allow", canonicalHost(host), port);

/** A table of [rule, host, port, whether the rule matches host:port]. */
function describeMatches(title: string, cases: [string, string, number, boolean][]): void {
  describe(title, () => {
    for (const [rule, host, port, expected] of cases) {
      it(`${rule} ${expected ? "matches" : "does not match"} ${host}:${port}`, () => assert.equal(matches(rule, host, port), expected));
    }
  });
}

describe("parseRule: accepted rules", () => {
  const cases: [string, Omit<EgressRule, "private">][] = [
    ["example.com", { text: "example.com", kind: "exact", host: "example.com", ports: null }],
    ["  Example.COM.  ", { text: "example.com", kind: "exact", host: "example.com", ports: null }],
    ["\texample.com\n", { text: "example.com", kind: "exact", host: "example.com", ports: null }],
    ["example.com:8443", { text: "example.com:8443", kind: "exact", host: "example.com", ports: [8443] }],
    ["example.com:80,8080", { text: "example.com:80,8080", kind: "exact", host: "example.com", ports: [80, 8080] }],
    ["example.com:8080,80", { text: "example.com:80,8080", kind: "exact", host: "example.com", ports: [80, 8080] }],
    ["example.com:443,80", { text: "example.com:80,443", kind: "exact", host: "example.com", ports: [80, 443] }],
    ["example.com:22", { text: "example.com:22", kind: "exact", host: "example.com", ports: [22] }],
    ["*.example.com", { text: "*.example.com", kind: "wildcard", host: "example.com", ports: null }],
    ["*.Example.com.:8443", { text: "*.example.com:8443", kind: "wildcard", host: "example.com", ports: [8443] }],
    ["*.api.example.com:1,65535", { text: "*.api.example.com:1,65535", kind: "wildcard", host: "api.example.com", ports: [1, 65535] }],
    ["*.example.co.uk", { text: "*.example.co.uk", kind: "wildcard", host: "example.co.uk", ports: null }],
    ["*.me.github.io", { text: "*.me.github.io", kind: "wildcard", host: "me.github.io", ports: null }],
    ["*.corp.internal", { text: "*.corp.internal", kind: "wildcard", host: "corp.internal", ports: null }],
    ["*.www.ck", { text: "*.www.ck", kind: "wildcard", host: "www.ck", ports: null }],
    ["*.bücher.de", { text: "*.xn--bcher-kva.de", kind: "wildcard", host: "xn--bcher-kva.de", ports: null }],
    ["bücher.de:443", { text: "xn--bcher-kva.de:443", kind: "exact", host: "xn--bcher-kva.de", ports: [443] }],
    // exact rules on names that are private-section suffixes are real services
    ["github.io", { text: "github.io", kind: "exact", host: "github.io", ports: null }],
    ["s3.amazonaws.com", { text: "s3.amazonaws.com", kind: "exact", host: "s3.amazonaws.com", ports: null }],
    ["mybucket.s3.amazonaws.com", { text: "mybucket.s3.amazonaws.com", kind: "exact", host: "mybucket.s3.amazonaws.com", ports: null }],
    ["localhost:3000", { text: "localhost:3000", kind: "exact", host: "localhost", ports: [3000] }],
    ["co.uk", { text: "co.uk", kind: "exact", host: "co.uk", ports: null }],
    ["10.1.2.3:5432", { text: "10.1.2.3:5432", kind: "ip", host: "10.1.2.3", ports: [5432] }],
    ["10.1.2.3", { text: "10.1.2.3", kind: "ip", host: "10.1.2.3", ports: null }],
    ["127.1:8080", { text: "127.0.0.1:8080", kind: "ip", host: "127.0.0.1", ports: [8080] }],
    ["0x7f000001", { text: "127.0.0.1", kind: "ip", host: "127.0.0.1", ports: null }],
    ["[2001:db8::1]:443", { text: "[2001:db8::1]:443", kind: "ip", host: "2001:db8::1", ports: [443] }],
    ["[2001:DB8:0:0:0:0:0:1]", { text: "[2001:db8::1]", kind: "ip", host: "2001:db8::1", ports: null }],
    ["[::ffff:10.0.0.1]:80,443", { text: "[::ffff:a00:1]:80,443", kind: "ip", host: "::ffff:a00:1", ports: [80, 443] }],
  ];
  for (const [text, expected] of cases) {
    it(JSON.stringify(text), () => {
      assert.deepEqual(parseRule(text), { ...expected, private: false });
    });
  }

  it("private is false unless asked for, and only the private flag changes", () => {
    assert.equal(parseRule("db.internal:5432").private, false);
    assert.equal(parseRule("db.internal:5432", {}).private, false);
    assert.equal(parseRule("db.internal:5432", { private: false }).private, false);
    assert.deepEqual(parseRule("db.internal:5432", { private: true }), { ...parseRule("db.internal:5432"), private: true });
    assert.equal(parseRule("10.0.0.1", { private: true }).private, true);
  });

  it("the canonical text parses back to the same rule", () => {
    for (const [text] of cases) {
      const rule = parseRule(text);
      assert.deepEqual(parseRule(rule.text), rule);
    }
  });

  it("a rule is plain data with exactly the documented keys", () => {
    assert.deepEqual(Object.keys(parseRule("*.example.com:443")).sort(), ["host", "kind", "ports", "private", "text"]);
  });
});

describe("parseRule: refused rules", () => {
  const cases: [string, ...string[]][] = [
    ["", "the rule is empty", 'such as "example.com"'],
    ["   ", "the rule is empty"],
    ["*", "bare '*' would allow every host", "list the hosts instead"],
    ["*:443", "bare '*'"],
    ["*.*", "'*' may only be the whole leftmost label", 'write "*.example.com"'],
    ["*.*.com", "'*' may only be the whole leftmost label"],
    ["**.x", "'*' may only be the whole leftmost label"],
    ["**.example.com", "'*' may only be the whole leftmost label"],
    ["*x.com", "'*' may only be the whole leftmost label"],
    ["x*.com", "'*' may only be the whole leftmost label"],
    ["a.*.com", "'*' may only be the whole leftmost label"],
    ["example.*", "'*' may only be the whole leftmost label"],
    ["*example.com", "'*' may only be the whole leftmost label"],
    // wildcards over public suffixes: ICANN, multi-level, private section, wildcard-generated, unknown TLD
    ["*.com", '"com" is a top-level domain', "every site registered under it", 'e.g. "*.example.com"'],
    ["*.COM.", '"com" is a top-level domain'],
    ["*.uk", '"uk" is a top-level domain'],
    ["*.co.uk", '"co.uk" is a public suffix', 'e.g. "*.example.co.uk"'],
    ["*.com.au", '"com.au" is a public suffix'],
    ["*.github.io", '"github.io" is a public suffix', 'e.g. "*.example.github.io"'],
    ["*.s3.amazonaws.com", '"s3.amazonaws.com" is a public suffix'],
    ["*.blogspot.com", '"blogspot.com" is a public suffix'],
    ["*.foo.kawasaki.jp", '"foo.kawasaki.jp" is a public suffix'],
    ["*.foo.ck", '"foo.ck" is a public suffix'],
    ["*.公司.cn", '"xn--55qx5d.cn" is a public suffix'],
    ["*.中国", '"xn--fiqs8s" is a top-level domain'],
    ["*.localhost", '"localhost" is a top-level domain'],
    ["*.internal", '"internal" is a top-level domain'],
    ["*.com:443", '"com" is a top-level domain'],
    // wildcard over addresses
    ["*.10.0.0.1", "a wildcard cannot cover IP addresses", 'e.g. "10.0.0.1:443"'],
    ["*.1.2.3", "a wildcard cannot cover IP addresses"],
    ["*.[::1]", "more than one ':'"],
    // exact TLDs
    ["com", '"com" is a top-level domain, not a host', 'e.g. "example.com"'],
    ["COM.", '"com" is a top-level domain'],
    ["org:443", '"org" is a top-level domain'],
    ["xn--fiqs8s", '"xn--fiqs8s" is a top-level domain'],
    // URLs and other shapes people write
    ["https://example.com/", "a rule names a host, not a URL", 'e.g. "example.com:443"'],
    ["http://example.com", "not a URL"],
    ["git+ssh://example.com", "not a URL"],
    [".example.com", "a leading dot is not a wildcard here", 'write "*.example.com"', 'and "example.com"'],
    ["2001:db8::1", "an IPv6 address in a rule goes in brackets", 'write "[2001:db8::1]"'],
    ["::1", "goes in brackets"],
    ["example.com/path", "'/'"],
    ["user@example.com", "'@'"],
    ["example.com?x", "'?'"],
    ["example.com#x", "'#'"],
    ["exa mple.com", "host contains a space", "write HOST, HOST:PORT or HOST:PORT,PORT"],
    ["exa\u0000mple.com", "NUL"],
    ["a..b.com", "empty label"],
    [`${"a".repeat(64)}.com`, "longer than 63"],
    ["%65xample.com", "'%'"],
    ["[fe80::1%25eth0]:443", "zone id"],
    ["[10.0.0.1]:80", "only for IPv6"],
    ["1.2.3.256", "not a valid IPv4 address"],
    ["a:1:2", "more than one ':'"],
    // ports
    ["example.com:", "port is empty", 'e.g. "example.com:80,8080"'],
    ["example.com:0", 'port "0" is out of range 1-65535'],
    ["example.com:65536", "out of range"],
    ["example.com:0443", "leading zero"],
    ["example.com:+443", "not a decimal number"],
    ["example.com:-1", "not a decimal number"],
    ["example.com:https", "not a decimal number"],
    ["example.com:*", "not a decimal number"],
    ["example.com:80-90", "not a decimal number"],
    ["example.com:80,", "port is empty"],
    ["example.com:,80", "port is empty"],
    ["example.com:80,,443", "port is empty"],
    ["example.com:80, 443", 'port " 443" is not a decimal number'],
    ["example.com :80", "host contains a space"],
    ["example.com:80,80", "port 80 is listed twice", "list each port once"],
    ["example.com:443,80,443", "port 443 is listed twice"],
  ];
  for (const [text, ...fragments] of cases) {
    it(JSON.stringify(text), () => assertRuleError(text, ...fragments));
  }

  it("a rule for every host is refused in the words of its list: allowing, or denying (QA: deny '*' spoke of allowing)", () => {
    assert.throws(() => parseRule("*", { list: "allow" }), /^RuleError: egress rule "\*": a bare '\*' would allow every host; list the hosts instead/);
    assert.throws(() => parseRule("*:443", { list: "deny" }), /^RuleError: egress rule "\*:443": a bare '\*' would deny every host; name the hosts to deny, .*set proxy\.unlisted: deny$/);
  });

  it("is an Error named RuleError", () => {
    assert.throws(() => parseRule("*"), (error: unknown) => error instanceof Error && error.name === "RuleError");
  });
});

describeMatches("ruleMatches: exact names", [
  ["example.com", "example.com", 443, true],
  ["example.com", "example.com", 80, true],
  ["example.com", "EXAMPLE.COM.", 443, true],
  ["example.com", "example.com", 8443, false],
  ["example.com", "example.com", 22, false],
  ["example.com", "www.example.com", 443, false],
  ["example.com", "evilexample.com", 443, false],
  ["example.com", "example.com.evil.net", 443, false],
  ["example.com", "example.co", 443, false],
  ["example.com", "xample.com", 443, false],
  ["example.com:8443", "example.com", 8443, true],
  ["example.com:8443", "example.com", 443, false],
  ["example.com:8443", "example.com", 80, false],
  ["example.com:80,8080", "example.com", 80, true],
  ["example.com:80,8080", "example.com", 8080, true],
  ["example.com:80,8080", "example.com", 443, false],
  ["bücher.de", "xn--bcher-kva.de", 443, true],
  ["xn--bcher-kva.de", "BÜCHER.de", 443, true],
]);

describeMatches("ruleMatches: wildcards (any depth, never the apex)", [
  ["*.example.com", "www.example.com", 443, true],
  ["*.example.com", "a.b.example.com", 443, true],
  ["*.example.com", "a.b.c.d.e.example.com", 80, true],
  ["*.example.com", "WWW.Example.Com.", 443, true],
  ["*.example.com", "_srv.example.com", 443, true],
  ["*.example.com", "example.com", 443, false],
  ["*.example.com", "evilexample.com", 443, false],
  ["*.example.com", "www.evilexample.com", 443, false],
  ["*.example.com", "example.com.evil.net", 443, false],
  ["*.example.com", "www.example.com.evil.net", 443, false],
  ["*.example.com", "wwwexample.com", 443, false],
  ["*.example.com", "www.example.org", 443, false],
  ["*.example.com", "www.example.com", 8443, false],
  ["*.example.com:8443", "www.example.com", 8443, true],
  ["*.example.com:8443", "www.example.com", 443, false],
  ["*.api.example.com", "v1.api.example.com", 443, true],
  ["*.api.example.com", "api.example.com", 443, false],
  ["*.api.example.com", "www.example.com", 443, false],
]);

describeMatches("ruleMatches: IP rules and the name/IP divide", [
  ["10.1.2.3:5432", "10.1.2.3", 5432, true],
  ["10.1.2.3:5432", "10.1.2.3", 443, false],
  ["10.1.2.3:5432", "10.1.2.4", 5432, false],
  ["10.1.2.3", "10.1.2.3", 443, true],
  ["10.1.2.3", "10.1.2.3", 80, true],
  ["10.1.2.3", "10.1.2.3", 5432, false],
  // every spelling of the address is the address
  ["127.0.0.1:8080", "127.1", 8080, true],
  ["127.0.0.1:8080", "0x7f.0.0.1", 8080, true],
  ["127.0.0.1:8080", "0177.0.0.1", 8080, true],
  ["127.0.0.1:8080", "2130706433", 8080, true],
  ["127.0.0.1:8080", "0x7f000001", 8080, true],
  ["127.0.0.1:8080", "127.0.0.2", 8080, false],
  ["[::1]:443", "[::1]", 443, true],
  ["[::1]:443", "[0:0:0:0:0:0:0:1]", 443, true],
  ["[::1]:443", "::1", 443, true],
  ["[2001:db8::1]", "[2001:DB8:0::1]", 443, true],
  ["[::ffff:127.0.0.1]", "[::ffff:7f00:1]", 443, true],
  // an IPv4 rule does not cover the IPv6 spellings of that address, and vice versa
  ["127.0.0.1", "[::ffff:127.0.0.1]", 443, false],
  ["127.0.0.1", "[::127.0.0.1]", 443, false],
  ["[::ffff:127.0.0.1]", "127.0.0.1", 443, false],
  // names never match IP hosts, IP rules never match names
  ["localhost", "127.0.0.1", 443, false],
  ["127.0.0.1", "localhost", 443, false],
  ["*.example.com", "10.0.0.1", 443, false],
  ["1.2.3.4", "1.2.3.4.example.com", 443, false],
  ["example.com", "[::1]", 443, false],
]);

describe("ruleMatches: a rule without a port", () => {
  const pairs = [
    [parseRule("example.com"), canonicalHost("example.com")],
    [parseRule("*.example.com"), canonicalHost("a.example.com")],
    [parseRule("10.0.0.1"), canonicalHost("10.0.0.1")],
    [parseRule("[::1]"), canonicalHost("[::1]")],
  ] as const;
  const coveredPorts = (rule: EgressRule, list: "allow" | "deny", host: Host): number[] => {
    const ports = [];
    for (let port = 1; port <= 65535; port++) if (ruleMatches(rule, list, host, port)) ports.push(port);
    return ports;
  };

  it("allows 80 and 443 and nothing else", () => {
    assert.deepEqual(DEFAULT_PORTS, [80, 443]);
    for (const [rule, host] of pairs) assert.deepEqual(coveredPorts(rule, "allow", host), [80, 443], rule.text);
  });

  it("denies every port", () => {
    for (const [rule, host] of pairs) assert.equal(coveredPorts(rule, "deny", host).length, 65535, rule.text);
  });

  it("with ports, covers just those on either list", () => {
    const rule = parseRule("example.com:22,8080");
    for (const list of ["allow", "deny"] as const) assert.deepEqual(coveredPorts(rule, list, canonicalHost("example.com")), [22, 8080], list);
  });
});
