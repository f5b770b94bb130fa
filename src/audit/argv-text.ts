import { MAX_VALUE_LENGTH } from "./record.js";

/**
 * An argv as audit records hold it: its JSON array text, with the user information of every URL in
 * it replaced by "***" (`https://bob:TOKEN@github.com/x` → `https://***@github.com/x`). An audit
 * record never holds a token (issue 3), and an agent may well put one in a push URL; the user part
 * goes too, since a token is often given as the user (`https://TOKEN@github.com`). The rest reads
 * back exactly. A text too long for a record (MAX_VALUE_LENGTH) keeps every word, its longest ones
 * shortened to their two ends.
 */
export function auditArgv(argv: readonly string[]): string {
  const words = argv.map(withoutUrlCredentials);
  const whole = JSON.stringify(words);
  if (whole.length <= MAX_VALUE_LENGTH) return whole;
  const kept = longestKept(words);
  return JSON.stringify(words.map((word) => shortened(word, kept)));
}

/**
 * Whether auditArgv keeps every word of `argv` (each shortened at most to its ends). The record cuts
 * a longer value at its end, so padding could push the one argument that matters out of the log
 * (red team: `--subject-prefix=AAAA…` ahead of `--signature-file=~/.ssh/id_ed25519`).
 */
export function auditsWhole(argv: readonly string[]): boolean {
  return auditArgv(argv).length <= MAX_VALUE_LENGTH;
}

/** Words are never cut below this many characters: an option's name and the start of its value. */
const MIN_KEPT = 48;

/**
 * The longest a word may stay for the argv's text to fit in a record, found by bisection (the text
 * grows with it); MIN_KEPT when even that does not fit, which auditsWhole then reports.
 */
function longestKept(words: readonly string[]): number {
  let fits = MIN_KEPT;
  let tooLong = words.reduce((longest, word) => Math.max(longest, word.length), 0) + 1;
  while (tooLong - fits > 1) {
    const middle = Math.floor((fits + tooLong) / 2);
    if (JSON.stringify(words.map((word) => shortened(word, middle))).length <= MAX_VALUE_LENGTH) fits = middle;
    else tooLong = middle;
  }
  return fits;
}

/** A long word as its two ends around a count of what was left out: `--subject-prefix=AAA…[4100 more]…AAA`. */
function shortened(word: string, kept: number): string {
  if (word.length <= kept) return word;
  const head = Math.ceil(kept / 2);
  const tail = kept - head;
  return `${word.slice(0, head)}…[${word.length - kept} more]…${word.slice(word.length - tail)}`;
}

/**
 * A scheme (RFC 3986: a letter, then letters, digits, "+", "-", "."), "://", then the user
 * information: everything up to the authority's last "@" (the host follows it, as WHATWG's URL parser
 * reads `https://a:b@c@host`), the authority ending at "/", "?", "#" or white space.
 */
const URL_USER_INFO = /([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^/?#\s]*@/g;

function withoutUrlCredentials(word: string): string {
  return word.replace(URL_USER_INFO, "$1***@");
}
