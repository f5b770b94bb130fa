/**
 * Header lists as the proxy forwards them: node's raw form (name, value, name, value, ...), minus
 * what describes one hop only.
 */

/** Headers that describe one hop, never forwarded (RFC 9110 7.6.1), plus the proxy's own. */
export const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-authorization", "proxy-authenticate", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "http2-settings"]);

export function headerValues(raw: readonly string[], name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i]?.toLowerCase() === name) values.push(raw[i + 1] ?? "");
  return values;
}

/**
 * Request headers minus hop-by-hop ones (and any the client named in Connection), Host rebuilt,
 * and without Expect: node's server has already answered a `100-continue` to the client, and
 * undici refuses to send one.
 */
export function forwardedHeaders(raw: readonly string[], host: string): string[] {
  return ["Host", host, ...endToEnd(raw, "host", "expect")];
}

export function responseHeaders(raw: readonly string[]): string[] {
  return endToEnd(raw);
}

/**
 * The end-to-end headers of a raw list: without hop-by-hop ones, those the sender named in
 * Connection, HTTP/2 pseudo-headers (":path"; they are not headers in HTTP/1.1) and `drop` (lower case).
 */
export function endToEnd(raw: readonly string[], ...drop: string[]): string[] {
  const dropped = connectionNamed(raw);
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] ?? "";
    const lower = name.toLowerCase();
    if (drop.includes(lower) || lower.startsWith(":") || HOP_BY_HOP.has(lower) || dropped.has(lower)) continue;
    out.push(name, raw[i + 1] ?? "");
  }
  return out;
}

export function connectionNamed(raw: readonly string[]): Set<string> {
  return new Set(headerValues(raw, "connection").flatMap((v) => v.split(",").map((n) => n.trim().toLowerCase())));
}


/** A raw list as [name, value] pairs. */
export function headerPairs(raw: readonly string[]): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i + 1 < raw.length; i += 2) pairs.push([raw[i] ?? "", raw[i + 1] ?? ""]);
  return pairs;
}
