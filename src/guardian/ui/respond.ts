import type { OutgoingHttpHeaders, ServerResponse } from "node:http";

/**
 * Sent on every response, errors and assets included: the UI loads only its own script and style,
 * cannot be framed, sniffed, cached or read from another origin. No Access-Control-Allow-* ever:
 * other origins get no way in.
 */
export const SECURITY_HEADERS: Readonly<OutgoingHttpHeaders> = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
};

/** A request refused before it reaches the approval service; `status` is what the client gets. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export function send(res: ServerResponse, status: number, contentType: string, body: string | Buffer, headers: OutgoingHttpHeaders = {}): void {
  res.writeHead(status, { ...SECURITY_HEADERS, ...headers, "content-type": contentType, "content-length": Buffer.byteLength(body) });
  res.end(body);
}

export function sendJson(res: ServerResponse, status: number, value: unknown, headers: OutgoingHttpHeaders = {}): void {
  send(res, status, "application/json; charset=utf-8", JSON.stringify(value), headers);
}
