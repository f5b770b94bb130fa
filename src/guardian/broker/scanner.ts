/**
 * Finding needles (placeholders on the way out, real secrets on the way back) in a byte stream that
 * must stay a stream: a server-sent event or a streamed completion cannot wait for the whole body.
 * So bytes are passed on as soon as they are known clean, and only a tail that could still grow into
 * a needle is held back. In practice that tail is empty or a few bytes, and a chunk ending in "\n\n"
 * (the end of an event) goes out whole, at once.
 */
import { PassThrough, Transform, type Readable, type TransformCallback, type Writable } from "node:stream";

interface Needle {
  readonly bytes: Buffer;
  /** Index in the list the scanner was built from (empty needles are dropped, so it can differ from ours). */
  readonly index: number;
}

const EMPTY = Buffer.alloc(0);

export class NeedleScanner {
  readonly #needles: readonly Needle[];
  /** The end of the data seen so far that is a proper prefix of some needle: not yet passed on. */
  #held: Buffer = EMPTY;
  #done = false;

  /** Empty needles are ignored: they would match everywhere. */
  constructor(needles: readonly Buffer[]) {
    this.#needles = needles.flatMap((bytes, index) => (bytes.length > 0 ? [{ bytes: Buffer.from(bytes), index }] : []));
  }

  /**
   * Scans the next chunk. Returns the bytes that can be passed on now, and the index (in the
   * constructor's list) of the first needle found, if any: then `pass` holds only bytes before that
   * needle and the scanner must not be used further. Bytes are held back only when the end of the
   * data seen so far is a proper prefix of some needle; held bytes are returned with the next chunk.
   *
   * "First" is the needle that completes first in the stream (earliest end; on a tie the one that
   * starts earlier, then the lower index), which does not depend on how the stream was chunked.
   */
  push(chunk: Buffer): { pass: Buffer; found?: number } {
    if (this.#done) throw new Error("NeedleScanner: push after a needle was found");
    if (this.#needles.length === 0) return { pass: chunk };
    // Only a held tail (rare, and shorter than the longest needle) costs a copy of the chunk.
    const window = this.#held.length === 0 ? chunk : Buffer.concat([this.#held, chunk]);

    // Any needle that completes in this chunk lies wholly in the window: the part of it seen before
    // the chunk was a suffix that is a proper prefix of that needle, and so no longer than #held.
    let found: { start: number; end: number; index: number } | undefined;
    for (const { bytes, index } of this.#needles) {
      const start = window.indexOf(bytes);
      if (start < 0) continue;
      const end = start + bytes.length;
      if (found === undefined || end < found.end || (end === found.end && start < found.start)) found = { start, end, index };
    }
    if (found !== undefined) {
      this.#done = true;
      this.#held = EMPTY;
      return { pass: window.subarray(0, found.start), found: found.index };
    }

    const hold = this.#heldLength(window);
    // Copied: the caller may reuse its chunk's memory once we return.
    this.#held = hold === 0 ? EMPTY : Buffer.from(window.subarray(window.length - hold));
    return { pass: hold === 0 ? window : window.subarray(0, window.length - hold) };
  }

  /** End of stream: the held-back bytes (they cannot complete a needle anymore). */
  flush(): Buffer {
    const held = this.#held;
    this.#held = EMPTY;
    return held;
  }

  /**
   * The length of the longest suffix of `window` that is a proper prefix of some needle. For each
   * needle only its last (length - 1) bytes can matter, and only where its first byte occurs; the
   * earliest such position whose rest matches gives that needle's longest suffix.
   */
  #heldLength(window: Buffer): number {
    let longest = 0;
    for (const { bytes } of this.#needles) {
      const first = bytes[0] ?? 0;
      for (let at = Math.max(0, window.length - (bytes.length - 1)); ; at++) {
        at = window.indexOf(first, at);
        // Candidates only get shorter from here; one no longer than what is held already cannot matter.
        if (at < 0 || window.length - at <= longest) break;
        if (window.subarray(at).equals(bytes.subarray(0, window.length - at))) {
          longest = window.length - at;
          break;
        }
      }
    }
    return longest;
  }
}

/** The error a scanning stream ends with when it meets a needle; `needle` is its index. */
export class NeedleFoundError extends Error {
  readonly needle: number;

  constructor(needle: number, options?: ErrorOptions) {
    super(`needle ${needle} found in stream`, options);
    this.name = "NeedleFoundError";
    this.needle = needle;
  }
}

/**
 * A Transform stream around NeedleScanner: passes bytes on as soon as they are known clean; on a find
 * it calls onFound(index) once and ends with a NeedleFoundError, never passing the needle's bytes or
 * anything after them. The clean bytes just before the needle are pushed before the error, but an
 * erroring stream is destroyed, so a consumer may not get them; nothing later is ever emitted.
 * With no (non-empty) needles it is a plain PassThrough: no scanning, no copying.
 */
export function scanningStream(needles: readonly Buffer[], onFound?: (needle: number) => void): Transform {
  if (!needles.some((needle) => needle.length > 0)) return new PassThrough();
  const scanner = new NeedleScanner(needles);
  let stopped = false;
  return new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
      if (stopped) return callback();
      const { pass, found } = scanner.push(chunk);
      if (pass.length > 0) this.push(pass);
      if (found === undefined) return callback();
      stopped = true;
      // A throwing callback must not take the stream machinery down with it: it rides along as the cause.
      let cause: unknown;
      try {
        onFound?.(found);
      } catch (error) {
        cause = error;
      }
      callback(new NeedleFoundError(found, cause === undefined ? undefined : { cause }));
    },
    flush(callback: TransformCallback): void {
      const held = scanner.flush();
      if (held.length > 0) this.push(held);
      callback();
    },
  });
}

/**
 * Relays `from` to `to` as pipe() does, scanning each chunk on the way; the same guarantees as
 * scanningStream (nothing from a needle on is written), without a Transform stream between the two:
 * at TLS-record-sized chunks that extra stream's bookkeeping cost more than the scan itself. `done`
 * is called once: with null at the end, a NeedleFoundError on a find (after `onFound`), or the error
 * of either stream. `to` is ended at the end of `from`, and destroyed on a find or an error; so is
 * `from`, except on a find with `onFind: "leave-source"`, where the caller takes it over (a request
 * already being answered is read to its end rather than reset: see discardRest).
 */
export function relayScanned(
  from: Readable,
  to: Writable,
  needles: readonly Buffer[],
  onFound: (needle: number) => void,
  done: (error: Error | null) => void,
  onFind: "destroy-both" | "leave-source" = "destroy-both",
): void {
  const scanner = new NeedleScanner(needles);
  let finished = false;
  const finish = (error: Error | null) => {
    if (finished) return;
    finished = true;
    from.off("data", onData);
    to.off("drain", resume);
    if (error) {
      // With the error: an HTTP/2 response destroyed without one would end as if complete.
      if (!(error instanceof NeedleFoundError && onFind === "leave-source")) from.destroy(error);
      to.destroy(error);
    }
    done(error);
  };
  const resume = () => from.resume();
  const onData = (chunk: Buffer) => {
    const { pass, found } = scanner.push(chunk);
    if (pass.length > 0 && !to.write(pass)) from.pause();
    if (found === undefined) return;
    onFound(found);
    finish(new NeedleFoundError(found));
  };
  from.on("data", onData);
  to.on("drain", resume);
  from.once("end", () => {
    const held = scanner.flush();
    to.end(held.length > 0 ? held : undefined, () => finish(null));
  });
  // `on`, not `once`: the destroy(error) calls above emit once more, and an unheard error would throw.
  from.on("error", (error) => finish(error));
  to.on("error", (error) => finish(error));
  // The reader went away before the end (a client that closed): stop reading for it.
  to.once("close", () => {
    if (!to.writableFinished) finish(new Error("the receiving side closed"));
  });
  from.once("close", () => {
    if (!from.readableEnded) finish(new Error("the sending side closed before its end"));
  });
}

/** What a body is scanned for, and what a find does (the body is cut there either way). */
export interface Scan {
  needles: Buffer[];
  found: (index: number) => void;
}

/** How long a client's request body is read and thrown away after it was answered early. */
const LINGER_MS = 2_000;

/**
 * A request refused while its body was still coming (a placeholder in it): read the rest and throw
 * it away, for at most LINGER_MS, instead of closing at once. A client still uploading would
 * otherwise hit a reset, often before it read the refusal (the lingering close of RFC 9112 9.6).
 */
export function discardRest(request: Readable): void {
  const timer = setTimeout(() => request.destroy(), LINGER_MS);
  const stop = () => clearTimeout(timer);
  request.once("end", stop);
  request.once("close", stop);
  request.on("data", () => undefined);
  request.resume();
}
