/**
 * `npm run bench`: how fast and how small cloister is, as ratios against baselines measured in the
 * same run (never hard-coded numbers). See docs/benchmarks.md for what each row means.
 *
 *   npm run bench                          # CLI, library, idle memory, 100 idle cloisters, egress proxy
 *   npm run bench -- --runs 50             # more samples per timing row
 *   npm run bench -- --scale 1000          # also 1000 concurrent idle cloisters (a few minutes)
 *   npm run bench -- --only cli,lib        # only some sections: cli, lib, mem, scale, proxy
 *   npm run bench -- --only proxy          # the egress proxy: latency, throughput, 5000 tunnels (~2 min)
 *   npm run bench -- --only approvals      # approval latency: held request → UI event, answer → release
 *   npm run bench -- --only broker         # TLS interception with credential injection vs a plain tunnel
 *
 * It measures the built package (dist/ and native/build/), on an isolated instance: CLOISTER_HOME is
 * a fresh directory under /tmp and the project is a throwaway git repository; both are removed, and
 * every cloister and the instance's guardian stopped, when the bench ends or is interrupted.
 */
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, release, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  cgroupMemoryKiB,
  childrenOf,
  fdCount,
  fmtKiB,
  fmtMiB,
  fmtMs,
  fmtRatio,
  heading,
  isAlive,
  lastLines,
  liveChildren,
  memAvailableKiB,
  nowMs,
  pool,
  print,
  pssKiB,
  removeSrtSockets,
  rssKiB,
  sleep,
  startTime,
  summarize,
  table,
  timedSpawn,
  treeMemory,
  type SpawnResult,
  type Summary,
} from "./measure.js";
import { proxySection, type ProxyBenchHost } from "./proxy.js";
import { CLAUDE_PROMPT, startFakeAnthropicApi, timeToPrompt } from "./agent-ready.js";
import { approvalsSection } from "./approvals.js";
import { brokerSection } from "./broker.js";

type Lib = typeof import("../dist/index.js");
type Cloister = import("../dist/index.js").Cloister;

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist", "bundle", "main.cjs");
/** The command a user types (`cloister`): the timed CLI rows run this, as srt's rows run srt's bin. */
const CLI_BIN = join(ROOT, "bin", "cloister");
const DIST_INDEX = join(ROOT, "dist", "index.js");
const INIT_BINARY = join(ROOT, "native", "build", "cloister-init");
const SRT_BIN = join(ROOT, "node_modules", ".bin", "srt");
const SECTIONS = ["cli", "lib", "mem", "scale", "proxy", "approvals", "agent", "broker"] as const;
type Section = (typeof SECTIONS)[number];

const TARGET_CLI_VS_SRT = 0.33;
const TARGET_LIB_VS_BWRAP = 2.5;
const TARGET_IDLE_KIB = 4 * 1024;
const PSS_SAMPLE = 20;
const SETTLE_MS = 1500;

// ---------------------------------------------------------------------------------------------------
// Options

interface Options {
  runs: number;
  scale: number;
  scaleNetwork: boolean;
  concurrency: number;
  proxyRequests: number;
  proxyMib: number;
  proxyTunnels: number;
  approvalRequests: number;
  sections: Set<Section>;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: "string", default: "20" },
      scale: { type: "string", default: "100" },
      "scale-network": { type: "boolean", default: false },
      concurrency: { type: "string", default: "8" },
      "proxy-requests": { type: "string", default: "2000" },
      "proxy-mib": { type: "string", default: "1024" },
      "proxy-tunnels": { type: "string", default: "5000" },
      "approval-requests": { type: "string", default: "100" },
      only: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(
      [
        "usage: npm run bench -- [--runs N] [--scale N] [--scale-network] [--concurrency N] [--proxy-requests N] [--proxy-mib N]",
        "                        [--proxy-tunnels N] [--approval-requests N] [--only cli,lib,mem,scale,proxy,approvals,agent,broker]",
        "  --runs N            timed runs per row in the CLI and library sections (default 20)",
        "  --scale N           concurrent idle cloisters: 100 (default) runs 100 without and 100 with network;",
        "                      a larger N (e.g. 1000) adds N without network, which takes a few minutes",
        "  --scale-network     with --scale N > 100, also N with network",
        "  --concurrency N     cloisters created at once in the scale section (default 8)",
        "  --proxy-requests N  small requests per kept-alive row of the proxy section (default 2000; new-connection rows: N/4)",
        "  --proxy-mib N       MiB per download and per upload in the proxy section (default 1024)",
        "  --proxy-tunnels N   CONNECT tunnels held open at once in the proxy section (default 5000)",
        "  --approval-requests N  held requests answered through the approval UI's API (default 100)",
        "  --only LIST         only these sections (default all: cli,lib,mem,scale,proxy,approvals,agent,broker); --only proxy: the egress proxy alone (~2 min)",
        "                      (agent installs a managed Claude Code from the npm registry into the bench instance when the host has none)",
        "",
      ].join("\n"),
    );
    process.exit(0);
  }
  const positive = (name: string, raw: string | undefined): number => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1) fatal(`--${name} must be a positive whole number, got ${JSON.stringify(raw)}`);
    return n;
  };
  const only = values.only?.split(",").map((s) => s.trim()).filter(Boolean) ?? [...SECTIONS];
  for (const s of only) if (!(SECTIONS as readonly string[]).includes(s)) fatal(`--only: unknown section ${JSON.stringify(s)} (known: ${SECTIONS.join(", ")})`);
  return {
    runs: positive("runs", values.runs),
    scale: positive("scale", values.scale),
    scaleNetwork: values["scale-network"] === true,
    concurrency: positive("concurrency", values.concurrency),
    proxyRequests: positive("proxy-requests", values["proxy-requests"]),
    proxyMib: positive("proxy-mib", values["proxy-mib"]),
    proxyTunnels: positive("proxy-tunnels", values["proxy-tunnels"]),
    approvalRequests: positive("approval-requests", values["approval-requests"]),
    sections: new Set(only as Section[]),
  };
}

function fatal(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------------
// The isolated instance and its cleanup

interface Instance {
  home: string;
  projectParent: string;
  project: string;
  env: NodeJS.ProcessEnv;
  /** Keepers of cloisters this bench created: pid → start time (to tell them from reused pids). */
  keepers: Map<number, string | undefined>;
  guardianPid?: number;
  /** Creations in flight (awaited before cleanup on Ctrl-C). */
  inflight: Set<Promise<unknown>>;
  /** Cgroups the bench made for itself (section 2's migration rows), removed at cleanup. */
  scratchCgroups: Set<string>;
  aborting: boolean;
}

function makeInstance(): Instance {
  // Short paths: unix socket paths (HOME/run/c/ID/guardian/proxy.sock) must stay under 108 bytes.
  const home = mkdtempSync("/tmp/cb-");
  const projectParent = mkdtempSync("/tmp/cbp-");
  const project = join(projectParent, "bench-project");
  mkdirSync(project);
  const git = (...args: string[]): void => {
    const r = spawnSync("git", ["-c", "user.name=bench", "-c", "user.email=bench@localhost", "-c", "init.defaultBranch=main", ...args], { cwd: project, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`git ${args.join(" ")} failed: ${r.stderr}`);
  };
  git("init", "-q");
  git("commit", "-q", "--allow-empty", "-m", "bench");
  // This node first on PATH: both bins (cloister's and srt's) start `node` from PATH.
  const env = { ...process.env, CLOISTER_HOME: home, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ""}` };
  // The approval UI takes any free port: the user's own guardian may hold the default one.
  mkdirSync(join(home, "config"), { recursive: true, mode: 0o700 });
  writeFileSync(join(home, "config", "config.yaml"), "ui:\n  port: 0\n", { mode: 0o600 });
  return { home, projectParent, project, env, keepers: new Map(), inflight: new Set(), scratchCgroups: new Set(), aborting: false };
}

let cleanupPromise: Promise<void> | undefined;

/** Stops everything this bench started and removes its directories; safe to call more than once. */
function cleanup(inst: Instance): Promise<void> {
  cleanupPromise ??= (async () => {
    inst.aborting = true;
    for (const child of liveChildren) child.kill("SIGTERM");
    const inflight = Promise.allSettled([...inst.inflight]);
    await Promise.race([inflight, sleep(15_000)]);
    // Normal path: the guardian stops every cloister of the instance, then itself.
    const stop = spawnSync(process.execPath, [CLI, "guardian", "stop"], { env: inst.env, encoding: "utf8", timeout: 180_000 });
    if (stop.status !== 0) process.stderr.write(`bench cleanup: guardian stop: ${(stop.stderr || stop.error?.message || "").trim()}\n`);
    // Belt and braces: anything of this instance still alive is killed by pid, cgroups of leftover records removed.
    const leftovers = sweepInstanceProcesses(inst);
    if (leftovers > 0) process.stderr.write(`bench cleanup: killed ${leftovers} leftover process(es) of the bench instance\n`);
    removeLeftoverCgroups(inst.home);
    removeScratchCgroups(inst);
    rmSync(inst.home, { recursive: true, force: true });
    rmSync(inst.projectParent, { recursive: true, force: true });
  })();
  return cleanupPromise;
}

function sweepInstanceProcesses(inst: Instance): number {
  let killed = 0;
  const kill = (pid: number): void => {
    try {
      process.kill(pid, "SIGKILL");
      killed++;
    } catch {
      // Gone already.
    }
  };
  for (const [pid, start] of inst.keepers) if (start !== undefined && isAlive(pid, start)) kill(pid);
  // Keepers of this instance carry its (unique, random) CLOISTER_HOME in their command line; the
  // guardian carries it in its environment.
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      if (!isAlive(pid, undefined)) continue;
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(`${inst.home}/`)) kill(pid);
      else if (pid === inst.guardianPid && readFileSync(`/proc/${pid}/environ`, "utf8").includes(`CLOISTER_HOME=${inst.home}\0`)) kill(pid);
    } catch {
      // Not ours to read, or gone.
    }
  }
  return killed;
}

function removeScratchCgroups(inst: Instance): void {
  for (const dir of inst.scratchCgroups) {
    try {
      rmdirSync(dir);
      inst.scratchCgroups.delete(dir);
    } catch {
      // Gone already, or still busy: the bench's processes are killed by then, so not for long.
    }
  }
}

function removeLeftoverCgroups(home: string): void {
  const dir = join(home, "state", "cloisters");
  let files: string[] = [];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith(".json"));
  } catch {
    return;
  }
  for (const file of files) {
    try {
      const record = JSON.parse(readFileSync(join(dir, file), "utf8")) as { cgroupDirs?: unknown };
      for (const cg of Array.isArray(record.cgroupDirs) ? record.cgroupDirs : []) {
        if (typeof cg === "string" && /\/cloister-[0-9a-f]{8}$/.test(cg)) {
          try {
            rmdirSync(cg);
          } catch {
            // Still busy or gone.
          }
        }
      }
    } catch {
      // Unreadable record.
    }
  }
}

function track<T>(inst: Instance, promise: Promise<T>): Promise<T> {
  inst.inflight.add(promise);
  void promise.then(
    () => inst.inflight.delete(promise),
    () => inst.inflight.delete(promise),
  );
  return promise;
}

function rememberKeeper(inst: Instance, cloister: Cloister): void {
  const pid = cloister.record.keeperPid;
  if (pid !== undefined) inst.keepers.set(pid, cloister.record.keeperStartTime ?? startTime(pid));
}

class Aborted extends Error {}
function checkAbort(inst: Instance): void {
  if (inst.aborting) throw new Aborted("interrupted");
}

// ---------------------------------------------------------------------------------------------------
// Commands measured

/** bwrap's minimal sandbox: /usr read-only plus /bin, /lib, /lib64, /sbin as they are on this host. */
function rawBwrapArgs(): string[] {
  const args = ["--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr"];
  for (const dir of ["/bin", "/lib", "/lib64", "/sbin"]) {
    let st;
    try {
      st = lstatSync(dir);
    } catch {
      continue;
    }
    if (st.isSymbolicLink()) args.push("--symlink", readlinkSync(dir), dir);
    else if (st.isDirectory() && !dir.startsWith("/usr")) args.push("--ro-bind", dir, dir);
  }
  return [...args, "--proc", "/proc", "--dev", "/dev", "--", "/bin/true"];
}

interface Cmd {
  label: string;
  run: () => Promise<number>;
}

/**
 * A spawned command as a Cmd: resolves with its wall time, throws with its stderr if it failed.
 * `after` runs once the command has exited, outside the timed span.
 */
function spawnCmd(label: string, command: string, args: string[], inst: Instance, after?: (r: SpawnResult) => void): Cmd {
  return {
    label,
    run: async () => {
      const r: SpawnResult = await timedSpawn(command, args, { cwd: inst.project, env: inst.env });
      after?.(r);
      if (r.code !== 0) throw new Error(`${label} failed (exit ${r.code ?? r.signal}): ${lastLines(r.stderr || r.stdout)}`);
      return r.ms;
    },
  };
}

interface RowResult {
  /** Wall times of the runs that succeeded. */
  summary?: Summary;
  /** Messages of the timed runs that failed (they are not in the summary). */
  failures: string[];
  /** Set when even the warm-up run failed: the row was skipped. */
  unavailable?: string;
}

const message = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/**
 * Runs every command once to warm it up (not counted), then `runs` rounds; each round runs each
 * command once, starting with a different one each round so drift and ordering effects spread evenly.
 * A command whose warm-up fails is reported as unavailable; a timed run that fails is counted as a
 * failure and left out of the timings, so one bad run does not lose the whole section.
 */
async function measureInterleaved(inst: Instance, cmds: Cmd[], runs: number): Promise<Map<string, RowResult>> {
  const samples = new Map<string, number[]>();
  const results = new Map<string, RowResult>();
  const active: Cmd[] = [];
  for (const cmd of cmds) {
    checkAbort(inst);
    try {
      await cmd.run();
      active.push(cmd);
      samples.set(cmd.label, []);
      results.set(cmd.label, { failures: [] });
    } catch (error) {
      if (error instanceof Aborted) throw error;
      results.set(cmd.label, { failures: [], unavailable: message(error) });
    }
  }
  for (let round = 0; round < runs; round++) {
    for (let k = 0; k < active.length; k++) {
      checkAbort(inst);
      const cmd = active[(round + k) % active.length] as Cmd;
      try {
        samples.get(cmd.label)?.push(await cmd.run());
      } catch (error) {
        checkAbort(inst);
        results.get(cmd.label)?.failures.push(message(error));
      }
    }
  }
  for (const [label, values] of samples) {
    const r = results.get(label);
    if (r && values.length > 0) r.summary = summarize(values);
  }
  return results;
}

function timingTable(results: Map<string, RowResult>, labels: string[]): string {
  const rows: string[][] = [["", "median", "p95", "min", "max", "n", "failed"]];
  const notes: string[] = [];
  for (const label of labels) {
    const r = results.get(label);
    if (r === undefined) continue;
    const s = r.summary;
    if (s === undefined) rows.push([label, "-", "-", "-", "-", "0", String(r.failures.length)]);
    else rows.push([label, `${fmtMs(s.median)} ms`, `${fmtMs(s.p95)} ms`, `${fmtMs(s.min)} ms`, `${fmtMs(s.max)} ms`, String(s.n), String(r.failures.length)]);
    if (r.unavailable !== undefined) notes.push(`  ${label}: unavailable: ${r.unavailable}`);
    const first = r.failures[0];
    if (first !== undefined) notes.push(`  ${label}: ${r.failures.length} run(s) failed; first: ${first}`);
  }
  return [table(rows), ...notes].join("\n");
}

function ratioLine(label: string, a: RowResult | undefined, b: RowResult | undefined, target?: number): string {
  const x = a?.summary;
  const y = b?.summary;
  if (x === undefined || y === undefined) return `  ${label}: n/a (a row has no successful run)`;
  const median = x.median / y.median;
  const p95 = x.p95 / y.p95;
  const verdict = target === undefined ? "" : `   target ≤ ${target}${target < 1 ? "" : "x"}: ${median <= target ? "MET" : "NOT MET"}`;
  return `  ${label.padEnd(34)} ${fmtRatio(median).padStart(7)} median, ${fmtRatio(p95).padStart(7)} p95${verdict}`;
}

// ---------------------------------------------------------------------------------------------------
// Sections

async function cliSection(inst: Instance, runs: number): Promise<void> {
  heading(`1. CLI end to end — ${runs} runs each, interleaved, after one warm-up run each (guardian warm)`);
  const srtCli = existsSync(SRT_BIN) ? realpathSync(SRT_BIN) : SRT_BIN;
  const LABELS = {
    node: "node -e ''  (node start-up floor)",
    bareNode: "node -e ''  without NODE_EXTRA_CA_CERTS",
    bwrap: "bwrap raw /bin/true",
    srt: "srt true",
    cloister: "cloister run -- true",
  };
  // Node parses a NODE_EXTRA_CA_CERTS file whole at every start (a distribution's bundle: ~80 ms
  // here); bin/cloister spares its CLI that, srt does not. Where the environment sets it, the floor
  // without it is shown too, so the rows can be read against both.
  const extraCerts = inst.env.NODE_EXTRA_CA_CERTS;
  const withoutExtraCerts = { ...inst, env: { ...inst.env, NODE_EXTRA_CA_CERTS: undefined } };
  const cmds: Cmd[] = [
    spawnCmd(LABELS.node, process.execPath, ["-e", ""], inst),
    ...(extraCerts ? [spawnCmd(LABELS.bareNode, process.execPath, ["-e", ""], withoutExtraCerts)] : []),
    spawnCmd(LABELS.bwrap, "bwrap", rawBwrapArgs(), inst),
    // Each tool as its users start it, through its own bin (srt's: `#!/usr/bin/env node`; cloister's:
    // bin/cloister, a sh script that starts node); both find this node first on PATH.
    spawnCmd(LABELS.srt, srtCli, ["true"], inst, (r) => removeSrtSockets(r.pid)),
    spawnCmd(LABELS.cloister, CLI_BIN, ["run", "--", "true"], inst),
  ];
  const results = await measureInterleaved(inst, cmds, runs);
  print(timingTable(results, Object.values(LABELS)));
  print("");
  if (extraCerts) print(`  this environment sets NODE_EXTRA_CA_CERTS=${extraCerts}: node parses it at every start, srt's included; bin/cloister moves it aside for the CLI itself`);
  print(ratioLine("cloister / srt", results.get(LABELS.cloister), results.get(LABELS.srt), TARGET_CLI_VS_SRT));
  print(ratioLine("cloister / bwrap", results.get(LABELS.cloister), results.get(LABELS.bwrap)));
  print(ratioLine("cloister / node floor", results.get(LABELS.cloister), results.get(LABELS.node)));
  print(ratioLine("srt / node floor", results.get(LABELS.srt), results.get(LABELS.node)));
  const c = results.get(LABELS.cloister)?.summary;
  const n = results.get(LABELS.node)?.summary;
  if (c !== undefined && n !== undefined) print(`  cloister above the node floor: ${fmtMs(c.median - n.median)} ms median`);
  const bare = results.get(LABELS.bareNode)?.summary;
  if (c !== undefined && bare !== undefined) print(`  cloister above node without NODE_EXTRA_CA_CERTS: ${fmtMs(c.median - bare.median)} ms median`);
  print(`  raw bwrap argv: bwrap ${rawBwrapArgs().join(" ")}`);
}

/** The target: an agent in a cloister starts at most this much slower than on the host. */
const TARGET_AGENT_VS_HOST = 1.2;

/** The name the cloisters of section 7 reach the fake Anthropic API by (a --resolve override). */
const FAKE_API_NAME = "api.bench-anthropic.test";
/** Stored as the bench instance's Claude credential: the fake API takes any key. */
const FAKE_API_KEY = "sk-ant-bench-stand-in-key-000000";

/**
 * Claude Code's start-up in a cloister against the same install on the host, started the same way
 * in each place (the launcher's fixed arguments, --dangerously-skip-permissions alone costs ~0.3 s,
 * and environment; the same set-up files in HOME; the same stand-in API). Two measures: `--version`
 * (7a: the process's start alone, the stricter one; a fresh cloister per run with `cloister run
 * --agent claude`, a running one with `cloister exec`) and the interactive agent until it takes
 * input (7b: the "ready agent process", bench/agent-ready.ts; `cloister start --agent
 * claude` making a new cloister each run, and re-entering a running one).
 */
async function agentSection(inst: Instance, runs: number): Promise<void> {
  heading(`7. Agent start-up — Claude Code, ${runs} runs per row, interleaved, after one warm-up run each`);
  const cli = (args: string[], input?: string) => spawnSync(process.execPath, [CLI, ...args], { env: inst.env, encoding: "utf8", cwd: inst.project, input });
  const listed = () => (JSON.parse(cli(["agent", "list", "--json"]).stdout) as { name: string; found: boolean; path?: string; how?: string; version?: string }[]).find((a) => a.name === "claude");
  let claude = listed();
  if (!claude?.found) {
    print("  no claude on this host: installing a managed copy from the npm registry (cloister agent install claude)…");
    const installed = spawnSync(process.execPath, [CLI, "agent", "install", "claude"], { env: inst.env, stdio: ["ignore", "inherit", "inherit"] });
    if (installed.status !== 0) throw new Error("cloister agent install claude failed");
    claude = listed();
  }
  if (!claude?.found || !claude.path) throw new Error("claude is still not found after the install");
  print(`  claude ${claude.version ?? "?"} (${claude.how}): ${claude.path}`);
  const api = await startFakeAnthropicApi();
  try {
    const stored = cli(["setup", "claude", "--api-key"], FAKE_API_KEY);
    if (stored.status !== 0) throw new Error(`cloister setup claude failed: ${lastLines(stored.stderr)}`);
    // Kept by the cloister for every later command (exec, start again), as --env given to start is.
    const apiFlags = ["--resolve", `${FAKE_API_NAME}=127.0.0.1`, "--allow-private", `${FAKE_API_NAME}:${api.port}`, "--env", `ANTHROPIC_BASE_URL=http://${FAKE_API_NAME}:${api.port}`];
    const started = cli(["start", "-d", "--name", "bench-agent", "--agent", "claude", ...apiFlags]);
    if (started.status !== 0) throw new Error(`cloister start --agent claude failed: ${lastLines(started.stderr)}`);
    try {
      const { BUILTIN_AGENTS, fixedArgs } = await import("../src/agents/registry.js");
      const { resolvePaths } = await import("../src/config/paths.js");
      const definition = BUILTIN_AGENTS.claude;
      if (!definition) throw new Error("no built-in claude agent");
      const hostEnv = {
        ...inst.env,
        ...definition.env,
        HOME: hostAgentHome(inst, join(resolvePaths({ CLOISTER_HOME: inst.home }).homesDir, "bench-agent")),
        TERM: "xterm-256color",
        ANTHROPIC_API_KEY: FAKE_API_KEY,
        ANTHROPIC_BASE_URL: `http://127.0.0.1:${api.port}`,
      };
      const fixed = fixedArgs(definition);
      print(`  API: a stand-in on 127.0.0.1:${api.port} (the cloisters reach it as ${FAKE_API_NAME}); HOME on the host: a copy of the running cloister's, trusting this project`);
      print("");
      print("  7a. claude --version: the process's start alone");
      await agentRows(inst, runs, "fresh cloister", {
        host: spawnCmd(`claude ${fixed.join(" ")} --version on the host`, claude.path, [...fixed, "--version"], { ...inst, env: hostEnv }),
        fresh: spawnCmd("cloister run --agent claude -- --version", CLI_BIN, ["run", "--agent", "claude", ...apiFlags, "--", "--version"], inst),
        running: spawnCmd("cloister exec (running cloister) -- claude --version", CLI_BIN, ["exec", "bench-agent", "--", "claude", "--version"], inst),
      });
      print("");
      print(`  7b. the interactive agent until it draws its input prompt (${CLAUDE_PROMPT}) on a terminal: the issue's ready agent process`);
      const place = { cwd: inst.project, env: inst.env };
      let freshCount = 0;
      // A user's first `cloister start --agent claude` in a project: the cloister is made, then the
      // agent opened in it. It keeps running after the agent exits; it is stopped outside the timing.
      const inNewCloister = async (): Promise<number> => {
        const name = `bench-agent-new-${++freshCount}`;
        try {
          return await timeToPrompt(CLI_BIN, ["start", "--name", name, "--agent", "claude", ...apiFlags], place);
        } finally {
          cli(["stop", name]);
        }
      };
      const hostClaude = claude.path;
      await agentRows(inst, runs, "new cloister", {
        host: { label: `claude ${fixed.join(" ")} on the host`, run: () => timeToPrompt(hostClaude, fixed, { cwd: inst.project, env: hostEnv }) },
        fresh: { label: "cloister start --agent claude (new cloister)", run: inNewCloister },
        running: { label: "cloister start --agent claude (running cloister)", run: () => timeToPrompt(CLI_BIN, ["start", "--name", "bench-agent", "--agent", "claude"], place) },
      });
    } finally {
      cli(["stop", "bench-agent"]);
    }
  } finally {
    await api.close();
  }
}

/**
 * One measure of section 7: the host, a fresh cloister and a running one, interleaved; their table,
 * and each cloister row against the host row.
 */
async function agentRows(inst: Instance, runs: number, freshName: string, rows: { host: Cmd; fresh: Cmd; running: Cmd }): Promise<void> {
  const results = await measureInterleaved(inst, [rows.host, rows.fresh, rows.running], runs);
  print(timingTable(results, [rows.host.label, rows.fresh.label, rows.running.label]));
  print("");
  const host = results.get(rows.host.label);
  print(ratioLine(`${freshName} / host`, results.get(rows.fresh.label), host, TARGET_AGENT_VS_HOST));
  print(ratioLine("running cloister / host", results.get(rows.running.label), host, TARGET_AGENT_VS_HOST));
}

/**
 * HOME for the host rows: a copy of `cloisterHome`, the running cloister's HOME (what the set-up
 * wrote: onboarding done, the instructions file), with the trust it gives /work given to the
 * project's host path, and the approval it gives the key it hands the agent (a placeholder) given to
 * the key the host row uses, so Claude Code opens on the host exactly as inside, with no dialog first.
 */
function hostAgentHome(inst: Instance, cloisterHome: string): string {
  const home = join(inst.home, "bench-host-home");
  rmSync(home, { recursive: true, force: true });
  cpSync(cloisterHome, home, { recursive: true });
  const stateFile = join(home, ".claude.json");
  const state = JSON.parse(readFileSync(stateFile, "utf8")) as { projects?: Record<string, unknown>; customApiKeyResponses?: unknown };
  if (state.projects?.["/work"] === undefined) throw new Error(`${stateFile}: the cloister's set-up left no trust for /work to carry over`);
  state.projects = { [realpathSync(inst.project)]: state.projects["/work"] };
  // Claude Code remembers an approved key by its last 20 characters.
  state.customApiKeyResponses = { approved: [FAKE_API_KEY.slice(-20)], rejected: [] };
  writeFileSync(stateFile, JSON.stringify(state, null, 2));
  return home;
}

async function libSection(inst: Instance, lib: Lib, runs: number): Promise<void> {
  heading(`2. Library, in-process — ${runs} runs each, interleaved, after one warm-up run each`);
  const LABELS = {
    bwrap: "bwrap raw /bin/true (child_process.spawn)",
    planned: "bwrap with a cloister's mounts, /bin/true",
    keeper: "cloister-init keep -- /bin/true",
    joining: "the same, joining cgroups as a keeper does",
    nonet: "runInCloister(['true'], network: false)",
    net: "runInCloister(['true'], network: true)",
  };
  // What bwrap alone costs with the filesystem view a cloister gets (system dirs, hidden secrets,
  // the project's protected paths, HOME, trust files): the argv a running cloister's keeper started,
  // with /bin/true instead of init. Every launch pays it, whatever cloister does around it.
  const reference = await createTracked(inst, lib, "bench-mount-plan", true);
  const inProcess = (label: string, network: boolean): Cmd => ({
    label,
    run: async () => {
      const start = nowMs();
      const code = await track(inst, lib.runInCloister(["true"], { project: inst.project, network }));
      const ms = nowMs() - start;
      if (code !== 0) throw new Error(`${label} exited ${code}`);
      return ms;
    },
  });
  const planned = plannedBwrapArgs(reference.record.keeperPid);
  // Every launch moves its keeper into the cloister's cgroups, which waits for an RCU grace period
  // unless a hierarchy is mounted with favordynmods: the keeper alone, then joining cgroups beside
  // the reference cloister's, shows what that wait is on this machine.
  const scratch = scratchCgroupsBeside(inst, reference.record.cgroupDirs);
  const cmds: Cmd[] = [
    spawnCmd(LABELS.bwrap, "bwrap", rawBwrapArgs(), inst),
    ...(planned ? [spawnCmd(LABELS.planned, "bwrap", planned.args, inst)] : []),
    spawnCmd(LABELS.keeper, INIT_BINARY, ["keep", "--", "/bin/true"], inst),
    ...(scratch.length > 0 ? [spawnCmd(LABELS.joining, INIT_BINARY, ["keep", ...scratch.flatMap((dir) => ["--cgroup", dir]), "--", "/bin/true"], inst)] : []),
    inProcess(LABELS.nonet, false),
    inProcess(LABELS.net, true),
  ];
  let results: Map<string, RowResult>;
  try {
    results = await measureInterleaved(inst, cmds, runs);
  } finally {
    await reference.stop();
    removeScratchCgroups(inst);
  }
  print(timingTable(results, Object.values(LABELS)));
  print("");
  print(ratioLine("runInCloister no network / bwrap", results.get(LABELS.nonet), results.get(LABELS.bwrap), TARGET_LIB_VS_BWRAP));
  print(ratioLine("runInCloister network / bwrap", results.get(LABELS.net), results.get(LABELS.bwrap), TARGET_LIB_VS_BWRAP));
  print(ratioLine("bwrap with a cloister's mounts / bwrap", results.get(LABELS.planned), results.get(LABELS.bwrap)));
  if (planned) print(`  a cloister's bwrap argv here: ${mountOps(planned.args)} mount operations (raw bwrap: ${mountOps(rawBwrapArgs())})`);
  else print("  bwrap with a cloister's mounts: not measured (the reference cloister's bwrap command line was not readable)");
  const alone = results.get(LABELS.keeper)?.summary;
  const joining = results.get(LABELS.joining)?.summary;
  if (alone && joining) {
    print(`  joining ${scratch.length} cgroup(s) (${reference.record.limitMechanism}) adds ${fmtMs(joining.median - alone.median)} ms median to the keeper, once per launch`);
    print("  (moving a process into a cgroup waits for an RCU grace period, unless a hierarchy is mounted with favordynmods: docs/sandbox.md)");
  } else if (scratch.length === 0) print(`  cgroup migration: not measured (the reference cloister has no cgroups: ${reference.record.limitMechanism})`);
}

/** Empty cgroups beside `dirs` (a cloister's, one per hierarchy), for the keeper's migration rows. */
function scratchCgroupsBeside(inst: Instance, dirs: readonly string[]): string[] {
  const made: string[] = [];
  for (const dir of dirs) {
    const scratch = join(dirname(dir), `cloister-bench-${process.pid}`);
    try {
      mkdirSync(scratch);
    } catch {
      continue; // the hierarchy refuses us a sibling: that row measures fewer hierarchies
    }
    inst.scratchCgroups.add(scratch);
    made.push(scratch);
  }
  return made;
}

/**
 * The argv of a running cloister's bwrap (the keeper's child: `bwrap ARGS -- init ...`), without
 * its seccomp fd (the keeper's, not ours) and with /bin/true as the command.
 */
function plannedBwrapArgs(keeperPid: number | undefined): { args: string[] } | undefined {
  const bwrapPid = keeperPid === undefined ? undefined : childrenOf(keeperPid)[0];
  if (bwrapPid === undefined) return undefined;
  let argv: string[];
  try {
    argv = readFileSync(`/proc/${bwrapPid}/cmdline`, "utf8").split("\0").slice(0, -1);
  } catch {
    return undefined;
  }
  const end = argv.indexOf("--");
  if (end < 0) return undefined;
  const args: string[] = [];
  for (let i = 1; i < end; i++) {
    if (argv[i] === "--seccomp") i++;
    else args.push(argv[i] as string);
  }
  return { args: [...args, "--", "/bin/true"] };
}

/** How many mount operations a bwrap argv asks for (each costs bwrap a pass over /proc/self/mountinfo). */
function mountOps(args: readonly string[]): number {
  return args.filter((a) => /^--(ro-|dev-)?bind(-try)?$|^--tmpfs$|^--symlink$|^--proc$|^--dev$|^--remount-ro$/.test(a)).length;
}

async function createTracked(inst: Instance, lib: Lib, name: string, network: boolean | undefined): Promise<Cloister> {
  checkAbort(inst);
  const cloister = await track(inst, lib.createCloister({ project: inst.project, name, ...(network === undefined ? {} : { network }) }, true));
  rememberKeeper(inst, cloister);
  return cloister;
}

/** What the proxy section (bench/proxy.ts) needs of the instance. */
function proxyHost(inst: Instance, lib: Lib): ProxyBenchHost {
  return {
    project: inst.project,
    home: inst.home,
    cli: CLI,
    env: inst.env,
    srtCli: existsSync(SRT_BIN) ? realpathSync(SRT_BIN) : SRT_BIN,
    createCloister: async (options) => {
      checkAbort(inst);
      const cloister = await track(inst, lib.createCloister(options, true));
      rememberKeeper(inst, cloister);
      return cloister;
    },
    guardianPid: () => guardianPid(inst),
    checkAbort: () => checkAbort(inst),
  };
}

function guardianPid(inst: Instance): number | undefined {
  const r = spawnSync(process.execPath, [CLI, "guardian", "status", "--json"], { env: inst.env, encoding: "utf8" });
  try {
    const status = JSON.parse(r.stdout) as { running?: boolean; pid?: number };
    if (status.running && typeof status.pid === "number") {
      inst.guardianPid = status.pid;
      return status.pid;
    }
  } catch {
    // Fall through.
  }
  return undefined;
}

async function measureIdle(cloister: Cloister, label: string): Promise<void> {
  await sleep(SETTLE_MS);
  const keeper = cloister.record.keeperPid;
  print(`  ${label}: network ${cloister.record.network ? "on" : "off"}, limits via ${cloister.record.limitMechanism}`);
  if (keeper === undefined) return void print("    no keeper pid in the record");
  if (!isAlive(keeper, cloister.record.keeperStartTime)) {
    let log = "";
    try {
      log = lastLines(readFileSync(join(cloister.record.runtimeDir, "cloister.log"), "utf8"));
    } catch {
      log = "(no log)";
    }
    throw new Error(`cloister ${cloister.name} died within ${SETTLE_MS} ms of starting; its log: ${log}`);
  }
  const procs = treeMemory(keeper);
  const rows: string[][] = [["pid", "process", "PSS", "USS (private)", "RSS"]];
  for (const p of procs) rows.push([String(p.pid), p.comm, fmtKiB(p.pssKiB), fmtKiB(p.ussKiB), fmtKiB(p.rssKiB)]);
  const sum = (f: (p: (typeof procs)[number]) => number): number => procs.reduce((acc, p) => acc + f(p), 0);
  const total = sum((p) => p.pssKiB);
  rows.push(["", "total", fmtKiB(total), fmtKiB(sum((p) => p.ussKiB)), fmtKiB(sum((p) => p.rssKiB))]);
  print(table(rows, "    "));
  print(`    total PSS ${fmtKiB(total)} = ${fmtMiB(total)}   target ≤ 4 MiB: ${total <= TARGET_IDLE_KIB ? "MET" : "NOT MET"}`);
  const charged = cgroupMemoryKiB(cloister.record.cgroupDirs);
  if (charged !== undefined) print(`    its memory cgroup is charged ${fmtKiB(charged)} (user pages plus kernel memory: namespaces, mounts, page tables, sockets)`);
}

async function memSection(inst: Instance, lib: Lib): Promise<void> {
  heading("3. Memory of one idle cloister (PSS of the keeper and everything under it; the command run in it would come on top)");
  const variants: { label: string; name: string; network: boolean | undefined }[] = [
    { label: "createCloister({project}, true) — network from config (default: on)", name: "bench-idle", network: undefined },
    { label: "createCloister({project, network: false}, true)", name: "bench-idle-nonet", network: false },
  ];
  for (const v of variants) {
    const cloister = await createTracked(inst, lib, v.name, v.network);
    try {
      await measureIdle(cloister, v.label);
    } finally {
      await cloister.stop();
    }
    print("");
  }
  print("  PSS splits each shared page among all processes on the host that map it: a lone cloister on a quiet host carries all");
  print("  of its libraries (socat's libssl/libcrypto above all; they then count as private too), one among many only its share.");
  print("  What one more cloister costs is the PSS per cloister of section 4.");
  const gpid = guardianPid(inst);
  if (gpid === undefined) print("  guardian: not running?");
  else print(`  guardian (shared by all cloisters of the instance; pid ${gpid}): RSS ${fmtKiB(rssKiB(gpid) ?? Number.NaN)} = ${fmtMiB(rssKiB(gpid) ?? Number.NaN)}, PSS ${fmtMiB(pssKiB(gpid) ?? Number.NaN)}`);
}

interface ScaleResult {
  n: number;
  network: boolean;
  created: number;
  alive: number;
  errors: string[];
  createMs: number;
  latency: Summary;
  pssPerCloister: Summary;
  cgroupPerCloister: Summary;
  pssTotalKiB: number;
  sampled: number;
  memBeforeKiB: number;
  memAfterKiB: number;
  memAfterStopKiB: number;
  guardianRssBeforeKiB: number;
  guardianRssKiB: number;
  guardianFds: number;
  execMs: number[];
  benchFds: number;
  stopMs: number;
  stopOk: boolean;
  survivors: number;
}

async function scaleCase(inst: Instance, lib: Lib, n: number, network: boolean, concurrency: number): Promise<ScaleResult> {
  // Start from an empty instance (an earlier section or case that failed may have left some).
  if ((await lib.listCloisters()).length > 0) await timedSpawn(process.execPath, [CLI, "stop", "--all"], { cwd: inst.project, env: inst.env });
  process.stderr.write(`  … creating ${n} cloisters (network ${network ? "on" : "off"}, ${concurrency} at a time)\n`);
  const gpid = guardianPid(inst);
  const guardianRssBeforeKiB = gpid === undefined ? Number.NaN : (rssKiB(gpid) ?? Number.NaN);
  const memBeforeKiB = memAvailableKiB();
  const cloisters: (Cloister | undefined)[] = new Array<Cloister | undefined>(n);
  const latencies: number[] = [];
  const errors: string[] = [];
  const start = nowMs();
  let lastReport = start;
  await pool(
    Array.from({ length: n }, (_, i) => i),
    concurrency,
    async (i) => {
      const t = nowMs();
      try {
        cloisters[i] = await createTracked(inst, lib, `bench-${i}`, network);
        latencies.push(nowMs() - t);
      } catch (error) {
        if (error instanceof Aborted) return;
        errors.push(`bench-${i}: ${error instanceof Error ? error.message : String(error)}`);
      }
      if (nowMs() - lastReport > 10_000) {
        lastReport = nowMs();
        process.stderr.write(`    ${latencies.length}/${n} created, ${errors.length} failed, ${((lastReport - start) / 1000).toFixed(0)} s\n`);
      }
    },
    () => inst.aborting || errors.length >= 20,
  );
  const createMs = nowMs() - start;
  checkAbort(inst);
  const live = cloisters.filter((c): c is Cloister => c !== undefined);
  await sleep(SETTLE_MS);
  const memAfterKiB = memAvailableKiB();
  const alive = live.filter((c) => c.record.keeperPid !== undefined && isAlive(c.record.keeperPid, c.record.keeperStartTime));
  if (alive.length < live.length) errors.push(`${live.length - alive.length} of ${live.length} cloisters died within ${SETTLE_MS} ms of starting`);
  // PSS of every process of a sample of the cloisters (evenly spread over the creation order).
  const sampleSize = Math.min(PSS_SAMPLE, alive.length);
  const perCloister: number[] = [];
  const charged: number[] = [];
  for (let k = 0; k < sampleSize; k++) {
    const c = alive[Math.floor((k * alive.length) / sampleSize)];
    const keeper = c?.record.keeperPid;
    if (keeper !== undefined) perCloister.push(treeMemory(keeper).reduce((acc, p) => acc + p.pssKiB, 0));
    const kib = c === undefined ? undefined : cgroupMemoryKiB(c.record.cgroupDirs);
    if (kib !== undefined) charged.push(kib);
  }
  const pssPerCloister = summarize(perCloister);
  const guardianRssKiB = gpid === undefined ? Number.NaN : (rssKiB(gpid) ?? Number.NaN);
  const guardianFds = gpid === undefined ? Number.NaN : fdCount(gpid);
  // The cloisters are usable, not just alive: run `true` in the first and the last one created.
  const execMs: number[] = [];
  for (const c of [live[0], live[live.length - 1]]) {
    if (c === undefined) continue;
    const t = nowMs();
    try {
      const { exitCode } = await c.exec(["true"]).done;
      if (exitCode === 0) execMs.push(nowMs() - t);
      else errors.push(`exec true in ${c.name}: exit ${exitCode}`);
    } catch (error) {
      errors.push(`exec true in ${c.name}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  const benchFds = fdCount();

  process.stderr.write(`  … stopping them (cloister stop --all)\n`);
  const stop = await timedSpawn(process.execPath, [CLI, "stop", "--all"], { cwd: inst.project, env: inst.env });
  const survivors = live.filter((c) => {
    const pid = c.record.keeperPid;
    return pid !== undefined && isAlive(pid, c.record.keeperStartTime);
  }).length;
  if (stop.code !== 0) errors.push(`stop --all exited ${stop.code ?? stop.signal}: ${lastLines(stop.stderr)}`);
  await sleep(SETTLE_MS);
  return {
    n,
    network,
    created: live.length,
    alive: alive.length,
    errors,
    createMs,
    latency: summarize(latencies),
    pssPerCloister,
    cgroupPerCloister: summarize(charged),
    pssTotalKiB: pssPerCloister.mean * alive.length,
    sampled: perCloister.length,
    memBeforeKiB,
    memAfterKiB,
    memAfterStopKiB: memAvailableKiB(),
    guardianRssBeforeKiB,
    guardianRssKiB,
    guardianFds,
    execMs,
    benchFds,
    stopMs: stop.ms,
    stopOk: stop.code === 0,
    survivors,
  };
}

async function scaleSection(inst: Instance, lib: Lib, options: Options): Promise<void> {
  const cases: { n: number; network: boolean }[] = [];
  const small = Math.min(100, options.scale);
  cases.push({ n: small, network: false }, { n: small, network: true });
  if (options.scale > small) {
    cases.push({ n: options.scale, network: false });
    if (options.scaleNetwork) cases.push({ n: options.scale, network: true });
  }
  heading(`4. Many idle cloisters at once — created with the library, ${options.concurrency} at a time; stopped with \`cloister stop --all\``);
  const results: ScaleResult[] = [];
  for (const c of cases) {
    checkAbort(inst);
    results.push(await scaleCase(inst, lib, c.n, c.network, options.concurrency));
  }
  const col = (r: ScaleResult): string => `${r.n}, ${r.network ? "net" : "no net"}`;
  const rows: string[][] = [["", ...results.map(col)]];
  const add = (label: string, f: (r: ScaleResult) => string): void => void rows.push([label, ...results.map(f)]);
  add("created / asked", (r) => `${r.created}/${r.n}`);
  add("running after settling", (r) => `${r.alive}/${r.created}`);
  add("create: total wall time", (r) => `${(r.createMs / 1000).toFixed(1)} s`);
  add("create: wall time / cloister", (r) => `${fmtMs(r.createMs / Math.max(1, r.created))} ms`);
  add("create: latency of one, median", (r) => `${fmtMs(r.latency.median)} ms`);
  add("create: latency of one, p95", (r) => `${fmtMs(r.latency.p95)} ms`);
  add(`PSS / cloister (mean of ${PSS_SAMPLE} sampled)`, (r) => fmtKiB(r.pssPerCloister.mean));
  add("PSS / cloister, min..max of sample", (r) => `${Math.round(r.pssPerCloister.min)}..${Math.round(r.pssPerCloister.max)} KiB`);
  add("PSS total (extrapolated)", (r) => fmtMiB(r.pssTotalKiB));
  add("memory cgroup charge / cloister (sampled)", (r) => fmtKiB(r.cgroupPerCloister.mean));
  add("memory cgroup charge total (extrapolated)", (r) => fmtMiB(r.cgroupPerCloister.mean * r.alive));
  add("MemAvailable before", (r) => fmtMiB(r.memBeforeKiB));
  add("MemAvailable with all idle", (r) => fmtMiB(r.memAfterKiB));
  add("MemAvailable drop", (r) => fmtMiB(r.memBeforeKiB - r.memAfterKiB));
  add("MemAvailable drop / cloister", (r) => fmtKiB((r.memBeforeKiB - r.memAfterKiB) / Math.max(1, r.created)));
  add("MemAvailable after stop", (r) => fmtMiB(r.memAfterStopKiB));
  add("guardian RSS before -> loaded", (r) => `${fmtMiB(r.guardianRssBeforeKiB)} -> ${fmtMiB(r.guardianRssKiB)}`);
  add("guardian open fds (loaded)", (r) => String(r.guardianFds));
  add("bench process open fds (loaded)", (r) => String(r.benchFds));
  add("stop --all: total", (r) => `${(r.stopMs / 1000).toFixed(1)} s${r.stopOk ? "" : " (failed)"}`);
  add("stop --all: per cloister", (r) => `${fmtMs(r.stopMs / Math.max(1, r.created))} ms`);
  add("exec `true` in first, last (loaded)", (r) => (r.execMs.length ? r.execMs.map((ms) => `${fmtMs(ms)} ms`).join(", ") : "failed"));
  add("keepers still alive after stop", (r) => String(r.survivors));
  print(table(rows));
  print(`  PSS total is extrapolated: the process trees of ${PSS_SAMPLE} cloisters spread over the creation order are summed, and their mean is multiplied by the number running.`);
  print("  memory cgroup charge: what each sampled cloister's own memory cgroup counts (user pages + kernel memory charged to it), '-' without memory cgroups.");
  print("  MemAvailable is host-wide: other work on the machine moves it too. Its drop includes kernel memory (namespaces, mounts, page tables, cgroups) that PSS does not show.");
  for (const r of results) for (const e of r.errors.slice(0, 5)) print(`  error (${col(r)}): ${e}`);
  if (options.scale <= 100) print("  1000 concurrent idle cloisters (a few minutes): npm run bench -- --only scale --scale 1000");
}

// ---------------------------------------------------------------------------------------------------
// Output

function toolVersion(command: string, args: string[]): string {
  const r = spawnSync(command, args, { encoding: "utf8" });
  return r.status === 0 ? (r.stdout || r.stderr).trim().split("\n")[0] ?? "?" : "not found";
}

/** Newest modification time of the files under dir (ms), to tell a stale build. */
function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

function header(options: Options, inst: Instance): void {
  const cpu = cpus();
  print(`cloister bench — ${new Date().toISOString()}`);
  print(
    `host: ${cpu.length} × ${cpu[0]?.model.trim() ?? "?"}, ${(totalmem() / 1024 ** 3).toFixed(1)} GiB, Linux ${release()}, node ${process.version}, ${toolVersion("bwrap", ["--version"])}, srt ${toolVersion(process.execPath, [existsSync(SRT_BIN) ? realpathSync(SRT_BIN) : SRT_BIN, "--version"])}`,
  );
  const sha = spawnSync("git", ["-C", ROOT, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).stdout.trim() || "?";
  const dirty = spawnSync("git", ["-C", ROOT, "status", "--porcelain", "--untracked-files=no"], { encoding: "utf8" }).stdout.trim() !== "";
  print(`build: commit ${sha}${dirty ? " + uncommitted changes" : ""}, dist/bundle/main.cjs built ${statSync(CLI).mtime.toISOString()}`);
  const proxy = options.sections.has("proxy") ? `  proxy=${options.proxyRequests} requests/${options.proxyMib} MiB/${options.proxyTunnels} tunnels` : "";
  print(`instance: CLOISTER_HOME=${inst.home}  project=${inst.project} (throwaway git repo)  runs=${options.runs}  scale=${options.scale}${proxy}  sections=${[...options.sections].join(",")}`);
  print("timings are wall clock from spawn (or call) to exit (or resolve); p95 interpolates between ranks; ratios divide medians (and p95s)");
}

// ---------------------------------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  for (const [file, hint] of [
    [CLI, "npm run build"],
    [DIST_INDEX, "npm run build"],
    [INIT_BINARY, "npm run build (needs gcc)"],
  ] as const) {
    if (!existsSync(file)) fatal(`${file} is missing: run \`${hint}\` first`);
  }
  if (spawnSync("bwrap", ["--version"]).status !== 0) fatal("bwrap is not installed (sudo apt-get install -y bubblewrap)");
  const stale = newestMtime(join(ROOT, "src")) > statSync(CLI).mtimeMs;

  const inst = makeInstance();
  let interrupts = 0;
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => {
      interrupts++;
      if (interrupts === 1) {
        process.stderr.write(`\nbench: ${signal}: stopping the bench's cloisters and guardian, removing its temp dirs…\n`);
        void cleanup(inst).finally(() => process.exit(130));
      } else if (interrupts < 3) {
        process.stderr.write("bench: still cleaning up (interrupt again to leave without finishing)\n");
      } else {
        process.stderr.write(`bench: left without finishing cleanup: CLOISTER_HOME=${inst.home} ${inst.projectParent}\n`);
        process.exit(130);
      }
    });
  }

  // resolvePaths() reads process.env when called: the instance must be set before the library runs.
  process.env.CLOISTER_HOME = inst.home;
  let exitCode = 0;
  try {
    header(options, inst);
    if (stale) print("WARNING: a file under src/ is newer than dist/: these numbers are for the last build (run `npm run build`).");
    // Start the guardian from the CLI, as a user's first `cloister` command would: started from this
    // process it would inherit `--import tsx` from process.execArgv and be bigger and slower.
    const started = spawnSync(process.execPath, [CLI, "guardian", "start"], { env: inst.env, encoding: "utf8" });
    if (started.status !== 0) throw new Error(`cloister guardian start failed: ${lastLines(started.stderr)}`);
    guardianPid(inst); // remembered for the cleanup sweep
    const lib: Lib = await import("../dist/index.js");
    const sections: [Section, () => Promise<void>][] = [
      ["cli", () => cliSection(inst, options.runs)],
      ["lib", () => libSection(inst, lib, options.runs)],
      ["mem", () => memSection(inst, lib)],
      ["scale", () => scaleSection(inst, lib, options)],
      ["proxy", () => proxySection(proxyHost(inst, lib), { requests: options.proxyRequests, mib: options.proxyMib, tunnels: options.proxyTunnels })],
      ["approvals", () => approvalsSection(proxyHost(inst, lib), options.approvalRequests)],
      ["agent", () => agentSection(inst, options.runs)],
      ["broker", () => brokerSection(proxyHost(inst, lib), { requests: Math.min(options.proxyRequests, 2000), mib: Math.min(options.proxyMib, 256) })],
    ];
    // A section that fails is reported and the next one still runs (each stops its own cloisters).
    for (const [name, run] of sections) {
      if (!options.sections.has(name)) continue;
      try {
        await run();
      } catch (error) {
        if (error instanceof Aborted) throw error;
        print(`  section ${name} FAILED: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
        exitCode = 1;
      }
    }
  } catch (error) {
    if (!(error instanceof Aborted)) {
      process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      exitCode = 1;
    } else exitCode = 130;
  } finally {
    await cleanup(inst);
  }
  return exitCode;
}

// Exit explicitly once everything is cleaned up: a handle the library left open (such as a detached
// keeper's pipe) must not keep the bench running.
process.exit(await main());
