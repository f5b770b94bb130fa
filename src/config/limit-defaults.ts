/**
 * The limits a cloister has when no config file sets them, spelled as config.yaml spells them.
 * Apart from schema.ts: a launch compares with them (cloister.ts), and the run path loads no zod.
 */
export const LIMIT_DEFAULTS = {
  memory: "8GiB",
  pids: 4096,
  cpu: "none",
  tmpfs: "1GiB",
  timeout: "none",
} as const;
