/**
 * Parsing and printing of the human-friendly quantities used in config files and on the command line:
 * sizes ("8GiB"), durations ("1h30m") and CPU percentages ("150%"). Pure functions; each parser throws
 * an Error whose message is fit to show the user as is (the config loader adds file, line and key).
 *
 * Parsers accept zero: whether zero makes sense is the caller's decision (a limit of 0 does not, a
 * retry delay of 0s may). They refuse negatives, junk, and values beyond Number.MAX_SAFE_INTEGER so a
 * result is always an exact non-negative integer (bytes, milliseconds) or a finite number (percent).
 */

const KiB = 1024;

/**
 * Size units, lower-cased. The bare letters and the IEC "iB" forms are powers of 1024 (as in docker,
 * systemd and `ulimit`), the "B" forms are SI powers of 1000, so "8GB" means what the label says.
 */
const SIZE_UNITS: Readonly<Record<string, number>> = {
  "": 1,
  b: 1,
  k: KiB,
  kib: KiB,
  kb: 1000,
  m: KiB ** 2,
  mib: KiB ** 2,
  mb: 1000 ** 2,
  g: KiB ** 3,
  gib: KiB ** 3,
  gb: 1000 ** 3,
  t: KiB ** 4,
  tib: KiB ** 4,
  tb: 1000 ** 4,
};

/** The units sizes are printed in, largest first. */
const PRINTED_SIZE_UNITS: ReadonlyArray<readonly [string, number]> = [
  ["TiB", KiB ** 4],
  ["GiB", KiB ** 3],
  ["MiB", KiB ** 2],
  ["KiB", KiB],
];

const SIZE_UNIT_HELP = "B, K/KiB, M/MiB, G/GiB, T/TiB (powers of 1024) or KB, MB, GB, TB (powers of 1000)";

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

const DURATION_UNIT_HELP = "ms, s, m, h, d";

/** A decimal number with optional fraction; no sign, no exponent, no leading dot. */
const NUMBER = String.raw`\d+(?:\.\d+)?`;
const SIZE_RE = new RegExp(String.raw`^(${NUMBER})\s*([a-z]*)$`, "i");
const DURATION_PART_RE = new RegExp(String.raw`(${NUMBER})\s*([a-z]+)\s*`, "giy");
const PERCENT_RE = new RegExp(String.raw`^(${NUMBER})\s*%$`);

/** Bytes from "8GiB", "512M", "1.5G", "4096" (bytes). A number input is taken as bytes. */
/** setTimeout fires at once for longer delays (2^31-1 ms, about 24 days). */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

export function parseSize(input: string | number): number {
  if (typeof input === "number") return wholeNumber(input, "a size in bytes");
  const text = input.trim();
  rejectNegative(text, "a size");
  const match = SIZE_RE.exec(text);
  if (!match) {
    throw new Error(`"${input}" is not a size: write a number with an optional unit, e.g. 8GiB or 512M (units: ${SIZE_UNIT_HELP})`);
  }
  const [, amount = "", unit = ""] = match;
  const factor = SIZE_UNITS[unit.toLowerCase()];
  if (factor === undefined) {
    throw new Error(`"${unit}" is not a size unit (in "${input}"); use ${SIZE_UNIT_HELP}`);
  }
  // Fractions of a byte make no sense, so "0.5K" is 512 and "1.5B" is 1.
  return safeInteger(Math.floor(Number(amount) * factor), input, "size");
}

/** Milliseconds from "90s", "5m", "1h30m", "1.5h", "250ms", "2d". Units may repeat and appear in any order. */
export function parseDuration(input: string | number): number {
  const text = String(input).trim();
  rejectNegative(text, "a duration");
  if (/^\d+(?:\.\d+)?$/.test(text)) {
    if (Number(text) === 0) throw new Error(`"${text}" is no time at all: write a duration like 90s, 5m or 1h30m`);
    // A bare number is ambiguous (seconds? minutes?), and guessing wrong by 60x is worse than asking.
    throw new Error(`"${text}" needs a unit: write e.g. ${text}s or ${text}m (units: ${DURATION_UNIT_HELP})`);
  }
  let total = 0;
  let consumed = 0;
  DURATION_PART_RE.lastIndex = 0;
  for (let part = DURATION_PART_RE.exec(text); part; part = DURATION_PART_RE.exec(text)) {
    const [whole, amount = "", unit = ""] = part;
    const factor = DURATION_UNITS[unit.toLowerCase()];
    if (factor === undefined) {
      throw new Error(`"${unit}" is not a duration unit (in "${text}"); use ${DURATION_UNIT_HELP}, e.g. 1h30m`);
    }
    total += Number(amount) * factor;
    consumed += whole.length;
  }
  if (consumed === 0 || consumed !== text.length) {
    throw new Error(`"${text}" is not a duration: write e.g. 90s, 5m or 1h30m (units: ${DURATION_UNIT_HELP})`);
  }
  return safeInteger(Math.round(total), text, "duration");
}

/** The most processes a limit can name: the kernel's pid space (PID_MAX_LIMIT on 64-bit), beyond which pids.max refuses it. */
export const MAX_PIDS = 4_194_304;

/** A process count from "4096" or 4096: a whole number from 1 to MAX_PIDS. */
export function parseProcessCount(input: string | number): number {
  const value = typeof input === "number" ? input : /^\s*\d+\s*$/.test(input) ? Number(input) : NaN;
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`"${input}" is not a process count: write a whole number of 1 or more, or none`);
  if (value > MAX_PIDS) throw new Error(`"${input}" is more processes than the kernel can have (${MAX_PIDS}): give fewer, or none for no limit`);
  return value;
}

/** Percent of one CPU core from "150%" (one and a half cores). The % sign is required. */
export function parsePercent(input: string | number): number {
  const text = String(input).trim();
  rejectNegative(text, "a percentage");
  const match = PERCENT_RE.exec(text);
  if (!match) {
    // Without the sign, "cpu: 2" could mean two cores or 2%; make the user say which.
    const hint = /^\d+(?:\.\d+)?$/.test(text) ? ` (did you mean ${text}%? 100% is one core)` : "";
    throw new Error(`"${text}" is not a percentage: write e.g. 50%, 100% (one core) or 200% (two cores)${hint}`);
  }
  const value = Number(match[1]);
  if (value > Number.MAX_SAFE_INTEGER) throw new Error(`"${text}" is too large a percentage`);
  return value;
}

/** True for "none" in any letter case: the word config files use to switch a limit off. */
export function isNone(input: unknown): boolean {
  return typeof input === "string" && input.trim().toLowerCase() === "none";
}

/** "8GiB", "1.5GiB", "512B"; null (no limit) prints as "none". */
export function formatSize(bytes: number | null): string {
  if (bytes === null) return "none";
  for (const [name, factor] of PRINTED_SIZE_UNITS) {
    if (bytes >= factor) return `${trimDecimals(bytes / factor)}${name}`;
  }
  return `${bytes}B`;
}

/**
 * A size as a config file would say it, exactly (parseSize reads it back to the same number): in the
 * largest binary unit that divides it, "8GiB", "1536KiB", else in bytes.
 */
export function writeSize(bytes: number): string {
  const unit = PRINTED_SIZE_UNITS.find(([, factor]) => bytes > 0 && bytes % factor === 0);
  return unit ? `${bytes / unit[1]}${unit[0]}` : `${bytes}B`;
}

/** "1h30m", "90s" → "1m30s", "250ms", "0s"; null prints as "none". Output parses back with parseDuration. */
export function formatDuration(ms: number | null): string {
  if (ms === null) return "none";
  if (ms === 0) return "0s";
  let rest = Math.round(ms);
  let out = "";
  for (const [name, factor] of Object.entries(DURATION_UNITS).reverse()) {
    const count = Math.floor(rest / factor);
    if (count > 0) out += `${count}${name}`;
    rest -= count * factor;
  }
  return out;
}

/** "150%"; null prints as "none". */
export function formatPercent(percent: number | null): string {
  return percent === null ? "none" : `${trimDecimals(percent)}%`;
}

function rejectNegative(text: string, what: string): void {
  if (text.startsWith("-")) throw new Error(`"${text}" is negative; ${what} must be 0 or more`);
}

function wholeNumber(value: number, what: string): number {
  if (!Number.isFinite(value)) throw new Error(`${value} is not ${what}`);
  if (value < 0) throw new Error(`${value} is negative; ${what} must be 0 or more`);
  if (!Number.isInteger(value)) throw new Error(`${value} is not a whole number; ${what} must be one`);
  if (!Number.isSafeInteger(value)) throw new Error(`${value} is too large for ${what}`);
  return value;
}

function safeInteger(value: number, input: string | number, what: string): number {
  if (!Number.isSafeInteger(value)) throw new Error(`"${input}" is too large a ${what}`);
  return value;
}

/** At most two decimals, no trailing zeros: 1.5, 2, 0.33. For display only. */
function trimDecimals(value: number): string {
  return String(Math.round(value * 100) / 100);
}
