/**
 * The approval page: held requests arrive live from the guardian's event stream and leave when
 * answered (here or anywhere else); recent decisions can be undone. Every agent-controlled string is
 * shown through visible() as text, never as markup (see dom.ts).
 */
import type { ApprovalEvent, DecisionView, Pending } from "../src/guardian/approvals/types.js";
import { visible } from "../src/policy/visible.js";
import { armChimeOnFirstInteraction, chime, notify, offerNotifications } from "./alerts.js";
import { postJson } from "./api.js";
import { confirmWith } from "./confirm.js";
import { confirmationFor, subjectText, undoConfirmation, type Choice } from "./describe.js";
import { byId } from "./dom.js";
import { pendingCard, updateCountdown } from "./pending-card.js";
import { decisionItem } from "./recent.js";
import { follow, type Snapshot } from "./stream.js";

const TITLE = "Cloister approvals";
/** The guardian keeps 50; the page shows no more than it. */
const MAX_RECENT = 50;

const pendingList = byId("pending", HTMLUListElement);
const pendingCount = byId("pending-count", HTMLElement);
const pendingEmpty = byId("pending-empty", HTMLElement);
const recentList = byId("recent", HTMLUListElement);
const recentEmpty = byId("recent-empty", HTMLElement);
const banner = byId("banner", HTMLElement);

const cards = new Map<string, HTMLLIElement>();
let recent: DecisionView[] = [];

function addRequest(request: Pending): void {
  if (cards.has(request.id)) return;
  const card = pendingCard(request, (choice) => answer(request, choice));
  cards.set(request.id, card);
  pendingList.append(card);
  countChanged();
}

function removeRequest(id: string): void {
  cards.get(id)?.remove();
  cards.delete(id);
  countChanged();
}

function countChanged(): void {
  const count = cards.size;
  document.title = count > 0 ? `(${count}) ${TITLE}` : TITLE;
  pendingCount.textContent = String(count);
  pendingEmpty.hidden = count > 0;
}

async function answer(request: Pending, choice: Choice): Promise<void> {
  const confirmation = confirmationFor(request, choice);
  if (confirmation !== null && !(await confirmWith(confirmation))) return;
  showDecision(await postJson<DecisionView>(`/api/requests/${encodeURIComponent(request.id)}/answer`, choice));
  removeRequest(request.id);
}

async function undo(decision: DecisionView): Promise<void> {
  if (!(await confirmWith(undoConfirmation(decision)))) return;
  showDecision(await postJson<DecisionView>(`/api/decisions/${encodeURIComponent(decision.id)}/undo`, {}));
}

/** A new decision goes on top; a changed one (undone) is updated where it is. */
function showDecision(decision: DecisionView): void {
  const index = recent.findIndex((known) => known.id === decision.id);
  if (index >= 0) recent[index] = decision;
  else recent = [decision, ...recent].slice(0, MAX_RECENT);
  renderRecent();
}

function renderRecent(): void {
  recentList.replaceChildren(...recent.map((decision) => decisionItem(decision, undo)));
  recentEmpty.hidden = recent.length > 0;
}

/** On (re)connection: cards still held are kept as they are (with whatever scope was being picked). */
function applySnapshot(snapshot: Snapshot): void {
  banner.hidden = true;
  const held = new Set(snapshot.pending.map((request) => request.id));
  for (const id of [...cards.keys()]) if (!held.has(id)) removeRequest(id);
  for (const request of snapshot.pending) addRequest(request);
  recent = snapshot.recent.slice(0, MAX_RECENT);
  renderRecent();
}

function applyEvent(event: ApprovalEvent): void {
  switch (event.type) {
    case "added":
      addRequest(event.request);
      announce(event.request);
      break;
    case "removed":
      removeRequest(event.id);
      break;
    case "decided":
      showDecision(event.decision);
      break;
  }
}

function announce(request: Pending): void {
  chime();
  const subject = request.kind === "domain" ? `wants to reach ${subjectText(`${request.host}:${request.port}`)}` : `wants to run ${subjectText(request.argv)}`;
  notify("Cloister: approval requested", `${visible(request.cloister)} ${subject}`.slice(0, 200));
}

function connectionLost(signedOut: boolean): void {
  banner.textContent = signedOut ? "Signed out (the guardian restarted?): run `cloister ui` on the host and open the new link." : "Connection lost, reconnecting…";
  banner.hidden = false;
}

countChanged();
armChimeOnFirstInteraction();
offerNotifications(byId("notifications", HTMLButtonElement));
setInterval(() => {
  const now = Date.now();
  for (const card of cards.values()) updateCountdown(card, now);
}, 1_000);
follow({ snapshot: applySnapshot, event: applyEvent, lost: connectionLost });
