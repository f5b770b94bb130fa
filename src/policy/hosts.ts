import { isIPv4, isIPv6 } from "node:net";
import { LruMap } from "../lru-map.js";

/**
 * Canonical hosts and authorities for the egress policy (DESIGN.md decision 5: the name is
 * normalized before policy, and the text that was checked is the text that is dialed).
 *
 * Everything goes through the WHATWG URL host parser of an `http:` URL, so that every spelling a
 * client library might send — `127.1`, `0x7f.0.0.1`, `2130706433`, fullwidth digits, `[::ffff:7f00:1]`
 * — comes out as the one address it means, and IDN names come out as punycode exactly as browsers
 * and curl produce them. Around that parser we are stricter than it is: it silently drops tabs and
 * newlines, percent-decodes, and accepts characters no DNS name carries, so those are refused first.
 */

export type Host = { kind: "name"; name: string } | { kind: "ip"; address: string; family: 4 | 6 };

/** Thrown for a host/authority/port that is malformed; the message is shown to the client in a 400 body, so say what is wrong ("host contains a space", "port 0 is out of range 1-65535"). */
export class HostSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HostSyntaxError";
  }
}

const MAX_NAME_LENGTH = 253;
const MAX_LABEL_LENGTH = 63;
/** What a label of a canonical name may hold: letters, digits, hyphen, and underscore (SRV-style names). */
const LABEL_CHAR = /[a-z0-9_-]/;
/** The ASCII a raw host may hold before parsing: name characters, dots, and colons of a bare IPv6 address. */
const RAW_ASCII_CHAR = /[A-Za-z0-9._:-]/;

/** The canonical form of a request's host: a punycode name without trailing dot, or an IP address. */
export function canonicalHost(raw: string): Host {
  if (raw === "") throw new HostSyntaxError("host is empty");
  if (raw.startsWith("[")) return bracketedIPv6(raw);
  rejectForbiddenCharacters(raw);
  if (raw.includes(":")) {
    // Unambiguous without brackets only when the whole text is an IPv6 address (SOCKS5 and
    // resolver output carry it this way); anything else with a colon is a port in the wrong place.
    if (isIPv6(raw)) return ipv6(raw);
    throw new HostSyntaxError("host contains ':' (a port goes after the host, and an IPv6 address goes in brackets: [::1]:443)");
  }
  return nameOrIPv4(raw);
}

/**
 * canonicalHost, remembering its answers by raw text. The proxy canonicalizes the same few hosts
 * again and again (each request on a kept-alive connection, its Host header too), and the URL parser
 * made that ~8 µs of every plain-HTTP request. Only successes are kept, frozen because they are
 * shared; past `limit` the least recently used goes, so endless distinct names cost no memory.
 * One per cloister (EgressContext): shared, it would let a cloister tell from timing which hosts
 * another had just named.
 */
export function rememberingCanonicalHost(limit = 1024): (raw: string) => Host {
  const known = new LruMap<string, Host>(limit);
  return (raw) => {
    const remembered = known.use(raw);
    if (remembered) return remembered;
    const host = Object.freeze(canonicalHost(raw));
    known.set(raw, host);
    return host;
  };
}

/** Splits and checks `host[:port]`; without a port, `defaultPort` is used, and if there is none the authority is malformed. */
export function parseAuthority(raw: string, defaultPort?: number, canonical: (raw: string) => Host = canonicalHost): { host: Host; port: number } {
  const { hostPart, portPart } = splitAuthority(raw);
  const host = canonical(hostPart);
  if (portPart !== null) return { host, port: parsePort(portPart) };
  if (defaultPort === undefined) throw new HostSyntaxError("authority has no port");
  return { host, port: defaultPort };
}

/** "example.com:443", "10.0.0.1:80", "[::1]:443". */
export function formatAuthority(host: Host, port: number): string {
  return `${authorityHost(host)}:${port}`;
}

/** "example.com", "10.0.0.1", "::1" (no brackets). */
export function hostText(host: Host): string {
  return host.kind === "name" ? host.name : host.address;
}

/** The host as it is written in an authority: IPv6 in brackets, everything else as is. */
export function authorityHost(host: Host): string {
  return host.kind === "ip" && host.family === 6 ? `[${host.address}]` : hostText(host);
}

/**
 * Splits `host`, `host:port`, `[v6]` or `[v6]:port` without judging either part. The port part is
 * null when there is no colon, and "" for a trailing colon (which parsePort refuses).
 */
export function splitAuthority(raw: string): { hostPart: string; portPart: string | null } {
  if (raw.startsWith("[")) {
    const close = raw.indexOf("]");
    if (close === -1) throw new HostSyntaxError("'[' without a closing ']'");
    const rest = raw.slice(close + 1);
    if (rest !== "" && !rest.startsWith(":")) throw new HostSyntaxError("unexpected text after ']' (expected ':' and a port)");
    return { hostPart: raw.slice(0, close + 1), portPart: rest === "" ? null : rest.slice(1) };
  }
  const colon = raw.indexOf(":");
  if (colon === -1) return { hostPart: raw, portPart: null };
  if (raw.includes(":", colon + 1)) {
    throw new HostSyntaxError("authority has more than one ':' (an IPv6 address goes in brackets: [::1]:443)");
  }
  return { hostPart: raw.slice(0, colon), portPart: raw.slice(colon + 1) };
}

/**
 * A port is 1 to 5 decimal digits, 1-65535. A leading zero ("0443") is refused rather than read as
 * decimal: some parsers read it as octal, and one port must have one spelling.
 */
export function parsePort(text: string): number {
  if (text === "") throw new HostSyntaxError("port is empty");
  if (!/^[0-9]+$/.test(text)) throw new HostSyntaxError(`port ${quote(text)} is not a decimal number`);
  if (text.length > 1 && text.startsWith("0")) throw new HostSyntaxError(`port ${quote(text)} has a leading zero`);
  const port = text.length > 5 ? Infinity : Number(text);
  if (port < 1 || port > 65535) throw new HostSyntaxError(`port ${quote(text)} is out of range 1-65535`);
  return port;
}

function bracketedIPv6(raw: string): Host {
  const close = raw.indexOf("]");
  if (close === -1) throw new HostSyntaxError("'[' without a closing ']'");
  if (close !== raw.length - 1) throw new HostSyntaxError("host has text after ']' (a port goes in the authority, not the host)");
  const inner = raw.slice(1, -1);
  if (inner.includes("%")) throw new HostSyntaxError("host contains an IPv6 zone id ('%'), which is not allowed");
  if (isIPv4(inner)) throw new HostSyntaxError("brackets are only for IPv6 addresses");
  if (!isIPv6(inner)) throw new HostSyntaxError("host in brackets is not a valid IPv6 address");
  return ipv6(inner);
}

/** The WHATWG serialization: compressed, lower case, embedded IPv4 written as hex groups. */
function ipv6(address: string): Host {
  const parsed = whatwgHostname(`[${address}]`);
  if (parsed === null) throw new HostSyntaxError("host is not a valid IPv6 address");
  return { kind: "ip", address: parsed.slice(1, -1), family: 6 };
}

function nameOrIPv4(raw: string): Host {
  const parsed = whatwgHostname(raw);
  if (parsed === null) throw new HostSyntaxError(invalidHostReason(raw));
  if (isIPv4(parsed)) return { kind: "ip", address: parsed, family: 4 };
  return { kind: "name", name: checkedName(parsed) };
}

/** The URL parser refuses a name whose last label is numeric unless the whole is an IPv4 address. */
function invalidHostReason(raw: string): string {
  const last = raw.replace(/\.$/, "").split(".").pop() ?? "";
  return /^(0x[0-9a-f]*|[0-9]+)$/i.test(last)
    ? "host ends in a number but is not a valid IPv4 address"
    : "host is not a valid domain name";
}

/** Applies DNS limits to the parser's output, which may still hold empty labels or non-DNS characters. */
function checkedName(parsed: string): string {
  const name = parsed.endsWith(".") ? parsed.slice(0, -1) : parsed;
  if (name === "") throw new HostSyntaxError("host is empty");
  if (name.length > MAX_NAME_LENGTH) throw new HostSyntaxError(`host name is longer than ${MAX_NAME_LENGTH} characters`);
  for (const label of name.split(".")) {
    if (label === "") throw new HostSyntaxError("host has an empty label (two dots in a row, or a leading dot)");
    if (label.length > MAX_LABEL_LENGTH) throw new HostSyntaxError(`host has a label longer than ${MAX_LABEL_LENGTH} characters`);
    const bad = [...label].find((c) => !LABEL_CHAR.test(c));
    if (bad !== undefined) throw new HostSyntaxError(`host contains ${describeChar(bad)}`);
  }
  return name;
}

/**
 * Refuses, with a message that says which, every ASCII character that is neither letter, digit,
 * '.', '-', '_' nor (for IPv6) ':'. The URL parser would strip some of them silently and
 * percent-decode others, so they must never reach it. Non-ASCII goes on to IDN processing.
 */
function rejectForbiddenCharacters(raw: string): void {
  const bad = [...raw].find((c) => isControl(c) || (c < "\u0080" && !RAW_ASCII_CHAR.test(c)));
  if (bad !== undefined) throw new HostSyntaxError(`host contains ${describeChar(bad)}`);
}

/** C0 and C1 controls and DEL. */
function isControl(c: string): boolean {
  return /[\u0000-\u001f\u007f-\u009f]/.test(c);
}

const CHAR_NOTES: Readonly<Record<string, string>> = {
  " ": "a space",
  "@": "'@' (user info is not allowed in a host)",
  "/": "'/' (a host has no path)",
  "\\": "'\\' (a host has no path)",
  "?": "'?' (a host has no query)",
  "#": "'#' (a host has no fragment)",
  "%": "'%' (percent-encoding is not allowed in a host)",
  "*": "'*' (wildcards belong in rules, not in requests)",
  "[": "'[' (only a whole IPv6 address goes in brackets)",
  "]": "']' (only a whole IPv6 address goes in brackets)",
};

function describeChar(c: string): string {
  if (c === "\u0000") return "a NUL byte";
  if (isControl(c)) return `a control character (U+${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, "0")})`;
  return CHAR_NOTES[c] ?? `'${c}'`;
}

/** The hostname the WHATWG parser makes of `text` as the host of an http URL, or null if it refuses it. */
function whatwgHostname(text: string): string | null {
  try {
    return new URL(`http://${text}/`).hostname;
  } catch {
    return null;
  }
}

/** Echoes client text into a message visibly (escaped) and briefly. */
function quote(text: string): string {
  return JSON.stringify(text.length > 20 ? `${text.slice(0, 20)}…` : text);
}
