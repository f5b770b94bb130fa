import assert from "node:assert/strict";
import { SocketAddress } from "node:net";
import { describe, it } from "node:test";
import { mulberry32 } from "../helpers/prng.js";
import {
  encodeGreeting,
  encodeMethodChoice,
  encodeReply,
  encodeRequest,
  encodeUserPass,
  encodeUserPassStatus,
  METHOD_NO_AUTH,
  METHOD_NONE_ACCEPTABLE,
  METHOD_USER_PASS,
  parseGreeting,
  parseMethodChoice,
  parseReply,
  parseRequest,
  parseUserPass,
  parseUserPassStatus,
  requireComplete,
  SocksProtocolError,
  SocksReply,
  type Parsed,
  type SocksRequest,
} from "../../src/guardian/proxy/socks5.js";

const bytes = (...values: number[]) => Buffer.from(values);
const hex = (buf: Buffer) => buf.toString("hex");

/** What a parser did with a buffer, as plain data; anything thrown but SocksProtocolError escapes. */
type Outcome<T> = { kind: "ok"; value: T; used: number } | { kind: "incomplete" } | { kind: "error"; message: string; reply: SocksReply | undefined };

function outcome<T>(parse: (buf: Buffer) => Parsed<T>, buf: Buffer): Outcome<T> {
  try {
    const result = parse(buf);
    return result === "incomplete" ? { kind: "incomplete" } : { kind: "ok", ...result };
  } catch (error) {
    if (error instanceof SocksProtocolError) return { kind: "error", message: error.message, reply: error.reply };
    throw error;
  }
}

/**
 * A server's read loop with the worst possible network: one byte per read, parsing everything
 * received so far each time. Returns the first answer that is not "incomplete" and when it came.
 */
function feedByteByByte<T>(parse: (buf: Buffer) => Parsed<T>, input: Buffer): { at: number; result: Outcome<T> } {
  for (let at = 0; at <= input.length; at++) {
    const result = outcome(parse, input.subarray(0, at));
    if (result.kind !== "incomplete") return { at, result };
  }
  return { at: input.length, result: { kind: "incomplete" } };
}

function assertError<T>(parse: (buf: Buffer) => Parsed<T>, input: Buffer, reply: SocksReply | undefined, pattern?: RegExp): void {
  const result = outcome(parse, input);
  assert.equal(result.kind, "error", `expected an error for ${hex(input)}, got ${JSON.stringify(result)}`);
  if (result.kind !== "error") return;
  assert.equal(result.reply, reply, `reply for ${hex(input)}: ${result.message}`);
  if (pattern) assert.match(result.message, pattern);
}

/** Node's own formatting of an IPv6 address (libuv's inet_ntop), the oracle for ours. */
function nodeIPv6Text(raw: Buffer): string {
  const groups = Array.from({ length: 8 }, (_, i) => raw.readUInt16BE(i * 2).toString(16));
  return new SocketAddress({ address: groups.join(":"), family: "ipv6" }).address;
}

describe("socks5: greeting", () => {
  it("parses the methods and says how many bytes it used", () => {
    assert.deepEqual(parseGreeting(bytes(5, 1, 0)), { value: { methods: [0] }, used: 3 });
    assert.deepEqual(parseGreeting(bytes(5, 2, 0, 2, 0xaa, 0xbb)), { value: { methods: [0, 2] }, used: 4 });
  });

  it("takes 255 methods, the most a one-byte count allows", () => {
    const all = Array.from({ length: 255 }, (_, i) => i);
    assert.deepEqual(parseGreeting(Buffer.from([5, 255, ...all])), { value: { methods: all }, used: 257 });
  });

  it("is incomplete at every field boundary short of the end", () => {
    for (const cut of [bytes(), bytes(5), bytes(5, 3), bytes(5, 3, 0), bytes(5, 3, 0, 1)]) {
      assert.equal(parseGreeting(cut), "incomplete", hex(cut));
    }
  });

  it("refuses a wrong version from the first byte, and NMETHODS 0, with no reply code", () => {
    assertError(parseGreeting, bytes(4), undefined, /version 0x04/);
    assertError(parseGreeting, bytes(4, 1, 0), undefined);
    assertError(parseGreeting, bytes(0x16, 3, 1), undefined); // a TLS ClientHello
    assertError(parseGreeting, bytes(5, 0), undefined, /no authentication methods/);
  });

  it("encodes the method choice and round-trips the client's greeting", () => {
    assert.deepEqual(encodeMethodChoice(METHOD_NO_AUTH), bytes(5, 0));
    assert.deepEqual(encodeMethodChoice(METHOD_USER_PASS), bytes(5, 2));
    assert.deepEqual(encodeMethodChoice(METHOD_NONE_ACCEPTABLE), bytes(5, 0xff));
    assert.deepEqual(parseMethodChoice(encodeMethodChoice(METHOD_USER_PASS)), { value: { method: 2 }, used: 2 });
    const greeting = encodeGreeting([METHOD_NO_AUTH, METHOD_USER_PASS]);
    assert.deepEqual(greeting, bytes(5, 2, 0, 2));
    assert.deepEqual(parseGreeting(greeting), { value: { methods: [0, 2] }, used: 4 });
    assert.throws(() => encodeGreeting([]), TypeError);
    assert.throws(() => encodeMethodChoice(256), TypeError);
  });
});

describe("socks5: username/password (RFC 1929)", () => {
  it("parses username and password, and the password is a copy", () => {
    const input = Buffer.concat([bytes(1, 8), Buffer.from("cloister"), bytes(5), Buffer.from("token"), bytes(5, 1)]);
    const parsed = parseUserPass(input);
    assert.notEqual(parsed, "incomplete");
    if (parsed === "incomplete") return;
    assert.equal(parsed.used, 16);
    assert.equal(parsed.value.username, "cloister");
    assert.deepEqual(parsed.value.password, Buffer.from("token"));
    input.fill(0);
    assert.deepEqual(parsed.value.password, Buffer.from("token"));
  });

  it("keeps every username byte (latin1) and takes the length extremes 0 and 255", () => {
    const odd = Buffer.from([0x00, 0x0a, 0x7f, 0x80, 0xc3, 0xff]);
    assert.deepEqual(parseUserPass(Buffer.concat([bytes(1, odd.length), odd, bytes(0)])), {
      value: { username: "\x00\n\x7f\x80\xc3\xff", password: Buffer.alloc(0) },
      used: 2 + odd.length + 1,
    });
    const long = Buffer.alloc(255, 0x61);
    assert.deepEqual(parseUserPass(Buffer.concat([bytes(1, 255), long, bytes(255), long])), {
      value: { username: "a".repeat(255), password: long },
      used: 513,
    });
    assert.deepEqual(parseUserPass(bytes(1, 0, 0)), { value: { username: "", password: Buffer.alloc(0) }, used: 3 });
  });

  it("is incomplete at every field boundary short of the end", () => {
    for (const cut of [bytes(), bytes(1), bytes(1, 2), bytes(1, 2, 0x61, 0x62), bytes(1, 2, 0x61, 0x62, 3, 0x70)]) {
      assert.equal(parseUserPass(cut), "incomplete", hex(cut));
    }
  });

  it("refuses any version but 1 (a client that skipped the sub-negotiation sends 5)", () => {
    assertError(parseUserPass, bytes(5, 1, 0, 1), undefined, /version 0x05/);
    assertError(parseUserPass, bytes(0), undefined);
  });

  it("encodes the status and round-trips the client side", () => {
    assert.deepEqual(encodeUserPassStatus(true), bytes(1, 0));
    assert.deepEqual(encodeUserPassStatus(false), bytes(1, 1));
    assert.deepEqual(parseUserPassStatus(bytes(1, 0)), { value: { ok: true }, used: 2 });
    assert.deepEqual(parseUserPassStatus(bytes(1, 0x80)), { value: { ok: false }, used: 2 });
    const token = Buffer.from("6f1d9a0c", "hex");
    assert.deepEqual(requireComplete(parseUserPass(encodeUserPass("user", token)), "auth").value, { username: "user", password: token });
    assert.throws(() => encodeUserPass("é\u0100", token), TypeError);
    assert.throws(() => encodeUserPass("a".repeat(256), token), TypeError);
  });
});

describe("socks5: request", () => {
  it("lays out a CONNECT to a domain exactly as RFC 1928 section 4 says", () => {
    const wire = Buffer.concat([bytes(5, 1, 0, 3, 11), Buffer.from("example.com"), bytes(0x01, 0xbb)]);
    assert.deepEqual(parseRequest(wire), {
      value: { command: "connect", address: { kind: "domain", name: "example.com" }, port: 443 },
      used: wire.length,
    });
    assert.deepEqual(encodeRequest({ command: "connect", address: { kind: "domain", name: "example.com" }, port: 443 }), wire);
  });

  it("parses IPv4 and IPv6 addresses and every command it knows", () => {
    assert.deepEqual(parseRequest(bytes(5, 1, 0, 1, 127, 0, 0, 1, 0, 80)), {
      value: { command: "connect", address: { kind: "ipv4", address: "127.0.0.1" }, port: 80 },
      used: 10,
    });
    const v6 = Buffer.concat([bytes(5, 2, 0, 4), Buffer.from("20010db8000000000000000000000001", "hex"), bytes(0x1f, 0x90)]);
    assert.deepEqual(parseRequest(v6), { value: { command: "bind", address: { kind: "ipv6", address: "2001:db8::1" }, port: 8080 }, used: 22 });
    const udp = parseRequest(bytes(5, 3, 0, 1, 0, 0, 0, 0, 0, 0));
    assert.equal(udp !== "incomplete" && udp.value.command, "udp-associate");
  });

  it("keeps control and NUL bytes of a domain for the policy to reject", () => {
    const name = Buffer.from([0x61, 0x00, 0x0d, 0x0a, 0x40, 0x2f, 0x7f]);
    const parsed = requireComplete(parseRequest(Buffer.concat([bytes(5, 1, 0, 3, name.length), name, bytes(0, 80)])), "request");
    assert.deepEqual(parsed.value.address, { kind: "domain", name: "a\x00\r\n@/\x7f" });
  });

  it("reads a domain as UTF-8, as the client meant it, and refuses bytes that are no UTF-8", () => {
    const name = Buffer.from("аpple.com", "utf8"); // a Cyrillic а
    const parsed = requireComplete(parseRequest(Buffer.concat([bytes(5, 1, 0, 3, name.length), name, bytes(1, 187)])), "request");
    assert.deepEqual(parsed.value.address, { kind: "domain", name: "аpple.com" });
    for (const bad of [[0xff], [0x61, 0xc3], [0xc0, 0xaf], [0xed, 0xa0, 0x80]]) {
      assertError(parseRequest, Buffer.concat([bytes(5, 1, 0, 3, bad.length), Buffer.from(bad), bytes(0, 80)]), SocksReply.GeneralFailure, /not UTF-8/);
    }
  });

  it("takes the field extremes: a 1- and a 255-byte domain, ports 0, 1 and 65535", () => {
    for (const length of [1, 255]) {
      const name = "x".repeat(length);
      const parsed = requireComplete(parseRequest(encodeRequest({ command: "connect", address: { kind: "domain", name }, port: 1 })), "request");
      assert.deepEqual(parsed, { value: { command: "connect", address: { kind: "domain", name }, port: 1 }, used: 7 + length });
    }
    for (const port of [0, 1, 65535]) {
      const parsed = requireComplete(parseRequest(encodeRequest({ command: "connect", address: { kind: "ipv4", address: "10.0.0.1" }, port })), "request");
      assert.equal(parsed.value.port, port);
    }
  });

  it("is incomplete at every field boundary short of the end, and ignores what follows", () => {
    const wire = Buffer.concat([bytes(5, 1, 0, 3, 3), Buffer.from("a.b"), bytes(0, 80)]);
    for (let cut = 0; cut < wire.length; cut++) assert.equal(parseRequest(wire.subarray(0, cut)), "incomplete", `cut at ${cut}`);
    const followed = Buffer.concat([wire, Buffer.from("GET / HTTP/1.1\r\n")]);
    assert.equal(requireComplete(parseRequest(followed), "request").used, wire.length);
  });

  it("answers each malformed request with the right reply code", () => {
    assertError(parseRequest, bytes(4), SocksReply.GeneralFailure, /version 0x04/);
    for (const command of [0, 4, 0x80, 0xff]) assertError(parseRequest, bytes(5, command), SocksReply.CommandNotSupported, /command/);
    for (const reserved of [1, 0x80, 0xff]) assertError(parseRequest, bytes(5, 1, reserved), SocksReply.GeneralFailure, /reserved/);
    for (const type of [0, 2, 5, 0xff]) assertError(parseRequest, bytes(5, 1, 0, type), SocksReply.AddressTypeNotSupported, /address type/);
    assertError(parseRequest, bytes(5, 1, 0, 3, 0), SocksReply.GeneralFailure, /empty domain/);
    assertError(parseRequest, bytes(5, 1, 0, 3, 0, 0, 80), SocksReply.GeneralFailure, /empty domain/);
  });

  it("reports the first bad field in wire order", () => {
    assertError(parseRequest, bytes(5, 9, 1, 9), SocksReply.CommandNotSupported);
    assertError(parseRequest, bytes(5, 1, 1, 9), SocksReply.GeneralFailure, /reserved/);
  });

  it("makes a truncated message an error once the peer has stopped sending", () => {
    assert.throws(() => requireComplete(parseRequest(bytes(5, 1, 0, 1, 127)), "SOCKS request", SocksReply.GeneralFailure), (error) => {
      assert.ok(error instanceof SocksProtocolError);
      assert.match(error.message, /truncated/);
      assert.equal(error.reply, SocksReply.GeneralFailure);
      return true;
    });
    assert.throws(() => requireComplete(parseGreeting(bytes(5, 2, 0)), "SOCKS greeting"), SocksProtocolError);
  });

  it("refuses to encode what the wire cannot carry", () => {
    const connect = (address: SocksRequest["address"], port = 80): SocksRequest => ({ command: "connect", address, port });
    assert.throws(() => encodeRequest(connect({ kind: "domain", name: "" })), TypeError);
    assert.throws(() => encodeRequest(connect({ kind: "domain", name: "x".repeat(256) })), TypeError);
    assert.throws(() => encodeRequest(connect({ kind: "domain", name: "ok\ud800" })), TypeError);
    assert.throws(() => encodeRequest(connect({ kind: "domain", name: "а".repeat(128) })), TypeError, "256 bytes in UTF-8");
    assert.throws(() => encodeRequest(connect({ kind: "ipv4", address: "1.2.3" })), TypeError);
    assert.throws(() => encodeRequest(connect({ kind: "ipv4", address: "01.2.3.4" })), TypeError);
    assert.throws(() => encodeRequest(connect({ kind: "ipv6", address: "1::2::3" })), TypeError);
    assert.throws(() => encodeRequest(connect({ kind: "ipv4", address: "1.2.3.4" }, 65536)), TypeError);
  });
});

describe("socks5: reply", () => {
  it("defaults the bound address to 0.0.0.0:0", () => {
    assert.deepEqual(encodeReply(SocksReply.NotAllowedByRuleset), bytes(5, 2, 0, 1, 0, 0, 0, 0, 0, 0));
    assert.deepEqual(encodeReply(SocksReply.Succeeded, { address: "127.0.0.1", port: 1080 }), bytes(5, 0, 0, 1, 127, 0, 0, 1, 0x04, 0x38));
  });

  it("encodes an IPv6 bound address as ATYP 4, mapped IPv4 included, zone dropped", () => {
    const loopback6 = encodeReply(SocksReply.Succeeded, { address: "::1", port: 443 });
    assert.deepEqual(loopback6, Buffer.concat([bytes(5, 0, 0, 4), Buffer.from("00000000000000000000000000000001", "hex"), bytes(1, 0xbb)]));
    const mapped = encodeReply(SocksReply.Succeeded, { address: "::ffff:127.0.0.1", port: 1 });
    assert.equal(mapped[3], 4);
    assert.deepEqual(mapped.subarray(4, 20), Buffer.from("00000000000000000000ffff7f000001", "hex"));
    const zoned = requireComplete(parseReply(encodeReply(SocksReply.Succeeded, { address: "fe80::1%eth0", port: 2 })), "reply");
    assert.deepEqual(zoned.value.address, { kind: "ipv6", address: "fe80::1" });
    assert.throws(() => encodeReply(SocksReply.Succeeded, { address: "localhost", port: 1 }), TypeError);
  });

  it("round-trips every reply code", () => {
    for (const code of Object.values(SocksReply).filter((v): v is SocksReply => typeof v === "number")) {
      const bound = { address: "192.0.2.7", port: 65535 };
      assert.deepEqual(requireComplete(parseReply(encodeReply(code, bound)), "reply").value, { reply: code, address: { kind: "ipv4", address: bound.address }, port: bound.port });
    }
  });
});

describe("socks5: IPv6 text", () => {
  it("spells addresses as node does (RFC 5952, dotted tail for mapped and compatible)", () => {
    const cases: Array<[string, string]> = [
      ["00000000000000000000000000000000", "::"],
      ["00000000000000000000000000000001", "::1"],
      ["00000000000000000000ffff7f000001", "::ffff:127.0.0.1"],
      ["00000000000000000000000001020304", "::1.2.3.4"],
      ["00010000000000010000000000000001", "1:0:0:1::1"],
      ["00010000000000000001000000000001", "1::1:0:0:1"],
      ["fe800000000000000000000000000001", "fe80::1"],
      ["20010db8000100020003000400050006", "2001:db8:1:2:3:4:5:6"],
      ["abcd0000abcd0000abcd0000abcd0000", "abcd:0:abcd:0:abcd:0:abcd:0"],
    ];
    for (const [raw, text] of cases) {
      const wire = Buffer.concat([bytes(5, 1, 0, 4), Buffer.from(raw, "hex"), bytes(0, 1)]);
      const parsed = requireComplete(parseRequest(wire), "request");
      assert.deepEqual(parsed.value.address, { kind: "ipv6", address: text }, raw);
      assert.equal(text, nodeIPv6Text(Buffer.from(raw, "hex")));
      assert.deepEqual(encodeRequest(parsed.value), wire, `re-encoding ${text}`);
    }
  });
});

describe("socks5: incremental parsing", () => {
  const valid: Array<[string, (buf: Buffer) => Parsed<unknown>, Buffer]> = [
    ["greeting", parseGreeting, encodeGreeting([0, 2])],
    ["greeting, 255 methods", parseGreeting, encodeGreeting(Array.from({ length: 255 }, (_, i) => i))],
    ["userpass", parseUserPass, encodeUserPass("cloister", Buffer.from("secret"))],
    ["userpass, empty", parseUserPass, bytes(1, 0, 0)],
    ["request, domain", parseRequest, encodeRequest({ command: "connect", address: { kind: "domain", name: "example.com" }, port: 443 })],
    ["request, ipv4", parseRequest, encodeRequest({ command: "connect", address: { kind: "ipv4", address: "1.2.3.4" }, port: 22 })],
    ["request, ipv6", parseRequest, encodeRequest({ command: "bind", address: { kind: "ipv6", address: "::1" }, port: 0 })],
    ["reply", parseReply, encodeReply(SocksReply.HostUnreachable, { address: "2001:db8::2", port: 9 })],
  ];

  it("gives byte by byte exactly what the whole message gives, at its last byte", () => {
    for (const [name, parse, wire] of valid) {
      const whole = outcome(parse, wire);
      assert.equal(whole.kind, "ok", name);
      assert.deepEqual(feedByteByByte(parse, wire), { at: wire.length, result: whole }, name);
    }
  });

  it("reports a bad byte the moment it arrives, with the same error as the whole message", () => {
    const malformed: Array<[string, (buf: Buffer) => Parsed<unknown>, Buffer, number]> = [
      ["greeting, version 4", parseGreeting, bytes(4, 1, 0), 1],
      ["greeting, NMETHODS 0", parseGreeting, bytes(5, 0, 0, 0), 2],
      ["userpass, version 5", parseUserPass, bytes(5, 1, 0x61, 1, 0x62), 1],
      ["request, command 9", parseRequest, bytes(5, 9, 0, 1, 1, 2, 3, 4, 0, 80), 2],
      ["request, RSV 1", parseRequest, bytes(5, 1, 1, 1, 1, 2, 3, 4, 0, 80), 3],
      ["request, ATYP 2", parseRequest, bytes(5, 1, 0, 2, 1, 2, 3, 4, 0, 80), 4],
      ["request, empty domain", parseRequest, bytes(5, 1, 0, 3, 0, 0, 80), 5],
    ];
    for (const [name, parse, wire, at] of malformed) {
      const whole = outcome(parse, wire);
      assert.equal(whole.kind, "error", name);
      assert.deepEqual(feedByteByByte(parse, wire), { at, result: whole }, name);
    }
  });

  it("parses a pipelined greeting, credentials and request from one buffer", () => {
    const stream = Buffer.concat([
      encodeGreeting([METHOD_USER_PASS]),
      encodeUserPass("u", Buffer.from("p")),
      encodeRequest({ command: "connect", address: { kind: "domain", name: "a.test" }, port: 80 }),
      Buffer.from("early data"),
    ]);
    const greeting = requireComplete(parseGreeting(stream), "greeting");
    const auth = requireComplete(parseUserPass(stream.subarray(greeting.used)), "auth");
    const request = requireComplete(parseRequest(stream.subarray(greeting.used + auth.used)), "request");
    assert.deepEqual(greeting.value.methods, [METHOD_USER_PASS]);
    assert.equal(auth.value.username, "u");
    assert.deepEqual(request.value.address, { kind: "domain", name: "a.test" });
    assert.equal(stream.subarray(greeting.used + auth.used + request.used).toString(), "early data");
  });

  it("reads no further than the message, however much junk follows", () => {
    const junk = Buffer.alloc(4 << 20, 0xff);
    const name = Buffer.alloc(255, 0x61);
    assert.equal(requireComplete(parseRequest(Buffer.concat([bytes(5, 1, 0, 3, 255), name, junk])), "request").used, 5 + 255 + 2);
    assert.equal(requireComplete(parseGreeting(Buffer.concat([bytes(5, 255), junk])), "greeting").used, 257);
  });
});

// ---------------------------------------------------------------------------------------------
// Fuzzing: deterministic, so a failure reproduces; SOCKS_FUZZ_SEED=<n> explores other inputs.


const SEED = Number(process.env.SOCKS_FUZZ_SEED ?? 0x50c55eed) >>> 0;
const RANDOM_CASES = 20_000;
const MUTATION_CASES = 20_000;

class Fuzz {
  constructor(readonly next: () => number) {}
  int(below: number): number {
    return Math.floor(this.next() * below);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  bytes(length: number): Buffer {
    return Buffer.from(Array.from({ length }, () => this.int(256)));
  }
}

/** Each parser with the encoder that must reproduce its input exactly (when one exists). */
const PARSERS: Array<{ name: string; parse: (buf: Buffer) => Parsed<unknown>; reencode?: (value: never) => Buffer; alwaysReplies?: boolean }> = [
  { name: "parseGreeting", parse: parseGreeting, reencode: (v: { methods: number[] }) => encodeGreeting(v.methods) },
  { name: "parseUserPass", parse: parseUserPass, reencode: (v: { username: string; password: Buffer }) => encodeUserPass(v.username, v.password) },
  { name: "parseRequest", parse: parseRequest, reencode: (v: SocksRequest) => encodeRequest(v), alwaysReplies: true },
  { name: "parseReply", parse: parseReply },
  { name: "parseMethodChoice", parse: parseMethodChoice, reencode: (v: { method: number }) => encodeMethodChoice(v.method) },
  { name: "parseUserPassStatus", parse: parseUserPassStatus },
];

const EXTREMES = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x7f, 0x80, 0xfe, 0xff];
const REPLY_CODES = new Set(Object.values(SocksReply).filter((v) => typeof v === "number"));

function validMessage(f: Fuzz): Buffer {
  const name = () => Array.from({ length: 1 + f.int(f.chance(0.1) ? 255 : 20) }, () => String.fromCharCode(f.int(256))).join("");
  const address = (): SocksRequest["address"] => {
    const kind = f.pick(["domain", "ipv4", "ipv6"] as const);
    // Domain names are UTF-8 on the wire: ASCII, and now and then a two-byte letter.
    if (kind === "domain") return { kind, name: Array.from({ length: 1 + f.int(f.chance(0.1) ? 127 : 20) }, () => (f.chance(0.05) ? "а" : String.fromCharCode(f.int(128)))).join("") };
    if (kind === "ipv4") return { kind, address: [...f.bytes(4)].join(".") };
    const raw = Buffer.from(f.bytes(16).map((b) => (f.chance(0.5) ? 0 : b))); // zero runs exercise "::"
    return { kind, address: nodeIPv6Text(raw) };
  };
  switch (f.int(4)) {
    case 0:
      return encodeGreeting(Array.from({ length: 1 + f.int(f.chance(0.1) ? 255 : 4) }, () => f.int(256)));
    case 1:
      return encodeUserPass(f.chance(0.1) ? "" : name(), f.bytes(f.int(f.chance(0.1) ? 256 : 40)));
    case 2:
      return encodeRequest({ command: f.pick(["connect", "bind", "udp-associate"] as const), address: address(), port: f.int(65536) });
    default: {
      const bound = address();
      return bound.kind === "domain" ? encodeReply(f.int(9)) : encodeReply(f.int(9), { address: bound.address, port: f.int(65536) });
    }
  }
}

function mutate(f: Fuzz, input: Buffer): Buffer {
  let buf = Buffer.from(input);
  for (let n = 1 + f.int(4); n > 0; n--) {
    const at = f.int(buf.length + 1);
    switch (f.int(6)) {
      case 0: // bit flip
        if (buf.length > 0) buf[at % buf.length]! ^= 1 << f.int(8);
        break;
      case 1: // truncation
        buf = buf.subarray(0, at);
        break;
      case 2: // insertion
        buf = Buffer.concat([buf.subarray(0, at), f.bytes(1 + f.int(8)), buf.subarray(at)]);
        break;
      case 3: // deletion
        buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at + 1 + f.int(4))]);
        break;
      default: // a length (or any) byte at an extreme; the first five bytes hold every length field
        if (buf.length > 0) buf[f.chance(0.7) ? f.int(Math.min(5, buf.length)) : at % buf.length] = f.pick(EXTREMES);
    }
  }
  return buf;
}

/** Random bytes, but often with a plausible head so the parsers get past the version byte. */
function randomBuffer(f: Fuzz): Buffer {
  const length = f.chance(0.3) ? f.int(9) : f.chance(0.6) ? f.int(41) : f.int(301);
  const buf = f.bytes(length);
  if (f.chance(0.7)) {
    const heads = [[5, 1, 4, 0], [0, 1, 2, 3, 4, 0xff], [0, 1], [1, 3, 4, 0, 0xff]];
    heads.forEach((values, i) => {
      if (i < buf.length && f.chance(0.8)) buf[i] = f.pick(values);
    });
  }
  return buf;
}

type Tally = Map<string, number>;
const count = (tally: Tally, key: string) => tally.set(key, (tally.get(key) ?? 0) + 1);

/** Every invariant a parser must keep on any input; returns the outcome kind for the coverage tally. */
function check(f: Fuzz, parser: (typeof PARSERS)[number], buf: Buffer): string {
  const whole = outcome(parser.parse, buf); // throws if anything but SocksProtocolError escapes
  if (whole.kind === "ok") {
    assert.ok(Number.isInteger(whole.used) && whole.used >= 1 && whole.used <= buf.length, `used ${whole.used} of ${buf.length}`);
    assert.deepEqual(outcome(parser.parse, buf.subarray(0, whole.used)), whole, "the message alone parses the same");
    assert.equal(parser.parse(buf.subarray(0, whole.used - 1)), "incomplete", "one byte less is incomplete");
    if (parser.reencode) assert.deepEqual(parser.reencode(whole.value as never), buf.subarray(0, whole.used), "re-encodes to the same bytes");
  }
  if (whole.kind === "error") {
    assert.ok(whole.reply === undefined || REPLY_CODES.has(whole.reply), `reply ${String(whole.reply)}`);
    if (parser.alwaysReplies) assert.notEqual(whole.reply, undefined, "a bad request always has a reply");
  }
  // A random prefix: what arrived so far must never contradict what the whole buffer gives.
  const prefix = outcome(parser.parse, buf.subarray(0, f.int(buf.length + 1)));
  if (prefix.kind !== "incomplete") {
    if (whole.kind === "ok") assert.deepEqual(prefix, whole, "a prefix holding the message parses the same");
    else assert.deepEqual(prefix, whole, "a prefix fails only as the whole does");
  }
  return whole.kind === "error" ? `error:${whole.reply ?? "-"}` : whole.kind;
}

function runFuzz(kind: string, cases: number, generate: (f: Fuzz) => Buffer): Map<string, Tally> {
  const f = new Fuzz(mulberry32(SEED ^ (kind === "random" ? 0 : 0x9e3779b9)));
  const tallies = new Map(PARSERS.map((p) => [p.name, new Map() as Tally]));
  // Most fuzz inputs throw, and capturing a stack per error was 90% of this test's run time; the
  // failure message below says everything a stack would (seed, case, parser, input).
  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    fuzzCases(kind, cases, generate, f, tallies);
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
  }
  return tallies;
}

function fuzzCases(kind: string, cases: number, generate: (f: Fuzz) => Buffer, f: Fuzz, tallies: Map<string, Tally>): void {
  for (let i = 0; i < cases; i++) {
    const buf = generate(f);
    for (const parser of PARSERS) {
      try {
        count(tallies.get(parser.name)!, check(f, parser, buf));
        // Now and then the whole byte-by-byte feed (quadratic, so not for every case).
        if (i % 97 === 0) {
          const fed = feedByteByByte(parser.parse, buf);
          const whole = outcome(parser.parse, buf);
          assert.deepEqual(fed.result, whole, "byte by byte gives the same result");
        }
      } catch (error) {
        const why = error instanceof Error ? error.message : String(error);
        assert.fail(`${kind} fuzz, SOCKS_FUZZ_SEED=${SEED} case ${i}, ${parser.name}(${hex(buf)}): ${why}`);
      }
    }
  }
}

describe("socks5: fuzz", () => {
  it(`keeps every invariant on ${RANDOM_CASES} random buffers (seed ${SEED})`, () => {
    const tallies = runFuzz("random", RANDOM_CASES, randomBuffer);
    for (const [name, tally] of tallies) assert.ok((tally.get("incomplete") ?? 0) > 0 && [...tally.keys()].some((k) => k.startsWith("error")), name);
  });

  it(`keeps every invariant on ${MUTATION_CASES} mutated valid messages (seed ${SEED})`, () => {
    const tallies = runFuzz("mutation", MUTATION_CASES, (f) => mutate(f, validMessage(f)));
    // Coverage, so a broken generator cannot make the fuzz pass vacuously.
    for (const name of ["parseGreeting", "parseUserPass", "parseRequest", "parseReply"]) {
      const tally = tallies.get(name)!;
      assert.ok((tally.get("ok") ?? 0) > 100, `${name} parsed few mutants: ${JSON.stringify([...tally])}`);
      assert.ok((tally.get("incomplete") ?? 0) > 100, `${name}: ${JSON.stringify([...tally])}`);
    }
    const requests = tallies.get("parseRequest")!;
    for (const reply of [SocksReply.GeneralFailure, SocksReply.CommandNotSupported, SocksReply.AddressTypeNotSupported]) {
      assert.ok((requests.get(`error:${reply}`) ?? 0) > 0, `no request error with reply ${reply}: ${JSON.stringify([...requests])}`);
    }
  });

  it("formats random IPv6 addresses as node does, and reads them back to the same bytes", () => {
    const f = new Fuzz(mulberry32(SEED ^ 0x1928));
    for (let i = 0; i < 2000; i++) {
      const raw = Buffer.from(f.bytes(16).map((b) => (f.chance(0.6) ? 0 : b)));
      if (i % 7 === 0) raw.writeUInt16BE(0xffff, 10);
      const reply = Buffer.concat([bytes(5, 0, 0, 4), raw, bytes(0, 0)]);
      const parsed = requireComplete(parseReply(reply), "reply").value;
      const text = parsed.address.kind === "ipv6" ? parsed.address.address : "";
      assert.equal(text, nodeIPv6Text(raw), `SOCKS_FUZZ_SEED=${SEED} case ${i}: ${hex(raw)}`);
      assert.deepEqual(encodeReply(SocksReply.Succeeded, { address: text, port: 0 }), reply, `round trip of ${text}`);
    }
  });
});
