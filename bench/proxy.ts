/**
 * The `proxy` section of `npm run bench`: the egress path as a program inside a cloister sees it,
 * against the same program on the host (direct, the baseline) and under srt (its proxy), all in
 * the same run. See docs/benchmarks.md, section 5, for the method and what each row means.
 *
 * The client (bench/proxy-client.ts, bundled into the bench's project) does the timing itself;
 * the servers (bench/proxy-servers.ts) live in this process. Everything this section starts is
 * stopped in `finally`: the servers, its cloister, and the instance's config.yaml is put back.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import { PassThrough, Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { buildSync } from "esbuild";
import { parseDocument } from "yaml";
import type { Cloister, CloisterOptions } from "../dist/index.js";
import {
  cpuMs,
  fdCount,
  fmtKiB,
  fmtMiB,
  fmtRatio,
  heading,
  lastLines,
  liveChildren,
  loadAverage,
  nowMs,
  percentile,
  print,
  processTree,
  removeSrtSockets,
  rssKiB,
  sleep,
  table,
  treeMemory,
} from "./measure.js";
import type { HoldDone, HoldOpen, Job, LatencyResult, TransferResult } from "./proxy-client.js";
import { startBlob, startEcho, startSmallHttp, type LoopbackServer } from "./proxy-servers.js";

/** What bench/run.ts lends this section: the instance, and its tracked way of creating cloisters. */
export interface ProxyBenchHost {
  project: string;
  home: string;
  cli: string;
  env: NodeJS.ProcessEnv;
  /** srt's CLI script (a node script), or a path that does not exist. */
  srtCli: string;
  createCloister(options: CloisterOptions): Promise<Cloister>;
  guardianPid(): number | undefined;
  checkAbort(): void;
}

export interface ProxyOptions {
  /** Small requests per kept-alive row; new-connection rows do a quarter of it. */
  requests: number;
  /** Size of each download and upload, MiB. */
  mib: number;
  /** CONNECT tunnels held at once. */
  tunnels: number;
}

const TARGET_ADDED_VS_SRT = 1 / 3;
const TARGET_ADDED_US = 1000;
const TARGET_THROUGHPUT = 0.8;
const ROUNDS = 4;
const TRANSFER_ROUNDS = 3;
const WARMUP = 100;
/**
 * Untimed requests of each cloister row's kind before 5a's rounds. The guardian is a daemon that
 * runs for a whole session, and its first few thousand requests run before V8 has optimized its
 * code: by hand, a fresh guardian's first 2,000 kept-alive plain-HTTP requests had a p50 of 378
 * µs, the third 2,000 225 µs, and later ones 190–235 µs. srt starts its proxy with each command, so
 * each of its runs is as cold as its first: that is how it is used, and the per-run WARMUP applies
 * to both.
 */
const GUARDIAN_WARMUP = 5000;
const MAX_CONNECTIONS = 6000;
/** The name the cloister's client uses for the host's loopback servers (a --resolve override). */
const ORIGIN = "bench-origin.test";
const CLIENT_FILE = ".bench-proxy-client.mjs";
const CLIENT_SOURCE = fileURLToPath(new URL("./proxy-client.ts", import.meta.url));
/** Where the project is inside a cloister (src/sandbox/bwrap/mounts.ts WORK_DIR). */
const WORK_DIR = "/work";
const JOB_TIMEOUT_MS = 240_000;

type Where = "direct" | "cloister" | "srt";

interface Setup {
  host: ProxyBenchHost;
  http: LoopbackServer;
  blob: LoopbackServer;
  echo: LoopbackServer;
  clientPath: string;
  srtSettings: string;
  cloister?: Cloister;
  /** The cloister's bridge when it is one long-lived process (cloister-init relay): its CPU time is measured. */
  relayPid?: number;
  /** Why srt cannot run here: set when srt itself fails (not the client in it) before it ever worked. */
  srtUnavailable?: string;
  srtWorked: boolean;
}

// ---------------------------------------------------------------------------------------------------
// Running one client job in one place

interface JobRun {
  /** The next line the client prints. */
  line(): Promise<string>;
  send(text: string): void;
  /** Every line printed, once the client has exited; rejects if it failed. */
  done: Promise<string[]>;
}

/** Splits a byte stream into lines and hands them out in order, to waiting readers or later ones. */
class LineQueue {
  private partial = "";
  private readonly lines: string[] = [];
  readonly all: string[] = [];
  private waiters: { resolve: (line: string) => void; reject: (error: Error) => void }[] = [];
  private ended: Error | undefined;

  push(chunk: string): void {
    this.partial += chunk;
    let nl = this.partial.indexOf("\n");
    while (nl >= 0) {
      const line = this.partial.slice(0, nl);
      this.partial = this.partial.slice(nl + 1);
      this.all.push(line);
      const waiter = this.waiters.shift();
      if (waiter) waiter.resolve(line);
      else this.lines.push(line);
      nl = this.partial.indexOf("\n");
    }
  }

  end(error: Error): void {
    this.ended = error;
    for (const waiter of this.waiters.splice(0)) waiter.reject(error);
  }

  next(): Promise<string> {
    const line = this.lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (this.ended) return Promise.reject(this.ended);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }
}

function encodeJob(job: Job): string {
  return Buffer.from(JSON.stringify(job)).toString("base64url");
}

function startJob(setup: Setup, where: Where, job: Job): JobRun {
  const out = new LineQueue();
  let stderr = "";
  const arg = encodeJob(job);
  if (where === "cloister") {
    const cloister = setup.cloister;
    if (!cloister) throw new Error("no cloister");
    const stdin = new PassThrough();
    const session = cloister.exec([nodeInside(), `${WORK_DIR}/${CLIENT_FILE}`, arg], {
      stdin,
      stdout: sink((chunk) => out.push(chunk)),
      stderr: sink((chunk) => (stderr += chunk)),
    });
    const timer = setTimeout(() => session.signal("SIGKILL"), JOB_TIMEOUT_MS);
    const done = session.done.then(
      ({ exitCode }) => {
        clearTimeout(timer);
        stdin.end();
        out.end(new Error(`client exited ${exitCode}: ${lastLines(stderr)}`));
        if (exitCode !== 0) throw new Error(`client in the cloister exited ${exitCode}: ${lastLines(stderr || out.all.join("\n"))}`);
        return out.all;
      },
      (error: unknown) => {
        clearTimeout(timer);
        out.end(error instanceof Error ? error : new Error(String(error)));
        throw error;
      },
    );
    return { line: () => out.next(), send: (text) => void (stdin.writableEnded || stdin.write(text)), done };
  }
  const argv = where === "direct" ? [setup.clientPath, arg] : [setup.host.srtCli, "--settings", setup.srtSettings, process.execPath, setup.clientPath, arg];
  const child = spawn(process.execPath, argv, { cwd: setup.host.project, env: where === "direct" ? directEnv() : process.env, stdio: ["pipe", "pipe", "pipe"] });
  liveChildren.add(child);
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => out.push(chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  child.stdin.on("error", () => undefined); // a client that exits early closes its stdin
  const timer = setTimeout(() => child.kill("SIGKILL"), JOB_TIMEOUT_MS);
  const done = new Promise<string[]>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      liveChildren.delete(child);
      if (where === "srt") removeSrtSockets(child.pid);
      out.end(new Error(`client exited ${code ?? signal}: ${lastLines(stderr)}`));
      if (code === 0) resolve(out.all);
      else reject(new Error(`${where === "srt" ? "srt" : "client"} exited ${code ?? signal}: ${lastLines(stderr || out.all.join("\n"))}`));
    });
  });
  return { line: () => out.next(), send: (text) => void (child.stdin.writableEnded || child.stdin.destroyed || child.stdin.write(text)), done };
}

export function sink(onText: (text: string) => void): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      onText(chunk.toString("utf8"));
      callback();
    },
  });
}

/** node as the cloister sees it: /usr is the host's, so this node is there too. */
export function nodeInside(): string {
  return process.execPath.startsWith("/usr/") ? process.execPath : "node";
}

/** The host's environment without proxy variables: the direct client must not use one. */
function directEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of Object.keys(env)) if (/^(http|https|all|no)_proxy$/i.test(name)) delete env[name];
  return env;
}

/**
 * Runs a job to its end and returns its last line as JSON. When srt fails to run at all (no
 * ripgrep, no bwrap namespaces…) before it has ever worked, every later srt job is skipped with
 * that reason; a client that fails inside a working srt is an ordinary failed run.
 */
async function runMeasured<T>(setup: Setup, where: Where, job: Job): Promise<T> {
  try {
    const result = await runJob<T>(setup, where, job);
    if (where === "srt") setup.srtWorked = true;
    return result;
  } catch (error) {
    const text = error instanceof Error ? error.message : String(error);
    if (where === "srt" && !setup.srtWorked && !text.includes("proxy client:")) setup.srtUnavailable ??= text;
    throw error;
  }
}

/** Runs a job to its end and returns its last line as JSON. */
async function runJob<T>(setup: Setup, where: Where, job: Job): Promise<T> {
  const lines = await startJob(setup, where, job).done;
  const last = lines.filter((l) => l.trim() !== "").pop();
  if (last === undefined) throw new Error(`the client in ${where} printed nothing`);
  return JSON.parse(last) as T;
}

// ---------------------------------------------------------------------------------------------------
// Set-up and clean-up

/** Bundles the client into the project, where the host, srt and the cloister (as /work) all see it. */
function bundleClient(project: string): string {
  const outfile = join(project, CLIENT_FILE);
  buildSync({ entryPoints: [CLIENT_SOURCE], bundle: true, platform: "node", format: "esm", target: "node20", outfile, logLevel: "error" });
  return outfile;
}

/** Sets one key in the instance's config.yaml and reloads the guardian; returns how to put it back. */
export function setConfigValues(host: Pick<ProxyBenchHost, "home" | "cli" | "env">, values: ReadonlyArray<readonly [key: readonly string[], value: unknown]>): () => void {
  const file = join(host.home, "config", "config.yaml");
  const before = existsSync(file) ? readFileSync(file, "utf8") : undefined;
  const doc = parseDocument(before ?? "");
  for (const [key, value] of values) doc.setIn(key, value);
  writeFileSync(file, doc.toString(), { mode: 0o600 });
  reloadGuardian(host);
  return () => {
    if (before === undefined) rmSync(file, { force: true });
    else writeFileSync(file, before, { mode: 0o600 });
    reloadGuardian(host);
  };
}

/**
 * The audit pacing lifted (src/guardian/proxy/record-pace.ts): the proxy and broker sections send
 * tens of thousands of requests from one cloister, far past the default 50 records a second,
 * and measure the proxy's own work, not the pace a flooding cloister is held to.
 */
export const UNPACED: ReadonlyArray<readonly [string[], number]> = [
  [["proxy", "audit_rate"], 1_000_000],
  [["proxy", "audit_burst"], 10_000_000],
];

function reloadGuardian(host: Pick<ProxyBenchHost, "cli" | "env">): void {
  const r = spawnSyncNode(host, ["guardian", "reload"]);
  if (r.status !== 0) throw new Error(`cloister guardian reload failed: ${lastLines(r.stderr)}`);
}

function spawnSyncNode(host: Pick<ProxyBenchHost, "cli" | "env">, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [host.cli, ...args], { env: host.env, encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * Which program bridges 127.0.0.1:3128 inside the cloister to the guardian's socket: socat (one
 * forked process per connection) or `cloister-init relay` (one epoll process). It starts just after
 * the cloister does, so look for a few seconds.
 */
async function describeBridge(cloister: Cloister): Promise<{ text: string; relayPid?: number }> {
  const keeper = cloister.record.keeperPid;
  if (keeper === undefined) return { text: "unknown (no keeper pid)" };
  for (let tries = 0; tries < 50; tries++) {
    for (const pid of processTree(keeper)) {
      const argv = argvOf(pid);
      if (bridgeKind(argv) === "socat") return { text: "socat (TCP-LISTEN:3128,fork: one forked socat process per connection)" };
      if (bridgeKind(argv) === "relay") return { text: `cloister-init relay (\`${argv.slice(0, 4).join(" ")}\`: one epoll process for all connections)`, relayPid: pid };
    }
    await sleep(100);
  }
  return { text: "not found among the cloister's processes (neither socat nor cloister-init relay)" };
}

/**
 * Whether the guardian took the cloister's listening socket from the bridge (listener hand-over),
 * so that connections skip the bridge. The bridge offers it as it starts; look for a few seconds.
 */
async function describeHandover(host: Pick<ProxyBenchHost, "cli" | "env">): Promise<string> {
  for (let tries = 0; tries < 50; tries++) {
    const r = spawnSyncNode(host, ["guardian", "status", "--json"]);
    const status = JSON.parse(r.stdout || "{}") as { directListeners?: number };
    if ((status.directListeners ?? 0) > 0) return "the guardian accepts on it directly (the bridge handed its listener over and stands by)";
    await sleep(100);
  }
  return "the bridge relays every connection (the guardian did not take its listener)";
}

/** A bridge process by its argv: socat's listener or one of its forks, or cloister-init's relay (mounted as /run/cloister/init). */
function bridgeKind(argv: readonly string[]): "socat" | "relay" | undefined {
  const program = argv[0] ?? "";
  if (program.endsWith("socat") && argv.some((a) => a.startsWith("TCP-LISTEN:3128"))) return "socat";
  if (/(^|\/)(cloister-)?init$/.test(program) && argv[1] === "relay") return "relay";
  return undefined;
}

function argvOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  } catch {
    return [];
  }
}

// ---------------------------------------------------------------------------------------------------
// Statistics and formatting

interface LatencyRow {
  label: string;
  where: Where;
  kind: "keepalive" | "newconn";
  via: "direct" | "http" | "connect";
  samples: number[];
  errors: string[];
  unavailable?: string;
  /** Guardian CPU time spent during this row's runs (cloister rows), and requests made in them. */
  guardianCpuMs: number;
  relayCpuMs: number;
  requests: number;
}

interface Pct {
  p50: number;
  p90: number;
  p99: number;
  n: number;
}

function pct(samples: readonly number[]): Pct {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99), n: sorted.length };
}

interface CpuSample {
  guardian: number;
  relay: number;
}

function cpuSample(guardianPid: number | undefined, relayPid: number | undefined): CpuSample {
  return { guardian: guardianPid === undefined ? Number.NaN : cpuMs(guardianPid), relay: relayPid === undefined ? Number.NaN : cpuMs(relayPid) };
}

function cpuSince(before: CpuSample, guardianPid: number | undefined, relayPid: number | undefined): CpuSample {
  const now = cpuSample(guardianPid, relayPid);
  return { guardian: now.guardian - before.guardian, relay: now.relay - before.relay };
}

const fmtUs = (us: number): string => (!Number.isFinite(us) ? "-" : Math.abs(us) >= 10_000 ? `${(us / 1000).toFixed(1)} ms` : `${Math.round(us)} µs`);
const signedUs = (us: number): string => (Number.isFinite(us) ? `${us >= 0 ? "+" : "-"}${fmtUs(Math.abs(us))}` : "-");
const fmtRate = (mibs: number): string => (Number.isFinite(mibs) ? `${mibs.toFixed(0)} MiB/s` : "-");
const verdict = (met: boolean): string => (met ? "MET" : "NOT MET");

// ---------------------------------------------------------------------------------------------------
// 5a. Small requests

/**
 * Runs each cloister row's job once before the rounds, so that they measure a guardian in its
 * steady state. What these first requests took is kept: the table's notes print it, so a fresh
 * guardian's numbers stay in view.
 */
async function warmGuardian(setup: Setup, rows: readonly LatencyRow[], job: (r: LatencyRow) => Job): Promise<Map<LatencyRow, number[]>> {
  process.stderr.write(`  … warming the guardian: ${rows.map((r) => r.label).join("; ")}\n`);
  const fresh = new Map<LatencyRow, number[]>();
  for (const r of rows) fresh.set(r, (await runMeasured<LatencyResult>(setup, r.where, job(r))).samples);
  return fresh;
}

async function latencyPart(setup: Setup, options: ProxyOptions): Promise<void> {
  const perRun = Math.max(1, Math.round(options.requests / ROUNDS));
  const newPerRun = Math.max(1, Math.round(options.requests / 4 / ROUNDS));
  const http = setup.http.port;
  heading(
    `  5a. Small requests: ${perRun * ROUNDS} per kept-alive row, ${newPerRun * ROUNDS} per new-connection row (${ROUNDS} runs of the client per row, interleaved; each run starts with up to ${WARMUP} untimed requests; the guardian is warmed first with ${GUARDIAN_WARMUP} untimed requests per kept-alive row and ${GUARDIAN_WARMUP / 5} per new-connection row, as a daemon that has been serving for a while)`,
  );
  const rows: LatencyRow[] = [];
  const row = (label: string, where: Where, kind: LatencyRow["kind"], via: LatencyRow["via"]): LatencyRow => {
    const r: LatencyRow = { label, where, kind, via, samples: [], errors: [], guardianCpuMs: 0, relayCpuMs: 0, requests: 0 };
    rows.push(r);
    return r;
  };
  const keepRows = [
    row("direct (host), kept-alive connection", "direct", "keepalive", "direct"),
    row("cloister, HTTP_PROXY (absolute-form)", "cloister", "keepalive", "http"),
    row("cloister, one CONNECT tunnel", "cloister", "keepalive", "connect"),
    row("srt, HTTP_PROXY (absolute-form)", "srt", "keepalive", "http"),
    row("srt, one CONNECT tunnel", "srt", "keepalive", "connect"),
  ];
  const newRows = [
    row("direct (host): connect + GET", "direct", "newconn", "direct"),
    row("cloister: connect + absolute-form GET", "cloister", "newconn", "http"),
    row("cloister: connect + CONNECT + GET", "cloister", "newconn", "connect"),
    row("srt: connect + absolute-form GET", "srt", "newconn", "http"),
    row("srt: connect + CONNECT + GET", "srt", "newconn", "connect"),
  ];
  const jobFor = (r: LatencyRow, count: number, warmup: number): Job => ({
    kind: r.kind,
    via: r.via,
    host: r.where === "cloister" ? ORIGIN : "127.0.0.1",
    port: http,
    count,
    warmup,
  });
  const fresh = await warmGuardian(setup, rows.filter((r) => r.where === "cloister"), (r) => jobFor(r, r.kind === "keepalive" ? GUARDIAN_WARMUP : GUARDIAN_WARMUP / 5, 0));
  const gpid = setup.host.guardianPid();
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < rows.length; k++) {
      setup.host.checkAbort();
      const r = rows[(round + k) % rows.length] as LatencyRow;
      if (r.unavailable !== undefined) continue;
      if (r.where === "srt" && setup.srtUnavailable !== undefined) {
        r.unavailable = setup.srtUnavailable;
        continue;
      }
      const count = r.kind === "keepalive" ? perRun : newPerRun;
      const warmup = r.kind === "keepalive" ? WARMUP : Math.min(WARMUP, newPerRun);
      const cpuBefore = cpuSample(gpid, setup.relayPid);
      try {
        const result = await runMeasured<LatencyResult>(setup, r.where, jobFor(r, count, warmup));
        r.samples.push(...result.samples);
        r.errors.push(...result.errors);
      } catch (error) {
        if (r.where === "srt" && setup.srtUnavailable !== undefined) r.unavailable = setup.srtUnavailable;
        else r.errors.push(`run ${round + 1}: ${error instanceof Error ? error.message : String(error)}`);
      }
      if (r.where === "cloister") {
        const used = cpuSince(cpuBefore, gpid, setup.relayPid);
        r.guardianCpuMs += used.guardian;
        r.relayCpuMs += used.relay;
        r.requests += count + warmup;
      }
    }
  }
  const direct = { keepalive: pct(keepRows[0]?.samples ?? []), newconn: pct(newRows[0]?.samples ?? []) };
  const table5a: string[][] = [["", "p50", "p90", "p99", "n", "failed", "added p50", "guardian CPU/req", "relay CPU/req"]];
  const notes: string[] = [];
  for (const group of [keepRows, newRows]) {
    if (group === newRows) table5a.push(["new connection per request:", "", "", "", "", "", "", "", ""]);
    for (const r of group) {
      const p = pct(r.samples);
      const base = direct[r.kind];
      const perRequest = (ms: number): string => (r.where === "cloister" && r.requests > 0 ? fmtUs((ms * 1000) / r.requests) : "");
      if (r.unavailable !== undefined || r.samples.length === 0) {
        table5a.push([r.label, "-", "-", "-", "0", String(r.errors.length), "-", "", ""]);
        notes.push(`  ${r.label}: ${r.unavailable !== undefined ? `unavailable: ${r.unavailable}` : `no successful run; first failure: ${r.errors[0] ?? "?"}`}`);
        continue;
      }
      table5a.push([r.label, fmtUs(p.p50), fmtUs(p.p90), fmtUs(p.p99), String(p.n), String(r.errors.length), r.where === "direct" ? "" : signedUs(p.p50 - base.p50), perRequest(r.guardianCpuMs), perRequest(r.relayCpuMs)]);
      if (r.errors[0] !== undefined) notes.push(`  ${r.label}: ${r.errors.length} failure(s); first: ${r.errors[0]}`);
    }
  }
  print(table(table5a));
  for (const note of notes) print(note);
  print("  a fresh guardian (the warm-up, not in the table): " + [...fresh].map(([r, samples]) => `${r.label} p50 ${fmtUs(pct(samples).p50)} over its first ${samples.length}`).join("; "));
  print("");
  print(`  added p50 = row p50 − direct p50 of the same kind; target: cloister's added p50 ≤ ${fmtRatio(TARGET_ADDED_VS_SRT)} of srt's and < ${fmtUs(TARGET_ADDED_US)}`);
  const pairs: [string, LatencyRow | undefined, LatencyRow | undefined, Pct][] = [
    ["kept-alive, plain HTTP (absolute-form)", keepRows[1], keepRows[3], direct.keepalive],
    ["kept-alive, CONNECT tunnel", keepRows[2], keepRows[4], direct.keepalive],
    ["new connection, plain HTTP", newRows[1], newRows[3], direct.newconn],
    ["new connection, CONNECT", newRows[2], newRows[4], direct.newconn],
  ];
  for (const [label, ours, theirs, base] of pairs) {
    if (!ours || ours.unavailable !== undefined || ours.samples.length === 0) {
      print(`  ${label.padEnd(40)} n/a (the cloister row has no result)`);
      continue;
    }
    const addedOurs = pct(ours.samples).p50 - base.p50;
    const under = addedOurs < TARGET_ADDED_US;
    if (!theirs || theirs.unavailable !== undefined || theirs.samples.length === 0) {
      print(`  ${label.padEnd(40)} cloister ${signedUs(addedOurs).padStart(9)}, srt n/a   TARGET not measurable without srt (< 1 ms: ${verdict(under)})`);
      continue;
    }
    const addedTheirs = pct(theirs.samples).p50 - base.p50;
    const ratio = addedOurs / addedTheirs;
    const vsSrt = addedTheirs > 0 && ratio <= TARGET_ADDED_VS_SRT;
    print(
      `  ${label.padEnd(40)} cloister ${signedUs(addedOurs).padStart(9)}, srt ${signedUs(addedTheirs).padStart(9)}, ours/srt ${fmtRatio(ratio).padStart(6)}   TARGET ${verdict(vsSrt && under)} (≤ 1/3 of srt's: ${verdict(vsSrt)}; < 1 ms: ${verdict(under)})`,
    );
  }
  print("  CPU/req: CPU time (user + kernel, all threads: /proc/PID/task/TID/schedstat) of the guardian and of the cloister's relay process during the");
  print("  cloister row's runs, divided by the requests made in them (warm-up included); '-' when the bridge is socat (a process per connection)");
}

// ---------------------------------------------------------------------------------------------------
// 5b. Throughput

/** Where a transfer runs; "relay" is the host client through a bare socat relay (see startBareRelay). */
type TransferWhere = Where | "relay";

interface TransferRow {
  label: string;
  where: TransferWhere;
  kind: "download" | "upload";
  mibs: number[];
  errors: string[];
  unavailable?: string;
  guardianBusy: number[];
  relayBusy: number[];
}

async function throughputPart(setup: Setup, options: ProxyOptions): Promise<void> {
  const bytes = options.mib * 1024 * 1024;
  const size = options.mib % 1024 === 0 ? `${options.mib / 1024} GiB` : `${options.mib} MiB`;
  heading(`  5b. Throughput: ${size} per transfer over one connection, ${TRANSFER_ROUNDS} runs per row, interleaved (the cloister and srt through a CONNECT tunnel)`);
  const rows: TransferRow[] = [];
  const label = (where: TransferWhere): string => (where === "direct" ? "direct (host)" : where === "relay" ? "socat relay (host, no proxy)" : `${where}, CONNECT`);
  for (const kind of ["download", "upload"] as const) {
    for (const where of ["direct", "relay", "cloister", "srt"] as const) {
      rows.push({ label: `${kind}: ${label(where)}`, where, kind, mibs: [], errors: [], guardianBusy: [], relayBusy: [] });
    }
  }
  const relay = await startBareRelay(setup.blob.port);
  try {
    await transferRounds(setup, rows, bytes, relay.port);
  } finally {
    relay.stop();
  }
  printTransfers(rows);
}

/** The transfers of every row, interleaved round by round. */
async function transferRounds(setup: Setup, rows: TransferRow[], bytes: number, relayPort: number): Promise<void> {
  const gpid = setup.host.guardianPid();
  for (let round = 0; round < TRANSFER_ROUNDS; round++) {
    for (let k = 0; k < rows.length; k++) {
      setup.host.checkAbort();
      const r = rows[(round + k) % rows.length] as TransferRow;
      if (r.unavailable !== undefined) continue;
      if (r.where === "srt" && setup.srtUnavailable !== undefined) {
        r.unavailable = setup.srtUnavailable;
        continue;
      }
      const where = r.where === "relay" ? "direct" : r.where;
      const port = r.where === "relay" ? relayPort : setup.blob.port;
      const job: Job = { kind: r.kind, via: where === "direct" ? "direct" : "connect", host: where === "cloister" ? ORIGIN : "127.0.0.1", port, bytes };
      const cpuBefore = cpuSample(gpid, setup.relayPid);
      try {
        const result = await runMeasured<TransferResult>(setup, where, job);
        r.mibs.push(result.bytes / (1024 * 1024) / (result.ms / 1000));
        if (r.where === "cloister") {
          // The client's process start-up is outside result.ms but inside the CPU sample: neither the
          // guardian nor the relay does anything during it.
          const used = cpuSince(cpuBefore, gpid, setup.relayPid);
          r.guardianBusy.push(used.guardian / result.ms);
          r.relayBusy.push(used.relay / result.ms);
        }
      } catch (error) {
        if (r.where === "srt" && setup.srtUnavailable !== undefined) r.unavailable = setup.srtUnavailable;
        else r.errors.push(`run ${round + 1}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  }
}

function printTransfers(rows: readonly TransferRow[]): void {
  const median = (values: number[]): number => percentile([...values].sort((a, b) => a - b), 50);
  const lines: string[][] = [["", "median", "best", "runs", "failed", "guardian CPU busy", "relay CPU busy"]];
  const notes: string[] = [];
  for (const r of rows) {
    if (r.unavailable !== undefined || r.mibs.length === 0) {
      lines.push([r.label, "-", "-", "0", String(r.errors.length), "", ""]);
      notes.push(`  ${r.label}: ${r.unavailable !== undefined ? `unavailable: ${r.unavailable}` : `no successful run; first failure: ${r.errors[0] ?? "?"}`}`);
      continue;
    }
    const busy = (values: number[]): string => (values.length && values.every(Number.isFinite) ? `${(median(values) * 100).toFixed(0)}%` : r.where === "cloister" ? "-" : "");
    lines.push([r.label, fmtRate(median(r.mibs)), fmtRate(Math.max(...r.mibs)), String(r.mibs.length), String(r.errors.length), busy(r.guardianBusy), busy(r.relayBusy)]);
    if (r.errors[0] !== undefined) notes.push(`  ${r.label}: ${r.errors.length} failure(s); first: ${r.errors[0]}`);
  }
  print(table(lines));
  for (const note of notes) print(note);
  print("");
  const find = (kind: TransferRow["kind"], where: TransferWhere): TransferRow | undefined => rows.find((r) => r.kind === kind && r.where === where);
  for (const kind of ["download", "upload"] as const) {
    const base = find(kind, "direct");
    for (const where of ["relay", "cloister", "srt"] as const) {
      const r = find(kind, where);
      if (!base?.mibs.length || !r?.mibs.length) {
        print(`  ${`${where} / direct, ${kind}`.padEnd(28)} n/a`);
        continue;
      }
      const ratio = median(r.mibs) / median(base.mibs);
      const target = where === "cloister" && kind === "download" ? `   TARGET ≥ ${TARGET_THROUGHPUT}: ${verdict(ratio >= TARGET_THROUGHPUT)}` : "";
      print(`  ${`${where} / direct, ${kind}`.padEnd(28)} ${fmtRatio(ratio).padStart(6)} (medians)${target}`);
    }
  }
  print("  CPU busy: the process's CPU time (user + kernel) during the run / the transfer's wall time (100% = one core busy all along)");
  print("  socat relay: one process copying between two loopback sockets, deciding nothing; what any proxy that relays the bytes can reach on this host");
}

/**
 * A bare relay on the host to the blob server: socat (a Debian package cloister already uses),
 * forking per connection, with 64 KiB buffers. It measures the cost of the extra hop alone.
 */
async function startBareRelay(targetPort: number): Promise<{ port: number; stop: () => void }> {
  const port = await freePort();
  const child = spawn("socat", ["-b", "65536", `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, `TCP:127.0.0.1:${targetPort}`], { stdio: "ignore" });
  const stop = (): void => {
    child.kill("SIGKILL");
  };
  for (let waited = 0; waited < 5_000; waited += 20) {
    if (await canConnect(port)) return { port, stop };
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  stop();
  throw new Error("socat did not start listening (is it installed?)");
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

// ---------------------------------------------------------------------------------------------------
// 5c. Many tunnels at once

interface HoldResult {
  open?: HoldOpen;
  done?: HoldDone;
  error?: string;
  guardianRss: { before: number; with: number; after: number };
  guardianFds: number;
  processes: number;
  treePssKiB: number;
  bridgeProcesses: number;
  bridgePssKiB: number;
  clientPssKiB: number;
  benchFds: number;
  echoOpen: number;
}

async function holdOne(setup: Setup, where: "direct" | "cloister", count: number): Promise<HoldResult> {
  const gpid = setup.host.guardianPid();
  const rss = (): number => (gpid === undefined ? Number.NaN : (rssKiB(gpid) ?? Number.NaN));
  const result: HoldResult = { guardianRss: { before: rss(), with: Number.NaN, after: Number.NaN }, guardianFds: Number.NaN, processes: Number.NaN, treePssKiB: Number.NaN, bridgeProcesses: Number.NaN, bridgePssKiB: Number.NaN, clientPssKiB: Number.NaN, benchFds: Number.NaN, echoOpen: 0 };
  process.stderr.write(`  … opening ${count} tunnels (${where})\n`);
  const job: Job = { kind: "hold", via: where === "direct" ? "direct" : "connect", host: where === "cloister" ? ORIGIN : "127.0.0.1", port: setup.echo.port, count, window: count };
  const run = startJob(setup, where, job);
  try {
    result.open = JSON.parse(await run.line()) as HoldOpen;
    await sleep(500);
    result.guardianRss.with = rss();
    result.guardianFds = gpid === undefined ? Number.NaN : fdCount(gpid);
    result.echoOpen = setup.echo.open;
    result.benchFds = fdCount();
    const keeper = setup.cloister?.record.keeperPid;
    if (where === "cloister" && keeper !== undefined) {
      const tree = treeMemory(keeper);
      result.processes = tree.length;
      result.treePssKiB = tree.reduce((acc, p) => acc + p.pssKiB, 0);
      const bridge = tree.filter((p) => bridgeKind(argvOf(p.pid)) !== undefined);
      result.bridgeProcesses = bridge.length;
      result.bridgePssKiB = bridge.reduce((acc, p) => acc + p.pssKiB, 0);
      result.clientPssKiB = tree.filter((p) => argvOf(p.pid).some((a) => a.endsWith(CLIENT_FILE))).reduce((acc, p) => acc + p.pssKiB, 0);
    }
    run.send("close\n");
    const lines = await run.done;
    result.done = JSON.parse(lines.filter((l) => l.trim() !== "").pop() ?? "{}") as HoldDone;
  } catch (error) {
    result.error = error instanceof Error ? error.message : String(error);
    run.send("close\n");
    await run.done.catch(() => undefined);
  }
  await sleep(2000);
  result.guardianRss.after = rss();
  return result;
}

async function holdPart(setup: Setup, options: ProxyOptions): Promise<void> {
  heading(
    `  5c. ${options.tunnels} tunnels held at once to a loopback echo server: opened all at once, each echoes a line, held, echoes again, closed` +
      `\n      (proxy.max_connections set to ${MAX_CONNECTIONS} in the bench instance's config.yaml (default 1024), audit pacing lifted (proxy.audit_rate); the cloister runs with pids: none, memory: none)`,
  );
  const direct = await holdOne(setup, "direct", options.tunnels);
  setup.host.checkAbort();
  const ours = await holdOne(setup, "cloister", options.tunnels);
  const results = [direct, ours];
  const col = (f: (r: HoldResult) => string): string[] => results.map(f);
  const lines: string[][] = [["", "direct (host)", "cloister, CONNECT"]];
  const add = (label: string, f: (r: HoldResult) => string): void => void lines.push([label, ...col(f)]);
  const n = options.tunnels;
  add("opened and echoed", (r) => (r.open ? `${r.open.ok}/${n}` : "-"));
  add("failed", (r) => (r.open ? String(r.open.failed) : "-"));
  add("time to open all", (r) => (r.open ? `${(r.open.ms / 1000).toFixed(2)} s` : "-"));
  add("echo again after holding", (r) => (r.done ? `${r.done.recheckOk}/${r.open?.ok ?? n}` : "-"));
  add("time to echo again on all", (r) => (r.done ? `${(r.done.recheckMs / 1000).toFixed(2)} s` : "-"));
  add("time to close all", (r) => (r.done ? `${(r.done.closeMs / 1000).toFixed(2)} s` : "-"));
  add("connections at the echo server (all open)", (r) => String(r.echoOpen));
  add("guardian RSS before", (r) => (r === direct ? "" : fmtMiB(r.guardianRss.before)));
  add("guardian RSS with all open", (r) => (r === direct ? "" : fmtMiB(r.guardianRss.with)));
  add("guardian RSS 2 s after closing", (r) => (r === direct ? "" : fmtMiB(r.guardianRss.after)));
  add("guardian RSS per tunnel", (r) => (r === direct ? "" : fmtKiB((r.guardianRss.with - r.guardianRss.before) / Math.max(1, r.open?.ok ?? 0))));
  add("guardian open fds (all open)", (r) => (r === direct ? "" : String(r.guardianFds)));
  add("processes in the cloister (all open)", (r) => (r === direct ? "" : String(r.processes)));
  add("PSS of the cloister's processes (all open)", (r) => (r === direct ? "" : fmtMiB(r.treePssKiB)));
  add("  of which the bridge (processes)", (r) => (r === direct ? "" : `${fmtMiB(r.bridgePssKiB)} (${r.bridgeProcesses})`));
  add(`  of which the client (node, ${n} sockets)`, (r) => (r === direct ? "" : fmtMiB(r.clientPssKiB)));
  add("bench process open fds (all open)", (r) => String(r.benchFds));
  print(table(lines));
  for (const r of results) {
    const who = r === direct ? "direct" : "cloister";
    if (r.error) print(`  ${who}: ${r.error}`);
    for (const e of [...(r.open?.errors ?? []), ...(r.done?.errors ?? [])].slice(0, 5)) print(`  ${who}: ${e}`);
  }
  const failures = ours.open ? ours.open.failed + (ours.done ? ours.done.recheckFailed - ours.open.failed : 0) : Number.NaN;
  print(`  cloister: ${Number.isFinite(failures) ? failures : "?"} of ${n} tunnels failed to open or to echo   TARGET 0: ${verdict(failures === 0)}`);
}

// ---------------------------------------------------------------------------------------------------
// The section

export async function proxySection(host: ProxyBenchHost, options: ProxyOptions): Promise<void> {
  heading("5. Egress proxy: one client inside a cloister, on the host (direct) and under srt; loopback servers on the host");
  const started = nowMs();
  const load = loadAverage();
  const [http, blob, echo] = await Promise.all([startSmallHttp(), startBlob(), startEcho()]);
  const setup: Setup = { host, http, blob, echo, clientPath: bundleClient(host.project), srtSettings: join(host.home, "srt-settings.json"), srtWorked: false };
  let restoreConfig: (() => void) | undefined;
  try {
    restoreConfig = setConfigValues(host, [[["proxy", "max_connections"], Math.max(MAX_CONNECTIONS, options.tunnels + 100)], ...UNPACED]);
    const ports = [http.port, blob.port, echo.port];
    writeFileSync(
      setup.srtSettings,
      JSON.stringify({ network: { allowedDomains: ports.map((p) => `127.0.0.1:${p}`), deniedDomains: [] }, filesystem: { denyRead: [], allowWrite: [], denyWrite: [] } }),
    );
    if (!existsSync(host.srtCli)) setup.srtUnavailable = `${host.srtCli} is missing (npm install)`;
    setup.cloister = await host.createCloister({
      project: host.project,
      name: "bench-proxy",
      network: true,
      resolve: { [ORIGIN]: "127.0.0.1" },
      allowPrivate: ports.map((p) => `${ORIGIN}:${p}`),
      pids: "none",
      memory: "none",
    });
    const bridge = await describeBridge(setup.cloister);
    setup.relayPid = bridge.relayPid;
    print(`  bridge inside the cloister: ${bridge.text}`);
    print(`  the cloister's port: ${await describeHandover(host)}`);
    print(`  servers on 127.0.0.1 in the bench process: small HTTP :${http.port}, blob :${blob.port}, echo :${echo.port}`);
    print(`  the cloister reaches them as ${ORIGIN} (--resolve ${ORIGIN}=127.0.0.1, --allow-private ${ORIGIN}:PORT); srt as 127.0.0.1:PORT (allowedDomains); direct: 127.0.0.1:PORT`);
    print(`  client: bench/proxy-client.ts bundled to ${CLIENT_FILE}, run by ${process.execPath} in each place; timings in the client, per request (hrtime)`);
    print(`  load average at the start: ${load}`);
    await latencyPart(setup, options);
    host.checkAbort();
    await throughputPart(setup, options);
    host.checkAbort();
    await holdPart(setup, options);
  } finally {
    await setup.cloister?.stop().catch((error: unknown) => print(`  stopping the bench's cloister failed: ${error instanceof Error ? error.message : String(error)}`));
    await Promise.all([http, blob, echo].map((s) => s.close()));
    rmSync(setup.clientPath, { force: true });
    rmSync(setup.srtSettings, { force: true });
    try {
      restoreConfig?.();
    } catch (error) {
      print(`  restoring config.yaml: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  print(`  load average at the end: ${loadAverage()}; section took ${((nowMs() - started) / 1000).toFixed(0)} s`);
}
