/**
 * Runs async jobs one at a time, in the order they were given. For read-change-write of a file:
 * two jobs at once would both read the old content, and the second write would lose the first's
 * change (the atomic rename protects against torn files, not lost updates).
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(job: () => Promise<T>): Promise<T> {
    const result = this.tail.then(job);
    // A failed job fails its caller, not the jobs queued after it.
    this.tail = result.catch(() => undefined);
    return result;
  }
}
