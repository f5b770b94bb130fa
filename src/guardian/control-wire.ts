/**
 * The CLI's half of the control API's HTTP/1.1, written by hand over a plain unix socket: one request
 * per connection (`Connection: close`), the whole answer read to the end, then taken apart here.
 *
 * Why not node:http: loading it cost a CLI process ~4 ms, and sending the first request ~10 ms more
 * (its client, agent and parser code all run cold), and that first request is the launch grant of
 * every `cloister run` and `start`: the guardian could not start its share of the launch until the
 * CLI had spent those milliseconds. The guardian's side stays node's HTTP server, and the subset
 * spoken here is small: the status line, Content-Length or chunked framing, a JSON body.
 */

/** Larger answers are refused: the biggest real one (a policy or decision listing) is a few KiB. */
export const MAX_ANSWER_BYTES = 16 << 20;

export interface ControlAnswer {
  status: number;
  body: string;
}

/** The request's bytes. Paths are built by our code from encodeURIComponent'd parts; anything else is a bug. */
export function encodeControlRequest(method: string, path: string, payload?: string): string {
  if (!/^[A-Z]+$/.test(method) || !/^\/[\x21-\x7e]*$/.test(path)) throw new Error(`invalid control request: ${method} ${JSON.stringify(path)}`);
  const body = payload === undefined ? "" : payload;
  const type = payload === undefined ? "" : "Content-Type: application/json\r\n";
  return `${method} ${path} HTTP/1.1\r\nHost: guardian\r\nConnection: close\r\n${type}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

/** The guardian's whole answer (everything it sent before closing) as status and body. */
export function decodeControlAnswer(raw: Buffer): ControlAnswer {
  const headEnd = raw.indexOf("\r\n\r\n");
  if (headEnd < 0) throw malformed("it ended before its headers did");
  const [statusLine = "", ...headerLines] = raw.subarray(0, headEnd).toString("latin1").split("\r\n");
  const status = /^HTTP\/1\.[01] ([1-5]\d\d)(?: |$)/.exec(statusLine)?.[1];
  if (status === undefined) throw malformed(`its status line is ${JSON.stringify(statusLine.slice(0, 80))}`);
  const headers = new Map<string, string>();
  for (const line of headerLines) {
    const colon = line.indexOf(":");
    if (colon <= 0) throw malformed(`a header line is ${JSON.stringify(line.slice(0, 80))}`);
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  const rest = raw.subarray(headEnd + 4);
  const body = /\bchunked\b/i.test(headers.get("transfer-encoding") ?? "") ? dechunk(rest) : bySize(rest, headers.get("content-length"));
  return { status: Number(status), body: body.toString("utf8") };
}

/** With Content-Length: exactly that many bytes; without: all there is (the server closed after it). */
function bySize(rest: Buffer, contentLength: string | undefined): Buffer {
  if (contentLength === undefined) return rest;
  if (!/^\d{1,9}$/.test(contentLength)) throw malformed(`its Content-Length is ${JSON.stringify(contentLength)}`);
  const length = Number(contentLength);
  if (rest.length < length) throw malformed(`it was cut short (${rest.length} of ${length} bytes)`);
  return rest.subarray(0, length);
}

/** Chunked transfer coding (RFC 9112 §7.1): size line (hex, extensions ignored), data, CRLF; a 0 size ends it. */
function dechunk(rest: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = rest.indexOf("\r\n", at);
    if (lineEnd < 0) throw malformed("it was cut short inside its chunked body");
    const sizeText = rest.subarray(at, lineEnd).toString("latin1").split(";")[0]?.trim() ?? "";
    if (!/^[0-9a-fA-F]{1,7}$/.test(sizeText)) throw malformed(`a chunk size is ${JSON.stringify(sizeText.slice(0, 20))}`);
    const size = parseInt(sizeText, 16);
    if (size === 0) return Buffer.concat(parts); // trailers, if any, carry nothing we use
    const dataEnd = lineEnd + 2 + size;
    if (rest.length < dataEnd + 2) throw malformed("it was cut short inside its chunked body");
    if (rest[dataEnd] !== 0x0d || rest[dataEnd + 1] !== 0x0a) throw malformed("a chunk does not end where its size says");
    parts.push(rest.subarray(lineEnd + 2, dataEnd));
    at = dataEnd + 2;
  }
}

function malformed(why: string): Error {
  return new Error(`the guardian's answer is not valid HTTP: ${why}`);
}
