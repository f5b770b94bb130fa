import { classifyAddress, needsOptIn } from "../../policy/addresses.js";
import { isHostAddress } from "./local-addresses.js";
import { refusalMessage, type Decision, type Policy } from "../../policy/egress.js";
import { canonicalHost, type Host } from "../../policy/hosts.js";
import type { Lookup, ResolvedAddress } from "./host-resolver.js";
import type { ProxySettings } from "../../config/schema.js";

export type Protocol = "connect" | "http" | "socks" | "hostexec";

/** The destination a request may go to: exactly this address is dialed, this authority is logged. */
export interface Admitted {
  ok: true;
  host: Host;
  port: number;
  address: string;
  family: 4 | 6;
  decision: Decision;
  /** How the address was found: a name override, DNS on the host, or the literal itself. */
  via: "override" | "dns" | "literal";
}

export interface Refused {
  ok: false;
  /** 400 malformed, 403 policy, 502 the name does not resolve. */
  status: 400 | 403 | 502;
  reason: "invalid" | "denied" | "unlisted" | "address" | "unresolvable";
  message: string;
  decision?: Decision;
  address?: string;
}

export type Verdict = Admitted | Refused;

/** What judging needs to know about the cloister that asks. */
export interface JudgeInput {
  policy: Policy;
  /** Canonical host name → IP address (config `proxy.resolve`, then the session's `--resolve`). */
  overrides: ReadonlyMap<string, string>;
  /** The host's resolver, as this cloister's HostResolver remembers it. */
  lookup: Lookup;
  /** Who to tell how to allow a refused host (`cloister allow ... --project P`, `cloister stop NAME`). */
  project: string;
  cloister: string;
}

/**
 * The one decision path for every protocol (CONNECT, absolute-form HTTP, SOCKS5), after the policy
 * decided on the canonical host and port before any lookup (EgressContext.judge; an unlisted host
 * may have been decided by a human): refuses what the decision refuses; then the address, resolved
 * on the host (or taken from an operator's override), must be public unless the deciding rule opts
 * in. The caller dials `address` and nothing else, so what was checked is what is reached.
 */
export async function admit(input: JudgeInput, host: Host, port: number, decision: Decision): Promise<Verdict> {
  if (decision.verdict !== "allow") {
    const message = `cloister: ${refusalFor(decision, host, port, input)}`;
    return { ok: false, status: 403, reason: decision.verdict === "deny" ? "denied" : "unlisted", message, decision };
  }
  if (host.kind === "ip") {
    // Only an IP rule naming exactly this address admits a literal, and naming it is the opt-in.
    return { ok: true, host, port, address: host.address, family: host.family, decision, via: "literal" };
  }
  const override = input.overrides.get(host.name);
  if (override !== undefined) {
    return { ok: true, host, port, address: override, family: override.includes(":") ? 6 : 4, decision, via: "override" };
  }
  let candidates: ResolvedAddress[];
  try {
    candidates = await input.lookup(host.name);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "error";
    return { ok: false, status: 502, reason: "unresolvable", message: `cloister: ${host.name} does not resolve on the host (${code})`, decision };
  }
  // Every answer is checked, and only an acceptable one is dialed: a name that resolves to both a
  // public and a private address (DNS rebinding) can only ever reach the public one.
  const acceptable = candidates.find((c) => decision.allowPrivate || isPublicDestination(c.address));
  if (!acceptable) {
    const first = candidates[0]?.address ?? "nothing";
    return {
      ok: false,
      status: 403,
      reason: "address",
      message: `cloister: ${refusalMessage(decision, host, port, input)} (${host.name} resolved to ${first}: ${describeAddress(first)})`,
      decision,
      address: first,
    };
  }
  return { ok: true, host, port, address: acceptable.address, family: acceptable.family === 6 ? 6 : 4, decision, via: "dns" };
}

/**
 * How the proxy meets a destination no rule decides: held for a human ("ask", with proxy.unlisted:
 * ask), or refused at once, by that setting ("refuse") or because it is a non-public IP literal
 * ("refuse-non-public"). A human is never asked about one (127.0.0.1:9999, 10.0.0.5, 169.254.169.254):
 * an approval would be an IP rule, which opts in to that address, so one hasty click could open
 * this host's own services (the approval UI among them) or the cloud metadata endpoint to the
 * cloister. Such addresses need a deliberate rule (`--private`). The proxy holds requests by this,
 * and `cloister policy explain` says what it says.
 */
export type UnlistedHandling = "ask" | "refuse" | "refuse-non-public";

export function unlistedHandling(host: Host, unlisted: ProxySettings["unlisted"]): UnlistedHandling {
  if (nonPublicLiteral(host) !== undefined) return "refuse-non-public";
  return unlisted === "ask" ? "ask" : "refuse";
}

/** The sentence a refused request gets (refusalMessage), told what a non-public IP literal is. */
export function refusalFor(decision: Decision, host: Host, port: number, about: { project: string; cloister?: string }): string {
  return refusalMessage(decision, host, port, { ...about, nonPublic: nonPublicLiteral(host) });
}

/** What an IP literal is when it is not a public destination ("loopback", "an address of this host"); undefined for a name or a public address. */
function nonPublicLiteral(host: Host): string | undefined {
  return host.kind === "ip" && !isPublicDestination(host.address) ? describeAddress(host.address) : undefined;
}

/** Public, and not one of this host's own addresses (which would reach its services). */
export function isPublicDestination(address: string): boolean {
  return !needsOptIn(classifyAddress(address)) && !isHostAddress(address);
}

/** What kind of address it is: its block (loopback, private, ...), or, for a public address this host has, that. */
function describeAddress(address: string): string {
  const cls = classifyAddress(address);
  return cls === "public" && isHostAddress(address) ? "an address of this host" : cls;
}

/** Config and session overrides as one map from canonical names (the session's win). */
export function overrideMap(...layers: Readonly<Record<string, string>>[]): Map<string, string> {
  const map = new Map<string, string>();
  for (const layer of layers) {
    for (const [name, address] of Object.entries(layer)) {
      const host = canonicalHost(name);
      if (host.kind === "name") map.set(host.name, address);
    }
  }
  return map;
}
