import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  HostSyntaxError,
  authorityHost,
  canonicalHost,
  formatAuthority,
  hostText,
  parseAuthority,
  parsePort,
  rememberingCanonicalHost,
  splitAuthority,
  type Host,
} from "../../src/policy/hosts.js";

const name = (n: string): Host => ({ kind: "name", name: n });
const v4 = (address: string): Host => ({ kind: "ip", address, family: 4 });
const v6 = (address: string): Host => ({ kind: "ip", address, family: 6 });

/** A table of [raw host, the Host canonicalHost must make of it]. */
function canonicalCases(cases: [string, string][], make: (canonical: string) => Host): void {
  for (const [raw, expected] of cases) {
    it(`${JSON.stringify(raw)} -> ${expected}`, () => assert.deepEqual(canonicalHost(raw), make(expected)));
  }
}

/** Asserts a HostSyntaxError whose message contains `fragment`. */
function assertSyntaxError(fn: () => unknown, fragment: string): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof HostSyntaxError, `expected HostSyntaxError, got ${String(error)}`);
    assert.ok(error.message.includes(fragment), `message ${JSON.stringify(error.message)} lacks ${JSON.stringify(fragment)}`);
    return true;
  });
}

describe("canonicalHost: names", () => {
  const cases: [string, string][] = [
    ["example.com", "example.com"],
    ["EXAMPLE.COM", "example.com"],
    ["Example.Com.", "example.com"],
    ["a", "a"],
    ["localhost", "localhost"],
    ["localhost.", "localhost"],
    ["sub.deep.example.com", "sub.deep.example.com"],
    ["a-b.example.com", "a-b.example.com"],
    ["_acme-challenge.example.com", "_acme-challenge.example.com"],
    ["1.example.com", "1.example.com"],
    ["example.com1", "example.com1"],
    ["xn--bcher-kva.de", "xn--bcher-kva.de"],
    ["XN--BCHER-KVA.DE", "xn--bcher-kva.de"],
    // IDN to punycode, nontransitional (ß stays ß), NFC, case folding, UTS 46 mapping
    ["bücher.de", "xn--bcher-kva.de"],
    ["BÜCHER.de", "xn--bcher-kva.de"],
    ["faß.de", "xn--fa-hia.de"],
    ["é.com", "xn--9ca.com"],
    ["e\u0301.com", "xn--9ca.com"],
    ["💩.la", "xn--ls8h.la"],
    ["例え.テスト", "xn--r8jz45g.xn--zckzah"],
    ["Ⅸ.com", "ix.com"],
    ["ｅｘａｍｐｌｅ.com", "example.com"],
    ["example\u3002com", "example.com"],
    // Characters UTS 46 ignores vanish; the name that is checked is the name that is dialed.
    ["exa\u200Bmple.com", "example.com"],
    ["exa\u00ADmple.com", "example.com"],
    // Only ASCII and fullwidth digits make numbers; Arabic-Indic digits are an IDN label.
    ["١٢٧.example", "xn--9hbcp.example"],
  ];
  canonicalCases(cases, name);

  it("accepts a 63-character label and a 253-character name", () => {
    const label = "a".repeat(63);
    assert.deepEqual(canonicalHost(`${label}.com`), name(`${label}.com`));
    const long = `${"a".repeat(61)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(63)}`;
    assert.equal(long.length, 253);
    assert.deepEqual(canonicalHost(long), name(long));
    assert.deepEqual(canonicalHost(`${long}.`), name(long), "the trailing dot does not count");
  });
});

describe("canonicalHost: IPv4 in every spelling", () => {
  const cases: [string, string][] = [
    ["127.0.0.1", "127.0.0.1"],
    ["127.0.0.1.", "127.0.0.1"],
    ["127.1", "127.0.0.1"],
    ["127.0.1", "127.0.0.1"],
    ["0x7f.0.0.1", "127.0.0.1"],
    ["0X7F.0.0.1", "127.0.0.1"],
    ["0x7f.1", "127.0.0.1"],
    ["0x7f.0x0.0x0.0x1", "127.0.0.1"],
    ["0177.0.0.1", "127.0.0.1"],
    ["0177.0.0.01", "127.0.0.1"],
    ["2130706433", "127.0.0.1"],
    ["0x7f000001", "127.0.0.1"],
    ["017700000001", "127.0.0.1"],
    ["１２７.０.０.１", "127.0.0.1"],
    ["①②⑦.0.0.1", "127.0.0.1"],
    ["0", "0.0.0.0"],
    ["0x", "0.0.0.0"],
    ["0.0.0.0", "0.0.0.0"],
    ["4294967295", "255.255.255.255"],
    ["169.254.169.254", "169.254.169.254"],
    ["0xa9fea9fe", "169.254.169.254"],
    ["10.1", "10.0.0.1"],
    ["192.168.257", "192.168.1.1"],
    ["8.8.8.8", "8.8.8.8"],
  ];
  canonicalCases(cases, v4);
});

describe("canonicalHost: IPv6 in every spelling", () => {
  const cases: [string, string][] = [
    ["[::1]", "::1"],
    ["[0:0:0:0:0:0:0:1]", "::1"],
    ["[0000:0000:0000:0000:0000:0000:0000:0001]", "::1"],
    ["[::]", "::"],
    ["[0::]", "::"],
    ["[2001:DB8::1]", "2001:db8::1"],
    ["[2001:db8:0:0:1:0:0:1]", "2001:db8::1:0:0:1"],
    ["[::ffff:127.0.0.1]", "::ffff:7f00:1"],
    ["[::FFFF:127.0.0.1]", "::ffff:7f00:1"],
    ["[::ffff:7f00:1]", "::ffff:7f00:1"],
    ["[0:0:0:0:0:ffff:7f00:1]", "::ffff:7f00:1"],
    ["[::127.0.0.1]", "::7f00:1"],
    ["[64:ff9b::1.2.3.4]", "64:ff9b::102:304"],
    ["[fe80::1]", "fe80::1"],
    // Without brackets only when the whole text is one IPv6 address (SOCKS5, resolver output).
    ["::1", "::1"],
    ["::ffff:127.0.0.1", "::ffff:7f00:1"],
    ["2001:DB8::1", "2001:db8::1"],
  ];
  canonicalCases(cases, v6);
});

describe("canonicalHost: rejections", () => {
  const cases: [string, string][] = [
    ["", "host is empty"],
    [".", "host is empty"],
    ["a b.com", "host contains a space"],
    [" example.com", "host contains a space"],
    ["example.com ", "host contains a space"],
    ["exa\u0000mple.com", "a NUL byte"],
    ["example.com\u0000", "a NUL byte"],
    ["exa\tmple.com", "control character (U+0009)"],
    ["example.com\r\n", "control character (U+000D)"],
    ["exa\nmple.com", "control character (U+000A)"],
    ["exa\u001bmple.com", "control character (U+001B)"],
    ["exa\u007fmple.com", "control character (U+007F)"],
    ["exa\u0085mple.com", "control character (U+0085)"],
    ["user@example.com", "'@'"],
    ["example.com/path", "'/'"],
    ["example.com\\path", "'\\'"],
    ["example.com?q", "'?'"],
    ["example.com#f", "'#'"],
    ["%65xample.com", "'%'"],
    ["127.0.0.1%2f", "'%'"],
    ["example.com:443", "host contains ':'"],
    ["a:b", "host contains ':'"],
    ["*.example.com", "'*'"],
    ["*", "'*'"],
    ["＊.example.com", "'*'"],
    ["a!b.com", "'!'"],
    ["ａ！b.com", "'!'"],
    ["a<b.com", "'<'"],
    ["a|b.com", "'|'"],
    ["a^b.com", "'^'"],
    ['a"b.com', "'\"'"],
    ["a,b.com", "','"],
    ["a+b.com", "'+'"],
    ["a=b.com", "'='"],
    ["a~b.com", "'~'"],
    ["a]b.com", "']'"],
    ["a[b.com", "'['"],
    ["a..b", "empty label"],
    [".example.com", "empty label"],
    ["example.com..", "empty label"],
    ["..", "empty label"],
    [`${"a".repeat(64)}.com`, "longer than 63"],
    [`${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(62)}`, "longer than 253"],
    ["xn--zz.com", "not a valid domain name"],
    ["xn--.com", "not a valid domain name"],
    ["a\u202Eb.com", "not a valid domain name"],
    ["a\u00A0b.com", "not a valid domain name"],
    ["\u3000example.com", "not a valid domain name"],
    ["ａ＠b.com", "not a valid domain name"],
    ["example／com", "not a valid domain name"],
    ["١٢٧.0.0.1", "not a valid IPv4 address"],
    ["1.2.3.256", "not a valid IPv4 address"],
    ["1.2.3.4.5", "not a valid IPv4 address"],
    ["4294967296", "not a valid IPv4 address"],
    ["example.123", "not a valid IPv4 address"],
    ["foo.0x1", "not a valid IPv4 address"],
    ["08", "not a valid IPv4 address"],
    ["09.1", "not a valid IPv4 address"],
    ["[fe80::1%25eth0]", "zone id"],
    ["[fe80::1%eth0]", "zone id"],
    ["fe80::1%eth0", "'%'"],
    ["[::1", "without a closing ']'"],
    ["[::1]:443", "text after ']'"],
    ["[::1]x", "text after ']'"],
    ["[1.2.3.4]", "only for IPv6"],
    ["[example.com]", "not a valid IPv6 address"],
    ["[::1.2.3]", "not a valid IPv6 address"],
    ["[]", "not a valid IPv6 address"],
    ["[:::1]", "not a valid IPv6 address"],
  ];
  for (const [raw, fragment] of cases) {
    it(`${JSON.stringify(raw)}: ${fragment}`, () => {
      assertSyntaxError(() => canonicalHost(raw), fragment);
    });
  }

  it("names the problem in plain words, without echoing the host", () => {
    assert.throws(() => canonicalHost("a b"), { name: "HostSyntaxError", message: "host contains a space" });
  });
});

describe("rememberingCanonicalHost", () => {
  it("gives canonicalHost's answer, the same frozen object again, so that no caller can change it for the others", () => {
    const canonical = rememberingCanonicalHost();
    const first = canonical("Remembered.EXAMPLE.");
    assert.deepEqual(first, canonicalHost("Remembered.EXAMPLE."));
    assert.equal(canonical("Remembered.EXAMPLE."), first);
    assert.ok(Object.isFrozen(first));
  });

  it("refuses a bad host every time it comes, not only the first", () => {
    const canonical = rememberingCanonicalHost();
    for (let i = 0; i < 3; i++) assertSyntaxError(() => canonical("bad host.example"), "space");
  });

  it("stays right past the number of names it remembers", () => {
    const canonical = rememberingCanonicalHost(100);
    for (let i = 0; i < 300; i++) assert.deepEqual(canonical(`N${i}.Example`), { kind: "name", name: `n${i}.example` });
    assert.deepEqual(canonical("0x7f.1"), { kind: "ip", address: "127.0.0.1", family: 4 });
  });

  it("is what parseAuthority uses when given one", () => {
    const canonical = rememberingCanonicalHost();
    const first = parseAuthority("Api.Example:8080", undefined, canonical);
    assert.deepEqual(first, { host: { kind: "name", name: "api.example" }, port: 8080 });
    assert.equal(parseAuthority("Api.Example", 80, canonical).host, first.host);
  });
});

describe("parsePort", () => {
  const good: [string, number][] = [
    ["1", 1],
    ["80", 80],
    ["443", 443],
    ["8080", 8080],
    ["65535", 65535],
  ];
  for (const [text, port] of good) {
    it(`${JSON.stringify(text)} -> ${port}`, () => assert.equal(parsePort(text), port));
  }

  const bad: [string, string][] = [
    ["", "port is empty"],
    ["0", 'port "0" is out of range 1-65535'],
    ["65536", 'port "65536" is out of range 1-65535'],
    ["99999", "out of range"],
    ["123456", "out of range"],
    ["99999999999999999999999999", "out of range"],
    ["0443", 'port "0443" has a leading zero'],
    ["00", "leading zero"],
    ["+443", 'port "+443" is not a decimal number'],
    ["-1", "not a decimal number"],
    [" 443", "not a decimal number"],
    ["443 ", "not a decimal number"],
    ["0x1bb", "not a decimal number"],
    ["1e3", "not a decimal number"],
    ["4.4", "not a decimal number"],
    ["４４３", "not a decimal number"],
    ["http", "not a decimal number"],
    ["44\u00003", "not a decimal number"],
  ];
  for (const [text, fragment] of bad) {
    it(`${JSON.stringify(text)}: ${fragment}`, () => assertSyntaxError(() => parsePort(text), fragment));
  }

  it("escapes and shortens what it echoes", () => {
    assertSyntaxError(() => parsePort("4\r\n"), '"4\\r\\n"');
    assertSyntaxError(() => parsePort("x".repeat(100)), `"${"x".repeat(20)}…"`);
  });
});

describe("splitAuthority", () => {
  const cases: [string, string, string | null][] = [
    ["example.com", "example.com", null],
    ["example.com:443", "example.com", "443"],
    ["example.com:", "example.com", ""],
    [":443", "", "443"],
    ["[::1]", "[::1]", null],
    ["[::1]:443", "[::1]", "443"],
    ["[::1]:", "[::1]", ""],
  ];
  for (const [raw, hostPart, portPart] of cases) {
    it(`${JSON.stringify(raw)}`, () => assert.deepEqual(splitAuthority(raw), { hostPart, portPart }));
  }
  it("refuses an unbracketed IPv6 authority and junk after ']'", () => {
    assertSyntaxError(() => splitAuthority("::1:443"), "more than one ':'");
    assertSyntaxError(() => splitAuthority("a:1:2"), "more than one ':'");
    assertSyntaxError(() => splitAuthority("[::1]443"), "unexpected text after ']'");
    assertSyntaxError(() => splitAuthority("[::1"), "without a closing ']'");
  });
});

describe("parseAuthority", () => {
  const good: [string, number | undefined, Host, number][] = [
    ["example.com:443", undefined, name("example.com"), 443],
    ["EXAMPLE.com.:8443", undefined, name("example.com"), 8443],
    ["example.com", 80, name("example.com"), 80],
    ["example.com:8080", 80, name("example.com"), 8080],
    ["127.1:80", undefined, v4("127.0.0.1"), 80],
    ["2130706433:22", undefined, v4("127.0.0.1"), 22],
    ["[::1]:443", undefined, v6("::1"), 443],
    ["[::ffff:127.0.0.1]:443", undefined, v6("::ffff:7f00:1"), 443],
    ["[2001:db8::1]", 443, v6("2001:db8::1"), 443],
    ["bücher.de:443", undefined, name("xn--bcher-kva.de"), 443],
  ];
  for (const [raw, defaultPort, host, port] of good) {
    it(`${JSON.stringify(raw)} (default ${defaultPort ?? "none"})`, () => {
      assert.deepEqual(parseAuthority(raw, defaultPort), { host, port });
    });
  }

  const bad: [string, number | undefined, string][] = [
    ["example.com", undefined, "authority has no port"],
    ["example.com:", 443, "port is empty"],
    ["example.com:0", undefined, "out of range"],
    ["example.com:65536", undefined, "out of range"],
    ["example.com:0443", undefined, "leading zero"],
    ["example.com:+443", undefined, "not a decimal number"],
    [":443", undefined, "host is empty"],
    ["user@example.com:443", undefined, "'@'"],
    ["user:pass@example.com:443", undefined, "more than one ':'"],
    ["::1:443", undefined, "more than one ':'"],
    ["::1", 443, "more than one ':'"],
    ["[::1]443", undefined, "unexpected text after ']'"],
    ["[fe80::1%25eth0]:443", undefined, "zone id"],
    ["[127.0.0.1]:443", undefined, "only for IPv6"],
    ["example.com:443/", undefined, "not a decimal number"],
    ["exa mple.com:443", undefined, "host contains a space"],
    ["example.com :443", undefined, "host contains a space"],
    ["example.com: 443", undefined, "not a decimal number"],
    ["evil.com\u0000.example.com:443", undefined, "NUL"],
    ["*.example.com:443", undefined, "'*'"],
  ];
  for (const [raw, defaultPort, fragment] of bad) {
    it(`${JSON.stringify(raw)}: ${fragment}`, () => assertSyntaxError(() => parseAuthority(raw, defaultPort), fragment));
  }
});

describe("formatAuthority, hostText, authorityHost", () => {
  const cases: [Host, number, string, string][] = [
    [name("example.com"), 443, "example.com:443", "example.com"],
    [v4("10.0.0.1"), 80, "10.0.0.1:80", "10.0.0.1"],
    [v6("::1"), 443, "[::1]:443", "::1"],
    [v6("::ffff:7f00:1"), 22, "[::ffff:7f00:1]:22", "::ffff:7f00:1"],
  ];
  for (const [host, port, authority, text] of cases) {
    it(authority, () => {
      assert.equal(formatAuthority(host, port), authority);
      assert.equal(hostText(host), text);
      assert.equal(authorityHost(host), authority.slice(0, authority.lastIndexOf(":")));
    });
  }

  it("round-trips through parseAuthority and canonicalHost", () => {
    for (const raw of ["example.com:443", "10.0.0.1:80", "[::1]:443", "[2001:db8::1:0:0:1]:8443", "xn--bcher-kva.de:443"]) {
      const { host, port } = parseAuthority(raw);
      assert.equal(formatAuthority(host, port), raw);
      assert.deepEqual(canonicalHost(hostText(host)), host);
      assert.deepEqual(canonicalHost(authorityHost(host)), host);
    }
  });
});
