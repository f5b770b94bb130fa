import { SCOPES, type Pending, type PendingCommand, type PendingDomain, type Scope, type Verdict } from "../src/guardian/approvals/types.js";
import { visible } from "../src/policy/visible.js";
import type { Choice } from "./describe.js";
import { act, el, errorLine, fact } from "./dom.js";

/** Called with the person's answer; rejects with the reason it failed (shown on the card). */
export type Answer = (choice: Choice) => Promise<void>;

const SCOPE_LABELS: Record<Scope, string> = {
  once: "once: this request only",
  session: "session: until this cloister stops",
  project: "project: saved for this project",
  global: "global: saved for every project",
};

/** A card for one held request: who asks, for what, how long is left, and the answer controls. */
export function pendingCard(request: Pending, answer: Answer): HTMLLIElement {
  const countdown = el("span", "countdown");
  countdown.dataset.expiresAt = request.expiresAt;
  const heading = el("h3", "", el("span", `kind kind-${request.kind}`, request.kind), " ", countdown);
  const facts = el("dl", "facts", ...fact("Cloister", visible(request.cloister)), ...fact("Project", visible(request.project)), ...fact("Branch", request.branch === null ? "none" : visible(request.branch)));
  const subject = request.kind === "domain" ? domainSubject(request) : commandSubject(request);

  const scope = el("select", "", ...SCOPES.map((value) => new Option(SCOPE_LABELS[value], value)));
  const controls = el("div", "controls", el("label", "", "Remember ", scope));
  const wildcard = request.kind === "domain" && request.wildcard !== null ? wildcardBox(request.wildcard) : null;
  if (wildcard) controls.append(wildcard.label);
  const allow = el("button", "allow", "Allow");
  const deny = el("button", "deny", "Deny");
  controls.append(el("div", "buttons", allow, deny));
  const error = errorLine();

  const card = el("li", `card card-${request.kind}`, heading, facts, ...subject, controls, error);
  card.dataset.id = request.id;
  const choose = (verdict: Verdict) => act([allow, deny], error, () => answer({ verdict, scope: scope.value as Scope, wildcard: wildcard?.input.checked ?? false }));
  allow.addEventListener("click", () => void choose("allow"));
  deny.addEventListener("click", () => void choose("deny"));
  updateCountdown(card, Date.now());
  return card;
}

/** Rewrites a card's "expires in" from its expiry time. */
export function updateCountdown(card: HTMLElement, now: number): void {
  const countdown = card.querySelector<HTMLElement>(".countdown");
  if (!countdown) return;
  const seconds = Math.max(0, Math.ceil((Date.parse(countdown.dataset.expiresAt ?? "") - now) / 1000));
  countdown.textContent = seconds > 0 ? `expires in ${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}` : "expiring (denied)";
  countdown.classList.toggle("urgent", seconds <= 10);
}

function domainSubject(request: PendingDomain): HTMLElement[] {
  const waiting = request.waiting > 1 ? ` (${request.waiting} connections waiting)` : "";
  return [
    el("p", "subject", "Wants to reach ", el("code", "", visible(`${request.host}:${request.port}`)), waiting),
    el("p", "rule", "An answer adds the rule ", el("code", "", visible(request.rule))),
  ];
}

function commandSubject(request: PendingCommand): HTMLElement[] {
  const argv = el("ol", "argv", ...request.argv.map((arg) => el("li", arg === "" ? "empty" : "", el("code", "", visible(arg)))));
  argv.setAttribute("aria-label", "arguments");
  const parts: HTMLElement[] = [el("p", "subject", "Wants to run"), argv, el("p", "cwd", "in ", el("code", "", visible(request.cwd)))];
  if (request.rule !== null) parts.push(el("p", "rule", "Asked because of the rule ", el("code", "", visible(request.rule))));
  // What no wildcard rule lets through, said before the buttons: the argv alone does not show it.
  if (request.hazards.length > 0) parts.push(el("ul", "hazards", ...request.hazards.map((hazard) => el("li", "", visible(hazard)))));
  return parts;
}

/** The input sits inside its label, which labels it without ids. */
function wildcardBox(wildcard: string): { label: HTMLLabelElement; input: HTMLInputElement } {
  const input = el("input");
  input.type = "checkbox";
  return { label: el("label", "wildcard", input, " apply to ", el("code", "", visible(wildcard))), input };
}
