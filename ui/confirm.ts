import type { Confirmation } from "./describe.js";
import { byId, el } from "./dom.js";

/**
 * Asks in the page's modal dialog; resolves true only for the confirming button. Escape, Cancel and
 * closing the dialog any other way all mean no.
 */
export function confirmWith(confirmation: Confirmation): Promise<boolean> {
  const dialog = byId("confirm", HTMLDialogElement);
  const ok = byId("confirm-ok", HTMLButtonElement);
  const cancel = byId("confirm-cancel", HTMLButtonElement);
  byId("confirm-title", HTMLElement).textContent = confirmation.title;
  byId("confirm-body", HTMLElement).replaceChildren(...confirmation.body.map((segment) => (typeof segment === "string" ? segment : el("code", "", segment.code))));
  ok.textContent = confirmation.action;
  dialog.returnValue = "";
  ok.onclick = () => dialog.close("ok");
  cancel.onclick = () => dialog.close("cancel");
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }));
}
