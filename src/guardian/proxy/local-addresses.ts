import { networkInterfaces } from "node:os";

/** Interfaces rarely change; re-reading them on every request would cost more than the rest of a decision. */
const REFRESH_MS = 5_000;

let cache: { at: number; addresses: Set<string> } | undefined;

/**
 * Whether an address belongs to one of this host's own interfaces. Such an address reaches the
 * host's services as surely as 127.0.0.1 does (anything listening on 0.0.0.0), whatever block it is
 * in, so the proxy treats it like loopback: only a rule that opts in to private addresses reaches it.
 */
export function isHostAddress(address: string): boolean {
  if (!cache || Date.now() - cache.at > REFRESH_MS) {
    const addresses = new Set<string>();
    for (const entries of Object.values(networkInterfaces())) {
      for (const entry of entries ?? []) addresses.add(entry.address.toLowerCase());
    }
    cache = { at: Date.now(), addresses };
  }
  // IPv4-mapped IPv6 spells an IPv4 address; compare it as one.
  const plain = address.toLowerCase().replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, "$1");
  return cache.addresses.has(plain);
}
