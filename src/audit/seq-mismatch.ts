/**
 * What a record whose seq is not the one expected means, in words: records missing (the expected
 * ones are nowhere in the log), records out of order (they are, further on), files out of sequence
 * (rotated files renamed or swapped), or a record repeated. Only asked once verification has failed:
 * it reads the files again to find where the expected records are, so it costs nothing on an
 * intact log.
 */
import type { KeyObject } from "node:crypto";
import { basename } from "node:path";
import { readLinesForward } from "./lines.js";
import { seqOfLine, splitSignedLine } from "./record.js";
import { verifyBody } from "./signing.js";

/** Where the verifier stands: the record with the unexpected seq, and what it knows. */
export interface SeqMismatch {
  /** The log's files in the order verified, oldest first. */
  files: readonly string[];
  /** The record with the unexpected seq: its file (an index into `files`) and 1-based line. */
  fileIndex: number;
  line: number;
  expected: number;
  found: number;
  /** The file that holds the last good record (seq expected - 1). */
  previousFile: string;
  /** seq of the chain's first record: anything lower was rotated out, or never part of this log. */
  chainStart: number;
  publicKey: KeyObject;
}

interface Place {
  fileIndex: number;
  line: number;
}

export async function explainSeqMismatch(at: SeqMismatch): Promise<string> {
  return at.found > at.expected ? explainAhead(at) : explainBehind(at);
}

/**
 * seq is higher than expected: the records in between are either further on (reordered records or
 * files) or nowhere (missing).
 */
async function explainAhead(at: SeqMismatch): Promise<string> {
  const { expected, found } = at;
  const later = await signedPlaces(at, "after", (seq) => seq >= expected && seq < found);
  const home = later.get(expected);
  if (home && at.line === 1 && home.line === 1) {
    return `files out of sequence: ${fileName(at)} begins at seq ${found}, but seq ${expected}, which follows the end of ${basename(at.previousFile)}, begins ${nameOf(at, home.fileIndex)}: the rotated files were renamed or swapped`;
  }
  const mismatch = `seq ${found} where ${expected} was expected`;
  if (home) return `records out of order: ${mismatch}; seq ${expected} is at ${nameOf(at, home.fileIndex)} line ${home.line}${boundary(at)}`;
  const missing = found - expected - later.size;
  const others = found - 1 === expected + 1 ? `seq ${found - 1} is` : `${later.size} of seq ${expected + 1}–${found - 1} are`;
  const elsewhere = later.size > 0 ? `; ${others} further on, out of order` : "";
  return `${mismatch}: ${missing} record(s) missing${boundary(at)}${elsewhere}`;
}

/**
 * seq is lower than expected. Records put in another order never get here first (the first place
 * where an order differs holds a higher seq), so this is a record that came before, again, or a
 * file out of its place.
 */
async function explainBehind(at: SeqMismatch): Promise<string> {
  const { expected, found } = at;
  const mismatch = `seq ${found} where ${expected} was expected`;
  const first = (await signedPlaces(at, "before", (seq) => seq === found)).get(found);
  if (first) return `records repeated: ${mismatch}; seq ${found} already came at ${nameOf(at, first.fileIndex)} line ${first.line}${boundary(at)}`;
  if (at.line === 1) {
    return `files out of sequence: ${fileName(at)} begins at seq ${found}, before seq ${expected}, which should follow the end of ${basename(at.previousFile)}: the rotated files were renamed or swapped`;
  }
  return `${mismatch}: a record from before seq ${at.chainStart}, where this log's chain starts, was inserted or moved here`;
}

function fileName(at: SeqMismatch): string {
  return nameOf(at, at.fileIndex);
}

function nameOf(at: SeqMismatch, fileIndex: number): string {
  return basename(at.files[fileIndex] ?? "");
}

function boundary(at: SeqMismatch): string {
  return at.line === 1 ? fileBoundary(fileName(at), at.previousFile, at.expected - 1) : "";
}

/** Said of a bad record that is the first of its file: the files meet there, and a file may be the cause. */
export function fileBoundary(file: string, previousFile: string, previousSeq: number): string {
  return ` (first record of ${basename(file)}; ${basename(previousFile)} ends at seq ${previousSeq})`;
}

/**
 * The first place of each record `wanted` by its seq, before or after the mismatched record in the
 * order verified. Only lines whose signature verifies count: a forged line claiming a missing seq
 * must not turn a gap into "out of order". The seq is read from the line's signed bytes, so a
 * verified signature vouches for it.
 */
async function signedPlaces(at: SeqMismatch, side: "before" | "after", wanted: (seq: number) => boolean): Promise<Map<number, Place>> {
  const places = new Map<number, Place>();
  const first = side === "before" ? 0 : at.fileIndex;
  const last = side === "before" ? at.fileIndex : at.files.length - 1;
  for (let fileIndex = first; fileIndex <= last; fileIndex++) {
    for await (const { bytes, lineNo } of readLinesForward(at.files[fileIndex] ?? "")) {
      if (fileIndex === at.fileIndex && (side === "before" ? lineNo >= at.line : lineNo <= at.line)) {
        if (side === "before") break;
        continue;
      }
      const seq = seqOfLine(bytes);
      if (seq === undefined || !wanted(seq) || places.has(seq)) continue;
      const split = splitSignedLine(bytes);
      if (split && verifyBody(split.body, split.sig, at.publicKey)) places.set(seq, { fileIndex, line: lineNo });
    }
  }
  return places;
}
