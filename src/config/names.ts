import { createHash } from "node:crypto";
import { readdir } from "node:fs/promises";

/**
 * Names of projects, cloisters and refs: they become file names, hostnames, cgroup names and mount
 * points, so nothing path-like. Its own module so the `run` path can check a name without loading
 * the config schema (and zod).
 */
export const SAFE_NAME_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** SAFE_NAME_RE in words, for the messages that refuse a name. */
export const NAME_RULE = "1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit";

/** The longest name: 63 characters, a DNS label (hostnames). */
export const MAX_NAME = 63;
const HASH_CHARS = 6;

/**
 * A safe project name from any directory name: lowercase, accents dropped, every run of other
 * characters turned into "-", no leading/trailing "-" or "." (nor a leading "_", which the name rule
 * forbids), at most 63 characters; "project" if nothing is left.
 */
export function sanitizeProjectName(raw: string): string {
  const folded = raw.toLowerCase().normalize("NFKD").replace(/\p{M}+/gu, "");
  const name = trimName(folded.replace(/[^a-z0-9._-]+/g, "-")).slice(0, MAX_NAME);
  return trimName(name) || "project";
}

/** `name-<first 6 hex of sha256(path)>`, shortened so the result still fits 63 characters. */
export function suffixedProjectName(name: string, path: string): string {
  const hash = createHash("sha256").update(path).digest("hex").slice(0, HASH_CHARS);
  const room = MAX_NAME - HASH_CHARS - 1;
  return `${trimName(name.slice(0, room)) || "project"}-${hash}`;
}

function trimName(name: string): string {
  return name.replace(/^[-._]+/, "").replace(/[-.]+$/, "");
}

/**
 * The registered projects' names: the names of their files in the projects directory, none opened.
 * Here rather than in the registry, which loads the YAML parser, so that shell completion lists them
 * without it.
 */
export async function projectFileNames(projectConfigDir: string): Promise<string[]> {
  let files: string[];
  try {
    files = await readdir(projectConfigDir);
  } catch (error) {
    if (error instanceof Error && "code" in error && error.code === "ENOENT") return [];
    throw error;
  }
  // Temp files of atomic writes start with "." and end in ".tmp", so the name rule skips them.
  return files.filter((file) => file.endsWith(".yaml")).map((file) => file.slice(0, -".yaml".length)).filter((name) => SAFE_NAME_RE.test(name));
}
