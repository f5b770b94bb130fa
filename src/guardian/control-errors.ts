/**
 * How an error crosses the control socket. A configuration that does not load goes with every
 * problem, so that `guardian reload`, `allow`, `deny` and approvals name them all as a launch does
 * (QA: they named the first, though the guardian had found them all).
 */
import { ConfigError, type ConfigProblem, receivedProblems } from "../config/config-error.js";
import { CloisterError } from "../errors.js";

/** The body of an error answer. */
export interface ErrorReply {
  error: string;
  hint?: string;
  /** A ConfigError's problems (absent from guardians older than this field: the CLI then has message and hint). */
  problems?: readonly ConfigProblem[];
  /** A ConfigError's lead (ConfigErrorContext), when it has one. */
  lead?: string;
}

/** What the guardian answers for an error a handler threw. */
export function errorReply(error: unknown): ErrorReply {
  const message = error instanceof Error ? error.message : String(error);
  const hint = error instanceof CloisterError ? error.hint : undefined;
  if (!(error instanceof ConfigError)) return { error: message, hint };
  return { error: message, hint, problems: error.problems, lead: error.context?.lead };
}

/**
 * The error an error answer (status >= 400, body as parsed JSON) stands for. Nothing in the body is
 * taken on trust: a field of the wrong type is left out, and problems that are not all whole give
 * the plain error of message and hint.
 */
export function errorFromReply(status: number, body: unknown): CloisterError {
  const reply = typeof body === "object" && body !== null ? (body as Record<string, unknown>) : {};
  const message = typeof reply.error === "string" && reply.error !== "" ? reply.error : `guardian answered ${status}`;
  const hint = typeof reply.hint === "string" ? reply.hint : undefined;
  const problems = receivedProblems(reply.problems);
  if (!problems || (reply.lead !== undefined && typeof reply.lead !== "string")) return new CloisterError(message, hint);
  return new ConfigError(problems, typeof reply.lead === "string" ? { lead: reply.lead, hint } : undefined);
}
