/**
 * A launch called off (Ctrl-C, SIGTERM, a library caller's AbortSignal): the error it ends with,
 * and waits on others (the guardian, the keeper, a credential lookup) that end at the abort.
 */
import { CloisterError } from "./errors.js";

/** The launch was aborted: its signal's reason when that is an error, else a plain one. */
export function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new CloisterError("the launch was aborted");
}

/** Throws the abort's error when `signal` has aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}

/** `promise`, or a rejection as soon as `signal` aborts, whichever comes first. */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  throwIfAborted(signal);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortError(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error as Error);
      },
    );
  });
}
