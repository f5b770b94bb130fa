/**
 * Reading a log file line by line, forwards (verify) and backwards (resume, tail), on raw bytes: the
 * hash chain is over bytes, so decoding before hashing could hide a corruption.
 */
import { open, type FileHandle } from "node:fs/promises";

export interface FileLine {
  /** The line's bytes, without its newline. */
  bytes: Buffer;
  /** Byte offset of the line's first byte in the file. */
  offset: number;
  /** False for a last line without its newline: a write that was cut off. */
  terminated: boolean;
}

const CHUNK = 256 * 1024;

/** Lines of `path` from the first, with 1-based line numbers. Memory stays at about one chunk plus one line. */
export async function* readLinesForward(path: string): AsyncGenerator<FileLine & { lineNo: number }> {
  const handle = await open(path, "r");
  try {
    let pending: Buffer[] = [];
    let pendingOffset = 0;
    let position = 0;
    let lineNo = 0;
    const buffer = Buffer.alloc(CHUNK);
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, CHUNK, position);
      if (bytesRead === 0) break;
      const chunk = buffer.subarray(0, bytesRead);
      let start = 0;
      for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, start)) {
        const piece = chunk.subarray(start, nl);
        const bytes = pending.length ? Buffer.concat([...pending, piece]) : Buffer.from(piece);
        yield { bytes, offset: pendingOffset, terminated: true, lineNo: ++lineNo };
        pending = [];
        start = nl + 1;
        pendingOffset = position + start;
      }
      // Copy: `buffer` is reused for the next read.
      if (start < chunk.length) pending.push(Buffer.from(chunk.subarray(start)));
      position += bytesRead;
    }
    if (pending.length) yield { bytes: Buffer.concat(pending), offset: pendingOffset, terminated: false, lineNo: ++lineNo };
  } finally {
    await handle.close();
  }
}

/**
 * Lines of an open file from the one ending at `end` backwards. Reads CHUNK bytes at a time from the
 * end, so finding the last record of a 64 MiB file costs one small read, not a scan.
 */
export async function* readLinesBackward(handle: FileHandle, end: number): AsyncGenerator<FileLine> {
  if (end <= 0) return;
  // The file's last byte says whether its last line is complete.
  const last = Buffer.alloc(1);
  await readFully(handle, last, end - 1);
  let terminated = last[0] === 0x0a;
  // `buf` holds the bytes from `bufStart` up to the end of the line not yet yielded (newline excluded).
  let bufStart = terminated ? end - 1 : end;
  let buf = Buffer.alloc(0);
  for (;;) {
    const nl = buf.lastIndexOf(0x0a);
    if (nl >= 0) {
      yield { bytes: buf.subarray(nl + 1), offset: bufStart + nl + 1, terminated };
      terminated = true;
      buf = buf.subarray(0, nl);
      continue;
    }
    if (bufStart === 0) {
      yield { bytes: buf, offset: 0, terminated };
      return;
    }
    const start = Math.max(0, bufStart - CHUNK);
    const chunk = Buffer.alloc(bufStart - start);
    await readFully(handle, chunk, start);
    buf = Buffer.concat([chunk, buf]);
    bufStart = start;
  }
}

export async function readFully(handle: FileHandle, target: Buffer, position: number): Promise<void> {
  for (let done = 0; done < target.length; ) {
    const { bytesRead } = await handle.read(target, done, target.length - done, position + done);
    if (bytesRead === 0) throw new Error("file shrank while reading it");
    done += bytesRead;
  }
}
