import type { Socket } from "node:net";

/** What a held client may send before its answer; past it, reading stops (and with it, noticing a close). */
const MAX_HELD_BYTES = 64 * 1024;

/**
 * Runs `wait` (the policy's judgement, which may hold the request for a human) while the client's
 * connection is read on. A paused socket never sees its peer close, so a question about an unlisted
 * host outlived the client that had given up on it, and stale questions filled the cloister's quota
 * of held requests (found by QA); read, the close shows and withdraws the question. What the client
 * sends meanwhile (its TLS hello, pipelined after CONNECT) belongs to the destination: it is kept
 * after `early` and given back, and the socket is paused again.
 */
export async function whileHeld<T>(client: Socket, early: Buffer, wait: () => Promise<T>): Promise<{ result: T; early: Buffer }> {
  const chunks = [early];
  let size = early.length;
  const onData = (chunk: Buffer): void => {
    chunks.push(chunk);
    size += chunk.length;
    if (size >= MAX_HELD_BYTES) client.pause();
  };
  client.on("data", onData);
  client.resume();
  try {
    return { result: await wait(), early: Buffer.concat(chunks) };
  } finally {
    client.off("data", onData);
    client.pause();
  }
}
