import type { DecisionView, Pending, Scope, Verdict } from "../src/guardian/approvals/types.js";
import { visible, visibleArgv } from "../src/policy/visible.js";

/** Text for a confirmation: plain strings, and `{ code }` for exact values (already made visible). */
export type Segment = string | { code: string };

export interface Confirmation {
  title: string;
  body: Segment[];
  action: string;
}

export interface Choice {
  verdict: Verdict;
  scope: Scope;
  wildcard: boolean;
}

/** What a domain or command is, as one visible line. */
export function subjectText(subject: string | readonly string[]): string {
  return typeof subject === "string" ? visible(subject) : visibleArgv(subject);
}

/**
 * The confirmation an answer needs, or null when it needs none. Anything that outlives this request
 * beyond the cloister's session (project, global), and any wildcard, is confirmed first, naming
 * exactly which rule goes to which list of which file.
 */
export function confirmationFor(request: Pending, choice: Choice): Confirmation | null {
  if (choice.scope !== "project" && choice.scope !== "global" && !choice.wildcard) return null;
  const verb = choice.verdict === "allow" ? "Allow" : "Deny";
  const title = `${verb} ${request.kind === "domain" ? "this destination" : "this command"} (${choice.scope})?`;
  return { title, body: [...whatIsKept(request, choice), " ", ...whereKept(request, choice)], action: `${verb} (${choice.scope})` };
}

export function undoConfirmation(decision: DecisionView): Confirmation {
  const from = decision.scope === "project" ? ["the decisions of project ", { code: visible(decision.project) }] : ["the global decisions"];
  return {
    title: "Undo this decision?",
    body: ["This removes the rule ", { code: visible(decision.rule ?? "") }, ` from the ${decision.verdict} list of `, ...from, ". The next request for it asks again."],
    action: "Undo",
  };
}

function whatIsKept(request: Pending, choice: Choice): Segment[] {
  if (request.kind === "command") return ["A rule for exactly ", { code: visibleArgv(request.argv) }, " (in any working directory)"];
  const rule = choice.wildcard && request.wildcard !== null ? request.wildcard : request.rule;
  const covers = choice.wildcard ? " (every name it matches, not only " : " (for ";
  return ["The rule ", { code: visible(rule) }, covers, { code: visible(`${request.host}:${request.port}`) }, ")"];
}

function whereKept(request: Pending, choice: Choice): Segment[] {
  const list = `${choice.verdict} list`;
  switch (choice.scope) {
    case "once":
      return ["answers this request only; nothing is kept."];
    case "session":
      return [`goes on the ${list} of cloister `, { code: visible(request.cloister) }, " until it stops."];
    case "project":
      return [`is written to the ${list} in the decision file of project `, { code: visible(request.project) }, ": every cloister of that project follows it until you undo it."];
    case "global":
      return [`is written to the ${list} in the global decision file: every cloister of every project follows it until you undo it.`];
  }
}
