import type { Socket } from "node:net";
import { constants } from "node:os";
import { auditArgv, auditsWhole } from "../../audit/argv-text.js";
import type { AuditEvent } from "../../audit/log.js";
import type { Outcome } from "../approvals/queue.js";
import type { PendingCommand } from "../approvals/types.js";
import type { EgressContext } from "../proxy/context.js";
import { executeOnHost, type ExecuteResult } from "./execute.js";
import { hazards, hazardText } from "../../policy/commands.js";
import { hardenGit } from "./git.js";
import { exitFrame, FrameDecoder, FrameType, outputFrame, parseRequest, pendingFrame, WireError, type ExitInfo, type HostexecRequest } from "./wire.js";

/** The request frame must follow the magic this quickly. */
const REQUEST_TIMEOUT_MS = 10_000;

/**
 * Connections of one cloister whose request frame is still arriving. Each may hold up to
 * MAX_CLIENT_PAYLOAD (1 MiB) in the guardian's memory until it is whole, outside every cloister's
 * cgroup: one cloister keeping proxy.max_connections (1024) of them open held ~1 GiB (red team).
 * An honest client sends its request at once, so a few at a time are plenty.
 */
export const MAX_ARRIVING = 8;

/**
 * Host commands of one cloister running at once. They run on the host, outside the cloister's
 * cgroup and its limits, each for up to hostexec.timeout: without a cap, a cloister allowed some
 * command (or waiting out the rate limit) could keep ~150 host processes going (red team).
 */
export const MAX_RUNNING = 4;

/** Exit codes the agent sees when the command did not run to its own end (documented in docs/hostexec.md). */
export const HOSTEXEC_EXIT = {
  refused: 126,
  notFound: 127,
  timeout: 124,
  cancelled: 130,
  failed: 125,
} as const;

/** What the guardian decided for an argv before any human: run it, ask, or refuse (with why). */
export type CommandRuling = { verdict: "allow" | "ask" | "deny"; rule: string | null; reason: string };

export interface HostexecSettings {
  timeoutMs: number;
  approvalTimeoutMs: number;
  maxOutputBytes: number;
}

/** Everything a hostexec session needs from the guardian, for one cloister. */
export interface HostexecPort {
  cloister: string;
  project: string;
  /** The host directory commands run in. */
  projectRoot: string;
  branch(): string | null;
  settings(): HostexecSettings;
  /** False when the cloister asked too often lately. */
  takeRateToken(): boolean;
  /**
   * A place for a connection whose request is still arriving, and the call that gives it back;
   * undefined when the cloister has MAX_ARRIVING such connections already.
   */
  admitArrival(): (() => void) | undefined;
  /** A place among the cloister's running host commands (MAX_RUNNING), as admitArrival. */
  admitRunning(): (() => void) | undefined;
  rule(argv: readonly string[]): CommandRuling;
  ask(question: Omit<PendingCommand, "id" | "kind" | "createdAt" | "expiresAt">, timeoutMs: number, signal: AbortSignal): { request: PendingCommand | null; outcome: Promise<Outcome> };
  audit(event: AuditEvent): void;
  /** The host user's HOME (git and gh read their own config from it). */
  home: string;
}

/**
 * One `hostexec` connection (see wire.ts for the protocol): authenticate with the cloister's token,
 * rule on the argv, ask a human if the rules say so, run the command on the host and stream its
 * output back, then one exit frame. Closing the connection or a cancel frame stops whatever stage
 * it is in: the question is withdrawn, the command's process group is killed.
 */
export function serveHostexec(context: EgressContext, socket: Socket, port: HostexecPort): void {
  socket.setTimeout(0);
  const arrived = port.admitArrival();
  if (!arrived) {
    context.refused("hostexec", "over-limit", "too many requests arriving at once");
    return finish(socket, { status: "error", exitCode: HOSTEXEC_EXIT.failed, message: `more than ${MAX_ARRIVING} host command requests of this cloister were arriving at once; retry` });
  }
  const decoder = new FrameDecoder({ expectMagic: true });
  const cancel = new AbortController();
  let request: HostexecRequest | undefined;
  const deadline = setTimeout(() => finish(socket, { status: "error", exitCode: HOSTEXEC_EXIT.failed, message: "no request arrived in time" }), REQUEST_TIMEOUT_MS);
  socket.on("close", () => {
    clearTimeout(deadline);
    arrived();
    cancel.abort();
  });
  // A client that stops sending before its request is whole never completes it: its place goes at
  // once, not when this end closes too (the socket is half-open until then).
  socket.on("end", () => {
    if (request) return;
    clearTimeout(deadline);
    arrived();
    finish(socket, { status: "error", exitCode: HOSTEXEC_EXIT.failed, message: "the connection ended before its request was whole" });
  });
  socket.on("data", (chunk: Buffer) => {
    let frames;
    try {
      frames = decoder.push(chunk);
    } catch (error) {
      clearTimeout(deadline);
      // A client that breaks the protocol mid-command loses the command too.
      cancel.abort();
      context.refused("hostexec", "invalid", (error as Error).message);
      return finish(socket, { status: "error", exitCode: HOSTEXEC_EXIT.failed, message: (error as Error).message });
    }
    for (const frame of frames) {
      if (frame.type === FrameType.Cancel) {
        cancel.abort();
      } else if (frame.type === FrameType.Request && !request) {
        clearTimeout(deadline);
        arrived();
        try {
          request = parseRequest(frame.payload);
        } catch (error) {
          if (!(error instanceof WireError)) throw error;
          context.refused("hostexec", "invalid", error.message);
          return finish(socket, { status: "error", exitCode: HOSTEXEC_EXIT.failed, message: error.message });
        }
        void run(context, socket, port, request, cancel.signal).then((exit) => finish(socket, exit));
      }
    }
  });
}

async function run(context: EgressContext, socket: Socket, port: HostexecPort, request: HostexecRequest, signal: AbortSignal): Promise<ExitInfo> {
  if (!context.tokenMatches(Buffer.from(request.token))) {
    context.refused("hostexec", "unauthenticated", "");
    return { status: "error", exitCode: HOSTEXEC_EXIT.failed, message: "authentication failed: this is not the cloister's token" };
  }
  const { argv } = request;
  const argvText = auditArgv(argv);
  if (!auditsWhole(argv)) {
    port.audit({ type: "hostexec.refused", argv: argvText, reason: "too many arguments to audit" });
    return { status: "denied", exitCode: HOSTEXEC_EXIT.refused, message: `the command has too many arguments (${argv.length}) for its audit record to hold each one; run it on the host yourself, or in parts` };
  }
  if (!port.takeRateToken()) {
    port.audit({ type: "hostexec.refused", argv: argvText, reason: "rate limit" });
    return { status: "denied", exitCode: HOSTEXEC_EXIT.refused, message: "too many host command requests from this cloister in the last minute (hostexec.rate_limit); wait and retry" };
  }
  const ruling = port.rule(argv);
  // Where it runs on the host (the project's root), not the agent's directory inside (QA H12).
  port.audit({ type: "hostexec.request", argv: argvText, cwd: port.projectRoot, verdict: ruling.verdict, rule: ruling.rule });
  let approval: Outcome | undefined;
  if (ruling.verdict === "deny") return { status: "denied", exitCode: HOSTEXEC_EXIT.refused, message: ruling.reason };
  if (ruling.verdict === "ask") {
    approval = await askHuman(socket, port, argv, ruling, signal);
    if (approval.verdict === "deny") return refusalExit(approval, port.settings().approvalTimeoutMs);
  }
  return execute(socket, port, argv, signal, approval);
}

async function askHuman(socket: Socket, port: HostexecPort, argv: string[], ruling: CommandRuling, signal: AbortSignal): Promise<Outcome> {
  const timeoutMs = port.settings().approvalTimeoutMs;
  const question = { cloister: port.cloister, project: port.project, branch: port.branch(), argv, cwd: port.projectRoot, rule: ruling.rule, hazards: hazards(argv).map(hazardText) };
  const { request, outcome } = port.ask(question, timeoutMs, signal);
  if (request) {
    // Said at once, so the agent can tell its user what it waits for and where to answer.
    const short = request.id.slice(0, 8);
    socket.write(pendingFrame(request.id, `waiting up to ${formatWait(timeoutMs)} for a human to approve this command: approval UI (\`cloister ui\` on the host) or \`cloister approve ${short}\``));
  }
  return outcome;
}

function formatWait(ms: number): string {
  return ms >= 120_000 ? `${Math.round(ms / 60_000)} min` : `${Math.round(ms / 1000)} s`;
}

function refusalExit(outcome: Outcome, approvalTimeoutMs: number): ExitInfo {
  const message =
    outcome.by === "timeout" ? `nobody approved the command within ${Math.round(approvalTimeoutMs / 1000)} s, which counts as a denial`
    : outcome.by === "cancelled" ? "cancelled before anyone answered"
    : outcome.by === "flood" ? "too many requests of this cloister are waiting for approval already"
    : outcome.by === "policy" ? "a hostexec rule added while it waited refuses it"
    : `denied by a human (${outcome.by}, scope ${outcome.scope})`;
  return { status: outcome.by === "cancelled" ? "cancelled" : "denied", exitCode: outcome.by === "cancelled" ? HOSTEXEC_EXIT.cancelled : HOSTEXEC_EXIT.refused, message };
}

async function execute(socket: Socket, port: HostexecPort, requested: string[], signal: AbortSignal, approval: Outcome | undefined): Promise<ExitInfo> {
  const ran = port.admitRunning();
  if (!ran) {
    port.audit({ type: "hostexec.refused", argv: auditArgv(requested), reason: "too many running" });
    return { status: "error", exitCode: HOSTEXEC_EXIT.failed, message: `${MAX_RUNNING} host commands of this cloister are running already; retry when one has ended` };
  }
  try {
    return await executeAdmitted(socket, port, requested, signal, approval);
  } finally {
    ran();
  }
}

async function executeAdmitted(socket: Socket, port: HostexecPort, requested: string[], signal: AbortSignal, approval: Outcome | undefined): Promise<ExitInfo> {
  // Every argv goes through it: git (and git-*) come back hardened or refused, others unchanged.
  const hardened = await hardenGit(requested, port.projectRoot);
  if ("refused" in hardened) {
    port.audit({ type: "hostexec.refused", argv: auditArgv(requested), reason: hardened.refused });
    return { status: "denied", exitCode: HOSTEXEC_EXIT.refused, message: hardened.refused };
  }
  const argv = hardened.argv;
  const settings = port.settings();
  const forward = (type: typeof FrameType.Stdout | typeof FrameType.Stderr) => (chunk: Buffer) => writeAndDrain(socket, outputFrame(type, chunk));
  const result = await executeOnHost({
    argv,
    cwd: port.projectRoot,
    timeoutMs: settings.timeoutMs,
    maxOutputBytes: settings.maxOutputBytes,
    signal,
    home: port.home,
    onStdout: forward(FrameType.Stdout),
    onStderr: forward(FrameType.Stderr),
  });
  port.audit({
    type: "hostexec.exec",
    argv: auditArgv(requested),
    end: result.end,
    exitCode: result.exitCode,
    signal: result.signal,
    durationMs: result.durationMs,
    stdoutBytes: result.stdoutBytes,
    stderrBytes: result.stderrBytes,
    approvalRequest: approval?.requestId ?? null,
    approvedBy: approval?.by ?? null,
  });
  return exitInfo(result, settings.timeoutMs);
}

function exitInfo(result: ExecuteResult, timeoutMs: number): ExitInfo {
  switch (result.end) {
    case "exited":
      return { status: "exited", exitCode: result.exitCode ?? 0 };
    case "signaled":
      return { status: "signaled", exitCode: 128 + signalNumber(result.signal), message: `the command was killed by ${result.signal ?? "a signal"}` };
    case "timeout":
      return { status: "timeout", exitCode: HOSTEXEC_EXIT.timeout, message: result.message ?? `the command ran longer than ${Math.round(timeoutMs / 1000)} s (hostexec.timeout) and was killed` };
    case "cancelled":
      return { status: "cancelled", exitCode: HOSTEXEC_EXIT.cancelled, message: "cancelled; the command was killed" };
    case "output-limit":
      return { status: "output-limit", exitCode: HOSTEXEC_EXIT.failed, message: result.message ?? "the command's output exceeded hostexec.max_output; it was killed" };
    case "not-found":
      return { status: "not-found", exitCode: HOSTEXEC_EXIT.notFound, message: result.message ?? "command not found on the host" };
    case "error":
      return { status: "error", exitCode: HOSTEXEC_EXIT.failed, message: result.message ?? "the command could not be run" };
  }
}

/** Resolves once the frame is written or buffered under the socket's high-water mark: a slow agent slows the command. */
function writeAndDrain(socket: Socket, frame: Buffer): Promise<void> {
  if (socket.destroyed) return Promise.resolve();
  if (socket.write(frame)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      socket.off("drain", done);
      socket.off("close", done);
      resolve();
    };
    socket.once("drain", done);
    socket.once("close", done);
  });
}

function finish(socket: Socket, exit: ExitInfo): void {
  if (socket.destroyed) return;
  socket.end(exitFrame(exit));
}

function signalNumber(signal: string | null): number {
  return (signal && constants.signals[signal as NodeJS.Signals]) || 0;
}
