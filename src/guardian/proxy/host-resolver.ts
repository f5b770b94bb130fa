import { lookup as systemLookup } from "node:dns/promises";
import { LruMap } from "../../lru-map.js";

/** One answer of the host's resolver (getaddrinfo, through node's dns.lookup). */
export interface ResolvedAddress {
  address: string;
  family: number;
}

export type Lookup = (name: string) => Promise<ResolvedAddress[]>;

/** How long an answer is reused. getaddrinfo gives no TTL; browsers keep an answer for a minute. */
export const ANSWER_TTL_MS = 30_000;
/** Names remembered at once per cloister; past this the oldest answer goes first. */
export const MAX_NAMES = 1024;
/**
 * Queries of one cloister at the host's resolver at once; the next wait their turn. getaddrinfo runs
 * on node's thread pool, shared by every cloister (and the guardian's file work): a cloister allowed
 * `*.example.com` asking for many names that each wait out a slow DNS server would otherwise hold
 * every thread, and every other cloister's lookups would wait behind it (red team).
 */
export const MAX_QUERIES_AT_ONCE = 2;

/**
 * The host's resolver with a short memory, one per cloister. Without it every plain-HTTP request on
 * a kept-alive connection and every new tunnel asked getaddrinfo again, a round trip through node's
 * four resolver threads: 1,000 CONNECTs opened at once to registry.npmjs.org took 200 s to be
 * answered on this machine (0.75 s with this), and one of 30 lookups in a row once waited out the
 * resolver's 5 s timeout.
 *
 * What the proxy does with an answer is unchanged: judge.ts checks every address of it and dials
 * only one it accepted, so reusing an answer for ANSWER_TTL_MS cannot reach an address that was not
 * checked; a name rebound meanwhile is simply looked up again later. Failures are not remembered, so
 * a name that starts to resolve works at once. Concurrent lookups of one name share one query. Each
 * cloister has its own, so one cannot time another's lookups.
 *
 * Written here rather than taken from a library: the ones that cache lookups (cacheable-lookup)
 * replace getaddrinfo with their own DNS client, which skips nsswitch (/etc/hosts order, mDNS,
 * systemd-resolved's own names); this keeps the host's resolver and only remembers its answers.
 */
export class HostResolver {
  /** Ordered by the answers' age: a remembered answer is not refreshed by being used. */
  private readonly answers = new LruMap<string, { expires: number; addresses: ResolvedAddress[] }>(MAX_NAMES);
  private readonly pending = new Map<string, Promise<ResolvedAddress[]>>();
  /** Queries at the resolver now, and the starts of those waiting their turn (MAX_QUERIES_AT_ONCE). */
  private asking = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(
    private readonly resolve: Lookup = (name) => systemLookup(name, { all: true, verbatim: true }),
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** The addresses of `name`, from memory while fresh, else from the host's resolver. Rejects as the resolver does. */
  lookup(name: string): Promise<ResolvedAddress[]> {
    const known = this.answers.peek(name);
    if (known && known.expires > this.now()) return Promise.resolve(known.addresses);
    const asked = this.pending.get(name);
    if (asked) return asked;
    const query = this.inTurn(() => this.resolve(name))
      .then((addresses) => {
        this.answers.set(name, { expires: this.now() + ANSWER_TTL_MS, addresses });
        return addresses;
      })
      .finally(() => this.pending.delete(name));
    this.pending.set(name, query);
    return query;
  }

  /** `ask` once fewer than MAX_QUERIES_AT_ONCE of this cloister's queries are at the resolver. */
  private async inTurn<T>(ask: () => Promise<T>): Promise<T> {
    if (this.asking >= MAX_QUERIES_AT_ONCE) await new Promise<void>((start) => this.waiting.push(start));
    else this.asking++;
    try {
      return await ask();
    } finally {
      // The place passes straight to the next in line, or is given back.
      const next = this.waiting.shift();
      if (next) next();
      else this.asking--;
    }
  }

}
