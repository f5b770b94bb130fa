import type { Dispatcher, Pool } from "undici";
import { LruMap } from "../../lru-map.js";
import { dial } from "./tunnel.js";

/**
 * undici's Pool, loaded at the first plain-HTTP request: loading undici costs ~19 MiB of the
 * guardian's memory, and most guardians only ever see HTTPS (CONNECT), which does not use it.
 */
let poolClass: Promise<typeof Pool> | undefined;

async function loadPoolClass(): Promise<typeof Pool> {
  // undici is CommonJS: its exports are the default export both under node and in the bundle
  // (which has no named exports for it).
  return (await import("undici")).default.Pool;
}

/** Kept-alive connections per origin (address and port): as many requests at once as one cloister may send there. */
const CONNECTIONS_PER_ORIGIN = 32;
/** Origins with pooled connections per cloister; with the above, at most 256 origin connections. */
const MAX_ORIGINS = 8;
/** How long an idle origin connection is kept (an origin's own Keep-Alive hint may shorten it). */
const KEEP_ALIVE_MS = 30_000;

/**
 * One cloister's kept-alive connections to origins for its plain-HTTP requests, on undici's pools
 * (node's own `http.request` cost the guardian ~40 µs more CPU per request: docs/benchmarks.md).
 * Pools are keyed by the checked address and port, and every connection is dialed to exactly that
 * address (requests carry the name only in Host), so a reused connection goes exactly where a new
 * one would. One per cloister: no cloister's request ever rides another's connection. Past
 * MAX_ORIGINS origins the least recently used pool is closed (after its requests finish), which
 * bounds the descriptors one cloister can hold.
 */
export class OriginPools {
  /** Past MAX_ORIGINS, the least recently used pool is closed: its requests finish first. */
  private readonly pools = new LruMap<string, Pool>(MAX_ORIGINS, (pool) => void pool.close().catch(() => undefined));

  constructor(private readonly connectTimeoutMs: () => number) {}

  dispatch(address: string, family: 4 | 6, port: number, options: Omit<Dispatcher.DispatchOptions, "origin">, handler: Dispatcher.DispatchHandler): void {
    (poolClass ??= loadPoolClass())
      .then((PoolClass) => this.pool(PoolClass, address, family, port).dispatch(options, handler))
      // Never unhandled: a failure here answers this request (502), and the guardian goes on.
      .catch((error: Error) => handler.onResponseError?.(unstarted, error));
  }

  /** Ends every connection now; requests still running fail. */
  destroy(): void {
    for (const pool of this.pools.values()) void pool.destroy().catch(() => undefined);
    this.pools.clear();
  }

  private pool(PoolClass: typeof Pool, address: string, family: 4 | 6, port: number): Pool {
    const key = `${address}:${port}`;
    const known = this.pools.use(key);
    if (known) return known;
    const pool = new PoolClass(`http://${family === 6 ? `[${address}]` : address}:${port}`, {
      connections: CONNECTIONS_PER_ORIGIN,
      pipelining: 1,
      keepAliveTimeout: KEEP_ALIVE_MS,
      keepAliveMaxTimeout: KEEP_ALIVE_MS,
      // The checked address, dialed as the proxy's tunnels are (connect timeout, DialError).
      connect: (_options, callback) => {
        dial(address, port, this.connectTimeoutMs()).then(
          (socket) => callback(null, socket),
          (error: Error) => callback(error, null),
        );
      },
    });
    this.pools.set(key, pool);
    return pool;
  }
}

/** The controller a handler is given for a request that never started: there is nothing to pause or abort. */
const unstarted: Dispatcher.DispatchController = {
  aborted: false,
  paused: false,
  reason: null,
  abort: () => undefined,
  pause: () => undefined,
  resume: () => undefined,
};
