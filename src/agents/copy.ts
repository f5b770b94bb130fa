/**
 * The filtered copy of one host config path (a directory like ~/.claude, or a file) into the staging
 * HOME. Reads the host, writes only the staging directory. Links are never followed out of the copied
 * tree: a link to ~/.ssh inside ~/.claude copies nothing; a link to a place inside the tree is kept
 * as a relative link. JSON and TOML are filtered value by value (config-transform.ts); any other file
 * that holds a secret is left out whole, as are sockets, devices, files too large to check and JSON
 * or TOML that does not parse, each with a note.
 */
import { lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, statSync, symlinkSync, writeFileSync, type Stats } from "node:fs";
import { dirname, join, relative } from "node:path";
import { isStructured, transformConfigText, type PathMap } from "./config-transform.js";
import { isUnder } from "../path-under.js";
import { textHoldsSecret } from "./looks-secret.js";

/** Larger files are not agent config: skip them rather than read and check them on every start. */
const MAX_FILE_BYTES = 16 * 1024 * 1024;
/** Prose (instructions, commands, agents): judged by secret shapes only, since "Token: …" there is a sentence. */
const PROSE_RE = /\.(?:md|markdown)$/i;

export interface CopyOptions {
  /** Patterns relative to the copied root: "name" (top level), "dir/name", "**​/name" (any depth), "**​/prefix*" (any depth), "*.suffix". */
  exclude: readonly string[];
  paths: PathMap;
  /** Host HOME: a config path that resolves to it, or above it, is not copied. */
  hostHome: string;
  /** One line per thing left out that the user may want to know about. */
  notes: string[];
  /** How to show a host path in notes (~/.claude/x). */
  display: (hostPath: string) => string;
}

/** Copies `source` to `dest` (which must not exist yet). A missing source copies nothing. */
export function copyConfigPath(source: string, dest: string, options: CopyOptions): void {
  let root: string;
  try {
    // The config path itself may be a link (dotfile managers do that); links below it are judged against it.
    root = realpathSync(source);
  } catch {
    return;
  }
  if (isUnder(options.hostHome, root)) {
    options.notes.push(`${options.display(source)} leads to your whole home directory; not copied`);
    return;
  }
  const info = statSync(root);
  if (info.isDirectory()) copyDir(root, dest, "", { ...options, root, source });
  else if (info.isFile()) copyFile(root, dest, "", info, { ...options, root, source });
}

interface Walk extends CopyOptions {
  /** The real path of the copied root on the host. */
  root: string;
  /** The config path as the user knows it (for notes). */
  source: string;
}

function copyDir(dir: string, dest: string, rel: string, walk: Walk): void {
  mkdirSync(dest, { mode: 0o700 });
  for (const name of readdirSync(dir).sort()) {
    const childRel = rel ? `${rel}/${name}` : name;
    if (isExcluded(childRel, walk.exclude)) continue;
    const from = join(dir, name);
    const to = join(dest, name);
    const info = lstatSync(from);
    if (info.isSymbolicLink()) copyLink(from, to, childRel, walk);
    else if (info.isDirectory()) copyDir(from, to, childRel, walk);
    else if (info.isFile()) copyFile(from, to, childRel, info, walk);
    else walk.notes.push(`${shown(walk, childRel)} is not a file or directory; not copied`);
  }
}

function copyLink(from: string, to: string, rel: string, walk: Walk): void {
  let target: string;
  try {
    target = realpathSync(from);
  } catch {
    return; // A dangling link leads nowhere: nothing to carry.
  }
  if (!isUnder(target, walk.root) || target === walk.root) {
    walk.notes.push(`${shown(walk, rel)} is a link to ${walk.display(target)}, outside ${walk.display(walk.source)}; not copied`);
    return;
  }
  // Relative, so it points into the copy, wherever the copy ends up.
  symlinkSync(relative(dirname(join(walk.root, rel)), target), to);
}

function copyFile(from: string, to: string, rel: string, info: Stats, walk: Walk): void {
  if (info.size > MAX_FILE_BYTES) {
    walk.notes.push(`${shown(walk, rel)} is larger than 16 MiB, too large to check for secrets; not copied`);
    return;
  }
  const content = filtered(rel || from, readFileSync(from), shown(walk, rel), walk);
  if (content !== undefined) writeFileSync(to, content, { mode: (info.mode & 0o777) | 0o600, flag: "wx" });
}

/**
 * What is written for a file, or undefined when it is left out. JSON and TOML are written from their
 * filtered values; other text with host paths in it is rewritten; the rest, binaries too, is kept as
 * it is. Whatever the filter left in is checked again as a whole: a file whose values are not judged
 * one by one (a script, YAML), or a secret where values are not looked at (a JSON key's name), leaves
 * the whole file out rather than carry the secret.
 */
function filtered(name: string, bytes: Buffer, label: string, walk: Walk): string | Buffer | undefined {
  const structured = isStructured(name);
  const binary = !structured && bytes.includes(0);
  let content: string | Buffer = bytes;
  let dropped: string[] = [];
  if (structured || (!binary && walk.paths.some(([host, inside]) => host !== inside && bytes.includes(host)))) {
    const result = transformConfigText(name, bytes.toString("utf8"), walk.paths);
    if (!result.ok) {
      // What cannot be parsed cannot be filtered: carrying it as it is would carry its secrets.
      walk.notes.push(`${label} does not parse (${result.error}); not copied`);
      return undefined;
    }
    ({ text: content, dropped } = result);
  }
  // A binary's bytes as latin1: one character a byte, so the ASCII shapes of secrets are found in it.
  const text = typeof content === "string" ? content : content.toString(binary ? "latin1" : "utf8");
  if (textHoldsSecret(text, !structured && !binary && !PROSE_RE.test(name))) {
    walk.notes.push(`${label} looks like it holds a secret; not copied`);
    return undefined;
  }
  for (const key of dropped) walk.notes.push(`${label}: ${key} looks like a secret; left out`);
  return content;
}

function shown(walk: Walk, rel: string): string {
  return rel ? `${walk.display(walk.source)}/${rel}` : walk.display(walk.source);
}

export function isExcluded(rel: string, patterns: readonly string[]): boolean {
  const name = rel.slice(rel.lastIndexOf("/") + 1);
  return patterns.some((pattern) => {
    if (pattern.startsWith("**/")) return pattern.endsWith("*") ? name.startsWith(pattern.slice(3, -1)) : name === pattern.slice(3);
    if (pattern.startsWith("*.")) return name.endsWith(pattern.slice(1));
    return rel === pattern;
  });
}
