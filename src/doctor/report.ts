import type { CheckStatus, DoctorReport } from "./checks.js";

/**
 * Human output of `cloister doctor`: one aligned line per check, fixes indented beneath the finding
 * they belong to, then a summary. JSON output is the DoctorReport object itself (JSON.stringify).
 *
 *   ✓ bubblewrap             bubblewrap 0.8.0 at /usr/bin/bwrap; ...
 *   ! cgroup v2 delegation   hybrid cgroups ...
 *                            fix: Boot with ...
 */

export interface FormatOptions {
  color: boolean;
}

const MARK: Record<CheckStatus, string> = { ok: "✓", warn: "!", fail: "✗" };
const COLOR: Record<CheckStatus, string> = { ok: "32", warn: "33", fail: "31" };

function paint(text: string, code: string, on: boolean): string {
  return on ? `\x1b[${code}m${text}\x1b[0m` : text;
}

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

export function formatDoctorReport(report: DoctorReport, opts: FormatOptions): string {
  const width = Math.max(0, ...report.checks.map((c) => c.title.length));
  const lines: string[] = [];
  for (const c of report.checks) {
    const mark = paint(MARK[c.status], COLOR[c.status], opts.color);
    lines.push(`  ${mark} ${c.title.padEnd(width)}  ${c.detail}`);
    if (c.status !== "ok" && c.fix) {
      // Continuation lines line up under the first fix line; fixes never hold heredocs, so the
      // indentation does not change what a pasted command does.
      const pad = " ".repeat(2 + 2 + width + 2);
      const label = "fix: ";
      const [first = "", ...rest] = c.fix.split("\n");
      lines.push(`${pad}${paint(label, "1", opts.color)}${first}`);
      for (const l of rest) lines.push(l ? `${pad}${" ".repeat(label.length)}${l}` : "");
    }
  }
  const count = (s: CheckStatus): number => report.checks.filter((c) => c.status === s).length;
  const ok = count("ok");
  const warn = count("warn");
  const fail = count("fail");
  const tally = `${ok} ok, ${plural(warn, "warning", "warnings")}, ${fail} failed`;
  const verdict = report.ok
    ? warn
      ? "this machine can run cloisters (see the warnings above)"
      : "this machine can run cloisters"
    : "cloisters cannot run here until the failures above are fixed";
  lines.push("", paint(`${tally}: ${verdict}.`, report.ok ? (warn ? COLOR.warn : COLOR.ok) : COLOR.fail, opts.color));
  return `${lines.join("\n")}\n`;
}
