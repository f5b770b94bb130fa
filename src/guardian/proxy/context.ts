import { timingSafeEqual } from "node:crypto";
import type { Socket } from "node:net";
import type { AuditEvent } from "../../audit/log.js";
import type { ProxySettings } from "../../config/schema.js";
import { decide, type Decision } from "../../policy/egress.js";
import { formatAuthority, hostText, rememberingCanonicalHost, type Host } from "../../policy/hosts.js";
import type { Outcome } from "../approvals/queue.js";
import { admit, unlistedHandling, type Admitted, type JudgeInput, type Protocol, type Verdict } from "./judge.js";
import { OriginPools } from "./origin-pools.js";
import { relayTunnel, type RelayedTunnel, type TunnelResult } from "./native-relay.js";
import { RecordPace } from "./record-pace.js";
import { Agent as HttpsAgent } from "node:https";
import type { ActiveRule } from "../../policy/injection.js";
import type { Interception } from "../broker/broker.js";

/**
 * Intercepted requests of one cloister in flight at once (broker/intercept.ts). Each HTTP/2
 * connection may carry 100 streams, and a cloister may hold proxy.max_connections of them: ~100,000
 * requests, each held in the guardian's memory, outside every cloister's cgroup, while they wait for
 * one of tlsUpstream's 256 origin connections. Twice those connections' worth is plenty.
 */
export const MAX_EXCHANGES = 512;

/** Asks a human about an unlisted destination; resolves when answered, timed out or abandoned. */
export type AskHuman = (host: Host, port: number, signal: AbortSignal) => Promise<Outcome>;

export interface EgressContextOptions {
  cloister: string;
  project: string;
  token: string;
  settings: () => ProxySettings;
  /** The policy to judge with now; throws when there is none (the request is then refused). */
  policy: () => JudgeInput;
  audit: (event: AuditEvent) => void;
  /** Without it, an unlisted destination is refused at once whatever `proxy.unlisted` says. */
  ask?: AskHuman;
  /** The credential broker's view of this cloister; without it nothing is intercepted. */
  credentials?: CloisterCredentials;
}

/** What the proxy asks the broker (broker/broker.ts) about one cloister. */
export interface CloisterCredentials {
  /** How to intercept a connection to host:port, or undefined to tunnel it untouched. */
  interception(host: Host, port: number): Promise<Interception | undefined>;
  /** Every rule in force, with this cloister's placeholders (looked for in plain HTTP). */
  active(): Promise<ActiveRule[]>;
}

/**
 * One cloister as its egress endpoint sees it. The endpoint (the socket a connection arrived on)
 * is the identity; everything else is looked up through here on every request, so a policy reload
 * applies to the next request without touching live tunnels.
 */
export class EgressContext {
  readonly cloister: string;
  readonly project: string;
  private readonly token: Buffer;
  /** This cloister's kept-alive origin connections for plain HTTP. */
  readonly origins = new OriginPools(() => this.settings.connect_timeout);
  /** Request targets and Host headers made canonical, remembered for this cloister alone (see hosts.ts). */
  readonly canonicalHost = rememberingCanonicalHost();
  /** Its kept-alive TLS connections to origins of intercepted requests (by checked address and name). */
  readonly tlsUpstream = new HttpsAgent({ keepAlive: true, maxSockets: 32, maxTotalSockets: 256, maxFreeSockets: 8, timeout: 30_000, scheduling: "lifo" });

  /** How fast this cloister may fill the audit log (see record-pace.ts): its new work waits its turn. */
  private readonly pace: RecordPace;
  /** Connections closed unread while paced and not yet audited, by why (see closeUnread). */
  private readonly closedUnread = new Map<string, number>();
  private closedUnreadTimer?: NodeJS.Timeout;
  /** Whether new work was last found waiting for its turn (an egress.paced record marks the start). */
  private pacing = false;

  /** Its intercepted requests in flight now (MAX_EXCHANGES). */
  private exchanges = 0;

  /** Connections node serves for this cloister, and tunnels handed to the relay thread: both are open connections. */
  private readonly sockets = new Set<Socket>();
  private readonly tunnels = new Set<RelayedTunnel>();
  private closed = false;

  constructor(private readonly options: EgressContextOptions) {
    this.cloister = options.cloister;
    this.project = options.project;
    this.token = Buffer.from(options.token);
    this.pace = new RecordPace(() => ({ rate: this.settings.audit_rate, burst: this.settings.audit_burst }));
  }

  /** The cloister is gone: its connections, tunnels and pooled origin connections close with it. */
  close(): void {
    this.closed = true;
    for (const socket of this.sockets) socket.destroy();
    for (const tunnel of this.tunnels) tunnel.cut();
    this.flushClosedUnread();
    this.pace.close();
    this.origins.destroy();
    this.tlsUpstream.destroy();
  }

  /** Connections of this cloister open now, whatever they carry (the cap of `proxy.max_connections`). */
  get openConnections(): number {
    return this.sockets.size + this.tunnels.size;
  }

  /**
   * A place for an intercepted request until `done` emits "close" (its response is over, or gone);
   * false when MAX_EXCHANGES of this cloister's are in flight.
   */
  admitExchange(done: { once(event: "close", listener: () => void): unknown }): boolean {
    if (this.exchanges >= MAX_EXCHANGES) return false;
    this.exchanges++;
    done.once("close", () => this.exchanges--);
    return true;
  }

  /** Counts an accepted connection until it closes or becomes a tunnel; closing the context closes it. */
  track(socket: Socket): void {
    this.sockets.add(socket);
    socket.once("close", () => this.sockets.delete(socket));
  }

  /** Relays an admitted tunnel's bytes until it is over (native-relay.ts); closing the context cuts it. */
  async tunnel(client: Socket, upstream: Socket, early: Buffer): Promise<TunnelResult> {
    const relayed = await relayTunnel(client, upstream, this.settings.idle_timeout, early);
    // The client's socket is node's no more: it counts as the tunnel from here on, before any
    // other connection is accepted, so the cap never counts it twice.
    this.sockets.delete(client);
    this.tunnels.add(relayed);
    if (this.closed) relayed.cut();
    try {
      return await relayed.done;
    } finally {
      this.tunnels.delete(relayed);
    }
  }

  get credentials(): CloisterCredentials | undefined {
    return this.options.credentials;
  }

  get settings(): ProxySettings {
    return this.options.settings();
  }

  /**
   * Compares a presented password with this cloister's token in constant time. A wrong length
   * still runs a comparison, so the time taken says nothing about the token.
   */
  tokenMatches(presented: Buffer): boolean {
    const sameLength = presented.length === this.token.length;
    const candidate = sameLength ? presented : Buffer.alloc(this.token.length);
    return timingSafeEqual(candidate, this.token) && sameLength;
  }

  /** The token from a `Proxy-Authorization: Basic base64(user:token)` header value. */
  basicAuthMatches(header: string | undefined): boolean {
    const match = /^\s*basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? "");
    if (!match?.[1]) return this.tokenMatches(Buffer.alloc(0));
    const decoded = Buffer.from(match[1], "base64");
    const colon = decoded.indexOf(0x3a);
    return this.tokenMatches(colon < 0 ? Buffer.alloc(0) : decoded.subarray(colon + 1));
  }

  /**
   * Judges a destination and audits the decision. An unlisted one is held for a human when
   * `proxy.unlisted` is ask; `client` closing meanwhile withdraws the question.
   */
  async judge(protocol: Protocol, host: Host, port: number, client: Socket): Promise<Verdict> {
    let verdict: Verdict;
    let approval: Outcome | undefined;
    try {
      const input = this.options.policy();
      let decision = decide(input.policy, host, port);
      if (decision.verdict === "unlisted" && this.options.ask && unlistedHandling(host, this.settings.unlisted) === "ask") {
        approval = await this.options.ask(host, port, closeSignal(client));
        // Re-read: the answer may have changed the policy (a project or global rule).
        decision = approvedDecision(approval);
      }
      verdict = approval?.verdict === "deny" ? humanRefusal(approval, host, port, decision, this.settings.approval_timeout) : await admit(this.options.policy(), host, port, decision);
    } catch (error) {
      // The policy could not be consulted (e.g. the project's tier failed to load): refuse.
      verdict = { ok: false, status: 403, reason: "denied", message: `cloister: egress refused: the guardian cannot apply this project's policy (${(error as Error).message}); see \`cloister guardian status\`` };
    }
    this.record({
      type: "egress",
      protocol,
      host: hostText(host),
      port,
      address: verdict.ok ? verdict.address : (verdict.address ?? null),
      decision: verdict.ok ? "allow" : verdict.reason,
      rule: verdict.decision?.rule?.text ?? null,
      tier: verdict.decision?.rule?.tier ?? null,
      ...(approval ? { approvalRequest: approval.requestId, approvalScope: approval.scope, approvedBy: approval.by } : {}),
    });
    return verdict;
  }

  /** Audits a request that never reached the policy (malformed, unauthenticated, over a cap); "unknown" when nothing showed its protocol. */
  refused(protocol: Protocol | "unknown", decision: "invalid" | "unauthenticated" | "over-limit" | "unsupported", detail: string): void {
    this.record({ type: "egress", protocol, host: null, port: null, address: null, decision, rule: null, tier: null, detail });
  }

  /** Audits the end of an admitted connection (or forwarded request). */
  ended(protocol: Protocol, target: Admitted, result: TunnelResult | { bytesUp: number; bytesDown: number; durationMs: number; end: string }): void {
    this.record({
      type: "egress.end",
      protocol,
      host: hostText(target.host),
      port: target.port,
      address: target.address,
      bytesUp: result.bytesUp,
      bytesDown: result.bytesDown,
      durationMs: result.durationMs,
      end: result.end,
    });
  }

  /** Audits an event of this cloister. */
  record(event: AuditEvent): void {
    this.pace.spend();
    this.options.audit({ ...event, cloister: this.cloister, project: this.project });
  }

  /** Whether this cloister has outrun its audit rate, so new work must wait (see record-pace.ts). */
  get paced(): boolean {
    return this.pace.paced;
  }

  /**
   * Takes a turn for new work (a connection, a further request on one) if one is free now. The
   * first time in a while that none is, the audit says so: the user then knows why this cloister's
   * connections slowed down, and which key to raise if its work is legitimate.
   */
  tryTurn(): boolean {
    const free = this.pace.tryTurn();
    if (free) this.pacing = false;
    else if (!this.pacing) {
      this.pacing = true;
      const { audit_rate: rate, audit_burst: burst } = this.settings;
      this.record({ type: "egress.paced", rate, burst, detail: `this cloister outran proxy.audit_rate (${rate} records a second after a burst of ${burst}): its new connections and requests wait their turn until it slows down` });
    }
    return free;
  }

  /** Resolves when this cloister may start new work: at once, unless it has outrun its audit rate. */
  turn(): Promise<void> {
    return this.tryTurn() ? Promise.resolve() : this.pace.turn();
  }

  /** Runs `work` now if a turn is free, else when its turn comes (see turn()), unless the cloister has gone meanwhile. */
  onTurn(work: () => void): void {
    if (this.tryTurn()) return work();
    void this.pace.turn().then(() => {
      if (!this.closed) work();
    });
  }

  /**
   * Closes a connection over a cap (proxy.max_connections, pipelined requests) while the cloister is
   * paced. A record each would be the flood the pace holds back, so they are counted and audited
   * together, one record a second at most, with how many there were: none goes unrecorded.
   */
  closeUnread(socket: Socket, detail: string): void {
    socket.destroy();
    this.closedUnread.set(detail, (this.closedUnread.get(detail) ?? 0) + 1);
    this.closedUnreadTimer ??= setTimeout(() => this.flushClosedUnread(), CLOSED_UNREAD_INTERVAL_MS);
  }

  private flushClosedUnread(): void {
    clearTimeout(this.closedUnreadTimer);
    this.closedUnreadTimer = undefined;
    for (const [detail, connections] of this.closedUnread) {
      this.record({ type: "egress", protocol: "unknown", host: null, port: null, address: null, decision: "over-limit", rule: null, tier: null, detail: `${detail}; closed unread while the cloister was over proxy.audit_rate`, connections });
    }
    this.closedUnread.clear();
  }
}

/** How often connections closed unread while paced are audited, as one record with their count. */
const CLOSED_UNREAD_INTERVAL_MS = 1_000;

/**
 * Aborts when the client's connection closes, or its side ends (the proxy's sockets are half-open:
 * an end alone closes nothing): nobody is left to hold a request for. It shows only on a socket
 * that is read meanwhile (whileHeld).
 */
function closeSignal(client: Socket): AbortSignal {
  const controller = new AbortController();
  if (client.destroyed || client.readableEnded) controller.abort();
  else for (const event of ["close", "end"]) client.once(event, () => controller.abort());
  return controller.signal;
}

/** A human's allow as a policy decision (the tier says how long it lasts; "once" lasts for this request). */
function approvedDecision(outcome: Outcome): Decision {
  if (outcome.verdict !== "allow") return { verdict: "deny", allowPrivate: false };
  const tier = outcome.scope === "global" || outcome.scope === "project" ? outcome.scope : "session";
  return { verdict: "allow", rule: { text: outcome.rule ?? "(approved once)", tier, list: "allow" }, allowPrivate: false };
}

/** The 403 after a human said no, or nobody answered: it says which, so the agent can explain it. */
function humanRefusal(outcome: Outcome, host: Host, port: number, decision: Decision, timeoutMs: number): Verdict {
  const target = formatAuthority(host, port);
  const how = `ask the user to allow it in the approval UI (\`cloister ui\` on the host) or to run \`cloister allow ${target}\``;
  const why =
    outcome.by === "timeout" ? `nobody answered the approval request within ${Math.round(timeoutMs / 1000)} s, which counts as a denial; ${how}`
    : outcome.by === "flood" ? `too many requests of this cloister are waiting for approval already; wait for answers and retry`
    : outcome.by === "cancelled" ? "the request was withdrawn before anyone answered"
    : outcome.by === "policy" ? "a deny rule added while it waited covers it"
    : `it was denied by a human (${outcome.by}, scope ${outcome.scope})`;
  return { ok: false, status: 403, reason: "denied", message: `cloister: egress to ${target} refused: ${why}.`, decision };
}
