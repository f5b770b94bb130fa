import { timingSafeEqual } from "node:crypto";
import type { AuditEvent } from "../../audit/log.js";
import type { ProxySettings } from "../../config/schema.js";
import { hostText, type Host } from "../../policy/hosts.js";
import { judge, type Admitted, type JudgeInput, type Protocol, type Verdict } from "./judge.js";
import { UpstreamAgent, type TunnelResult } from "./tunnel.js";

/**
 * One cloister as its egress endpoint sees it. The endpoint (the socket a connection arrived on)
 * is the identity; everything else is looked up through here on every request, so a policy reload
 * applies to the next request without touching live tunnels.
 */
export class EgressContext {
  private readonly token: Buffer;
  /** This cloister's kept-alive origin connections for plain HTTP. */
  readonly upstream = new UpstreamAgent(() => this.settings.connect_timeout);

  constructor(
    readonly cloister: string,
    readonly project: string,
    token: string,
    private readonly currentSettings: () => ProxySettings,
    /** The policy to judge with now; throws when there is none (the request is then refused). */
    private readonly currentPolicy: () => JudgeInput,
    private readonly auditSink: (event: AuditEvent) => void,
  ) {
    this.token = Buffer.from(token);
  }

  /** The cloister is gone: its pooled origin connections close with it. */
  close(): void {
    this.upstream.destroy();
  }

  get settings(): ProxySettings {
    return this.currentSettings();
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

  /** Judges a destination and audits the decision. */
  async judge(protocol: Protocol, host: Host, port: number): Promise<Verdict> {
    let verdict: Verdict;
    try {
      verdict = await judge(this.currentPolicy(), host, port);
    } catch (error) {
      // The policy could not be consulted (e.g. the project's tier failed to load): refuse.
      verdict = { ok: false, status: 403, reason: "denied", message: `cloister: egress refused: the guardian cannot apply this project's policy (${(error as Error).message}); see \`cloister guardian status\`` };
    }
    this.audit({
      type: "egress",
      protocol,
      host: hostText(host),
      port,
      address: verdict.ok ? verdict.address : (verdict.address ?? null),
      decision: verdict.ok ? "allow" : verdict.reason,
      rule: verdict.decision?.rule?.text ?? null,
      tier: verdict.decision?.rule?.tier ?? null,
    });
    return verdict;
  }

  /** Audits a request that never reached the policy (malformed, unauthenticated, over a cap). */
  refused(protocol: Protocol, decision: "invalid" | "unauthenticated" | "over-limit" | "unsupported", detail: string): void {
    this.audit({ type: "egress", protocol, host: null, port: null, address: null, decision, rule: null, tier: null, detail });
  }

  /** Audits the end of an admitted connection (or forwarded request). */
  ended(protocol: Protocol, target: Admitted, result: TunnelResult | { bytesUp: number; bytesDown: number; durationMs: number; end: string }): void {
    this.audit({
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

  private audit(event: AuditEvent): void {
    this.auditSink({ ...event, cloister: this.cloister, project: this.project });
  }
}
