/**
 * Editing files in the staging HOME (never the host's): read, change as data, write back 0600.
 * JSON may have comments (Gemini CLI's settings.json); they are lost. A file that does not parse
 * is replaced by what cloister needs, with a note: appending text to a config file that may
 * already set the same keys is how duplicate TOML tables happen.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { parse as parseToml, stringify as stringifyToml } from "smol-toml";
import { isPlainObject, parseJsonc } from "./config-transform.js";

type Data = Record<string, unknown>;

export function updateJsonFile(path: string, notes: string[], update: (data: Data) => Data): void {
  updateFile(path, notes, parseJsonc, (data) => `${JSON.stringify(data, null, 2)}\n`, update);
}

export function updateTomlFile(path: string, notes: string[], update: (data: Data) => Data): void {
  updateFile(path, notes, parseToml, (data) => stringifyToml(data), update);
}

export function writeStagedFile(path: string, content: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, content, { mode: 0o600 });
}

function updateFile(path: string, notes: string[], parse: (text: string) => unknown, serialize: (data: Data) => string, update: (data: Data) => Data): void {
  let data: Data = {};
  const text = readIfThere(path);
  if (text !== undefined && text.trim() !== "") {
    try {
      const parsed = parse(text);
      if (isPlainObject(parsed)) data = parsed;
      else notes.push(`${path.slice(path.lastIndexOf("/") + 1)} is not a mapping; the cloister gets a fresh one`);
    } catch (error) {
      notes.push(`${path.slice(path.lastIndexOf("/") + 1)} does not parse (${(error as Error).message.split("\n")[0]}); the cloister gets a fresh one`);
    }
  }
  writeStagedFile(path, serialize(update(data)));
}

function readIfThere(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/** `data[key]` as a mapping (a new one when it is something else). */
export function mapping(data: Data, key: string): Data {
  const value = data[key];
  return isPlainObject(value) ? value : {};
}
