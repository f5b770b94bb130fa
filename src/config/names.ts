/**
 * Names of projects, cloisters and refs: they become file names, hostnames, cgroup names and mount
 * points, so nothing path-like. Its own module so the `run` path can check a name without loading
 * the config schema (and zod).
 */
export const SAFE_NAME_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;
