/**
 * An in-memory ApprovalService for the UI's tests: requests are added by the test, answers and undos
 * are recorded, and every change is emitted as the real queue would emit it.
 */
import { randomBytes } from "node:crypto";
import {
  ApprovalError,
  type AnswerInput,
  type ApprovalEvent,
  type ApprovalService,
  type DecisionView,
  type Pending,
  type PendingCommand,
  type PendingDomain,
} from "../../src/guardian/approvals/types.js";

const newId = () => randomBytes(16).toString("hex");

function common(): Omit<PendingDomain, "kind" | "host" | "port" | "rule" | "wildcard" | "waiting"> {
  const now = Date.now();
  return { id: newId(), cloister: "shop-1", project: "shop", branch: "main", createdAt: new Date(now).toISOString(), expiresAt: new Date(now + 60_000).toISOString() };
}

export function domainRequest(fields: Partial<PendingDomain> = {}): PendingDomain {
  return { ...common(), kind: "domain", host: "api.example.com", port: 443, rule: "api.example.com", wildcard: "*.example.com", waiting: 1, ...fields };
}

export function commandRequest(fields: Partial<PendingCommand> = {}): PendingCommand {
  return { ...common(), kind: "command", argv: ["git", "push", "origin", "main"], cwd: "/home/dev/shop", rule: null, hazards: [], ...fields };
}

export class FakeApprovals implements ApprovalService {
  readonly answers: { id: string; input: AnswerInput }[] = [];
  readonly undos: { id: string; by: string }[] = [];
  /** Thrown by the next answer or undo, to check how the UI passes errors on. */
  failNext: Error | undefined;
  readonly #pending = new Map<string, Pending>();
  readonly #decisions: DecisionView[] = [];
  readonly #listeners = new Set<(event: ApprovalEvent) => void>();

  get listenerCount(): number {
    return this.#listeners.size;
  }

  add(request: Pending): Pending {
    this.#pending.set(request.id, request);
    this.emit({ type: "added", request });
    return request;
  }

  emit(event: ApprovalEvent): void {
    for (const listener of this.#listeners) listener(event);
  }

  pending(): Pending[] {
    return [...this.#pending.values()];
  }

  recent(): DecisionView[] {
    return [...this.#decisions];
  }

  async answer(id: string, input: AnswerInput): Promise<DecisionView> {
    this.answers.push({ id, input });
    this.#throwIfFailing();
    const request = this.#pending.get(id);
    if (request === undefined) throw new ApprovalError("no such pending request", 404);
    if (input.wildcard && (request.kind !== "domain" || request.wildcard === null)) throw new ApprovalError("no wildcard is offered for this request", 400);
    this.#pending.delete(id);
    this.emit({ type: "removed", id, outcome: input.verdict });
    const persisted = input.scope === "project" || input.scope === "global";
    const rule = request.kind === "domain" ? (input.wildcard ? request.wildcard : request.rule) : request.argv.join(" ");
    const decision: DecisionView = {
      id: newId(),
      requestId: id,
      kind: request.kind,
      cloister: request.cloister,
      project: request.project,
      subject: request.kind === "domain" ? `${request.host}:${request.port}` : request.argv,
      verdict: input.verdict,
      scope: input.scope,
      rule: input.scope === "once" ? null : rule,
      by: input.by,
      at: new Date().toISOString(),
      undoable: persisted,
      undone: false,
    };
    this.#decisions.unshift(decision);
    this.emit({ type: "decided", decision });
    return decision;
  }

  async undo(decisionId: string, by: string): Promise<DecisionView> {
    this.undos.push({ id: decisionId, by });
    this.#throwIfFailing();
    const index = this.#decisions.findIndex((decision) => decision.id === decisionId);
    const decision = this.#decisions[index];
    if (decision === undefined) throw new ApprovalError("no such decision", 404);
    if (!decision.undoable || decision.undone) throw new ApprovalError("this decision cannot be undone", 409);
    const undone = { ...decision, undone: true };
    this.#decisions[index] = undone;
    this.emit({ type: "decided", decision: undone });
    return undone;
  }

  subscribe(listener: (event: ApprovalEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #throwIfFailing(): void {
    const error = this.failNext;
    this.failNext = undefined;
    if (error !== undefined) throw error;
  }
}
