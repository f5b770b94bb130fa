/**
 * Agent-controlled text (a command's arguments, a file name) shown to a person must look like what it
 * is. A terminal escape can repaint the screen, a bidi control can reorder what is read ("txt.exe"
 * shown as "exe.txt"), a zero-width character can make two different arguments look the same, and a
 * newline can forge a second line. `visible` writes every such character as an escape, and doubles
 * the backslash, so the output is one line that maps back to exactly one input.
 */
import { canonicalQuote } from "./commands.js";

/** The short escapes people already know from C and shells; other controls get hex. */
const NAMED_ESCAPES: Readonly<Record<string, string>> = {
  "\\": "\\\\",
  "\n": "\\n",
  "\t": "\\t",
  "\r": "\\r",
  "\x1b": "\\e",
};

/** C0 controls and DEL: `\x07`. */
const C0_OR_DEL = /^[\x00-\x1f\x7f]$/;
/** C1 controls: `\u{85}`. */
const C1 = /^[\x80-\x9f]$/;
/**
 * Characters that change or hide how text reads without being seen themselves: format characters
 * (bidi controls U+061C, U+200E/F, U+202A–E, U+2066–9; zero-width U+200B–D, U+2060–4, U+FEFF; the
 * soft hyphen U+00AD; tag characters that smuggle invisible ASCII), the line and paragraph separators
 * (a line break in disguise), spaces other than U+0020 (which would pass for it), Hangul fillers
 * (blank glyphs), and lone surrogates (not text at all).
 */
const HIDDEN = /^[\p{Cf}\p{Zl}\p{Zp}\p{Cs}\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\u115f\u1160\u3164\uffa0]$/u;

/** `text` with control, bidi and invisible characters written as escapes; see the module comment. */
export function visible(text: string): string {
  let out = "";
  for (const char of text) out += visibleChar(char);
  return out;
}

/** The canonical quoting of `argv` with each argument made visible first: one safe line for display. */
export function visibleArgv(argv: readonly string[]): string {
  return canonicalQuote(argv.map(visible));
}

function visibleChar(char: string): string {
  const named = NAMED_ESCAPES[char];
  if (named !== undefined) return named;
  const code = char.codePointAt(0) ?? 0;
  if (C0_OR_DEL.test(char)) return `\\x${hex(code, 2)}`;
  if (C1.test(char)) return `\\u{${hex(code, 2)}}`;
  if (HIDDEN.test(char)) return `\\u{${hex(code, 4)}}`;
  return char;
}

function hex(code: number, digits: number): string {
  return code.toString(16).padStart(digits, "0");
}
