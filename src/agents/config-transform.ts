/**
 * What changes in an agent's config file on its way into a cloister: host paths become the paths the
 * cloister sees (the project → /work, the host HOME → the cloister's HOME), and values that look like
 * secrets are left out (an API key in settings.json's env, an MCP server's token): a secret reaches
 * a cloister through the guardian and its credential mechanism, never as a side effect of a copy.
 * JSON and TOML are parsed and written back (TOML with smol-toml), never edited as text.
 */
import { parse as parseToml, stringify as stringifyToml } from "smol-toml";

/** Host path → cloister path, most specific first. */
export type PathMap = readonly (readonly [from: string, to: string])[];

/** Keys whose text values are secrets (env entries, headers, helper commands that print keys). */
const SECRET_KEY_RE = /token|secret|passw|api[-_]?key|credential|authorization|cookie|bearer|private[-_]?key|access[-_]?key/i;
/** A value that only names a variable (`bearer_token_env_var = "GITHUB_TOKEN"`) is not itself a secret. */
const VARIABLE_NAME_RE = /^[A-Z_][A-Z0-9_]*$/;

export interface Transformed {
  text: string;
  /** Dotted paths of the values left out, for a note to the user. */
  dropped: string[];
  changed: boolean;
}

/** Rewrites each host path where it stands as a whole path (not inside a longer name). */
export function rewritePaths(text: string, map: PathMap): string {
  let out = text;
  for (const [from, to] of map) {
    if (from === to || !out.includes(from)) continue;
    const escaped = from.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    out = out.replace(new RegExp(`(?<![A-Za-z0-9._-])${escaped}(?![A-Za-z0-9._-])`, "g"), to);
  }
  return out;
}

/** A config file's new text; the format is chosen by the file name. Unparsable JSON or TOML is treated as text. */
export function transformConfigText(fileName: string, text: string, map: PathMap): Transformed {
  const format = fileName.endsWith(".json") ? "json" : fileName.endsWith(".toml") ? "toml" : undefined;
  const data = format ? tryParse(format, text) : undefined;
  if (format === undefined || data === undefined) {
    const rewritten = rewritePaths(text, map);
    return { text: rewritten, dropped: [], changed: rewritten !== text };
  }
  const dropped: string[] = [];
  const result = transformValue(data, map, dropped, "");
  const serialized = format === "json" ? `${JSON.stringify(result, null, 2)}\n` : stringifyToml(result as Record<string, unknown>);
  const changed = JSON.stringify(result) !== JSON.stringify(data);
  return { text: changed ? serialized : text, dropped, changed };
}

function tryParse(format: "json" | "toml", text: string): unknown {
  try {
    return format === "json" ? (JSON.parse(text) as unknown) : parseToml(text);
  } catch {
    return undefined;
  }
}

/** Rewrites paths in every key and text value, and leaves out secret-looking text values. */
export function transformValue(value: unknown, map: PathMap, dropped: string[], at: string): unknown {
  if (typeof value === "string") return rewritePaths(value, map);
  if (Array.isArray(value)) return value.map((item, i) => transformValue(item, map, dropped, `${at}[${i}]`));
  if (!isPlainObject(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [key, child] of Object.entries(value)) {
    const path = at ? `${at}.${key}` : key;
    if (looksSecret(key, child)) {
      dropped.push(path);
      continue;
    }
    out[rewritePaths(key, map)] = transformValue(child, map, dropped, path);
  }
  return out;
}

export function looksSecret(key: string, value: unknown): boolean {
  return SECRET_KEY_RE.test(key) && typeof value === "string" && value !== "" && !VARIABLE_NAME_RE.test(value);
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
