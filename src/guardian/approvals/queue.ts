import { randomBytes } from "node:crypto";
import { auditArgv } from "../../audit/argv-text.js";
import type { AuditEvent } from "../../audit/log.js";
import { visibleArgv } from "../../policy/visible.js";
import {
  ApprovalError,
  SCOPES,
  type AnswerInput,
  type ApprovalEvent,
  type ApprovalService,
  type DecisionView,
  type Pending,
  type PendingCommand,
  type PendingDomain,
  type Scope,
  type Verdict,
} from "./types.js";

/** What a held request comes back with. Nobody answering is a denial, never an allow. */
export type Outcome =
  | { verdict: Verdict; scope: Scope; rule: string | null; by: string; requestId: string }
  | { verdict: "deny"; scope: null; rule: null; by: "timeout" | "cancelled" | "flood" | "policy"; requestId: string | null };

/**
 * What an answer does besides releasing the request: remembering it for the cloister (session),
 * writing it to a decision file (project, global), and removing it again (undo). The guardian's
 * egress and hostexec sides implement it; the queue only holds and releases.
 */
export interface DecisionKeeper {
  /** Returns the rule remembered or written, or null ("once" keeps nothing). Throws if it cannot be kept. */
  keep(request: Pending, verdict: Verdict, scope: Scope, wildcard: boolean): Promise<string | null>;
  /** Removes a persisted (project or global) rule again. */
  revoke(decision: DecisionView): Promise<void>;
  /** What the policy now says of a held request, after something changed it: a verdict, or undefined (it still asks a human). */
  recheck(request: Pending): Verdict | undefined;
}

export type DomainQuestion = Omit<PendingDomain, "id" | "kind" | "createdAt" | "expiresAt" | "waiting">;
export type CommandQuestion = Omit<PendingCommand, "id" | "kind" | "createdAt" | "expiresAt">;

interface Held {
  request: Pending;
  /** Identical domain requests of one cloister share one entry (and one answer). */
  key: string | null;
  waiters: Set<(outcome: Outcome) => void>;
  timer: NodeJS.Timeout;
}

/** A cloister cannot bury the human under requests: more than this many waiting are refused at once. */
export const MAX_PENDING_PER_CLOISTER = 32;
const RECENT_DECISIONS = 50;

/**
 * Requests waiting for a human: held until an answer, their timeout (a denial), or the last
 * waiting connection going away. Ids are 128 random bits and single use: an answered id is gone.
 */
export class ApprovalQueue implements ApprovalService {
  private readonly held = new Map<string, Held>();
  private readonly byKey = new Map<string, string>();
  private readonly decisions: DecisionView[] = [];
  private readonly listeners = new Set<(event: ApprovalEvent) => void>();

  constructor(
    private readonly keeper: DecisionKeeper,
    private readonly audit: (event: AuditEvent) => void,
  ) {}

  /** Holds a connection's request for an unlisted destination until a human (or the timeout) decides. */
  askDomain(question: DomainQuestion, timeoutMs: number, signal: AbortSignal): Promise<Outcome> {
    const key = `${question.cloister}\0${question.host}\0${question.port}`;
    const existing = this.held.get(this.byKey.get(key) ?? "");
    if (existing && existing.request.kind === "domain") {
      existing.request.waiting++;
      return this.wait(existing, signal);
    }
    return this.hold({ ...question, kind: "domain", waiting: 1 } satisfies Omit<PendingDomain, "id" | "createdAt" | "expiresAt">, key, timeoutMs, signal).outcome;
  }

  /**
   * Holds a host command until a human (or the timeout) decides; commands never coalesce. The
   * request is returned at once (null when refused as a flood) so its id can be told to the agent.
   */
  askCommand(question: CommandQuestion, timeoutMs: number, signal: AbortSignal): { request: PendingCommand | null; outcome: Promise<Outcome> } {
    const { request, outcome } = this.hold({ ...question, kind: "command" }, null, timeoutMs, signal);
    return { request: request as PendingCommand | null, outcome };
  }

  pending(): Pending[] {
    return [...this.held.values()].map((held) => ({ ...held.request }));
  }

  recent(): DecisionView[] {
    return this.decisions.map((decision) => ({ ...decision }));
  }

  subscribe(listener: (event: ApprovalEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async answer(id: string, input: AnswerInput): Promise<DecisionView> {
    const held = this.held.get(id);
    if (!held) throw new ApprovalError(`no pending request ${JSON.stringify(id)} (answered, timed out or cancelled already)`, 404);
    if (input.verdict !== "allow" && input.verdict !== "deny") throw new ApprovalError(`verdict must be allow or deny`, 400);
    if (!SCOPES.includes(input.scope)) throw new ApprovalError(`scope must be one of ${SCOPES.join(", ")}`, 400);
    const wildcard = input.wildcard === true;
    if (wildcard && (held.request.kind !== "domain" || held.request.wildcard === null)) {
      throw new ApprovalError("no wildcard is offered for this request", 400);
    }
    // Deny beats allow, also a deny rule added while the request waited: it is refused, not allowed.
    if (input.verdict === "allow" && this.keeper.recheck(held.request) === "deny") {
      this.denyByPolicy(held);
      throw new ApprovalError(`a deny rule added since covers ${subjectText(held.request)}, so it cannot be allowed; it was refused`, 409);
    }
    // Taken off the queue before the await: a second answer to the same id finds nothing.
    this.release(held);
    let rule: string | null;
    try {
      rule = await this.keeper.keep(held.request, input.verdict, input.scope, wildcard);
    } catch (error) {
      this.restore(held);
      throw error;
    }
    const decision = this.record(held.request, input, rule);
    this.settle(held, { verdict: input.verdict, scope: input.scope, rule, by: input.by, requestId: held.request.id }, input.verdict);
    if (input.scope !== "once") this.recheckHeld({ scope: input.scope, rule, by: input.by });
    return { ...decision };
  }

  /**
   * The policy changed outside an answer. A rule given with `cloister allow|deny` (`change`) decides
   * the held requests it covers at once, like a persisted answer. After a reload (`change` null) only
   * what the policy now denies is released: a deny must win at once, an allow can wait for its human.
   */
  policyChanged(change: { scope: Scope; rule: string; by: string } | null): void {
    this.recheckHeld(change);
  }

  async undo(decisionId: string, by: string): Promise<DecisionView> {
    const decision = this.decisions.find((d) => d.id === decisionId);
    if (!decision) throw new ApprovalError(`no recent decision ${JSON.stringify(decisionId)}`, 404);
    if (!decision.undoable) throw new ApprovalError(`a ${decision.scope} decision is not persisted, so there is nothing to undo`, 409);
    if (decision.undone) throw new ApprovalError("this decision was undone already", 409);
    await this.keeper.revoke(decision);
    decision.undone = true;
    this.audit({ type: "approval.undo", decision: decision.id, request: decision.requestId, rule: decision.rule, scope: decision.scope, by });
    this.emit({ type: "decided", decision: { ...decision } });
    return { ...decision };
  }

  /** Denies everything still waiting (the guardian is stopping). */
  cancelAll(): void {
    for (const held of [...this.held.values()]) this.expire(held, "cancelled");
  }

  private hold(
    request: Omit<PendingDomain, "id" | "createdAt" | "expiresAt"> | Omit<PendingCommand, "id" | "createdAt" | "expiresAt">,
    key: string | null,
    timeoutMs: number,
    signal: AbortSignal,
  ): { request: Pending | null; outcome: Promise<Outcome> } {
    const cloister = request.cloister;
    if ([...this.held.values()].filter((h) => h.request.cloister === cloister).length >= MAX_PENDING_PER_CLOISTER) {
      this.audit({ type: "approval.flood", cloister, project: request.project, kind: request.kind });
      return { request: null, outcome: Promise.resolve({ verdict: "deny", scope: null, rule: null, by: "flood", requestId: null }) };
    }
    const now = Date.now();
    const full = {
      ...request,
      id: randomBytes(16).toString("hex"),
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + timeoutMs).toISOString(),
    } as Pending;
    const held: Held = { request: full, key, waiters: new Set(), timer: setTimeout(() => this.expire(held, "timeout"), timeoutMs) };
    this.restore(held);
    this.audit({ type: "approval.request", id: full.id, kind: full.kind, cloister, project: full.project, subject: auditSubject(full), expiresAt: full.expiresAt });
    this.emit({ type: "added", request: { ...full } });
    return { request: { ...full }, outcome: this.wait(held, signal) };
  }

  /** One waiting connection; when the last one goes away the request is withdrawn. */
  private wait(held: Held, signal: AbortSignal): Promise<Outcome> {
    return new Promise((resolve) => {
      const onAbort = () => {
        held.waiters.delete(waiter);
        if (held.request.kind === "domain") held.request.waiting--;
        resolve({ verdict: "deny", scope: null, rule: null, by: "cancelled", requestId: held.request.id });
        if (held.waiters.size === 0 && this.held.get(held.request.id) === held) this.expire(held, "cancelled");
      };
      const waiter = (outcome: Outcome) => {
        signal.removeEventListener("abort", onAbort);
        resolve(outcome);
      };
      if (signal.aborted) return onAbort();
      held.waiters.add(waiter);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  private restore(held: Held): void {
    this.held.set(held.request.id, held);
    if (held.key) this.byKey.set(held.key, held.request.id);
  }

  private release(held: Held): void {
    this.held.delete(held.request.id);
    if (held.key && this.byKey.get(held.key) === held.request.id) this.byKey.delete(held.key);
  }

  private settle(held: Held, outcome: Outcome, removal: "allow" | "deny" | "timeout" | "cancelled"): void {
    clearTimeout(held.timer);
    this.release(held);
    for (const waiter of held.waiters) waiter(outcome);
    held.waiters.clear();
    this.emit({ type: "removed", id: held.request.id, outcome: removal });
  }

  private expire(held: Held, why: "timeout" | "cancelled"): void {
    if (this.held.get(held.request.id) !== held) return;
    this.audit({ type: `approval.${why}`, id: held.request.id, kind: held.request.kind, cloister: held.request.cloister, project: held.request.project });
    this.settle(held, { verdict: "deny", scope: null, rule: null, by: why, requestId: held.request.id }, why);
  }

  private record(request: Pending, input: AnswerInput, rule: string | null): DecisionView {
    const decision: DecisionView = {
      id: randomBytes(16).toString("hex"),
      requestId: request.id,
      kind: request.kind,
      cloister: request.cloister,
      project: request.project,
      subject: subjectOf(request),
      verdict: input.verdict,
      scope: input.scope,
      rule,
      by: input.by,
      at: new Date().toISOString(),
      undoable: (input.scope === "project" || input.scope === "global") && rule !== null,
      undone: false,
    };
    this.decisions.unshift(decision);
    this.decisions.length = Math.min(this.decisions.length, RECENT_DECISIONS);
    this.audit({ type: "approval.decision", decision: decision.id, request: request.id, kind: request.kind, cloister: request.cloister, project: request.project, subject: auditSubject(request), verdict: input.verdict, scope: input.scope, rule, by: input.by });
    this.emit({ type: "decided", decision: { ...decision } });
    return decision;
  }

  /**
   * A remembered or persisted rule (`decided`) takes effect at once for every cloister it concerns:
   * other held requests that the policy now decides are released with that decision. Without one (a
   * reload) only those the policy now denies are released (see policyChanged).
   */
  private recheckHeld(decided: { scope: Scope; rule: string | null; by: string } | null): void {
    for (const held of [...this.held.values()]) {
      const verdict = this.keeper.recheck(held.request);
      if (verdict !== undefined && decided) this.followPolicy(held, { verdict, ...decided, requestId: held.request.id });
      else if (verdict === "deny") this.denyByPolicy(held);
    }
  }

  /** Releases a held request as the policy now denies it, with no answer or rule of anyone's behind it. */
  private denyByPolicy(held: Held): void {
    this.followPolicy(held, { verdict: "deny", scope: null, rule: null, by: "policy", requestId: held.request.id });
  }

  /** Releases a held request with what the policy now says of it, audited as following it. */
  private followPolicy(held: Held, outcome: Outcome): void {
    this.audit({ type: "approval.follows", id: held.request.id, cloister: held.request.cloister, project: held.request.project, verdict: outcome.verdict, rule: outcome.rule });
    this.settle(held, outcome, outcome.verdict);
  }

  private emit(event: ApprovalEvent): void {
    for (const listener of this.listeners) listener(event);
  }
}

/** The request as the human saw it: host:port, or the argv as approvals show it (agent-chosen text made visible). */
function subjectText(request: Pending): string {
  return request.kind === "domain" ? `${request.host}:${request.port}` : visibleArgv(request.argv);
}

function subjectOf(request: Pending): string | string[] {
  return request.kind === "domain" ? `${request.host}:${request.port}` : [...request.argv];
}

/** Audit values are flat: an argv is written as its JSON array text, URL credentials masked (auditArgv). */
function auditSubject(request: Pending): string {
  return request.kind === "domain" ? `${request.host}:${request.port}` : auditArgv(request.argv);
}
