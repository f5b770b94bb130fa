/**
 * What changes in an agent's config file on its way into a cloister: host paths become the paths the
 * cloister sees (the project → /work, the host HOME → the cloister's HOME), and values that look like
 * secrets are left out (an API key in settings.json's env, an MCP server's token; looks-secret.ts
 * says what looks like one): a secret reaches a cloister through the guardian and its credential
 * mechanism, never as a side effect of a copy. JSON (with comments, as Gemini CLI allows) and TOML
 * are parsed and always written back from the parsed value (TOML with smol-toml), never edited as
 * text and never carried as they were: the text may hold what the value does not (a comment with a
 * key commented out, the first of two equal keys in JSON, which JSON.parse overrides). One that does
 * not parse is not filtered, so it is not carried at all.
 */
import { parse as parseToml, stringify as stringifyToml } from "smol-toml";
import stripJsonComments from "strip-json-comments";
import { holdsVariableNames, looksSecret, looksSecretArgument, withoutUrlPasswords } from "./looks-secret.js";

/** Host path → cloister path, most specific first. */
export type PathMap = readonly (readonly [from: string, to: string])[];

export type Transformed =
  | {
      ok: true;
      text: string;
      /** Where values were left out (dotted paths), for a note to the user. */
      dropped: string[];
    }
  | { ok: false; error: string };

interface Format {
  parse(text: string): unknown;
  serialize(data: unknown): string;
}

const FORMATS: Readonly<Record<string, Format>> = {
  ".json": {
    parse: parseJsonc,
    serialize: (data) => `${JSON.stringify(data, null, 2)}\n`,
  },
  ".toml": {
    // smol-toml refuses a key defined twice, so no value hides behind another.
    parse: parseToml,
    serialize: (data) => stringifyToml(data as Record<string, unknown>),
  },
};

/** JSON as the agents read it: Gemini CLI's settings.json may have comments and trailing commas. */
export function parseJsonc(text: string): unknown {
  return JSON.parse(jsonWithoutComments(text)) as unknown;
}

function jsonWithoutComments(text: string): string {
  // strip-json-comments is what Gemini CLI reads its settings with. jsonc-parser (VS Code's) was the
  // first choice, but its CommonJS build is UMD, which esbuild cannot bundle into the CLI.
  return stripJsonComments(text, { trailingCommas: true });
}

/** Whether a file is parsed and filtered (JSON, TOML) rather than treated as text. */
export function isStructured(fileName: string): boolean {
  return formatOf(fileName) !== undefined;
}

function formatOf(fileName: string): Format | undefined {
  // keys.JSON is JSON too: an extension in other letters must not let a file pass unfiltered.
  const extension = fileName.slice(fileName.lastIndexOf(".")).toLowerCase();
  return Object.hasOwn(FORMATS, extension) ? FORMATS[extension] : undefined;
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

/**
 * A config file's new text; the format is chosen by the file name. JSON or TOML that does not parse is
 * an error, never text. Other text only has its host paths rewritten: whether it holds a secret is
 * for the caller to judge (looks-secret.ts textHoldsSecret).
 */
export function transformConfigText(fileName: string, text: string, map: PathMap): Transformed {
  const format = formatOf(fileName);
  if (format === undefined) return { ok: true, text: rewritePaths(text, map), dropped: [] };
  let data: unknown;
  try {
    data = format.parse(text);
  } catch (error) {
    return { ok: false, error: (error as Error).message.split("\n")[0] ?? "" };
  }
  const walk: Walk = { map, dropped: [] };
  try {
    return { ok: true, text: format.serialize(transformValue(data, "", "", walk)), dropped: walk.dropped };
  } catch (error) {
    // The walk (and the serializers) recurse: a file nested deeper than the stack holds (100,000
    // `[` parse fine) ended the launch with "Maximum call stack size exceeded" (red team). Such a
    // file is left out like one that does not parse.
    if (error instanceof RangeError) return { ok: false, error: "nested too deeply to be read" };
    throw error;
  }
}

interface Walk {
  map: PathMap;
  dropped: string[];
}

/** Rewrites paths in every key and text value, and leaves out secret-looking text values. `key` is the value's own key. */
function transformValue(value: unknown, key: string, at: string, walk: Walk): unknown {
  if (typeof value === "string") return transformText(value, at, walk);
  if (Array.isArray(value)) return transformList(value, key, at, walk);
  if (!isPlainObject(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [childKey, child] of Object.entries(value)) {
    const path = at ? `${at}.${childKey}` : childKey;
    // In a map of variable names (codex's env_http_headers) a key is a header's name, not what the value is.
    if (looksSecret(holdsVariableNames(key) ? key : childKey, child)) {
      walk.dropped.push(path);
      continue;
    }
    out[rewritePaths(childKey, walk.map)] = transformValue(child, childKey, path, walk);
  }
  return out;
}

/**
 * Items are judged by the list's key, or by the option before them (`["--token", "X"]` is judged as
 * token = X). An option whose value is left out goes with it: left alone it would take the next
 * argument as its value, and an MCP server's `args` must still run.
 */
function transformList(items: readonly unknown[], key: string, at: string, walk: Walk): unknown[] {
  const out: unknown[] = [];
  items.forEach((item, i) => {
    const before = items[i - 1];
    // An item that is an option itself (`["--token", "--verbose"]`) is no option's value.
    const isValue = typeof item !== "string" || !item.startsWith("-");
    const option = isValue && typeof before === "string" ? /^--?([A-Za-z][A-Za-z0-9_.-]*)$/.exec(before)?.[1] : undefined;
    if (option === undefined ? looksSecret(key, item) : looksSecretArgument(option, item)) {
      const optionKept = option !== undefined && out.at(-1) === before;
      if (optionKept) out.pop();
      walk.dropped.push(optionKept ? `${at}[${i}] with ${before}` : `${at}[${i}]`);
      return;
    }
    out.push(transformValue(item, key, `${at}[${i}]`, walk));
  });
  return out;
}

/** A URL's password is left out and the URL kept (`https://user@host`): the rest of it is config. */
function transformText(text: string, at: string, walk: Walk): string {
  const redacted = withoutUrlPasswords(text);
  if (redacted !== text) walk.dropped.push(`${at} (the password in its URL)`);
  return rewritePaths(redacted, walk.map);
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
