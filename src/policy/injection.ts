/**
 * Credential injection rules and the swap decision (SECURITY.md, "Credentials"). A cloister holds
 * only a placeholder for each brokered secret; on an intercepted request the guardian replaces the
 * placeholder with the real value, and only when
 *   - the request goes to a host:port the secret's rule names (exact canonical host, no wildcards),
 *   - over TLS the guardian verified (the caller only asks for TLS requests it terminated),
 *   - in the rule's header, in exactly the rule's format.
 * A placeholder anywhere else (another header, the URL, another host, plain HTTP) blocks the request:
 * it can only get there by a client, or an injected prompt, sending it where it does not belong.
 * Client-supplied values of an injection header are stripped, so the origin never sees a value the
 * guardian did not put there.
 *
 * Pure: no I/O. The guardian's broker feeds it the rules, placeholders and real values.
 */
import { canonicalHost, HostSyntaxError } from "./hosts.js";

/** How a secret is presented to its host. */
export type Presentation =
  /** `header: format` with `{}` standing for the value, e.g. `authorization: Bearer {}`. */
  | { kind: "header"; header: string; format: string }
  /** `authorization: Basic base64(user:value)`. */
  | { kind: "basic"; user: string };

export interface InjectionHost {
  /** A canonical DNS name (lower case, punycode, no trailing dot). */
  host: string;
  ports: readonly number[];
}

export interface InjectionRule {
  secret: string;
  hosts: readonly InjectionHost[];
  present: Presentation;
  /** A known prefix the placeholder keeps (e.g. Google's `AIza`, which has no separator to infer it from). */
  prefix?: string;
  /** Where the rule comes from, for messages: built in, or set with `cloister secret set --host`. */
  origin: "builtin" | "user";
}

/** A rule in force for one cloister: its placeholder there, and the real value to put in its place. */
export interface ActiveRule {
  rule: InjectionRule;
  placeholder: string;
  /** Undefined while the vault is locked: the request is then refused rather than sent without it. */
  real: string | undefined;
}

export class InjectionRuleError extends Error {}

const DEFAULT_PORTS = [443] as const;
const HEADER_NAME_RE = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;
/** Headers the guardian owns: letting a rule write them would let it steer the request. */
const FORBIDDEN_HEADERS = new Set(["host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "proxy-authorization", "cookie"]);

/**
 * Built-in rules for the agents' credentials (`cloister setup AGENT` stores them under these names).
 * A user rule for the same secret name replaces the built-in one (e.g. a company API gateway).
 */
export const BUILTIN_RULES: readonly InjectionRule[] = [
  { secret: "claude.api_key", hosts: [{ host: "api.anthropic.com", ports: DEFAULT_PORTS }], present: { kind: "header", header: "x-api-key", format: "{}" }, prefix: "sk-ant-api03-", origin: "builtin" },
  { secret: "claude.oauth_token", hosts: [{ host: "api.anthropic.com", ports: DEFAULT_PORTS }], present: { kind: "header", header: "authorization", format: "Bearer {}" }, prefix: "sk-ant-oat01-", origin: "builtin" },
  { secret: "codex.api_key", hosts: [{ host: "api.openai.com", ports: DEFAULT_PORTS }], present: { kind: "header", header: "authorization", format: "Bearer {}" }, origin: "builtin" },
  { secret: "gemini.api_key", hosts: [{ host: "generativelanguage.googleapis.com", ports: DEFAULT_PORTS }], present: { kind: "header", header: "x-goog-api-key", format: "{}" }, prefix: "AIza", origin: "builtin" },
];

/** The rules in force: user rules, then the built-in ones no user rule replaced. */
export function effectiveRules(user: readonly InjectionRule[]): InjectionRule[] {
  const named = new Set(user.map((rule) => rule.secret));
  return [...user, ...BUILTIN_RULES.filter((rule) => !named.has(rule.secret))];
}

/** `api.example.com` or `api.example.com:8443` (port 443 when omitted), as a canonical DNS name. */
export function parseInjectionHost(text: string): InjectionHost {
  const match = /^([^:]+)(?::(\d{1,5}))?$/.exec(text.trim());
  if (!match?.[1]) throw new InjectionRuleError(`${JSON.stringify(text)} is not a host name with an optional port (api.example.com or api.example.com:8443)`);
  let host;
  try {
    host = canonicalHost(match[1]);
  } catch (error) {
    if (error instanceof HostSyntaxError) throw new InjectionRuleError(`${JSON.stringify(text)}: ${error.message}`);
    throw error;
  }
  // A secret goes to a named service whose certificate the guardian verifies; a wildcard or an
  // address would widen where the real value can go.
  if (host.kind !== "name") throw new InjectionRuleError(`${JSON.stringify(text)}: a secret is injected for a host name, not an IP address`);
  if (match[1].includes("*")) throw new InjectionRuleError(`${JSON.stringify(text)}: wildcards are not allowed; name each host`);
  const port = match[2] === undefined ? 443 : Number(match[2]);
  if (port < 1 || port > 65_535) throw new InjectionRuleError(`${JSON.stringify(text)}: port ${port} is out of range 1-65535`);
  return { host: host.name, ports: [port] };
}

/** `Name: format` with `{}` exactly once, e.g. `Authorization: Bearer {}` or `x-api-key: {}`. */
export function parseHeaderPresentation(text: string): Presentation {
  const colon = text.indexOf(":");
  const header = (colon < 0 ? "" : text.slice(0, colon)).trim().toLowerCase();
  const format = colon < 0 ? "" : text.slice(colon + 1).trim();
  if (!HEADER_NAME_RE.test(header)) throw new InjectionRuleError(`${JSON.stringify(text)}: expected "Header-Name: format", e.g. "Authorization: Bearer {}"`);
  if (FORBIDDEN_HEADERS.has(header)) throw new InjectionRuleError(`${JSON.stringify(text)}: the ${header} header cannot carry a secret`);
  if (format.split("{}").length !== 2) throw new InjectionRuleError(`${JSON.stringify(text)}: the format must contain {} exactly once, where the value goes`);
  if (/[\u0000-\u001f\u007f]/.test(format)) throw new InjectionRuleError(`${JSON.stringify(text)}: the format contains control characters`);
  return { kind: "header", header, format };
}

export function parseBasicPresentation(user: string): Presentation {
  if (user.includes(":") || /[\u0000-\u001f\u007f]/.test(user)) throw new InjectionRuleError(`basic auth user ${JSON.stringify(user)} must not contain ':' or control characters`);
  return { kind: "basic", user };
}

/** The header name a presentation writes (lower case). */
export function headerOf(present: Presentation): string {
  return present.kind === "header" ? present.header : "authorization";
}

/** The header value that presents `value`. */
export function render(present: Presentation, value: string): string {
  if (present.kind === "basic") return `Basic ${Buffer.from(`${present.user}:${value}`, "utf8").toString("base64")}`;
  return present.format.replace("{}", () => value);
}

/**
 * Why `value` cannot be presented as `present` writes it, or undefined. A header carries the value as
 * it is, so a control character (CR or LF above all, which would end the header early) makes a
 * request no HTTP stack sends: better refused when stored than at the first request. Basic auth
 * base64s the value, so any text goes there.
 */
export function unpresentable(present: Presentation, value: string): string | undefined {
  if (present.kind === "basic") return undefined;
  if (/[\u0000-\u0008\u000a-\u001f\u007f]/.test(value)) return `it goes in the ${present.header} header, where a line break or other control character cannot go`;
  return undefined;
}

/** `api.example.com:8443`-style text of a rule's hosts, for listings. */
export function describeHosts(rule: InjectionRule): string {
  return rule.hosts.map((h) => h.ports.map((p) => (p === 443 ? h.host : `${h.host}:${p}`)).join(", ")).join(", ");
}

/** The rules whose secret belongs to exactly this canonical host and port. */
export function rulesFor<T extends { rule: InjectionRule }>(active: readonly T[], host: string, port: number): T[] {
  return active.filter(({ rule }) => rule.hosts.some((h) => h.host === host && h.ports.includes(port)));
}

export type HeaderList = ReadonlyArray<readonly [name: string, value: string]>;

export interface Sighting {
  /** The secret whose placeholder was seen. */
  secret: string;
  where: "header" | "url" | "body";
  /** The header it was seen in (lower case), for `where: "header"`. */
  header?: string;
}

export type SwapResult =
  | { ok: true; headers: Array<[string, string]>; injected: string[]; stripped: string[] }
  | { ok: false; sighting: Sighting }
  /** A placeholder was presented correctly but the real value is not available (vault locked). */
  | { ok: false; unavailable: string };

/**
 * Decides an intercepted TLS request's headers: each injection header of this host's rules that
 * presents exactly the rule's placeholder gets the real value; any other value of such a header is
 * dropped; a placeholder anywhere else (any other header, the URL) refuses the request. `active` is
 * every rule in force for the cloister (a placeholder of another host's secret counts too).
 */
export function swapCredentials(active: readonly ActiveRule[], host: string, port: number, headers: HeaderList, target: string): SwapResult {
  const mine = rulesFor(active, host, port);
  const injectionHeaders = new Set(mine.map(({ rule }) => headerOf(rule.present)));
  const out: Array<[string, string]> = [];
  const injected: string[] = [];
  const stripped: string[] = [];
  for (const [name, value] of headers) {
    const lower = name.toLowerCase();
    const match = mine.find(({ rule, placeholder }) => headerOf(rule.present) === lower && value.trim() === render(rule.present, placeholder));
    if (match) {
      if (match.real === undefined) return { ok: false, unavailable: match.rule.secret };
      if (!injected.includes(match.rule.secret)) {
        out.push([name, render(match.rule.present, match.real)]);
        injected.push(match.rule.secret);
      }
      continue;
    }
    const seen = placeholderIn(active, `${name}: ${value}`);
    if (seen) return { ok: false, sighting: { secret: seen, where: "header", header: lower } };
    if (injectionHeaders.has(lower)) {
      stripped.push(lower);
      continue;
    }
    out.push([name, value]);
  }
  const inUrl = placeholderInUrl(active, target);
  if (inUrl) return { ok: false, sighting: { secret: inUrl, where: "url" } };
  return { ok: true, headers: out, injected, stripped };
}

/**
 * A placeholder in a request that is never injected into (plain HTTP, or a TLS request to a host the
 * secret does not belong to): any sighting in its headers or URL refuses it.
 */
export function sightingInRequest(active: readonly { rule: InjectionRule; placeholder: string }[], headers: HeaderList, target: string): Sighting | undefined {
  // Nothing to look for: skip decoding every base64-looking word of every header (most requests).
  if (active.length === 0) return undefined;
  for (const [name, value] of headers) {
    const secret = placeholderIn(active, `${name}: ${value}`);
    if (secret) return { secret, where: "header", header: name.toLowerCase() };
  }
  const secret = placeholderInUrl(active, target);
  return secret ? { secret, where: "url" } : undefined;
}

/** Placeholders are plain ASCII; a header may still carry one base64-encoded (basic auth). */
function placeholderIn(active: readonly { rule: InjectionRule; placeholder: string }[], text: string): string | undefined {
  const decoded = decodedBase64Words(text);
  return active.find(({ placeholder }) => text.includes(placeholder) || decoded.some((word) => word.includes(placeholder)))?.rule.secret;
}

/** The URL as sent and percent-decoded (once, and without failing on a stray '%'). */
function placeholderInUrl(active: readonly { rule: InjectionRule; placeholder: string }[], target: string): string | undefined {
  return placeholderIn(active, target) ?? placeholderIn(active, percentDecoded(target));
}

function percentDecoded(text: string): string {
  return text.replace(/(?:%[0-9A-Fa-f]{2})+/g, (run) => {
    try {
      return decodeURIComponent(run);
    } catch {
      return run;
    }
  });
}

/** Words of the text that look like base64 (basic auth and similar), decoded. */
function decodedBase64Words(text: string): string[] {
  const words = text.match(/[A-Za-z0-9+/_-]{16,}={0,2}/g) ?? [];
  return words.map((word) => Buffer.from(word.replace(/-/g, "+").replace(/_/g, "/"), "base64").toString("latin1"));
}

/** A user rule as stored beside its secret and given on the command line: texts, parsed on use. */
export interface InjectionSpec {
  /** `host` or `host:port`. */
  hosts: string[];
  /** `Header-Name: format` with `{}`; absent with `basic`. */
  header?: string;
  /** Basic auth with this user name. */
  basic?: string;
}

/** Parses a stored or given rule; throws InjectionRuleError saying what is wrong. */
export function ruleFromSpec(secret: string, spec: InjectionSpec): InjectionRule {
  if (spec.hosts.length === 0) throw new InjectionRuleError("name at least one host the secret belongs to (--host api.example.com)");
  if ((spec.header === undefined) === (spec.basic === undefined)) throw new InjectionRuleError("say how the secret is sent: either a header format (--header \"Authorization: Bearer {}\") or basic auth (--basic USER)");
  const present = spec.header !== undefined ? parseHeaderPresentation(spec.header) : parseBasicPresentation(spec.basic ?? "");
  const builtin = BUILTIN_RULES.find((rule) => rule.secret === secret);
  return { secret, hosts: spec.hosts.map(parseInjectionHost), present, ...(builtin?.prefix ? { prefix: builtin.prefix } : {}), origin: "user" };
}
