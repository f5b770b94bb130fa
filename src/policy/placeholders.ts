/**
 * Placeholders for brokered credentials. The cloister never holds a real API key: it holds a
 * placeholder of the same shape, and the guardian swaps the real key in on the way out, for the one
 * host the key belongs to. Anywhere else (another host, a URL, a body) the placeholder is evidence of
 * exfiltration, so it must be (a) unguessable, (b) long enough never to turn up in ordinary traffic
 * by chance, and (c) shaped like the real key, so that clients which check a key's format before
 * sending it (prefix, length, alphabet) accept it. It is derived, not stored: HMAC-SHA256 under the
 * guardian's key over (cloister id, secret name), so a restarted guardian finds the same placeholder
 * the running agent already holds.
 */
import { createHmac } from "node:crypto";

/**
 * The fewest random characters a placeholder has after its prefix, whatever the real key's length.
 * A short placeholder would match ordinary traffic by chance (a false alarm that blocks a request)
 * and would be guessable; 24 characters of even the smallest alphabet (digits) are ~80 bits.
 */
export const MIN_RANDOM_CHARS = 24;

/**
 * A leading vendor prefix: a word, a separator, then up to three short segments each ending in a
 * separator (`sk-`, `sk-proj-`, `sk-ant-api03-`, `ghp_`, `github_pat_`, `xoxb-`). Prefixes without a
 * separator (Google's `AIza`) cannot be told apart from key material and come in as `prefix`.
 * Lower case only: base64url key material also holds '-' and '_', and a mixed-case run before one
 * is far more likely key material (which the placeholder must not copy) than a vendor's word.
 */
const INFERRED_PREFIX = /^[a-z]{2,10}[-_](?:[a-z0-9]{2,10}[-_]){0,3}/;

const DIGITS = "0123456789";
const LOWER = "abcdefghijklmnopqrstuvwxyz";
const UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const ALPHANUMERIC = UPPER + LOWER + DIGITS;
const BASE64URL = ALPHANUMERIC + "-_";

/**
 * The alphabets a real key's remainder is matched against, narrowest first, so the placeholder uses
 * no character the real key could not contain. Digits come before hex: a digits-only value (an
 * account number, a PIN-like token) must stay digits-only, and a genuinely hex value of any useful
 * length is all digits with negligible probability.
 */
const ALPHABETS: readonly (readonly [test: RegExp, alphabet: string])[] = [
  [/^[0-9]+$/, DIGITS],
  [/^[0-9a-f]+$/, DIGITS + "abcdef"],
  [/^[0-9A-F]+$/, DIGITS + "ABCDEF"],
  [/^[A-Za-z0-9]+$/, ALPHANUMERIC],
  [/^[A-Za-z0-9_-]+$/, BASE64URL],
  [/^[A-Za-z0-9+/]+$/, ALPHANUMERIC + "+/"],
];

/** Retries before giving up on avoiding `real`; each fails only with tiny probability (see below). */
const MAX_ATTEMPTS = 1000;

/**
 * A placeholder for `real`, deterministic for (key, cloisterId, secretName), so a restarted guardian
 * derives the same one without storing it. Format-preserving: same known prefix and same length and
 * alphabet as `real` where that is safe.
 *
 * The prefix kept is `prefix` when `real` starts with it, else one inferred from `real` (see
 * INFERRED_PREFIX), else none; a prefix that is all of `real` is not kept, since nothing would be
 * left to make the placeholder differ. The rest has the length of `real`'s remainder (but at least
 * MIN_RANDOM_CHARS) and its alphabet: hex, digits, alphanumeric, base64url, or base64 with `real`'s
 * `=` padding kept; anything else gets base64url.
 */
export function placeholderFor(key: Buffer, cloisterId: string, secretName: string, real: string, prefix?: string): string {
  if (key.length === 0) throw new Error("placeholderFor: empty key");
  if (real.length === 0) throw new Error("placeholderFor: empty secret");
  // NUL separates the fields in the HMAC message; one inside a field would make two pairs collide.
  if (cloisterId.includes("\0") || secretName.includes("\0")) throw new Error("placeholderFor: NUL in cloister id or secret name");

  const kept = keptPrefix(real, prefix);
  const { alphabet, body, padding } = shapeOf(real.slice(kept.length));
  const length = Math.max(body.length, MIN_RANDOM_CHARS);
  const draw = characterSource(key, `${cloisterId}\0${secretName}\0`, alphabet);

  // Equal to or containing `real` needs every random character to line up: at worst (a one-character
  // `real` over the digits) a draw avoids it with probability 0.9^24 ≈ 8%, so a thousand tries fail
  // with probability ~1e-36. Retries continue the same counter stream, so they stay deterministic.
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    let random = "";
    while (random.length < length) random += draw();
    const placeholder = kept + random + padding;
    if (!placeholder.includes(real)) return placeholder;
  }
  throw new Error("placeholderFor: could not derive a placeholder distinct from the secret");
}

function keptPrefix(real: string, prefix: string | undefined): string {
  const chosen = prefix !== undefined && prefix.length > 0 && real.startsWith(prefix) ? prefix : (INFERRED_PREFIX.exec(real)?.[0] ?? "");
  return chosen.length < real.length ? chosen : "";
}

/** The alphabet of a remainder, and its base64 padding (kept, so the value still decodes as base64). */
function shapeOf(remainder: string): { alphabet: string; body: string; padding: string } {
  const padded = /^([A-Za-z0-9+/]+)(=+)$/.exec(remainder);
  const body = padded?.[1] ?? remainder;
  const padding = padded?.[2] ?? "";
  for (const [test, alphabet] of ALPHABETS) if (test.test(body)) return { alphabet, body, padding };
  return { alphabet: BASE64URL, body, padding: "" };
}

/**
 * Characters of `alphabet` drawn uniformly from HMAC(key, message + counter) blocks, counter 0, 1, 2…
 * A byte maps to `alphabet[b % n]` only below the largest multiple of n that fits in a byte; the
 * bytes above are skipped (rejection sampling), since folding them in would make the first
 * `256 % n` characters more likely than the others.
 */
function characterSource(key: Buffer, message: string, alphabet: string): () => string {
  const limit = 256 - (256 % alphabet.length);
  let counter = 0;
  let block = Buffer.alloc(0);
  let offset = 0;
  return () => {
    for (;;) {
      if (offset === block.length) {
        block = createHmac("sha256", key).update(`${message}${counter++}`).digest();
        offset = 0;
      }
      const byte = block[offset++] ?? 0;
      if (byte < limit) return alphabet[byte % alphabet.length] ?? "";
    }
  };
}
