import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { CloisterError } from "../../errors.js";
import { ApprovalError, type ApprovalService } from "../approvals/types.js";
import { loadAssets, SIGN_IN_PAGE, type Asset } from "./assets.js";
import { sessionCookie, UiAuth, type Caller } from "./auth.js";
import { parseAnswer, parseUndo, readJsonBody } from "./body.js";
import { HttpError, send, sendJson } from "./respond.js";
import { isOwnHost, isOwnOriginWrite } from "./same-origin.js";
import { EventStreams } from "./sse.js";

export interface UiServerOptions {
  service: ApprovalService;
  /** 0 picks a free port; the config's `ui.port` (default 9999) otherwise. */
  port: number;
  /** The built browser app: index.html, app.js, style.css. */
  assetsDir: string;
  log?: (message: string) => void;
}

interface Request {
  req: IncomingMessage;
  res: ServerResponse;
  path: string;
  /** Path parameters (`:id`), in order. */
  params: string[];
  query: URLSearchParams;
}

interface SignedInRequest extends Request {
  caller: Caller;
}

/** public: no secret needed; page: a browser page (its 401 is a page); api: JSON (its 401 is JSON). */
type Route = {
  method: "GET" | "POST";
  /** Exact path; `:id` segments match an id (hex in practice) and nothing else. */
  path: string;
} & ({ access: "public"; handle: (request: Request) => Promise<void> | void } | { access: "page" | "api"; handle: (request: SignedInRequest) => Promise<void> | void });

const ID_SEGMENT = /^[0-9A-Za-z_-]{1,128}$/;

/**
 * The approval web UI and its JSON API: the human's side of held requests, on 127.0.0.1 only.
 * Every route but the login and the static assets needs the session cookie or the API token; Host is
 * checked on every request (DNS rebinding) and Origin on every write (CSRF).
 */
export class UiServer {
  readonly url: string;
  readonly apiToken: string;
  readonly #server: Server;
  readonly #port: number;
  readonly #service: ApprovalService;
  readonly #assets: Map<string, Asset>;
  readonly #log: (message: string) => void;
  readonly #auth = new UiAuth();
  readonly #streams = new EventStreams();
  readonly #unsubscribe: () => void;
  readonly #routes: Route[] = [
    { method: "GET", path: "/login", access: "public", handle: (r) => this.#login(r) },
    { method: "GET", path: "/assets/app.js", access: "public", handle: (r) => this.#asset(r) },
    { method: "GET", path: "/assets/style.css", access: "public", handle: (r) => this.#asset(r) },
    { method: "GET", path: "/", access: "page", handle: (r) => this.#asset(r) },
    { method: "GET", path: "/api/pending", access: "api", handle: ({ res }) => sendJson(res, 200, { requests: this.#service.pending() }) },
    { method: "GET", path: "/api/recent", access: "api", handle: ({ res }) => sendJson(res, 200, { decisions: this.#service.recent() }) },
    { method: "GET", path: "/api/events", access: "api", handle: (r) => this.#events(r) },
    { method: "POST", path: "/api/requests/:id/answer", access: "api", handle: (r) => this.#answer(r) },
    { method: "POST", path: "/api/decisions/:id/undo", access: "api", handle: (r) => this.#undo(r) },
  ];

  private constructor(server: Server, port: number, options: UiServerOptions, assets: Map<string, Asset>) {
    this.#server = server;
    this.#port = port;
    this.#service = options.service;
    this.#assets = assets;
    this.#log = options.log ?? (() => {});
    this.url = `http://127.0.0.1:${port}`;
    this.apiToken = this.#auth.apiToken;
    this.#unsubscribe = this.#service.subscribe((event) => this.#streams.send(event.type, event));
    server.on("request", (req: IncomingMessage, res: ServerResponse) => void this.#handle(req, res));
  }

  static async start(options: UiServerOptions): Promise<UiServer> {
    const assets = await loadAssets(options.assetsDir);
    // Node answers a request without Host with its own 400; this server answers it 421 like any wrong Host.
    const server = createServer({ requireHostHeader: false });
    const port = await listen(server, options.port);
    return new UiServer(server, port, options, assets);
  }

  /** A link that signs one browser in: single use, valid for two minutes. */
  loginUrl(): string {
    return `${this.url}/login?token=${this.#auth.mintLogin()}`;
  }

  async close(): Promise<void> {
    this.#unsubscribe();
    this.#streams.close();
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      if (!isOwnHost(req.headers.host, this.#port)) return send(res, 421, "text/plain; charset=utf-8", "misdirected request\n");
      const url = req.url ?? "/";
      const queryAt = url.indexOf("?");
      const path = queryAt < 0 ? url : url.slice(0, queryAt);
      const query = new URLSearchParams(queryAt < 0 ? "" : url.slice(queryAt + 1));
      const found = this.#match(req.method ?? "", path);
      if (found === undefined) return sendJson(res, 404, { error: "not found" });
      const { route, params } = found;
      const request = { req, res, path, params, query };
      if (route.access === "public") return await route.handle(request);
      const caller = this.#auth.identify(req.headers);
      if (caller === null && route.access === "page") return send(res, 401, "text/html; charset=utf-8", SIGN_IN_PAGE);
      if (caller === null) return sendJson(res, 401, { error: "sign in with a link from `cloister ui`, or send the API token as a bearer token" });
      if (route.method === "POST" && !isOwnOriginWrite(req.headers.origin, caller, this.#port)) {
        // Worth a line in the guardian's log: a page elsewhere tried to answer with the user's session.
        this.#log(`approval UI: refused a write from origin ${JSON.stringify(req.headers.origin ?? null)}`);
        throw new HttpError(403, "writes are accepted only from the approval UI's own origin");
      }
      await route.handle({ ...request, caller });
    } catch (error) {
      this.#fail(res, error);
    }
  }

  #match(method: string, path: string): { route: Route; params: string[] } | undefined {
    const got = path.split("/");
    for (const route of this.#routes) {
      const want = route.path.split("/");
      if (route.method !== method || want.length !== got.length) continue;
      const params: string[] = [];
      const matches = want.every((part, i) => {
        const segment = got[i] ?? "";
        if (!part.startsWith(":")) return part === segment;
        params.push(segment);
        return ID_SEGMENT.test(segment);
      });
      if (matches) return { route, params };
    }
    return undefined;
  }

  #fail(res: ServerResponse, error: unknown): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (error instanceof HttpError || error instanceof ApprovalError) {
      // A refused oversized body is left unread; closing the connection keeps it out of the next request.
      const headers = error.status === 413 ? { connection: "close" } : {};
      sendJson(res, error.status, { error: error.message }, headers);
      return;
    }
    this.#log(`approval UI: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    sendJson(res, 500, { error: "internal error" });
  }

  #login({ res, query }: Request): void {
    const session = this.#auth.redeemLogin(query.get("token") ?? "");
    if (session === null) {
      this.#log("approval UI: refused a login link that was unknown, used or expired");
      send(res, 401, "text/html; charset=utf-8", SIGN_IN_PAGE);
      return;
    }
    this.#log("approval UI: a browser signed in");
    send(res, 303, "text/plain; charset=utf-8", "signed in\n", { location: "/", "set-cookie": sessionCookie(session) });
  }

  #asset({ res, path }: Request): void {
    const asset = this.#assets.get(path);
    if (asset === undefined) throw new Error(`no asset for ${path}`);
    send(res, 200, asset.contentType, asset.body);
  }

  #events({ res }: Request): void {
    const snapshot = { pending: this.#service.pending(), recent: this.#service.recent() };
    if (!this.#streams.open(res, "snapshot", snapshot)) sendJson(res, 503, { error: "too many open event streams" });
  }

  // The audit log's "by" is the caller: "ui" for the browser, "api" for a script with the token.
  async #answer({ req, res, params, caller }: SignedInRequest): Promise<void> {
    const answer = parseAnswer(await readJsonBody(req));
    sendJson(res, 200, await this.#service.answer(params[0] ?? "", { ...answer, by: caller }));
  }

  async #undo({ req, res, params, caller }: SignedInRequest): Promise<void> {
    parseUndo(await readJsonBody(req));
    sendJson(res, 200, await this.#service.undo(params[0] ?? "", caller));
  }
}

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) => {
      if (error.code !== "EADDRINUSE") return reject(error);
      reject(new CloisterError(`the approval UI cannot listen on 127.0.0.1:${port}: the port is in use`, "set ui.port in the config to a free port, or 0 for any free port"));
    });
    server.listen(port, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
  });
}
