import { isIPv6 } from "node:net";
import { getPublicSuffix, parse as parseDomain } from "tldts";
import { HostSyntaxError, authorityHost, canonicalHost, parsePort, splitAuthority, type Host } from "./hosts.js";

/**
 * Egress rules: `example.com`, `*.example.com` (every subdomain at any depth, not the apex),
 * `example.com:8443`, `example.com:80,8080`, `10.1.2.3:5432`, `[2001:db8::1]:443`. Rules are
 * parsed strictly and canonicalized once, so matching is plain comparison of canonical text.
 */
export interface EgressRule {
  text: string; // canonical text of the rule, e.g. "*.example.com:8443", for messages and audit
  kind: "exact" | "wildcard" | "ip";
  host: string; // canonical name (for wildcard: the suffix without "*.") or canonical IP text
  ports: readonly number[] | null; // null = no port written: see coversPort
  private: boolean; // opts in to non-public addresses (loopback, RFC1918, ULA, CGNAT, link-local, metadata)
  /** A human's answer for one cloister's session, not a --allow/--deny flag: undone otherwise (see refusalMessage). */
  answered?: true;
}

export class RuleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RuleError";
  }
}

/** The ports an allow rule without a port list allows. */
export const DEFAULT_PORTS: readonly number[] = [80, 443];

/** Which list a rule is on: it decides what a rule without a port covers. */
export type RuleList = "allow" | "deny";

const WILDCARD_PREFIX = "*.";

/**
 * Parses one rule; surrounding whitespace is ignored, everything else must be exact. `list` is where
 * the rule goes: the checks are the same on both, the refusals speak of allowing or of denying.
 */
export function parseRule(text: string, options: { private?: boolean; list?: RuleList } = {}): EgressRule {
  const written = text.trim();
  const fail: Fail = (problem, instead) => {
    throw new RuleError(`egress rule ${JSON.stringify(written)}: ${problem}; ${instead}`);
  };
  if (written === "") fail("the rule is empty", 'write a host such as "example.com" or "*.example.com:8443"');
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(written)) fail("a rule names a host, not a URL", 'write just the host and port, e.g. "example.com:443"');
  if (isIPv6(written)) fail("an IPv6 address in a rule goes in brackets", `write "[${written}]" or "[${written}]:443"`);
  if (written.startsWith(".")) fail("a leading dot is not a wildcard here", `write "*${written}" for every subdomain, and "${written.slice(1)}" for the domain itself`);

  const { hostPart, portPart } = hostSyntax(() => splitAuthority(written), fail);
  const ports = portPart === null ? null : parsePortList(portPart, fail);
  const target = parseRuleHost(hostPart, options.list ?? "allow", fail);
  const canonical = ports === null ? target.written : `${target.written}:${ports.join(",")}`;
  return { text: canonical, kind: target.kind, host: target.host, ports, private: options.private === true };
}

/** Whether `rule`, on `list`, covers `host:port`. Both sides are canonical, so this compares text. */
export function ruleMatches(rule: EgressRule, list: RuleList, host: Host, port: number): boolean {
  if (!coversPort(rule, list, port)) return false;
  switch (rule.kind) {
    case "ip":
      return host.kind === "ip" && host.address === rule.host;
    case "exact":
      return host.kind === "name" && host.name === rule.host;
    case "wildcard":
      // The dot keeps label boundaries: "evilexample.com" is not under "example.com".
      return host.kind === "name" && host.name.endsWith(`.${rule.host}`);
  }
}

/**
 * A rule without a port: an allow opens the web ports only (the narrow default), a deny shuts the
 * host on every port, because "deny bad.example" means the host; covering only 80 and 443 let an
 * allow of `*.example:8080` reach the very host the user had denied.
 */
export function coversPort(rule: EgressRule, list: RuleList, port: number): boolean {
  if (rule.ports === null) return list === "deny" || DEFAULT_PORTS.includes(port);
  return rule.ports.includes(port);
}

type Fail = (problem: string, instead: string) => never;

/** What to write instead of a rule for every host: on the deny list, that is what `proxy.unlisted` is for. */
const EVERY_HOST_INSTEAD: Readonly<Record<RuleList, string>> = {
  allow: 'list the hosts instead, e.g. "example.com" or "*.example.com"',
  deny: 'name the hosts to deny, e.g. "tracker.example.com" or "*.example.com"; to refuse every host no rule allows, set proxy.unlisted: deny',
};

/** The host side of a rule; `written` is its canonical text as it appears in the rule's text. */
interface RuleTarget {
  kind: EgressRule["kind"];
  host: string;
  written: string;
}

function parseRuleHost(hostPart: string, list: RuleList, fail: Fail): RuleTarget {
  if (hostPart === "*") fail(`a bare '*' would ${list} every host`, EVERY_HOST_INSTEAD[list]);
  const wildcard = hostPart.startsWith(WILDCARD_PREFIX);
  const base = wildcard ? hostPart.slice(WILDCARD_PREFIX.length) : hostPart;
  if (base.includes("*")) {
    fail("'*' may only be the whole leftmost label, followed by a dot", 'write "*.example.com" for every subdomain of example.com');
  }
  const host = hostSyntax(() => canonicalHost(base), fail);
  if (host.kind === "ip") {
    if (wildcard) fail("a wildcard cannot cover IP addresses", `write the address itself, e.g. "${authorityHost(host)}:443"`);
    return { kind: "ip", host: host.address, written: authorityHost(host) };
  }
  if (wildcard) checkWildcardBase(host.name, fail);
  else checkExactName(host.name, fail);
  return wildcard
    ? { kind: "wildcard", host: host.name, written: `${WILDCARD_PREFIX}${host.name}` }
    : { kind: "exact", host: host.name, written: host.name };
}

/**
 * A wildcard over a public suffix (ICANN or private section of the list, e.g. `com`, `co.uk`,
 * `github.io`, `s3.amazonaws.com`) would cover every unrelated party registered under it. A single
 * label is a top-level domain even when the list does not know it (`internal`, `localhost`): the
 * list's default rule makes it its own suffix, which is what we want.
 */
function checkWildcardBase(name: string, fail: Fail): void {
  if (getPublicSuffix(name, { allowPrivateDomains: true, extractHostname: false }) !== name) return;
  const what = name.includes(".") ? "a public suffix" : "a top-level domain";
  fail(
    `"${name}" is ${what}, so the wildcard would match every site registered under it`,
    `name a domain under it instead, e.g. "*.example.${name}"`,
  );
}

/** An exact rule for a top-level domain itself (`com`) is a mistake, never a service to reach. */
function checkExactName(name: string, fail: Fail): void {
  if (name.includes(".")) return;
  if (!parseDomain(name, { extractHostname: false }).isIcann) return;
  fail(`"${name}" is a top-level domain, not a host`, `name the host, e.g. "example.${name}"`);
}

/** "80,8080": each port strict (see parsePort), no repeats; kept in ascending order so one rule has one text. */
function parsePortList(text: string, fail: Fail): number[] {
  const ports = text.split(",").map((part) => hostSyntax(() => parsePort(part), fail, 'write ports as decimal numbers separated by commas, e.g. "example.com:80,8080"'));
  const repeated = ports.find((port, i) => ports.indexOf(port) !== i);
  if (repeated !== undefined) fail(`port ${repeated} is listed twice`, "list each port once");
  return ports.sort((a, b) => a - b);
}

/** Runs a host-syntax step, turning its HostSyntaxError into a RuleError that names the rule. */
function hostSyntax<T>(step: () => T, fail: Fail, instead = 'write HOST, HOST:PORT or HOST:PORT,PORT, e.g. "example.com:443"'): T {
  try {
    return step();
  } catch (error) {
    if (error instanceof HostSyntaxError) return fail(error.message, instead);
    throw error;
  }
}
