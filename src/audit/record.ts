/**
 * What one audit record is, and how its bytes look on disk. This file owns the canonical form, so
 * the writer (signed-log.ts) and the verifier (verify.ts) cannot drift apart.
 *
 * A record is one line of JSON:
 *
 *   {"seq":7,"time":"2025-01-01T00:00:00.000Z","type":"egress",…event fields…,"prev":"<64 hex>","sig":"<base64>"}
 *
 * The signed bytes ("body") are exactly the line as written with its `,"sig":"…"` member cut out,
 * i.e. everything before `,"sig":"` followed by `}`. The verifier works on those raw bytes; it never
 * re-serializes a parsed object, so there is no canonicalization step that two JSON libraries could
 * disagree on (key order, number formatting, escapes).
 */

/**
 * Type of the first record of every file: says why the file was started (genesis, rotation, resume)
 * and which key signs it. A file that does not begin with one lost its head.
 */
export const SEGMENT_TYPE = "audit.segment";

/** Fields the log itself assigns; an event cannot set them. */
export const RESERVED_FIELDS: ReadonlySet<string> = new Set(["seq", "time", "prev", "sig"]);

/**
 * Field names that look like they carry a credential. The audit log must never hold one (DESIGN.md
 * decision 7), and it is cheaper to refuse the name here than to trust every caller: a matching field
 * is dropped and the record gets `redacted: true` so the omission itself is visible.
 */
const SECRET_NAME_RE = /token|secret|passw(or)?d|authorization|cookie|credential|api[-_]?key|private[-_]?key/i;

/** Field names already tested against SECRET_NAME_RE: events use a few dozen, again and again. */
const secretNames = new Map<string, boolean>();

function looksSecret(key: string): boolean {
  let secret = secretNames.get(key);
  if (secret === undefined) {
    secret = SECRET_NAME_RE.test(key);
    // Names come from code, not from clients; the bound only guards against a future caller that spreads client data in.
    if (secretNames.size < 1024) secretNames.set(key, secret);
  }
  return secret;
}

/** Longest string value kept. Host names come from untrusted clients; one huge value must not bloat the log. */
export const MAX_VALUE_LENGTH = 4096;

export type AuditValue = string | number | boolean | null;

/** A parsed record: the assigned fields plus whatever the event carried. */
export interface AuditRecord {
  seq: number;
  time: string;
  type: string;
  prev: string;
  sig: string;
  [field: string]: AuditValue;
}

/** The event fields as they will be written: secrets dropped, long strings cut, odd values made plain. */
export function sanitizeEvent(event: { type: string } & Record<string, unknown>): Record<string, AuditValue> {
  const out: Record<string, AuditValue> = { type: typeof event.type === "string" && event.type ? event.type : "unknown" };
  let redacted = false;
  let truncated = false;
  for (const [key, raw] of Object.entries(event)) {
    if (key === "type" || RESERVED_FIELDS.has(key)) continue;
    if (looksSecret(key)) {
      redacted = true;
      continue;
    }
    let value = plainValue(raw);
    if (typeof value === "string" && value.length > MAX_VALUE_LENGTH) {
      value = `${value.slice(0, MAX_VALUE_LENGTH)}…`;
      truncated = true;
    }
    out[key] = value;
  }
  if (redacted) out.redacted = true;
  if (truncated) out.truncated = true;
  return out;
}

/**
 * The types say string | number | boolean | null, but the proxy's hot path must not throw on a value
 * that slipped through as something else (undefined, an Error, a bigint): write its text instead.
 */
function plainValue(value: unknown): AuditValue {
  if (value === null || typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") return Number.isFinite(value) ? value : String(value);
  if (value === undefined) return null;
  return String(value);
}

/** The signed part of a record: the JSON text without `sig`. Field order: seq, time, type, event fields, prev. */
export function recordBody(seq: number, time: string, fields: Record<string, AuditValue>, prev: string): string {
  return JSON.stringify({ seq, time, ...fields, prev });
}

/** The full line (without the newline): the body with `sig` appended as its last member. */
export function signedLine(body: string, sig: string): string {
  return `${body.slice(0, -1)},"sig":${JSON.stringify(sig)}}`;
}

/** `,"sig":"<base64>"}` at the very end of a line; base64 never needs JSON escapes. */
const SIG_SUFFIX_RE = /,"sig":"([A-Za-z0-9+/]+={0,2})"\}$/;

/**
 * Split a line as read from disk into the signed bytes and the signature. Works on the raw bytes so
 * that a line that is not valid UTF-8 cannot be "repaired" by decoding into something that verifies.
 */
export function splitSignedLine(line: Buffer): { body: Buffer; sig: string } | undefined {
  // The suffix is ASCII and short: decode only the tail to find it.
  const tail = line.subarray(Math.max(0, line.length - 200)).toString("latin1");
  const match = SIG_SUFFIX_RE.exec(tail);
  if (!match?.[1]) return undefined;
  const cut = line.length - match[0].length;
  return { body: Buffer.concat([line.subarray(0, cut), Buffer.from("}")]), sig: match[1] };
}

/** `{"seq":N,` at the very start of a line: where recordBody puts it. */
const SEQ_PREFIX_RE = /^\{"seq":([1-9][0-9]{0,15}),/;

/**
 * The seq of a line as the writer lays it out, read from its first bytes without parsing the rest:
 * for readers that go through many lines (tail, the verifier's search for a missing seq). Undefined
 * for a line that does not start like a record. Says nothing about authenticity.
 */
export function seqOfLine(line: Buffer): number | undefined {
  const digits = SEQ_PREFIX_RE.exec(line.subarray(0, 32).toString("latin1"))?.[1];
  return digits === undefined ? undefined : Number(digits);
}

/**
 * Parse a line into a record, or say what is wrong with it. Only the shape is checked here; whether
 * the record is authentic (signature) and in place (seq, prev) is the verifier's job.
 */
export function parseRecordLine(line: Buffer): { record: AuditRecord } | { problem: string } {
  let value: unknown;
  try {
    value = JSON.parse(line.toString("utf8"));
  } catch {
    return { problem: "not valid JSON" };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return { problem: "not a JSON object" };
  const record = value as Record<string, unknown>;
  if (!Number.isSafeInteger(record.seq) || (record.seq as number) < 1) return { problem: "missing or invalid seq" };
  if (typeof record.time !== "string") return { problem: "missing time" };
  if (typeof record.type !== "string") return { problem: "missing type" };
  if (typeof record.prev !== "string" || !/^[0-9a-f]{64}$/.test(record.prev)) return { problem: "missing or invalid prev hash" };
  if (typeof record.sig !== "string") return { problem: "missing signature" };
  for (const [key, field] of Object.entries(record)) {
    if (field !== null && typeof field === "object") return { problem: `field ${key} is not a plain value` };
  }
  return { record: record as AuditRecord };
}
