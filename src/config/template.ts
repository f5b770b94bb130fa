/**
 * The global config file cloister writes on first use. Every key is present with its default value,
 * so the file doubles as the reference; a unit test checks that parsing it yields exactly the schema
 * defaults, so the two cannot drift apart.
 */
export const GLOBAL_CONFIG_TEMPLATE = `# Cloister global configuration.
# Every key below is set to its default. Unknown keys are errors (a misspelt setting that is
# silently ignored would be a protection that silently does not apply).
# Per-project settings live next to this file in projects/<name>.yaml (path, refs, sandbox, limits);
# a project's limits override these, its sandbox lists are added to these.

defaults:
  # Shell for \`cloister start\` (falls back to /bin/sh if it is missing inside the sandbox).
  shell: /bin/bash
  # false = every cloister starts as if given --no-network.
  network: true

limits:
  # Memory of the whole cloister. A size: a number with an optional unit, case-insensitive:
  # B, K/KiB, M/MiB, G/GiB, T/TiB (powers of 1024) or KB, MB, GB, TB (powers of 1000); or none.
  memory: 8GiB
  # Most processes (and threads) alive at once: a whole number, or none.
  pids: 4096
  # CPU time as a percentage of one core: 100% = one core, 200% = two cores; or none.
  cpu: 100%
  # Size cap of each private tmpfs (/tmp, /var/tmp, /dev/shm). A size; none is not allowed.
  # (/run is always small and fixed.)
  tmpfs: 1GiB
  # Default --timeout for \`cloister run\`: a duration such as 90s, 5m or 1h30m; or none.
  timeout: none

sandbox:
  # Extra paths inside the project that the agent may read but never change, relative to the
  # project root, e.g. ["Makefile", "scripts/ci/"]. (.git/hooks, .git/config, shell rc files and
  # agent config dirs are always protected.)
  protect: []
  # Extra environment variable NAMES passed through from the host, e.g. [LANG, TERM].
  # Never values; names that look secret-bearing (TOKEN, SECRET, PASSWORD, KEY, AWS_*, ...) are
  # refused: secrets reach a cloister only through the guardian.
  env: []
  # Extra read-only host paths: a list of {src: /abs/host/path, dest: /abs/path/in/sandbox}.
  mounts: []

# Reserved for the approval UI; no settings yet.
ui: {}
`;
