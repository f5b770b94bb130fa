/**
 * The host's view of processes, for "nothing outlives ..." checks: a cloister's host processes are
 * its keeper and every descendant, each identified by pid and start time (pids get reused).
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";

export interface HostProc {
  pid: number;
  start: string;
  /** Command line, when known. */
  cmd?: string;
}

export function readOr(path: string, fallback = ""): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return fallback;
  }
}

/** pid → (ppid, start time, state, nice value) for every process on the host, from /proc/PID/stat. */
export function hostProcessTable(): Map<number, { ppid: number; start: string; state: string; nice: string }> {
  const table = new Map<number, { ppid: number; start: string; state: string; nice: string }>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readOr(`/proc/${entry}/stat`);
    if (!stat) continue;
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    table.set(Number(entry), { state: fields[0] ?? "?", ppid: Number(fields[1]), start: fields[19] ?? "", nice: fields[16] ?? "" });
  }
  return table;
}

/** The process and all its descendants (host pids), with start times and command lines. */
export function hostTree(rootPid: number): HostProc[] {
  const table = hostProcessTable();
  const children = new Map<number, number[]>();
  for (const [pid, info] of table) children.set(info.ppid, [...(children.get(info.ppid) ?? []), pid]);
  const found: HostProc[] = [];
  const todo = [rootPid];
  while (todo.length > 0) {
    const pid = todo.pop() as number;
    const info = table.get(pid);
    if (!info) continue;
    found.push({ pid, start: info.start, cmd: commandLine(pid) });
    todo.push(...(children.get(pid) ?? []));
  }
  return found;
}

/** Those of `procs` still alive on the host (same pid and start time, not a zombie). */
export function survivors(procs: readonly HostProc[]): HostProc[] {
  const table = hostProcessTable();
  return procs.filter((p) => {
    const now = table.get(p.pid);
    return now !== undefined && now.start === p.start && now.state !== "Z";
  });
}

export function isAlive(pid: number): boolean {
  const info = hostProcessTable().get(pid);
  return info !== undefined && info.state !== "Z";
}

/** Asserts that none of `procs` survives; the kernel gets a moment to tear a PID namespace down. */
export async function waitGone(procs: readonly HostProc[], context: string): Promise<void> {
  for (const deadline = Date.now() + 10_000; Date.now() < deadline && survivors(procs).length > 0; ) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.deepEqual(survivors(procs), [], `host processes outlived ${context}`);
}

/** Host processes whose command line contains `text` (e.g. an instance's runtime dir), as "pid cmdline". */
export function hostProcessesNaming(text: string): string[] {
  const found: string[] = [];
  for (const [pid, info] of hostProcessTable()) {
    if (info.state === "Z") continue;
    const cmd = commandLine(pid);
    if (cmd.includes(text)) found.push(`${pid} ${cmd}`);
  }
  return found.sort();
}

/** A process's arguments joined by spaces ("" once it is gone). */
export function commandLine(pid: number): string {
  return readOr(`/proc/${pid}/cmdline`).split("\0").join(" ").trim();
}
