import type { DecisionView } from "../src/guardian/approvals/types.js";
import { visible } from "../src/policy/visible.js";
import { subjectText } from "./describe.js";
import { act, el, errorLine } from "./dom.js";

/** Called to undo a decision; rejects with the reason it failed (shown on the entry). */
export type Undo = (decision: DecisionView) => Promise<void>;

/** One line of the recent decisions: what was answered, how, by whom, and Undo while it can be undone. */
export function decisionItem(decision: DecisionView, undo: Undo): HTMLLIElement {
  const verdict = el("span", `verdict verdict-${decision.verdict}`, decision.verdict === "allow" ? "allowed" : "denied");
  const summary = el("p", "summary", verdict, ` ${decision.scope} `, el("code", "", subjectText(decision.subject)));
  const at = new Date(decision.at).toLocaleTimeString();
  const details = el("p", "details", `${decision.kind} · cloister `, visible(decision.cloister), " · project ", visible(decision.project), ` · by ${visible(decision.by)} at ${at}`);
  const item = el("li", "decision", summary, details);
  if (decision.rule !== null) item.append(el("p", "rule", "rule ", el("code", "", visible(decision.rule))));
  if (decision.undone) summary.append(" ", el("span", "undone", "undone"));
  if (decision.undoable && !decision.undone) {
    const button = el("button", "undo", "Undo");
    const error = errorLine();
    button.addEventListener("click", () => void act([button], error, () => undo(decision)));
    item.append(button, error);
  }
  return item;
}
