/**
 * What the approval UI, its JSON API and the CLI see of held requests: plain data, and the one
 * service interface they all answer through. The queue (queue.ts) implements it inside the guardian.
 */

/** How long an answer lasts: this request only, this cloister's life, the project, every project. */
export type Scope = "once" | "session" | "project" | "global";
export const SCOPES: readonly Scope[] = ["once", "session", "project", "global"];

export type Verdict = "allow" | "deny";

interface PendingCommon {
  /** Unguessable (128 random bits, hex) and single use. */
  id: string;
  cloister: string;
  project: string;
  /** The project's checked-out branch when the request arrived, if it has one. */
  branch: string | null;
  /** ISO 8601 times; the request is denied at expiresAt if nobody answers. */
  createdAt: string;
  expiresAt: string;
}

/** An unlisted destination a cloister wants to reach; its connection is held open meanwhile. */
export interface PendingDomain extends PendingCommon {
  kind: "domain";
  /** Canonical host (punycode, lower case) and port, exactly as the policy saw them. */
  host: string;
  port: number;
  /** The rule an approval adds: `host` for ports 80/443, `host:port` otherwise. */
  rule: string;
  /** The wildcard rule offered instead (`*.cdn.example.com`), or null when none makes sense. */
  wildcard: string | null;
  /** Connections waiting on this one request (identical requests coalesce). */
  waiting: number;
}

/** A host command a cloister asked for through `hostexec`. */
export interface PendingCommand extends PendingCommon {
  kind: "command";
  /** The exact argv that would run; agent-controlled, so render it as text only. */
  argv: string[];
  /** The host directory it would run in. */
  cwd: string;
  /** The `ask` rule that sent it to a human, or null. */
  rule: string | null;
  /**
   * What in the argv can make the host run code or touch files beyond the command (policy/commands.ts
   * hazards), in words, for the human to weigh; a wildcard rule would never have passed it.
   */
  hazards: string[];
}

export type Pending = PendingDomain | PendingCommand;

export interface AnswerInput {
  verdict: Verdict;
  scope: Scope;
  /** Domain requests only: answer for the offered wildcard rule instead of the exact host. */
  wildcard?: boolean;
  /** Who answered, for the audit log: "ui", "api", "cli". */
  by: string;
}

/** A decision as the recent-decisions list shows it. */
export interface DecisionView {
  /** The decision's own id (undo refers to it); not the request id. */
  id: string;
  requestId: string;
  kind: Pending["kind"];
  cloister: string;
  project: string;
  /** `host:port` for a domain, the argv for a command. */
  subject: string | string[];
  verdict: Verdict;
  scope: Scope;
  /** The rule written or remembered, if any ("once" remembers nothing). */
  rule: string | null;
  by: string;
  at: string;
  /** Project and global decisions are persisted and can be undone (the rule is removed again). */
  undoable: boolean;
  undone: boolean;
}

export type ApprovalEvent =
  | { type: "added"; request: Pending }
  | { type: "removed"; id: string; outcome: "allow" | "deny" | "timeout" | "cancelled" }
  | { type: "decided"; decision: DecisionView };

/** A refused answer; `status` is the HTTP status the JSON API replies with. */
export class ApprovalError extends Error {
  constructor(
    message: string,
    readonly status: 400 | 404 | 409,
  ) {
    super(message);
  }
}

export interface ApprovalService {
  pending(): Pending[];
  /** Newest first, bounded. */
  recent(): DecisionView[];
  /** Throws ApprovalError: 404 unknown or already answered id, 400 a scope or wildcard not offered. */
  answer(id: string, input: AnswerInput): Promise<DecisionView>;
  /** Removes a persisted rule again. Throws ApprovalError: 404 unknown id, 409 not undoable or already undone. */
  undo(decisionId: string, by: string): Promise<DecisionView>;
  /** Returns the unsubscribe function. Listeners must not throw. */
  subscribe(listener: (event: ApprovalEvent) => void): () => void;
}
