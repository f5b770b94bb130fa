/**
 * SOCKS5 wire format (RFC 1928) with username/password authentication (RFC 1929): pure functions
 * over Buffers, no sockets, no name resolution.
 *
 * Written by hand on purpose. The SOCKS server libraries on npm either resolve the requested name
 * themselves or own the socket and the reply; the guardian must run its policy on the name *before*
 * anything is resolved (DESIGN.md decision 5) and choose every reply itself (a refusal must say
 * "not allowed by ruleset", never leak what a lookup found). Only the byte layout lives here; the
 * decisions live in the proxy.
 *
 * Parsers are incremental and hostile-input safe:
 * - They take everything received so far and return "incomplete" until a whole message is there,
 *   or the value and how many bytes it used (the rest belongs to whatever comes next).
 * - Fields are checked in wire order, as soon as their byte arrives. So a bad byte is reported the
 *   moment it is received, and feeding a message one byte at a time ends in exactly the same result
 *   (value or error) as feeding it at once.
 * - Every length on the wire is one byte, so no message exceeds 513 bytes (username/password; a
 *   request is at most 262) and no parser reads, loops over or copies more than that, whatever the
 *   client claims or sends. A server still bounds how long it waits for the rest.
 * - The only thing they throw is SocksProtocolError (never a RangeError from reading past the end).
 *
 * Encoders take values from our own code; invalid arguments are programming errors (TypeError).
 * The client-side halves (encodeGreeting, encodeUserPass, encodeRequest and the reply parsers) are
 * here so tests can speak to the guardian and round-trip every message.
 */

export const SOCKS_VERSION = 0x05;
/** RFC 1929's own version byte for the username/password sub-negotiation. */
export const USER_PASS_VERSION = 0x01;

export const METHOD_NO_AUTH = 0x00,
  METHOD_USER_PASS = 0x02,
  METHOD_NONE_ACCEPTABLE = 0xff;

/** REP field of a reply (RFC 1928 section 6). */
export enum SocksReply {
  Succeeded = 0,
  GeneralFailure = 1,
  NotAllowedByRuleset = 2,
  NetworkUnreachable = 3,
  HostUnreachable = 4,
  ConnectionRefused = 5,
  TtlExpired = 6,
  CommandNotSupported = 7,
  AddressTypeNotSupported = 8,
}

/**
 * The peer broke the protocol. `reply`, when set, is the REP code to send before closing: only a
 * malformed request can be answered with one. A malformed greeting or sub-negotiation has no reply
 * of this form (and nothing trustworthy to answer), so the server just closes.
 */
export class SocksProtocolError extends Error {
  constructor(
    message: string,
    readonly reply?: SocksReply,
  ) {
    super(message);
    this.name = "SocksProtocolError";
  }
}

export type Parsed<T> = { value: T; used: number } | "incomplete";

const INCOMPLETE = "incomplete" as const;

/**
 * For when the peer has stopped sending (end of stream, or the server's wait is over): a message
 * still "incomplete" then is a truncated one, which is a protocol error like any other. `reply` as
 * in SocksProtocolError (a half-closed client of a truncated request can still read one).
 */
export function requireComplete<T>(parsed: Parsed<T>, what: string, reply?: SocksReply): { value: T; used: number } {
  if (parsed === INCOMPLETE) throw new SocksProtocolError(`${what}: truncated message`, reply);
  return parsed;
}

const CMD_CONNECT = 0x01,
  CMD_BIND = 0x02,
  CMD_UDP_ASSOCIATE = 0x03;
const ATYP_IPV4 = 0x01,
  ATYP_DOMAIN = 0x03,
  ATYP_IPV6 = 0x04;

function hex(byte: number): string {
  return `0x${byte.toString(16).padStart(2, "0")}`;
}

// ---------------------------------------------------------------------------------------------
// Method negotiation

export interface Greeting {
  methods: readonly number[];
}

/** VER NMETHODS METHODS... (client → server, first message). */
export function parseGreeting(buf: Buffer): Parsed<Greeting> {
  const version = buf[0];
  if (version === undefined) return INCOMPLETE;
  if (version !== SOCKS_VERSION) throw new SocksProtocolError(`SOCKS greeting: version ${hex(version)}, expected 0x05`);
  const count = buf[1];
  if (count === undefined) return INCOMPLETE;
  if (count === 0) throw new SocksProtocolError("SOCKS greeting: no authentication methods offered");
  const used = 2 + count;
  if (buf.length < used) return INCOMPLETE;
  return { value: { methods: [...buf.subarray(2, used)] }, used };
}

/** VER METHOD (server → client); METHOD_NONE_ACCEPTABLE tells the client to close. */
export function encodeMethodChoice(method: number): Buffer {
  return Buffer.from([SOCKS_VERSION, checkByte(method, "method")]);
}

/** Client side of the greeting. */
export function encodeGreeting(methods: readonly number[]): Buffer {
  if (methods.length < 1 || methods.length > 255) throw new TypeError("a SOCKS greeting offers 1 to 255 methods");
  return Buffer.from([SOCKS_VERSION, methods.length, ...methods.map((m) => checkByte(m, "method"))]);
}

/** Client side: the server's method choice. */
export function parseMethodChoice(buf: Buffer): Parsed<{ method: number }> {
  const version = buf[0];
  if (version === undefined) return INCOMPLETE;
  if (version !== SOCKS_VERSION) throw new SocksProtocolError(`SOCKS method choice: version ${hex(version)}, expected 0x05`);
  const method = buf[1];
  if (method === undefined) return INCOMPLETE;
  return { value: { method }, used: 2 };
}

// ---------------------------------------------------------------------------------------------
// Username/password sub-negotiation (RFC 1929)

export interface Credentials {
  /**
   * Decoded latin1: one char per byte, so distinct byte strings stay distinct (UTF-8 decoding would
   * fold every invalid sequence into U+FFFD) and control bytes survive for the caller to reject.
   */
  username: string;
  /** Raw bytes, for a constant-time comparison with the token. */
  password: Buffer;
}

/**
 * VER=1 ULEN UNAME PLEN PASSWD. RFC 1929 says lengths are 1..255, but zero is accepted: curl sends
 * PLEN 0 for a proxy URL with an empty password, and an empty credential simply fails the
 * comparison, with the same answer as a wrong one.
 */
export function parseUserPass(buf: Buffer): Parsed<Credentials> {
  const version = buf[0];
  if (version === undefined) return INCOMPLETE;
  if (version !== USER_PASS_VERSION) {
    throw new SocksProtocolError(`SOCKS username/password: version ${hex(version)}, expected 0x01`);
  }
  const userLength = buf[1];
  if (userLength === undefined) return INCOMPLETE;
  const passLengthAt = 2 + userLength;
  const passLength = buf[passLengthAt];
  if (passLength === undefined) return INCOMPLETE;
  const used = passLengthAt + 1 + passLength;
  if (buf.length < used) return INCOMPLETE;
  return {
    value: {
      username: buf.toString("latin1", 2, passLengthAt),
      // A copy, so holding the credentials does not pin (or alias) the connection's read buffer.
      password: Buffer.from(buf.subarray(passLengthAt + 1, used)),
    },
    used,
  };
}

/** VER=1 STATUS (server → client); any non-zero status is a failure and the server then closes. */
export function encodeUserPassStatus(ok: boolean): Buffer {
  return Buffer.from([USER_PASS_VERSION, ok ? 0x00 : 0x01]);
}

/** Client side of the sub-negotiation; the username is sent as latin1 (see Credentials). */
export function encodeUserPass(username: string, password: Buffer | string): Buffer {
  const user = latin1Bytes(username, "username");
  const pass = typeof password === "string" ? Buffer.from(password, "utf8") : password;
  if (user.length > 255 || pass.length > 255) throw new TypeError("SOCKS username and password are at most 255 bytes");
  return Buffer.concat([Buffer.from([USER_PASS_VERSION, user.length]), user, Buffer.from([pass.length]), pass]);
}

/** Client side: the server's verdict on the credentials. */
export function parseUserPassStatus(buf: Buffer): Parsed<{ ok: boolean }> {
  const version = buf[0];
  if (version === undefined) return INCOMPLETE;
  if (version !== USER_PASS_VERSION) {
    throw new SocksProtocolError(`SOCKS username/password status: version ${hex(version)}, expected 0x01`);
  }
  const status = buf[1];
  if (status === undefined) return INCOMPLETE;
  return { value: { ok: status === 0x00 }, used: 2 };
}

// ---------------------------------------------------------------------------------------------
// Request and reply

/**
 * The address as the client sent it. A domain is never resolved or reinterpreted here: a name that
 * spells an IP literal stays kind "domain", and the policy must treat it as the literal it is.
 */
export type SocksAddress = { kind: "domain"; name: string } | { kind: "ipv4"; address: string } | { kind: "ipv6"; address: string };

export interface SocksRequest {
  command: "connect" | "bind" | "udp-associate";
  address: SocksAddress;
  /** 0..65535 as sent; port 0 and anything else the rule does not allow are the policy's to refuse. */
  port: number;
}

const COMMANDS: ReadonlyMap<number, SocksRequest["command"]> = new Map([
  [CMD_CONNECT, "connect"],
  [CMD_BIND, "bind"],
  [CMD_UDP_ASSOCIATE, "udp-associate"],
]);

/**
 * VER CMD RSV ATYP DST.ADDR DST.PORT. Known but unsupported commands (bind, udp-associate) parse,
 * so the server can answer them with CommandNotSupported after logging what was asked.
 */
export function parseRequest(buf: Buffer): Parsed<SocksRequest> {
  const version = buf[0];
  if (version === undefined) return INCOMPLETE;
  if (version !== SOCKS_VERSION) {
    throw new SocksProtocolError(`SOCKS request: version ${hex(version)}, expected 0x05`, SocksReply.GeneralFailure);
  }
  const code = buf[1];
  if (code === undefined) return INCOMPLETE;
  const command = COMMANDS.get(code);
  if (command === undefined) {
    throw new SocksProtocolError(`SOCKS request: unknown command ${hex(code)}`, SocksReply.CommandNotSupported);
  }
  const target = parseAddressAndPort(buf, "SOCKS request", true);
  if (target === INCOMPLETE) return INCOMPLETE;
  return { value: { command, address: target.value.address, port: target.value.port }, used: target.used };
}

/** Client side of the request. */
export function encodeRequest(request: SocksRequest): Buffer {
  const code = [...COMMANDS].find(([, name]) => name === request.command)?.[0];
  if (code === undefined) throw new TypeError(`unknown SOCKS command ${String(request.command)}`);
  return Buffer.concat([Buffer.from([SOCKS_VERSION, code]), encodeAddressAndPort(request.address, request.port)]);
}

/** VER REP RSV ATYP BND.ADDR BND.PORT; the bound address defaults to 0.0.0.0:0 (nothing to tell). */
export function encodeReply(reply: SocksReply, bound?: { address: string; port: number }): Buffer {
  const address: SocksAddress = bound
    ? ipv4Bytes(bound.address)
      ? { kind: "ipv4", address: bound.address }
      : { kind: "ipv6", address: bound.address }
    : { kind: "ipv4", address: "0.0.0.0" };
  return Buffer.concat([Buffer.from([SOCKS_VERSION, checkByte(reply, "reply")]), encodeAddressAndPort(address, bound?.port ?? 0)]);
}

export interface SocksReplyMessage {
  /** Usually a SocksReply; any byte a server sends is passed through. */
  reply: number;
  address: SocksAddress;
  port: number;
}

/** Client side: the server's reply to a request. */
export function parseReply(buf: Buffer): Parsed<SocksReplyMessage> {
  const version = buf[0];
  if (version === undefined) return INCOMPLETE;
  if (version !== SOCKS_VERSION) throw new SocksProtocolError(`SOCKS reply: version ${hex(version)}, expected 0x05`);
  const reply = buf[1];
  if (reply === undefined) return INCOMPLETE;
  const bound = parseAddressAndPort(buf, "SOCKS reply", false);
  if (bound === INCOMPLETE) return INCOMPLETE;
  return { value: { reply, address: bound.value.address, port: bound.value.port }, used: bound.used };
}

/**
 * RSV ATYP ADDR PORT from offset 2, shared by requests and replies. Only a request error carries a
 * reply code (a client has no one to answer).
 */
function parseAddressAndPort(buf: Buffer, what: string, answerable: boolean): Parsed<{ address: SocksAddress; port: number }> {
  const fail = (message: string, reply: SocksReply) => new SocksProtocolError(`${what}: ${message}`, answerable ? reply : undefined);
  const reserved = buf[2];
  if (reserved === undefined) return INCOMPLETE;
  if (reserved !== 0x00) throw fail(`reserved byte is ${hex(reserved)}, must be 0x00`, SocksReply.GeneralFailure);
  const type = buf[3];
  if (type === undefined) return INCOMPLETE;
  let addressEnd: number;
  if (type === ATYP_IPV4) addressEnd = 4 + 4;
  else if (type === ATYP_IPV6) addressEnd = 4 + 16;
  else if (type === ATYP_DOMAIN) {
    const length = buf[4];
    if (length === undefined) return INCOMPLETE;
    if (length === 0) throw fail("empty domain name", SocksReply.GeneralFailure);
    addressEnd = 5 + length;
  } else {
    throw fail(`unknown address type ${hex(type)}`, SocksReply.AddressTypeNotSupported);
  }
  const used = addressEnd + 2;
  if (buf.length < used) return INCOMPLETE;
  const address: SocksAddress =
    type === ATYP_IPV4
      ? { kind: "ipv4", address: formatIPv4(buf.subarray(4, addressEnd)) }
      : type === ATYP_IPV6
        ? { kind: "ipv6", address: formatIPv6(buf.subarray(4, addressEnd)) }
        : { kind: "domain", name: domainName(buf.subarray(5, addressEnd), fail) };
  return { value: { address, port: buf.readUInt16BE(addressEnd) }, used };
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

/**
 * A request's domain name as the client meant it: UTF-8 (an IDN becomes its own punycode in the
 * policy; read as latin1, `аpple.com` in Cyrillic became xn--pple-4ga79a.com, which is `ð°pple.com`).
 * NUL and control bytes stay for the policy to reject by name; bytes that are no UTF-8 are refused here.
 */
function domainName(bytes: Buffer, fail: (message: string, reply: SocksReply) => SocksProtocolError): string {
  try {
    return UTF8.decode(bytes);
  } catch {
    throw fail("the domain name is not UTF-8 (send an international name as UTF-8 or as punycode, xn--…)", SocksReply.GeneralFailure);
  }
}

function encodeAddressAndPort(address: SocksAddress, port: number): Buffer {
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw new TypeError(`port ${port} is not 0..65535`);
  let head: Buffer;
  if (address.kind === "domain") {
    const name = Buffer.from(address.name, "utf8");
    if (name.length < 1 || name.length > 255) throw new TypeError("a SOCKS domain name is 1 to 255 bytes");
    if (UTF8.decode(name) !== address.name) throw new TypeError("a SOCKS domain name must be well-formed Unicode (no lone surrogates)");
    head = Buffer.concat([Buffer.from([0x00, ATYP_DOMAIN, name.length]), name]);
  } else if (address.kind === "ipv4") {
    const bytes = ipv4Bytes(address.address);
    if (!bytes) throw new TypeError(`not an IPv4 address: ${JSON.stringify(address.address)}`);
    head = Buffer.concat([Buffer.from([0x00, ATYP_IPV4]), bytes]);
  } else {
    const bytes = ipv6Bytes(address.address);
    if (!bytes) throw new TypeError(`not an IPv6 address: ${JSON.stringify(address.address)}`);
    head = Buffer.concat([Buffer.from([0x00, ATYP_IPV6]), bytes]);
  }
  const tail = Buffer.alloc(2);
  tail.writeUInt16BE(port);
  return Buffer.concat([head, tail]);
}

function checkByte(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xff) throw new TypeError(`${what} ${value} is not a byte`);
  return value;
}

/** Buffer.from(s, "latin1") silently drops the high bits of wider chars; refuse them instead. */
function latin1Bytes(text: string, what: string): Buffer {
  if (/[^\x00-\xff]/.test(text)) throw new TypeError(`SOCKS ${what} has characters beyond latin1`);
  return Buffer.from(text, "latin1");
}

// ---------------------------------------------------------------------------------------------
// IP address text. Written here rather than taken from node:net so this file stays free of
// socket modules; the output matches what node reports as a socket's address.

function formatIPv4(bytes: Buffer): string {
  return [...bytes].join(".");
}

/**
 * RFC 5952 text: lowercase, no leading zeros, the longest run (first on a tie) of two or more zero
 * groups as "::". Like node's (libuv's) inet_ntop, which is what socket.remoteAddress shows, an
 * address whose first 96 bits are 0 or ::ffff:0:0/96 ends in dotted IPv4 (::ffff:127.0.0.1), so
 * logs and the policy see the same spelling for the same address, and a reader sees the loopback.
 */
function formatIPv6(bytes: Buffer): string {
  const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2));
  const zeros = (from: number, to: number) => groups.slice(from, to).every((g) => g === 0);
  if (zeros(0, 5) && groups[5] === 0xffff) return `::ffff:${formatIPv4(bytes.subarray(12))}`;
  if (zeros(0, 6) && groups[6] !== 0) return `::${formatIPv4(bytes.subarray(12))}`;
  let bestStart = -1;
  let bestLength = 1; // a single zero group is not compressed
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j;
  }
  const text = groups.map((g) => g.toString(16));
  if (bestStart < 0) return text.join(":");
  return `${text.slice(0, bestStart).join(":")}::${text.slice(bestStart + bestLength).join(":")}`;
}

/** Strict dotted quad: four decimal octets, no leading zeros (which some parsers read as octal). */
function ipv4Bytes(text: string): Buffer | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255)) return undefined;
  return Buffer.from(parts.map(Number));
}

/** IPv6 text to bytes: "::" once at most, an IPv4 tail allowed, a zone (%eth0) dropped (no wire form). */
function ipv6Bytes(text: string): Buffer | undefined {
  const address = text.replace(/%[^%]+$/, "");
  const halves = address.split("::");
  if (halves.length > 2) return undefined;
  const toGroups = (part: string, allowIPv4Tail: boolean): number[] | undefined => {
    if (part === "") return [];
    const pieces = part.split(":");
    const groups: number[] = [];
    for (const [i, piece] of pieces.entries()) {
      if (allowIPv4Tail && i === pieces.length - 1 && piece.includes(".")) {
        const v4 = ipv4Bytes(piece);
        if (!v4) return undefined;
        groups.push(v4.readUInt16BE(0), v4.readUInt16BE(2));
      } else if (/^[0-9a-fA-F]{1,4}$/.test(piece)) {
        groups.push(parseInt(piece, 16));
      } else {
        return undefined;
      }
    }
    return groups;
  };
  const compressed = halves.length === 2;
  const head = toGroups(halves[0] ?? "", !compressed);
  const tail = compressed ? toGroups(halves[1] ?? "", true) : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (compressed ? missing < 1 : missing !== 0) return undefined;
  const groups = [...head, ...Array<number>(missing).fill(0), ...tail];
  const bytes = Buffer.alloc(16);
  groups.forEach((g, i) => bytes.writeUInt16BE(g, i * 2));
  return bytes;
}
