import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { CloisterError } from "../errors.js";
import { errorReply } from "./control-errors.js";
import { listenPrivately } from "./private-socket.js";

export type Handler = (body: Record<string, unknown>, params: string[]) => Promise<unknown> | unknown;

/**
 * A handler may answer with a stream instead of one JSON value: newline-delimited JSON, one object
 * per line, until either side closes (`cloister approvals --watch`).
 */
export class JsonLines {
  constructor(readonly start: (write: (value: unknown) => void, onClose: (stop: () => void) => void) => void) {}
}

/**
 * The guardian's control API: JSON over HTTP on a unix socket that only this user can open (0600 in
 * a 0700 directory). Cloisters never see it; their only channel is their own egress socket.
 */
export async function serveControl(socketPath: string, routes: Record<string, Handler>): Promise<Server> {
  const server = createServer((req, res) => void dispatch(routes, req, res));
  await listenPrivately(server, socketPath);
  return server;
}

async function dispatch(routes: Record<string, Handler>, req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    const { handler, params } = route(routes, req.method ?? "GET", req.url ?? "/");
    const result = await handler(await readJson(req), params);
    if (result instanceof JsonLines) return streamLines(result, res);
    send(res, 200, result ?? {});
  } catch (error) {
    const status = error instanceof NotFound ? 404 : error instanceof CloisterError ? 400 : clientErrorStatus(error) ?? 500;
    send(res, status, errorReply(error));
  }
}

class NotFound extends Error {}

/** Errors that carry their own 4xx status (e.g. ApprovalError) keep it. */
function clientErrorStatus(error: unknown): number | undefined {
  const status = (error as { status?: unknown } | null)?.status;
  return typeof status === "number" && status >= 400 && status < 500 ? status : undefined;
}

function streamLines(lines: JsonLines, res: ServerResponse): void {
  res.writeHead(200, { "content-type": "application/x-ndjson" });
  lines.start(
    (value) => res.write(`${JSON.stringify(value)}\n`),
    (stop) => res.once("close", stop),
  );
}

/** Routes are "METHOD /path/:param"; params come back in order. */
function route(routes: Record<string, Handler>, method: string, url: string): { handler: Handler; params: string[] } {
  const path = url.split("?")[0] ?? "/";
  for (const [key, handler] of Object.entries(routes)) {
    const [routeMethod, pattern = ""] = key.split(" ");
    if (routeMethod !== method) continue;
    const want = pattern.split("/");
    const got = path.split("/");
    if (want.length !== got.length) continue;
    const params: string[] = [];
    if (want.every((part, i) => (part.startsWith(":") ? (params.push(decodeURIComponent(got[i] ?? "")), true) : part === got[i]))) return { handler, params };
  }
  throw new NotFound(`no such guardian API: ${method} ${path}`);
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  let text = "";
  for await (const chunk of req) {
    text += String(chunk);
    if (text.length > 1 << 20) throw new CloisterError("control request too large");
  }
  if (!text) return {};
  const parsed: unknown = JSON.parse(text);
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new CloisterError("control request body must be a JSON object");
  return parsed as Record<string, unknown>;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}
