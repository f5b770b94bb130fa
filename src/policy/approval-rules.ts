import { authorityHost, type Host } from "./hosts.js";
import { parseRule } from "./rules.js";

/**
 * The rules a human's answer to an unlisted destination turns into. The exact rule is what the
 * agent asked for; the wildcard is offered only where it names a real subtree of one registrant's
 * domain, and the rule parser (which refuses wildcards over public suffixes) has the last word.
 */

/** Ports a rule without a port covers: the approval of those is written the way people write it. */
const WEB_PORTS = new Set([80, 443]);

/** `example.com` for 80/443, `example.com:8443` otherwise; IP rules name the address itself. */
export function approvalRule(host: Host, port: number): string {
  const base = authorityHost(host);
  return WEB_PORTS.has(port) ? base : `${base}:${port}`;
}

/**
 * `*.cdn.example.com` for `img.cdn.example.com`: the parent of the requested name, which is never
 * wider than the registrable domain (`*.example.com` for `api.example.com`; nothing for
 * `example.com` itself, whose parent is a public suffix). Null for IP addresses and single labels.
 */
export function offeredWildcard(host: Host, port: number): string | null {
  if (host.kind !== "name") return null;
  const dot = host.name.indexOf(".");
  if (dot < 0) return null;
  const parent = host.name.slice(dot + 1);
  const rule = `*.${parent}${WEB_PORTS.has(port) ? "" : `:${port}`}`;
  try {
    parseRule(rule);
    return rule;
  } catch {
    return null;
  }
}
