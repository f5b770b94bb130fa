/**
 * The one way the app builds DOM: strings become text nodes (Node.append), never markup, so nothing
 * an agent wrote can turn into an element. Agent-controlled strings also go through visible() before
 * they get here, so hidden characters show.
 */
import { visible } from "../src/policy/visible.js";

export type Child = Node | string;

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, className = "", ...children: Child[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  if (className) element.className = className;
  element.append(...children);
  return element;
}

/** An element the page's HTML must contain. */
export function byId<T extends HTMLElement>(id: string, type: new () => T): T {
  const element = document.getElementById(id);
  if (!(element instanceof type)) throw new Error(`the page has no ${type.name} #${id}`);
  return element;
}

/** A short label and its value, for the facts list of a card. */
export function fact(label: string, value: Child): [HTMLElement, HTMLElement] {
  return [el("dt", "", label), el("dd", "", value)];
}

/** Where a failed action's message goes; hidden until there is one, and read out when it appears. */
export function errorLine(): HTMLParagraphElement {
  const line = el("p", "error");
  line.setAttribute("role", "alert");
  line.hidden = true;
  return line;
}

/** Runs a button's action: its buttons are disabled meanwhile, and a failure's message shows in `error`. */
export async function act(buttons: HTMLButtonElement[], error: HTMLElement, action: () => Promise<void>): Promise<void> {
  for (const button of buttons) button.disabled = true;
  error.hidden = true;
  try {
    await action();
  } catch (failure) {
    error.textContent = visible(failure instanceof Error ? failure.message : String(failure));
    error.hidden = false;
  } finally {
    for (const button of buttons) button.disabled = false;
  }
}
