import type { IncomingMessage } from "node:http";
import { SCOPES, type Scope, type Verdict } from "../approvals/types.js";
import { HttpError } from "./respond.js";

/** Answers and undos are a few dozen bytes; anything near this is not from the UI. */
export const MAX_BODY_BYTES = 16 * 1024;

/**
 * The JSON body of a write. Only `application/json` is read: it is not a type a cross-site form or
 * a "simple" fetch can send without a CORS preflight, which this server never grants.
 */
export async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const mediaType = (req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase();
  if (mediaType !== "application/json") throw new HttpError(415, "writes must be sent as application/json");
  if (Number(req.headers["content-length"] ?? 0) > MAX_BODY_BYTES) throw tooLarge();
  const bytes = await readLimited(req);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new HttpError(400, "request body is not UTF-8");
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpError(400, "request body is not valid JSON");
  }
}

export interface AnswerBody {
  verdict: Verdict;
  scope: Scope;
  wildcard?: boolean;
}

export function parseAnswer(body: unknown): AnswerBody {
  const fields = objectOf(body, ["verdict", "scope", "wildcard"]);
  const { verdict, scope, wildcard } = fields;
  if (verdict !== "allow" && verdict !== "deny") throw new HttpError(400, 'verdict must be "allow" or "deny"');
  if (!SCOPES.includes(scope as Scope)) throw new HttpError(400, `scope must be one of ${SCOPES.join(", ")}`);
  if (wildcard !== undefined && typeof wildcard !== "boolean") throw new HttpError(400, "wildcard must be true or false");
  return { verdict, scope: scope as Scope, ...(wildcard === undefined ? {} : { wildcard }) };
}

/** An undo carries nothing but is still a JSON write, so `{}` is its whole body. */
export function parseUndo(body: unknown): void {
  objectOf(body, []);
}

function objectOf(body: unknown, keys: readonly string[]): Record<string, unknown> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new HttpError(400, "request body must be a JSON object");
  const unknownKey = Object.keys(body).find((key) => !keys.includes(key));
  if (unknownKey !== undefined) throw new HttpError(400, `unknown field ${JSON.stringify(unknownKey)}`);
  return body as Record<string, unknown>;
}

function tooLarge(): HttpError {
  return new HttpError(413, `request body over ${MAX_BODY_BYTES} bytes`);
}

/** Stops reading at the limit rather than buffering whatever a client keeps sending. */
function readLimited(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        req.removeAllListeners("data");
        req.pause();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    });
    req.once("end", () => resolve(Buffer.concat(chunks)));
    req.once("error", reject);
  });
}
