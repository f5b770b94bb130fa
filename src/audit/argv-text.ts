/**
 * An argv as audit records hold it: its JSON array text, with the user information of every URL in
 * it replaced by "***" (`https://bob:TOKEN@github.com/x` → `https://***@github.com/x`). An audit
 * record never holds a token (issue 3), and an agent may well put one in a push URL; the user part
 * goes too, since a token is often given as the user (`https://TOKEN@github.com`). The rest reads
 * back exactly.
 */
export function auditArgv(argv: readonly string[]): string {
  return JSON.stringify(argv.map(withoutUrlCredentials));
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
