import type { ApprovalEvent, DecisionView, Pending } from "../guardian/approvals/types.js";
import { visible, visibleArgv } from "../policy/visible.js";

/**
 * What approvals look like on a terminal: every line `cloister approvals`, `approve`, `deny` and `undo`
 * print about a request or a decision is made here. A request's argv, and the exact-argv rule an
 * answer writes from it, are the agent's bytes: each such field goes through visible(), so a terminal
 * escape or a bidi control in them is shown as an escape rather than acting (QA: the rule was printed
 * raw while its subject was escaped). A new line about approvals belongs here too.
 */

/** One line of the recent-decisions list. */
export function describeDecision(decision: DecisionView): string {
  return `${decision.id}  ${decision.verdict} ${decision.scope}  ${describeSubject(decision.subject)}  rule ${describeRule(decision.rule)}  by ${visible(decision.by)} at ${decision.at}`;
}

/** The confirmation of an answer. */
export function answeredLine(decision: DecisionView): string {
  const what = decision.verdict === "allow" ? "Allowed" : "Denied";
  const kept = decision.rule ? ` (rule ${describeRule(decision.rule)})` : "";
  return `${what} ${describeSubject(decision.subject)} for ${visible(decision.cloister)}, scope ${decision.scope}${kept}.`;
}

/** The confirmation of an undo. */
export function undoneLine(decision: DecisionView): string {
  return `Undone: the ${decision.scope} rule ${describeRule(decision.rule)} is no longer in the ${decision.verdict} list.`;
}

export function describePending(request: Pending): string {
  const left = Math.max(0, Math.round((Date.parse(request.expiresAt) - Date.now()) / 1000));
  const where = `${visible(request.cloister)}${request.branch ? ` (${visible(request.branch)})` : ""}`;
  if (request.kind === "domain") {
    const wildcard = request.wildcard ? `; --wildcard allows ${visible(request.wildcard)}` : "";
    return `${request.id}  domain   ${where}  ${visible(request.host)}:${request.port}  ${left}s left${wildcard}`;
  }
  const warnings = request.hazards.map((hazard) => `\n    hazard: ${visible(hazard)}`).join("");
  return `${request.id}  command  ${where}  ${visibleArgv(request.argv)}  ${left}s left${warnings}`;
}

/** A line for an event of `cloister approvals --watch`, or undefined for one it does not show. */
export function describeEvent(event: ApprovalEvent | { type: "snapshot"; pending: Pending[] }): string | undefined {
  switch (event.type) {
    case "snapshot":
      return event.pending.length === 0 ? "No requests are waiting; watching for new ones (Ctrl-C to stop)." : event.pending.map(describePending).join("\n");
    case "added":
      return describePending(event.request);
    case "removed":
      return `${event.id}  ${event.outcome}`;
    case "decided":
      return undefined;
  }
}

function describeSubject(subject: string | string[]): string {
  return Array.isArray(subject) ? visibleArgv(subject) : visible(subject);
}

/** A decision's rule: for a command, an exact-argv rule holds the agent's arguments. */
function describeRule(rule: string | null): string {
  return rule === null ? "-" : visible(rule);
}
