/**
 * A launch called off (Ctrl-C, SIGTERM, a library caller's AbortSignal): waits on others (the
 * guardian, the keeper, a credential lookup) that end at the abort. Each ends with the signal's
 * reason as given, an Error or not, as AbortSignal.throwIfAborted() throws it: README promises the
 * library's caller that reason (QA: a string became "the launch was aborted").
 */

/** `promise`, or a rejection as soon as `signal` aborts, whichever comes first. */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const forget = onAbort(signal, () => reject(signal.reason));
    promise.then(
      (value) => {
        forget();
        resolve(value);
      },
      (error: unknown) => {
        forget();
        reject(error as Error);
      },
    );
  });
}

/**
 * Per signal, the callbacks waiting for its abort, and the one listener that calls them. A library
 * caller may run any number of cloisters under one AbortController; a listener each made Node warn
 * of a leak (MaxListenersExceededWarning) from the eleventh launch on, though each was removed in
 * time (QA library).
 */
const waiting = new WeakMap<AbortSignal, { callbacks: Set<() => void>; listener: () => void }>();

/**
 * Calls `callback` when `signal` aborts (not when it has aborted already: check that first). Returns
 * the function that forgets it; the signal carries one listener of ours, however many wait on it.
 */
export function onAbort(signal: AbortSignal, callback: () => void): () => void {
  let entry = waiting.get(signal);
  if (!entry) {
    const callbacks = new Set<() => void>();
    const listener = (): void => {
      waiting.delete(signal);
      for (const waiter of callbacks) waiter();
    };
    entry = { callbacks, listener };
    waiting.set(signal, entry);
    signal.addEventListener("abort", listener, { once: true });
  }
  const { callbacks, listener } = entry;
  // A Set holds a function once: wrapped, the same callback given twice is two waits.
  const wait = (): void => callback();
  callbacks.add(wait);
  return () => {
    if (!callbacks.delete(wait) || callbacks.size > 0 || waiting.get(signal)?.listener !== listener) return;
    waiting.delete(signal);
    signal.removeEventListener("abort", listener);
  };
}
