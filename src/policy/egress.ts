import { formatAuthority, hostText, type Host } from "./hosts.js";
import { coversPort, DEFAULT_PORTS, ruleMatches, type EgressRule, type RuleList } from "./rules.js";

/**
 * The egress decision: one function for every protocol path (SECURITY.md, network section). It runs
 * before any DNS lookup; the proxy then refuses a non-public resolved address unless the decision's
 * allowPrivate is set.
 */

export type Tier = "global" | "project" | "session";
export interface RuleSet {
  allow: readonly EgressRule[];
  deny: readonly EgressRule[];
}
export type Policy = Record<Tier, RuleSet>;
export interface Decision {
  verdict: "allow" | "deny" | "unlisted";
  rule?: { text: string; tier: Tier; list: "allow" | "deny"; answered?: true }; // the rule that decided (none for unlisted)
  /** Whether the deciding allow rule opts in to non-public addresses (private:true, or an IP rule naming that address). */
  allowPrivate: boolean;
}

/** Tiers in the order a deciding rule is reported: the broadest first. */
export const TIERS: readonly Tier[] = ["global", "project", "session"];

interface Match {
  rule: EgressRule;
  tier: Tier;
}

/**
 * Deny beats allow across all tiers: a session allow cannot lift a global deny. Among several
 * matching allow rules, one that opts in to non-public addresses is reported, because it is the
 * rule that lets the connection reach such an address; otherwise the first in tier order.
 * IP hosts are matched only by IP rules naming that exact address (see ruleMatches), which is
 * what "IP literals are refused unless a rule names them" means; such a rule opts in for its address.
 */
export function decide(policy: Policy, host: Host, port: number): Decision {
  const [deny] = matching(policy, "deny", host, port);
  if (deny) return { verdict: "deny", rule: ruleRef(deny, "deny"), allowPrivate: false };
  const allows = matching(policy, "allow", host, port);
  const optIn = allows.find(({ rule }) => opensNonPublic(rule));
  const chosen = optIn ?? allows[0];
  if (!chosen) return { verdict: "unlisted", allowPrivate: false };
  return { verdict: "allow", rule: ruleRef(chosen, "allow"), allowPrivate: optIn !== undefined };
}

/**
 * A deny rule that still refuses some of what `allow` would admit (deny beats allow), for telling
 * the user who adds that allow. A wildcard allow counts as refused when a deny wildcard covers all
 * of it; a deny of single names under it only refuses those.
 */
export function denyOverriding(policy: Policy, allow: EgressRule): { text: string; tier: Tier } | undefined {
  const ports = allow.ports ?? DEFAULT_PORTS;
  for (const tier of TIERS) {
    const deny = policy[tier].deny.find((rule) => ports.some((port) => deniesAll(rule, allow, port)));
    if (deny) return { text: deny.text, tier };
  }
  return undefined;
}

function deniesAll(deny: EgressRule, allow: EgressRule, port: number): boolean {
  if (allow.kind !== "wildcard") {
    const host: Host = allow.kind === "ip" ? { kind: "ip", address: allow.host, family: allow.host.includes(":") ? 6 : 4 } : { kind: "name", name: allow.host };
    return ruleMatches(deny, "deny", host, port);
  }
  return deny.kind === "wildcard" && coversPort(deny, "deny", port) && (deny.host === allow.host || allow.host.endsWith(`.${deny.host}`));
}

export function emptyPolicy(): Policy {
  return {
    global: { allow: [], deny: [] },
    project: { allow: [], deny: [] },
    session: { allow: [], deny: [] },
  };
}

/** Who and what a refusal is about, beyond its decision and destination (for its remedy). */
export interface RefusalContext {
  /** The project a `cloister allow --project` remedy names (default: PROJECT). */
  project?: string;
  /** The cloister refused, which a remedy that restarts it names (default: NAME). */
  cloister?: string;
  /** What an IP literal is when it is not a public address ("loopback", "metadata"). */
  nonPublic?: string;
}

/**
 * The sentence for a refusal body: which host:port was refused, why (which rule, or "not on any
 * allowlist"), and how to allow it. One line, no trailing newline; the caller frames it.
 * An "allow" decision is refused only after resolution, for a non-public address the rule did
 * not opt in to, so that is what its sentence says. A non-public IP literal is never put to a
 * human, and its remedy is the deliberate opt-in, not a plain allow (which would tell the user how
 * to open the cloud metadata endpoint with one command). A session deny a human answered is undone
 * by a new cloister, not by dropping a --deny flag nobody gave.
 */
export function refusalMessage(decision: Decision, host: Host, port: number, context: RefusalContext = {}): string {
  const { project = "PROJECT", cloister = "NAME", nonPublic } = context;
  const target = formatAuthority(host, port);
  const rule = decision.rule;
  if (decision.verdict === "deny" && rule?.answered) {
    return `egress to ${target} refused: a human denied it for this cloister's session (rule "${rule.text}"), and a deny wins over every allow rule. That answer lasts as long as the cloister and cannot be undone: to allow it, start the cloister anew on the host (\`cloister stop ${cloister}\` then \`cloister start\`, or another \`cloister run\`) and allow it when asked.`;
  }
  if (decision.verdict === "deny" && rule) {
    return `egress to ${target} refused: it matches the deny rule "${rule.text}" in the ${rule.tier} policy, and a deny rule wins over every allow rule. To allow it, ${DENY_REMEDY[rule.tier]}.`;
  }
  const cliRule = shellWord(target);
  if (decision.verdict === "allow" && rule) {
    return `egress to ${target} refused: ${hostText(host)} resolves to a non-public address (loopback, private, CGNAT, link-local or cloud metadata), and the allow rule "${rule.text}" in the ${rule.tier} policy does not opt in to those. To allow it, ${privateRemedy(cliRule, project)}.`;
  }
  if (host.kind === "ip" && nonPublic !== undefined) {
    return `egress to ${target} refused: ${hostText(host)} is not a public address (${nonPublic}), and such an address is never put to a human, whatever proxy.unlisted says: it is reached only through a rule that names it and opts in to non-public addresses. To allow it deliberately, ${privateRemedy(cliRule, project)}.`;
  }
  const why = host.kind === "ip"
    ? `${target} is not on any allowlist (an IP address is reached only when a rule names that address)`
    : `${target} is not on any allowlist`;
  return `egress to ${target} refused: ${why}. To allow it, run \`cloister allow ${cliRule} --project ${project}\` on the host, or pass \`--allow ${cliRule}\` to cloister run/start.`;
}

/** How to open a non-public address on purpose: the rule's opt-in, persistent or for one session. */
function privateRemedy(cliRule: string, project: string): string {
  return `run \`cloister allow ${cliRule} --private --project ${project}\` on the host, or pass \`--allow-private ${cliRule}\` to cloister run/start`;
}

const DENY_REMEDY: Readonly<Record<Tier, string>> = {
  global: "remove that rule from the global deny list",
  project: "remove that rule from the project's deny list",
  session: "start the cloister again without that `--deny` rule",
};

function matching(policy: Policy, list: RuleList, host: Host, port: number): Match[] {
  return TIERS.flatMap((tier) => policy[tier][list].filter((rule) => ruleMatches(rule, list, host, port)).map((rule) => ({ rule, tier })));
}

function ruleRef(match: Match, list: "allow" | "deny"): NonNullable<Decision["rule"]> {
  return { text: match.rule.text, tier: match.tier, list, ...(match.rule.answered ? { answered: true } : {}) };
}

/** An IP rule names one address, so naming it is the opt-in for that address. */
function opensNonPublic(rule: EgressRule): boolean {
  return rule.private || rule.kind === "ip";
}

/** Brackets are glob characters in a shell, so a suggested IPv6 rule is quoted. */
function shellWord(authority: string): string {
  return authority.startsWith("[") ? `'${authority}'` : authority;
}
