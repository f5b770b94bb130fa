/**
 * "did you mean": the valid key closest to a misspelt one, for config files (config/load.ts) and the
 * library's options (options-check.ts). A module of its own so that the library's check, which runs
 * on every `cloister run`, does not load the config loader (and with it yaml and zod).
 */

/**
 * The valid key closest to `key` by edit distance, if within 3 edits and closer than rewriting the
 * whole candidate (so "foo" does not suggest "ui").
 */
export function nearestKey(key: string, candidates: readonly string[]): string | undefined {
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const distance = levenshtein(key.toLowerCase(), candidate.toLowerCase());
    if (distance > 3 || distance >= candidate.length) continue;
    if (!best || distance < best.distance) best = { candidate, distance };
  }
  return best?.candidate;
}

export function levenshtein(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution);
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
