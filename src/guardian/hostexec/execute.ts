/**
 * Runs one approved host command for a cloister: execve semantics (no shell), a program looked up
 * in a fixed PATH, an environment built from nothing, its own process group, a wall-clock limit, an
 * output cap and backpressure towards a slow consumer. The guardian holds secrets (tokens, the UI
 * secret) in its own environment and must outlive anything the command does, so nothing of the
 * guardian leaks in and nothing of the command is left running after a stop.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import { userInfo } from "node:os";
import { isAbsolute, join } from "node:path";
import type { Readable } from "node:stream";

/** Where program names are looked up, whatever PATH the guardian itself was started with. */
export const HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Between SIGTERM and SIGKILL to the process group. */
const KILL_GRACE_MS = 2_000;
/**
 * How long a stopped command's pipes are still read once its leader has exited: a process that left
 * the group (setsid) may hold them open forever.
 */
const PIPE_GRACE_MS = 500;

export interface ExecuteOptions {
  /** Already approved; argv[0] is a program name or an absolute path. */
  argv: readonly string[];
  /** The cloister's project directory on the host. */
  cwd: string;
  /** Wall clock; then the whole process group is killed. */
  timeoutMs: number;
  /** stdout and stderr together; beyond it the command is killed. */
  maxOutputBytes: number;
  /** Aborted when the agent pressed Ctrl-C or disconnected: the command is killed. */
  signal: AbortSignal;
  /** Awaited: a slow consumer slows the child down instead of the guardian buffering its output. */
  onStdout(chunk: Buffer): void | Promise<void>;
  onStderr(chunk: Buffer): void | Promise<void>;
  /** The host user's HOME (git and gh need their own config). */
  home: string;
}

export type ExecuteEnd = "exited" | "signaled" | "timeout" | "cancelled" | "output-limit" | "not-found" | "error";

export interface ExecuteResult {
  end: ExecuteEnd;
  exitCode: number | null;
  signal: string | null;
  durationMs: number;
  /** Bytes handed to onStdout / onStderr. */
  stdoutBytes: number;
  stderrBytes: number;
  /** For not-found, error, timeout and output-limit: a sentence for the agent. */
  message?: string;
}

/** Why the guardian stopped a command (or never started it). */
type Stop = Extract<ExecuteEnd, "timeout" | "cancelled" | "output-limit" | "error">;

interface Refusal {
  end: "not-found" | "error" | "cancelled";
  message?: string;
}

/**
 * The command's whole environment. Nothing comes from the guardian's process.env (it holds tokens)
 * nor from the agent; the rest makes tools fail instead of prompting or paging, since stdin is
 * /dev/null and nobody watches a terminal.
 */
export function hostEnvironment(home: string): Record<string, string> {
  const { username } = userInfo();
  return {
    PATH: HOST_PATH,
    HOME: home,
    USER: username,
    LOGNAME: username,
    LANG: "C.UTF-8",
    GIT_TERMINAL_PROMPT: "0",
    GIT_PAGER: "cat",
    PAGER: "cat",
    GH_PROMPT_DISABLED: "1",
    NO_COLOR: "1",
    TERM: "dumb",
  };
}

/**
 * Runs the command and reports how it ended. Never throws for the command's failure; rethrows an
 * error thrown by onStdout / onStderr (after the command has been killed), and throws for an empty argv.
 */
export async function executeOnHost(options: ExecuteOptions): Promise<ExecuteResult> {
  const [program] = options.argv;
  if (program === undefined) throw new TypeError("executeOnHost: argv is empty");
  const started = performance.now();
  const prepared = options.signal.aborted ? ({ end: "cancelled" } as const) : await prepare(program, options.cwd);
  if ("end" in prepared) return refused(prepared, started);
  return new HostRun(options, started).run(prepared.file);
}

async function prepare(program: string, cwd: string): Promise<{ file: string } | Refusal> {
  if (!(await isDirectory(cwd))) return { end: "error", message: `The working directory ${cwd} does not exist on the host.` };
  return resolveProgram(program);
}

/** Looks argv[0] up like execvp would, but in HOST_PATH and never relative to the working directory. */
async function resolveProgram(program: string): Promise<{ file: string } | Refusal> {
  if (program.includes("/")) {
    if (!isAbsolute(program)) {
      return {
        end: "error",
        message: `"${program}" is a relative path: host commands are given by name (looked up in ${HOST_PATH}) or by absolute path, never relative to the project directory.`,
      };
    }
    if (await isExecutableFile(program)) return { file: program };
    return { end: "not-found", message: `${program} does not exist on the host or is not an executable file.` };
  }
  for (const dir of HOST_PATH.split(":")) {
    const file = join(dir, program);
    if (await isExecutableFile(file)) return { file };
  }
  return {
    end: "not-found",
    message: `"${program}" is not installed on the host (looked for in ${HOST_PATH}). Ask the user to install it, or use the program's absolute path.`,
  };
}

async function isExecutableFile(file: string): Promise<boolean> {
  try {
    await access(file, constants.X_OK);
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

function refused(refusal: Refusal, started: number): ExecuteResult {
  return {
    end: refusal.end,
    exitCode: null,
    signal: null,
    durationMs: Math.round(performance.now() - started),
    stdoutBytes: 0,
    stderrBytes: 0,
    ...(refusal.message === undefined ? {} : { message: refusal.message }),
  };
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: Error;
}

/** Settles on the child's exit, or on the spawn failure that replaces it. */
function exitOf(child: ChildProcess): Promise<Exit> {
  return new Promise((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
    child.once("error", (error) => resolve({ code: null, signal: null, error }));
  });
}

/** Signals every process in the group led by `pgid`; true if any was there to receive it. */
function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

function delay(ms: number): { done: Promise<void>; cancel(): void } {
  let timer: NodeJS.Timeout | undefined;
  const done = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  return { done, cancel: () => clearTimeout(timer) };
}

/** One started command: its counters, why (if at all) the guardian stopped it, and the stop's timers. */
class HostRun {
  private stdoutBytes = 0;
  private stderrBytes = 0;
  private stopped: Stop | undefined;
  private readonly stopRequested: Promise<void>;
  private requestStop!: () => void;
  /** The SIGKILL after the grace, and the promise that it has been sent. */
  private killTimer: NodeJS.Timeout | undefined;
  private readonly killSent: Promise<void>;
  private markKillSent!: () => void;
  private consumerError: { error: unknown } | undefined;
  private pgid: number | undefined;

  constructor(
    private readonly options: ExecuteOptions,
    private readonly started: number,
  ) {
    this.stopRequested = new Promise((resolve) => (this.requestStop = resolve));
    this.killSent = new Promise((resolve) => (this.markKillSent = resolve));
  }

  async run(file: string): Promise<ExecuteResult> {
    const { argv, cwd, home, signal, timeoutMs } = this.options;
    let child: ChildProcess;
    try {
      child = spawn(file, argv.slice(1), {
        argv0: argv[0],
        cwd,
        env: hostEnvironment(home),
        stdio: ["ignore", "pipe", "pipe"],
        detached: true,
        shell: false,
      });
    } catch (error) {
      // Invalid arguments (a NUL byte in argv) are refused synchronously by spawn.
      return refused({ end: "error", message: `The command could not be started: ${(error as Error).message}` }, this.started);
    }
    const exit = exitOf(child);
    this.pgid = child.pid;
    const onAbort = (): void => this.stop("cancelled");
    signal.addEventListener("abort", onAbort, { once: true });
    if (signal.aborted) onAbort();
    const timer = setTimeout(() => this.stop("timeout"), timeoutMs);
    const pumps = Promise.all([this.pump(child.stdout!, "stdout"), this.pump(child.stderr!, "stderr")]);
    try {
      const exited = await exit;
      await this.settle(child, pumps);
      if (this.consumerError) throw this.consumerError.error;
      return this.result(exited);
    } finally {
      clearTimeout(timer);
      clearTimeout(this.killTimer);
      signal.removeEventListener("abort", onAbort);
    }
  }

  /** SIGTERM to the whole group now, SIGKILL to whatever is left of it after the grace. */
  private stop(reason: Stop): void {
    if (this.stopped !== undefined || this.pgid === undefined) return;
    const pgid = this.pgid;
    this.stopped = reason;
    signalGroup(pgid, "SIGTERM");
    this.killTimer = setTimeout(() => {
      signalGroup(pgid, "SIGKILL");
      this.markKillSent();
    }, KILL_GRACE_MS);
    this.requestStop();
  }

  /**
   * After the leader's exit: reads the pipes to their end, but once the command has been stopped only
   * for a short grace (a process outside the group may hold them); then waits for SIGKILL to have
   * reached any member of a stopped group that outlived SIGTERM.
   */
  private async settle(child: ChildProcess, pumps: Promise<unknown>): Promise<void> {
    let grace: ReturnType<typeof delay> | undefined;
    const giveUp = this.stopRequested.then(() => {
      grace = delay(PIPE_GRACE_MS);
      return grace.done;
    });
    await Promise.race([pumps, giveUp]);
    grace?.cancel();
    child.stdout?.destroy();
    child.stderr?.destroy();
    if (this.stopped !== undefined && this.pgid !== undefined && signalGroup(this.pgid, 0)) await this.killSent;
  }

  private async pump(stream: Readable, which: "stdout" | "stderr"): Promise<void> {
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        if (!(await this.forward(chunk, which))) break;
      }
    } catch {
      // A read error, or the pipe destroyed after a stop, ends the stream like EOF would.
    }
  }

  /** Hands one chunk on, cut at the output cap; false when nothing more is to be forwarded. */
  private async forward(chunk: Buffer, which: "stdout" | "stderr"): Promise<boolean> {
    if (this.consumerError) return false;
    const room = this.options.maxOutputBytes - this.stdoutBytes - this.stderrBytes;
    const part = chunk.length > room ? chunk.subarray(0, Math.max(room, 0)) : chunk;
    if (part.length < chunk.length) this.stop("output-limit");
    if (which === "stdout") this.stdoutBytes += part.length;
    else this.stderrBytes += part.length;
    if (part.length > 0) {
      try {
        await (which === "stdout" ? this.options.onStdout(part) : this.options.onStderr(part));
      } catch (error) {
        this.consumerError = { error };
        this.stop("error");
        return false;
      }
    }
    return part.length === chunk.length;
  }

  private result(exit: Exit): ExecuteResult {
    const base = {
      exitCode: exit.code,
      signal: exit.signal,
      durationMs: Math.round(performance.now() - this.started),
      stdoutBytes: this.stdoutBytes,
      stderrBytes: this.stderrBytes,
    };
    if (exit.error) return { ...base, end: "error", message: `The command could not be started: ${exit.error.message}` };
    if (this.stopped !== undefined) return { ...base, end: this.stopped, ...stopMessage(this.stopped, this.options) };
    return { ...base, end: exit.signal === null ? "exited" : "signaled" };
  }
}

function stopMessage(stop: Stop, options: ExecuteOptions): { message?: string } {
  switch (stop) {
    case "timeout":
      return { message: `The command did not finish within ${options.timeoutMs / 1000} s and was stopped, with every process it started.` };
    case "output-limit":
      return { message: `The command wrote more than ${options.maxOutputBytes} bytes of output and was stopped; its output is cut at that limit.` };
    default:
      return {};
  }
}
