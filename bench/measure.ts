/**
 * Small measuring helpers for bench/run.ts: timing, percentiles, process trees and their memory.
 * Everything here reads /proc directly (Linux only) and has no dependency on cloister itself.
 */
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Milliseconds since an arbitrary origin, with sub-millisecond resolution. */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export interface Summary {
  n: number;
  min: number;
  median: number;
  p95: number;
  max: number;
  mean: number;
}

/**
 * Percentile p (0..100) of already sorted values, by linear interpolation between the two closest
 * ranks (what numpy and most spreadsheets call the default): p50 of [1,2,3,4] is 2.5, p95 of 20
 * values lies between the 19th and the 20th.
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const a = sorted[lo] ?? Number.NaN;
  const b = sorted[hi] ?? Number.NaN;
  return a + (b - a) * (rank - lo);
}

export function summarize(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((x, y) => x - y);
  const sum = sorted.reduce((acc, v) => acc + v, 0);
  return {
    n: sorted.length,
    min: sorted[0] ?? Number.NaN,
    median: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    max: sorted[sorted.length - 1] ?? Number.NaN,
    mean: sorted.length ? sum / sorted.length : Number.NaN,
  };
}

/** Children the bench started and has not seen exit yet: killed if the bench is interrupted. */
export const liveChildren = new Set<ChildProcess>();

export interface SpawnResult {
  pid: number | undefined;
  code: number | null;
  signal: NodeJS.Signals | null;
  ms: number;
  stdout: string;
  stderr: string;
}

/**
 * Spawns a command and resolves when it has exited and its output is closed. The clock starts just
 * before spawn() and stops at 'close', so it includes fork/exec of the command from this node process.
 */
export function timedSpawn(command: string, args: readonly string[], options: SpawnOptions = {}): Promise<SpawnResult> {
  return new Promise((resolve, reject) => {
    const start = nowMs();
    const child = spawn(command, args, { ...options, stdio: ["ignore", "pipe", "pipe"] });
    liveChildren.add(child);
    let stdout = "";
    let stderr = "";
    child.stdout?.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", (error) => {
      liveChildren.delete(child);
      reject(error);
    });
    child.on("close", (code, signal) => {
      const ms = nowMs() - start;
      liveChildren.delete(child);
      resolve({ pid: child.pid, code, signal, ms, stdout, stderr });
    });
  });
}

/** Runs async `fn` over items with at most `limit` in flight; results keep the input order. */
export async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>, shouldStop: () => boolean = () => false): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length && !shouldStop()) {
      const index = next++;
      results[index] = await fn(items[index] as T, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function readOr(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/** A "Name:   123 kB" field of /proc/PID/smaps_rollup or /proc/PID/status, in KiB. */
function kbField(text: string | undefined, field: string): number | undefined {
  const match = text === undefined ? null : new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(text);
  return match ? Number(match[1]) : undefined;
}

/** Proportional set size: private pages plus each shared page divided by the number of its sharers. */
export function pssKiB(pid: number): number | undefined {
  return kbField(readOr(`/proc/${pid}/smaps_rollup`), "Pss");
}

/** Unique set size: pages mapped by this process alone (Private_Clean + Private_Dirty). */
export function ussKiB(pid: number): number | undefined {
  const text = readOr(`/proc/${pid}/smaps_rollup`);
  const clean = kbField(text, "Private_Clean");
  const dirty = kbField(text, "Private_Dirty");
  return clean === undefined || dirty === undefined ? undefined : clean + dirty;
}

export function rssKiB(pid: number): number | undefined {
  return kbField(readOr(`/proc/${pid}/status`), "VmRSS");
}

export function comm(pid: number): string {
  return readOr(`/proc/${pid}/comm`)?.trim() ?? "?";
}

/** Direct children of pid, from /proc/PID/task/TID/children (every thread of it). */
export function childrenOf(pid: number): number[] {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  return tasks.flatMap((tid) =>
    (readOr(`/proc/${pid}/task/${tid}/children`) ?? "")
      .split(/\s+/)
      .filter(Boolean)
      .map(Number),
  );
}

/** pid and all its descendants, parents before children. */
export function processTree(pid: number): number[] {
  const out: number[] = [];
  const visit = (p: number, depth: number): void => {
    out.push(p);
    if (depth < 64) for (const c of childrenOf(p)) visit(c, depth + 1);
  };
  visit(pid, 0);
  return out;
}

export interface ProcMemory {
  pid: number;
  comm: string;
  pssKiB: number;
  ussKiB: number;
  rssKiB: number;
}

/** PSS, USS and RSS of pid and every descendant (a process that vanished while being read counts 0). */
export function treeMemory(pid: number): ProcMemory[] {
  return processTree(pid).map((p) => ({ pid: p, comm: comm(p), pssKiB: pssKiB(p) ?? 0, ussKiB: ussKiB(p) ?? 0, rssKiB: rssKiB(p) ?? 0 }));
}

/**
 * Memory charged to a cloister's memory cgroup, in KiB: user pages plus the kernel memory (page
 * tables, namespaces, mounts, sockets…) its processes allocated after joining it. cgroup v2:
 * memory.current; v1: memory.usage_in_bytes of the dir under the memory hierarchy. undefined if the
 * cloister has no memory cgroup (rlimit fallback).
 */
export function cgroupMemoryKiB(cgroupDirs: readonly string[]): number | undefined {
  for (const dir of cgroupDirs) {
    const bytes = readOr(`${dir}/memory.current`) ?? (dir.includes("/memory/") ? readOr(`${dir}/memory.usage_in_bytes`) : undefined);
    if (bytes !== undefined && /^\d+\s*$/.test(bytes)) return Number(bytes) / 1024;
  }
  return undefined;
}

/** MemAvailable from /proc/meminfo, in KiB. */
export function memAvailableKiB(): number {
  return kbField(readOr("/proc/meminfo"), "MemAvailable") ?? Number.NaN;
}

/** Field 22 of /proc/PID/stat (start time): tells a live process from a reused pid. */
export function startTime(pid: number): string | undefined {
  const stat = readOr(`/proc/${pid}/stat`);
  return stat?.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
}

/** The process runs (or sleeps): it exists, is not a zombie, and is still the one started at `start`. */
export function isAlive(pid: number, start: string | undefined): boolean {
  const stat = readOr(`/proc/${pid}/stat`);
  if (stat === undefined) return false;
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return fields[0] !== "Z" && fields[0] !== "X" && (start === undefined || fields[19] === start);
}

/** CPU time of every thread of pid so far, in ms (ns on a CPU, from each /proc/PID/task/TID/schedstat). */
export function cpuMs(pid: number): number {
  let ns = 0;
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return Number.NaN;
  }
  for (const tid of tasks) ns += Number(readOr(`/proc/${pid}/task/${tid}/schedstat`)?.split(" ")[0] ?? 0);
  return ns / 1e6;
}

/** The 1-, 5- and 15-minute load averages, as /proc/loadavg prints them. */
export function loadAverage(): string {
  return readOr("/proc/loadavg")?.split(" ").slice(0, 3).join(" ") ?? "?";
}

/** srt leaves its mux socket, $TMPDIR/srt-mux-<its pid>-<n>.sock, behind on every run: remove it. */
export function removeSrtSockets(pid: number | undefined): void {
  if (pid === undefined) return;
  const dir = tmpdir();
  const prefix = `srt-mux-${pid}-`;
  for (const file of readdirSync(dir)) if (file.startsWith(prefix) && file.endsWith(".sock")) rmSync(join(dir, file), { force: true });
}

export function fdCount(pid: number | "self" = "self"): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return Number.NaN;
  }
}

// ---- formatting and output ----

export function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

export function heading(title: string): void {
  print("");
  print(title);
}

export function lastLines(text: string, n = 3): string {
  return text.trim().split("\n").slice(-n).join(" | ") || "(no output)";
}

export const fmtMs = (ms: number): string => (Number.isFinite(ms) ? (ms >= 100 ? ms.toFixed(0) : ms.toFixed(1)) : "-");
export const fmtRatio = (r: number): string => (Number.isFinite(r) ? (r >= 10 ? `${r.toFixed(0)}x` : `${r.toFixed(2)}x`) : "-");
export const fmtKiB = (kib: number): string => (Number.isFinite(kib) ? `${Math.round(kib).toLocaleString("en-US")} KiB` : "-");
export const fmtMiB = (kib: number): string => (Number.isFinite(kib) ? `${(kib / 1024).toFixed(1)} MiB` : "-");

/** A plain-text table: first row is the header; numbers-looking cells are right-aligned. */
export function table(rows: readonly (readonly string[])[], indent = "  "): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  const numeric = /^[-+~≤<>]?[\d.,]+( ?(µs|ms|s|x|%|KiB|MiB|GiB|MiB\/s))?$/;
  const line = (row: readonly string[]): string =>
    indent +
    row
      .map((cell, i) => {
        const w = widths[i] ?? 0;
        return i > 0 && numeric.test(cell) ? cell.padStart(w) : cell.padEnd(w);
      })
      .join("  ")
      .trimEnd();
  const [head, ...body] = rows;
  if (!head) return "";
  return [line(head), indent + widths.map((w) => "-".repeat(w)).join("  "), ...body.map(line)].join("\n");
}
