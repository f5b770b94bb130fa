/**
 * One command in a fresh cloister, run to its end and the cloister removed after it: the common part
 * of the library's runInCloister and `cloister run`, so that a timeout means the same in both. The
 * timeout and the caller's abort signal cut a run short by stopping the cloister, which ends the
 * command and everything it started; the call settles only once the cloister is gone.
 */
import type { Cloister } from "./cloister.js";
import { onAbort } from "./abort.js";

/** The exit code of a command that its timeout stopped: timeout(1)'s, and `cloister run --timeout`'s. */
export const TIMED_OUT = 124;

/** A fresh cloister for one command, and how long the command may take. */
export interface FreshCloister {
  readonly cloister: Cloister;
  /** Counted from the command's start; undefined for none. */
  readonly timeoutMs: number | undefined;
  /** Stops the cloister; one that is gone already (its keeper died, the guardian swept it) counts as removed. */
  remove(): Promise<void>;
}

export interface RunEnd {
  /** The command's exit code, or TIMED_OUT when its timeout stopped it. */
  exitCode: number;
  timedOut: boolean;
}

/**
 * Runs `command` in the fresh cloister and removes the cloister after it, whatever happens. When the
 * timeout passes first, the run ends with TIMED_OUT; when `signal` aborts first, the promise rejects
 * with the signal's reason, as an abort during the launch does. A command that had ended before
 * either keeps its exit code.
 */
export async function runToEnd(fresh: FreshCloister, command: (cloister: Cloister) => Promise<number>, signal?: AbortSignal): Promise<RunEnd> {
  let cutBy: "timeout" | "abort" | undefined;
  let removal: Promise<void> | undefined;
  const remove = (): Promise<void> => (removal ??= fresh.remove());
  const cut = (by: "timeout" | "abort"): void => {
    cutBy ??= by;
    // The stop ends the command, which is what the run waits for; the stop's own outcome is awaited below.
    remove().catch(() => undefined);
  };
  const timer = fresh.timeoutMs === undefined ? undefined : setTimeout(() => cut("timeout"), fresh.timeoutMs);
  const forgetAbort = signal ? onAbort(signal, () => cut("abort")) : undefined;
  let outcome: { exitCode: number } | { error: unknown };
  try {
    // Aborted between the launch and here: the command is not started.
    signal?.throwIfAborted();
    outcome = { exitCode: await command(fresh.cloister) };
  } catch (error) {
    outcome = { error };
  } finally {
    clearTimeout(timer);
    forgetAbort?.();
  }
  if (cutBy === undefined) {
    if ("error" in outcome) {
      await remove().catch(() => undefined);
      throw outcome.error;
    }
    await remove();
    return { exitCode: outcome.exitCode, timedOut: false };
  }
  // Cut short: whatever the command's session said (the cloister was stopped under it), the cut decides.
  await remove();
  if (cutBy === "abort") signal?.throwIfAborted();
  return { exitCode: TIMED_OUT, timedOut: true };
}
