import { classifyAddress, needsOptIn } from "../../policy/addresses.js";
import { isHostAddress } from "./local-addresses.js";
import { refusalMessage, type Decision, type Policy } from "../../policy/egress.js";
import { canonicalHost, type Host } from "../../policy/hosts.js";
import type { Lookup, ResolvedAddress } from "./host-resolver.js";

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
  /** Who to tell how to allow a refused host (`cloister allow ... --project P`). */
  project: string;
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
    const message = `cloister: ${refusalMessage(decision, host, port, input.project)}`;
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
      message: `cloister: ${refusalMessage(decision, host, port, input.project)} (${host.name} resolved to ${first}: ${describeAddress(first)})`,
      decision,
      address: first,
    };
  }
  return { ok: true, host, port, address: acceptable.address, family: acceptable.family === 6 ? 6 : 4, decision, via: "dns" };
}

/** Public, and not one of this host's own addresses (which would reach its services). */
export function isPublicDestination(address: string): boolean {
  return !needsOptIn(classifyAddress(address)) && !isHostAddress(address);
}

function describeAddress(address: string): string {
  return isHostAddress(address) ? "an address of this host" : classifyAddress(address);
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
