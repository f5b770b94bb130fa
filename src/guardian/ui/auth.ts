import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";

/** How a request proved itself: the browser's session cookie, or the bearer token a script holds. */
export type Caller = "ui" | "api";

export const SESSION_COOKIE = "cloister_ui";
const LOGIN_TTL_MS = 2 * 60_000;
/** Each `cloister ui` login opens a session; the oldest ones are forgotten past this many. */
const MAX_SESSIONS = 64;

/**
 * The UI's secrets, all in memory and gone when the guardian stops: single-use login tokens (the link
 * `cloister ui` prints), the sessions they open (the cookie), and the API token for scripts. None of
 * them is ever written anywhere a cloister can read.
 */
export class UiAuth {
  readonly apiToken = randomSecret();
  readonly #logins = new Map<string, number>();
  readonly #sessions: string[] = [];

  /** A token for one login within the next two minutes. */
  mintLogin(): string {
    this.#forgetExpiredLogins();
    const token = randomSecret();
    this.#logins.set(token, Date.now() + LOGIN_TTL_MS);
    return token;
  }

  /** Spends a login token and opens a session; null for an unknown, spent or expired token. */
  redeemLogin(presented: string): string | null {
    this.#forgetExpiredLogins();
    const token = findSecret(this.#logins.keys(), presented);
    if (token === undefined) return null;
    this.#logins.delete(token);
    const session = randomSecret();
    this.#sessions.push(session);
    if (this.#sessions.length > MAX_SESSIONS) this.#sessions.shift();
    return session;
  }

  /**
   * Who sent a request, or null when it carries no valid secret. A request that sends an
   * Authorization header is judged by it alone, so a wrong token never falls back to a cookie.
   */
  identify(headers: IncomingHttpHeaders): Caller | null {
    const authorization = headers.authorization;
    if (authorization !== undefined) {
      const token = /^Bearer ([0-9a-f]+)$/.exec(authorization)?.[1];
      return token !== undefined && sameSecret(token, this.apiToken) ? "api" : null;
    }
    // Another service on a 127.0.0.1 port can set a cookie of the same name (cookies ignore ports),
    // so every value sent is tried rather than the first.
    const sessions = cookieValues(headers.cookie, SESSION_COOKIE);
    return sessions.some((value) => findSecret(this.#sessions, value) !== undefined) ? "ui" : null;
  }

  #forgetExpiredLogins(): void {
    const now = Date.now();
    for (const [token, expiresAt] of this.#logins) if (expiresAt <= now) this.#logins.delete(token);
  }
}

/** The Set-Cookie value for a session: a browser-session cookie that scripts and other sites never see. */
export function sessionCookie(session: string): string {
  return `${SESSION_COOKIE}=${session}; HttpOnly; SameSite=Strict; Path=/`;
}

function randomSecret(): string {
  return randomBytes(32).toString("hex");
}

/** Constant-time comparison; hashing first gives both sides the same length whatever was sent. */
function sameSecret(presented: string, known: string): boolean {
  const digest = (value: string) => createHash("sha256").update(value).digest();
  return timingSafeEqual(digest(presented), digest(known));
}

/** Compares against every known secret without stopping early, so timing does not tell which matched. */
function findSecret(known: Iterable<string>, presented: string): string | undefined {
  let found: string | undefined;
  for (const secret of known) if (sameSecret(presented, secret)) found = secret;
  return found;
}

function cookieValues(header: string | undefined, name: string): string[] {
  return (header ?? "").split(";").flatMap((pair) => {
    const [key, ...value] = pair.trim().split("=");
    return key === name ? [value.join("=")] : [];
  });
}
