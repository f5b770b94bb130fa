import { createHash } from "node:crypto";

/**
 * Names of projects, cloisters and refs: they become file names, hostnames, cgroup names and mount
 * points, so nothing path-like. Its own module so the `run` path can check a name without loading
 * the config schema (and zod).
 */
export const SAFE_NAME_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;

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
