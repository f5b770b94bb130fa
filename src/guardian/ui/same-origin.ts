import type { Caller } from "./auth.js";

/**
 * The UI's own loopback authorities. A page reaching the UI under any other Host is a DNS-rebinding
 * attempt (an attacker's name resolved to 127.0.0.1), and a write from any other Origin is CSRF.
 */
function ownAuthorities(port: number): string[] {
  return [`127.0.0.1:${port}`, `localhost:${port}`];
}

export function isOwnHost(host: string | undefined, port: number): boolean {
  return host !== undefined && ownAuthorities(port).includes(host);
}

/**
 * Whether a write may proceed. Browsers send Origin on every POST, so a cookie-authenticated write
 * without one is not from the UI's page; scripts with the bearer token may leave it out, but one
 * that names another origin is refused whatever the credentials.
 */
export function isOwnOriginWrite(origin: string | undefined, caller: Caller, port: number): boolean {
  if (origin === undefined) return caller === "api";
  return ownAuthorities(port).some((authority) => origin === `http://${authority}`);
}
