import { existsSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import { constants as osConstants } from "node:os";
import { basename, dirname, join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { CloisterError } from "../errors.js";
import { checkTerminalSize, signalNumber } from "../options-check.js";
import { visible } from "../policy/visible.js";
import {
  decodeExit,
  decodeStarted,
  encodeRequest,
  encodeResize,
  encodeSignal,
  encodeStdin,
  encodeStdinEof,
  FrameDecoder,
  FrameType,
  type ExecRequest,
  type Frame,
} from "./init-protocol.js";

export interface ExecIo {
  /** Streamed to the command as STDIN frames, then STDIN_EOF. Absent: the command's stdin is empty. */
  stdin?: Readable;
  /** Receive STDOUT / STDERR payloads (in tty mode everything is STDOUT, unless stderr was asked apart). Absent: discarded. */
  stdout?: Writable;
  stderr?: Writable;
}

export interface ExecResult {
  /** 0-255, 128+signal if the command was killed, 126/127 if it could not be run. */
  exitCode: number;
  /** The command's pid inside the cloister (absent if it never started). */
  pid?: number;
}

export interface ExecSession {
  /** Settles when the command has exited; rejects if the session failed. */
  readonly done: Promise<ExecResult>;
  /** Sets the PTY window size (tty mode; ignored otherwise); each from 1 to 65535, or a CloisterError. */
  resize(rows: number, cols: number): void;
  /** Sends a signal to the command's process group: a name node knows or a number from 1 to 64, or a CloisterError. */
  signal(signal: number | NodeJS.Signals): void;
}

/**
 * Runs one command through the init of a cloister listening at `socketPath` (one connection = one
 * command; protocol in docs/internals/init-protocol.md). Output is written to io.stdout/io.stderr
 * with backpressure: the socket is paused while they are full, so a slow consumer slows the
 * command instead of growing buffers.
 */
export function execInCloister(socketPath: string, request: ExecRequest, io: ExecIo = {}, persistent = true): ExecSession {
  const requestFrame = encodeRequest(request); // throws before anything is opened
  const socket = connect(socketPath);
  const decoder = new FrameDecoder();
  const queue: Frame[] = []; // decoded frames waiting for a full stdout/stderr to drain
  let waitingForDrain = false;
  let connected = false;
  let closed = false;
  let socketError: Error | undefined;
  let settled = false;
  let pid: number | undefined;

  let resolveDone!: (result: ExecResult) => void;
  let rejectDone!: (error: Error) => void;
  const done = new Promise<ExecResult>((resolve, reject) => {
    resolveDone = resolve;
    rejectDone = reject;
  });

  const settle = (outcome: ExecResult | Error): void => {
    if (settled) return;
    settled = true;
    detachStdin();
    socket.destroy(); // after EXIT init closes anyway; on failure this hangs up on the command
    if (outcome instanceof Error) rejectDone(outcome);
    else resolveDone(outcome);
  };

  const gone = (): CloisterError => {
    const why = socketError ? `: ${socketError.message}` : "";
    return goneError(socketPath, connected ? `its init closed the connection before the command finished${why}` : `cannot connect to its init at ${socketPath}${why}`, persistent);
  };

  const write = (stream: Writable | undefined, data: Buffer): void => {
    if (!stream || stream.destroyed || stream.writableEnded) return;
    if (stream.write(data)) return;
    waitingForDrain = true;
    socket.pause();
    const resume = (): void => {
      stream.off("drain", resume).off("close", resume).off("error", resume);
      waitingForDrain = false;
      socket.resume();
      pump();
    };
    stream.on("drain", resume).on("close", resume).on("error", resume);
  };

  const handle = (frame: Frame): void => {
    switch (frame.type) {
      case FrameType.Started:
        pid = decodeStarted(frame.payload);
        break;
      case FrameType.Stdout:
        write(io.stdout, frame.payload);
        break;
      case FrameType.Stderr:
        write(io.stderr, frame.payload);
        break;
      case FrameType.Error:
        settle(new CloisterError(`the cloister's init refused the command: ${frame.payload.toString("utf8")}`));
        break;
      case FrameType.Exit:
        settle({ exitCode: decodeExit(frame.payload), pid });
        break;
      default:
        throw new Error(`unexpected frame type 0x${frame.type.toString(16)} from init`);
    }
  };

  // Frames are handled strictly in order, and none while an output stream is full.
  const pump = (): void => {
    try {
      while (!settled && !waitingForDrain && queue.length > 0) handle(queue.shift() as Frame);
    } catch (error) {
      settle(new CloisterError(`protocol error talking to the cloister's init: ${(error as Error).message}`));
    }
    if (closed && queue.length === 0) settle(gone());
  };

  socket.on("connect", () => (connected = true));
  socket.on("data", (chunk: Buffer) => {
    try {
      queue.push(...decoder.push(chunk));
    } catch (error) {
      settle(new CloisterError(`protocol error talking to the cloister's init: ${(error as Error).message}`));
      return;
    }
    pump();
  });
  socket.on("error", (error) => (socketError = error));
  socket.on("close", () => {
    closed = true;
    pump();
  });
  // stdin: forwarded with backpressure from the socket; its end becomes STDIN_EOF.
  const stdin = io.stdin;
  const onStdinData = (chunk: Buffer | string): void => {
    if (settled) return;
    if (!socket.write(encodeStdin(typeof chunk === "string" ? Buffer.from(chunk) : chunk))) {
      stdin?.pause();
      socket.once("drain", () => {
        if (!settled) stdin?.resume();
      });
    }
  };
  const onStdinEnd = (): void => {
    if (!settled) socket.write(encodeStdinEof());
  };
  function detachStdin(): void {
    if (!stdin) return;
    stdin.off("data", onStdinData).off("end", onStdinEnd).off("error", onStdinEnd);
    stdin.pause(); // we made it flow; a flowing process.stdin would keep the process alive
  }
  if (!stdin || stdin.readableEnded) {
    socket.write(Buffer.concat([requestFrame, encodeStdinEof()])); // one write: nothing trails EXIT
  } else {
    socket.write(requestFrame);
    stdin.on("data", onStdinData).on("end", onStdinEnd).on("error", onStdinEnd);
  }

  const send = (frame: Buffer): void => {
    if (!settled && !socket.destroyed) socket.write(frame);
  };
  // The reader of an output went away (`cloister run -- yes | head -1`): as in a pipeline of its
  // own, the command gets SIGPIPE, and what it still writes there is dropped (write() skips a
  // destroyed stream). Unheard, the EPIPE, which can come after write() returned true, would end
  // this process with a stack trace.
  const outputs = [...new Set([io.stdout, io.stderr])].filter((stream) => stream !== undefined);
  const onOutputError = (): void => send(encodeSignal(osConstants.signals.SIGPIPE));
  const unwatch = outputs.map((stream) => watchOutputErrors(stream, onOutputError));
  void done.finally(() => unwatch.forEach((stop) => stop())).catch(() => undefined);
  return {
    done,
    // Checked here, for a library caller's values: a CloisterError that says what is wrong.
    resize: (rows, cols) => {
      checkTerminalSize(rows, cols);
      send(encodeResize(rows, cols));
    },
    signal: (signal) => send(encodeSignal(signalNumber(signal))),
  };
}

/** The sessions writing to an output stream, each told when it fails, and the one listener that tells them. */
interface OutputWatch {
  sessions: Set<() => void>;
  relay: () => void;
}

const outputWatches = new WeakMap<Writable, OutputWatch>();

/**
 * Calls `onError` when `stream` fails, until the returned function is called. The commands that share
 * a stream share one listener: twenty run at once on process.stdout (the default) would add twenty,
 * and node would warn of a listener leak on the caller's stderr (QA). The listener stays on a stream
 * that failed: its error may still be on its way, and unheard it would end this process.
 */
function watchOutputErrors(stream: Writable, onError: () => void): () => void {
  let watch = outputWatches.get(stream);
  if (!watch) {
    const sessions = new Set<() => void>();
    watch = { sessions, relay: () => sessions.forEach((session) => session()) };
    outputWatches.set(stream, watch);
    stream.on("error", watch.relay);
  }
  const { sessions, relay } = watch;
  sessions.add(onError);
  return () => {
    sessions.delete(onError);
    if (sessions.size > 0 || stream.errored) return;
    stream.off("error", relay);
    outputWatches.delete(stream);
  };
}

/**
 * Why the cloister of `socketPath` cannot be reached (`what`): it was stopped, by whom when its mark
 * says, or it ended on its own, and then the last line of its keeper's log says why (bwrap's own
 * message when bwrap failed). Only a persistent cloister can be started again: a fresh one (`run`)
 * is no one's to start, so its stop is said without that hint.
 */
function goneError(socketPath: string, what: string, persistent: boolean): CloisterError {
  const stopper = stoppedBy(dirname(socketPath));
  if (stopper !== undefined) {
    const by = stopper ? ` by ${stopper}` : "";
    return persistent ? new CloisterError(`the cloister was stopped${by} (${what})`, "start it again if it is still needed") : new CloisterError(`the cloister was stopped from outside${by} while the command ran (${what})`);
  }
  const ended = keeperLogTail(join(dirname(socketPath), KEEPER_LOG));
  if (ended) return new CloisterError(`the cloister is gone or not ready (${what}); its log ends with: ${ended}`, "`cloister doctor` checks what cloisters need from this machine");
  return new CloisterError(`the cloister is gone or not ready (${what})`, "check `cloister list`; start it again if it stopped");
}

/**
 * Resolves once the init of a cloister just launched serves on `socketPath`: the keeper reports a
 * start when bwrap runs, and bwrap can still fail then (no user namespaces, a mount it cannot make).
 * The probe is a connection that asks for nothing: it waits in the socket's queue until init accepts
 * it, and init's handler, reading its end at once, closes it cleanly. When the cloister ends first,
 * its listening socket goes with it, the queued connection is reset (or refused), and the promise
 * rejects with the keeper log's last line; so it does after `timeoutMs`.
 */
export function waitForInit(socketPath: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    let failure: Error | undefined;
    const fail = (error: Error): void => {
      failure ??= error;
      socket.destroy();
    };
    const timer = setTimeout(() => fail(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs);
    socket.on("connect", () => socket.end());
    socket.on("error", fail);
    socket.resume(); // what init may send (an ERROR frame when it cannot fork a handler) still says it runs
    socket.on("close", () => {
      clearTimeout(timer);
      if (failure) reject(goneError(socketPath, `its init did not answer: ${failure.message}`, true));
      else resolve();
    });
  });
}

/** The keeper's log (its own, bwrap's and init's stderr), beside the init socket in the runtime dir. */
export const KEEPER_LOG = "cloister.log";

/**
 * Where the mark of a cloister being stopped is made (destroyCloister), before its keeper is killed:
 * it holds who stopped it, in words (`cloister stop`), when that is known. Beside the cloister's
 * runtime dir (`<runtime>/c/<id>` → `<runtime>/stopped/<id>`), not in it: the stop removes that dir
 * right after the keeper dies, often before a command connected to it has read the mark (CI).
 * Marks are kept STOP_MARK_TTL_MS (pruneStopMarks).
 */
export function stopMarkOf(runtimeDir: string): string {
  return join(dirname(dirname(runtimeDir)), "stopped", basename(runtimeDir));
}

/** How long a stop mark is kept: a command connected to the cloister reads it at once. */
export const STOP_MARK_TTL_MS = 10 * 60_000;

/**
 * Who ended the cloister of this runtime dir on purpose (`stop`, `worktree remove -f`, the guardian):
 * the words its mark holds, "" when the mark says nothing or the dir is removed without one,
 * undefined when it was not stopped. A cloister that failed on its own is neither until the
 * guardian cleans it up, and its log says why.
 */
function stoppedBy(runtimeDir: string): string | undefined {
  try {
    return readFileSync(stopMarkOf(runtimeDir), "utf8").trim();
  } catch {
    return existsSync(runtimeDir) ? undefined : "";
  }
}

/**
 * The last line of a keeper's log, if there is one: when bwrap fails (no user namespaces, a mount
 * it cannot make), its own message is there. Written by the keeper, bwrap and init only, but shown
 * made visible all the same.
 */
export function keeperLogTail(logFile: string): string | undefined {
  try {
    const line = readFileSync(logFile, "utf8").trimEnd().split("\n").pop()?.trim();
    return line ? visible(line.slice(0, 300)) : undefined;
  } catch {
    return undefined; // removed with its cloister already
  }
}
