import { BlockList, isIPv4, isIPv6 } from "node:net";

/**
 * What kind of address a resolved (or literal) IP is. The proxy refuses every class but "public"
 * unless the deciding rule opts in (DESIGN.md decision 5), so anything doubtful is classed as
 * non-public: an unlisted special-purpose block or an IPv6 address outside global unicast is
 * "reserved", not "public".
 */
export type AddressClass = "public" | "loopback" | "private" | "cgnat" | "link-local" | "metadata" | "unspecified" | "multicast" | "reserved";

type Range = readonly [cidr: string, cls: AddressClass];

/** First match wins, so single addresses come before the blocks that contain them. */
const IPV4_RANGES: readonly Range[] = [
  // Cloud instance metadata and credential endpoints: the most valuable thing on a cloud host's network.
  ["169.254.169.254/32", "metadata"], // AWS, GCP, Azure, OCI, DigitalOcean
  ["169.254.170.2/32", "metadata"], // AWS ECS task credentials
  ["100.100.100.200/32", "metadata"], // Alibaba Cloud
  ["168.63.129.16/32", "metadata"], // Azure WireServer: a public-looking address served by the host
  ["0.0.0.0/8", "unspecified"],
  ["127.0.0.0/8", "loopback"],
  ["10.0.0.0/8", "private"],
  ["172.16.0.0/12", "private"],
  ["192.168.0.0/16", "private"],
  ["100.64.0.0/10", "cgnat"],
  ["169.254.0.0/16", "link-local"],
  ["224.0.0.0/4", "multicast"],
  ["240.0.0.0/4", "reserved"], // includes the limited broadcast 255.255.255.255
  ["192.0.0.0/24", "reserved"], // IETF protocol assignments
  ["192.0.2.0/24", "reserved"], // TEST-NET-1
  ["198.51.100.0/24", "reserved"], // TEST-NET-2
  ["203.0.113.0/24", "reserved"], // TEST-NET-3
  ["198.18.0.0/15", "reserved"], // benchmarking
  ["192.88.99.0/24", "reserved"], // former 6to4 relay anycast
];

/** First match wins, as for IPv4. */
const IPV6_RANGES: readonly Range[] = [
  ["::/128", "unspecified"],
  ["::1/128", "loopback"],
  ["fd00:ec2::254/128", "metadata"], // AWS instance metadata over IPv6
  ["fc00::/7", "private"], // unique local
  ["fec0::/10", "private"], // deprecated site-local, still routed as local by some stacks
  ["fe80::/10", "link-local"],
  ["ff00::/8", "multicast"],
  ["64:ff9b:1::/48", "private"], // local-use NAT64 (RFC 8215)
  ["100::/64", "reserved"], // discard-only
  ["2001::/23", "reserved"], // IETF protocol assignments: Teredo, benchmarking, ORCHID
  ["2001:db8::/32", "reserved"], // documentation
  ["3fff::/20", "reserved"], // documentation (RFC 9637)
  ["5f00::/16", "reserved"], // SRv6 SIDs
];

/**
 * IPv6 blocks that carry an IPv4 address, and the index of the 16-bit group where it starts. Such an
 * address reaches (or is translated to) that IPv4 address, so it is classed as that address:
 * `::ffff:127.0.0.1` is loopback.
 */
const EMBEDDED_IPV4: readonly (readonly [cidr: string, group: number])[] = [
  ["::ffff:0:0/96", 6], // IPv4-mapped
  ["::ffff:0:0:0/96", 6], // IPv4-translated (SIIT)
  ["::/96", 6], // IPv4-compatible (deprecated); :: and ::1 are in IPV6_RANGES, checked first
  ["64:ff9b::/96", 6], // NAT64 well-known prefix
  ["2002::/16", 1], // 6to4
];

/** Only global unicast can be public; the rest of the IPv6 space is unassigned or special. */
const GLOBAL_UNICAST = subnet("2000::/3");

const ipv4Table = IPV4_RANGES.map(([cidr, cls]) => ({ list: subnet(cidr), cls }));
const ipv6Table = IPV6_RANGES.map(([cidr, cls]) => ({ list: subnet(cidr), cls }));
const embeddedTable = EMBEDDED_IPV4.map(([cidr, group]) => ({ list: subnet(cidr), group }));

/**
 * Classifies an IPv4 dotted-quad or IPv6 address (any valid IPv6 text, e.g. a resolver's
 * `::ffff:1.2.3.4`). A zone id (`fe80::1%eth0`) says which interface, not what the address is, so
 * it is ignored. Throws TypeError for anything else: callers pass addresses they parsed or
 * resolved, so other text is a programming error.
 */
export function classifyAddress(address: string): AddressClass {
  if (isIPv4(address)) return classifyIPv4(address);
  if (isIPv6(address)) return classifyIPv6(canonicalIPv6(withoutZone(address)));
  throw new TypeError(`not an IP address: ${JSON.stringify(address)}`);
}

/**
 * Addresses that reach the host itself or a network behind it (loopback, RFC 1918/ULA, CGNAT,
 * link-local, cloud metadata, and 0.0.0.0 / multicast, which also land locally) need the matching
 * rule's opt-in. "reserved" blocks (documentation, benchmarking, 240/4) do not: they are not routed
 * on the internet, lead to no internal network, and some sites (package mirrors in test labs) use them.
 */
export function needsOptIn(cls: AddressClass): boolean {
  return cls !== "public" && cls !== "reserved";
}

function classifyIPv4(address: string): AddressClass {
  return ipv4Table.find(({ list }) => list.check(address, "ipv4"))?.cls ?? "public";
}

/** The special ranges overlap none of the embedding blocks except at :: and ::1, so they go first. */
function classifyIPv6(address: string): AddressClass {
  const special = ipv6Table.find(({ list }) => list.check(address, "ipv6"));
  if (special) return special.cls;
  const embedded = embeddedTable.find(({ list }) => list.check(address, "ipv6"));
  if (embedded) return classifyIPv4(embeddedIPv4(address, embedded.group));
  return GLOBAL_UNICAST.check(address, "ipv6") ? "public" : "reserved";
}

/** The IPv4 address in 16-bit groups `group` and `group + 1` of an IPv6 address. */
function embeddedIPv4(address: string, group: number): string {
  const groups = ipv6Groups(address);
  const high = groups[group] ?? 0;
  const low = groups[group + 1] ?? 0;
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join(".");
}

/** The eight groups of a canonical (WHATWG-serialized: hex only, at most one "::") IPv6 address. */
function ipv6Groups(address: string): number[] {
  const [head = "", tail = ""] = address.split("::");
  const left = head === "" ? [] : head.split(":");
  const right = tail === "" ? [] : tail.split(":");
  const zeros: string[] = new Array<string>(8 - left.length - right.length).fill("0");
  return [...left, ...zeros, ...right].map((g) => parseInt(g, 16));
}

function withoutZone(address: string): string {
  const percent = address.indexOf("%");
  return percent === -1 ? address : address.slice(0, percent);
}

/** Resolver output may write an embedded IPv4 in dotted form; the URL serializer writes it as hex. */
function canonicalIPv6(address: string): string {
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}

function subnet(cidr: string): BlockList {
  const [network = "", prefix = ""] = cidr.split("/");
  const list = new BlockList();
  list.addSubnet(network, Number(prefix), isIPv4(network) ? "ipv4" : "ipv6");
  return list;
}
