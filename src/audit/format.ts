/**
 * One readable line per record for `cloister audit tail`:
 *
 *   2025-01-01T12:00:00.000Z #42 egress c1 example.com:443 allow rule=example.com tier=global
 *   2025-01-01T12:00:03.100Z #43 egress.end c1 example.com:443 ↑1.2KiB ↓35KiB 3.1s
 *
 * Values come from sandboxed clients (host names, paths), so control and invisible characters are
 * escaped (see policy/visible.ts) before they reach a terminal: a host name must not be able to move
 * the cursor, retitle the window or read differently from what it holds.
 */
import { formatSize } from "../config/units.js";
import { visible } from "../policy/visible.js";
import type { AuditValue } from "./record.js";

/** Shown in fixed places, or never (chain fields): everything else follows as key=value. */
const PLACED = new Set(["seq", "time", "type", "cloister", "host", "port", "decision", "rule", "bytesUp", "bytesDown", "durationMs", "prev", "sig", "project"]);

export function formatRecordLine(line: string): string {
  let record: Record<string, AuditValue>;
  try {
    const parsed: unknown = JSON.parse(line);
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not an object");
    record = parsed as Record<string, AuditValue>;
  } catch {
    return `(unreadable) ${visible(line)}`;
  }
  const parts: string[] = [text(record.time), `#${text(record.seq)}`, text(record.type)];
  if (record.cloister != null) parts.push(text(record.cloister));
  if (record.host != null) parts.push(record.port != null ? `${hostForPort(text(record.host))}:${text(record.port)}` : text(record.host));
  if (record.decision != null) parts.push(text(record.decision));
  if (record.rule != null) parts.push(`rule=${text(record.rule)}`);
  if (typeof record.bytesUp === "number") parts.push(`↑${formatSize(record.bytesUp)}`);
  if (typeof record.bytesDown === "number") parts.push(`↓${formatSize(record.bytesDown)}`);
  if (typeof record.durationMs === "number") parts.push(`${(record.durationMs / 1000).toFixed(record.durationMs < 10_000 ? 1 : 0)}s`);
  // The project is noise next to the cloister (named after it) except on lifecycle records.
  if (record.project != null && record.cloister == null) parts.push(`project=${text(record.project)}`);
  else if (record.project != null && String(record.type).startsWith("cloister.")) parts.push(`project=${text(record.project)}`);
  for (const [key, value] of Object.entries(record)) {
    if (!PLACED.has(key) && value !== null) parts.push(`${visible(key)}=${text(value)}`);
  }
  return parts.join(" ");
}

function text(value: AuditValue | undefined): string {
  return value === undefined || value === null ? "-" : visible(String(value));
}

/** An IPv6 address in brackets before a port, as in a URL: `[::1]:8082`, not `::1:8082`. */
function hostForPort(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}
