import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import type { Socket } from "node:net";
import { join } from "node:path";
import { once } from "node:events";
import { setTimeout as delay } from "node:timers/promises";
import { CloisterError } from "../../errors.js";
import { PACKAGE_ROOT } from "../../package-root.js";

export interface TunnelResult {
  /** Bytes the client sent to the destination, and the destination sent back. */
  bytesUp: number;
  bytesDown: number;
  durationMs: number;
  /** "closed" normally (or cut by the guardian); "idle" when the idle timeout cut it; "error" on a reset. */
  end: "closed" | "idle" | "error";
}

/** A tunnel handed to the relay thread: it ends by itself, or when cut. */
export interface RelayedTunnel {
  readonly done: Promise<TunnelResult>;
  cut(): void;
}

/** native/tunnel-relay.c's exports (takeListener is native/listener-handover.c's). */
interface TunnelRelayAddon {
  init(onEnd: (id: number, bytesUp: number, bytesDown: number, end: string) => void): void;
  start(clientFd: number, serverFd: number, idleMs: number, earlyUp?: Buffer, earlyDown?: Buffer): number;
  cut(id: number): void;
  /** The listening socket's fd from a hand-over message, or null before one arrived; throws on a bad message. */
  takeListener(connectionFd: number, port: number): number | null;
}

const ADDON_PATH = join(PACKAGE_ROOT, "native", "build", "tunnel-relay.node");

let addon: TunnelRelayAddon | undefined;
/** Tunnels with the relay thread, by id: what to do when it reports their end. */
const running = new Map<number, (bytesUp: number, bytesDown: number, end: string) => void>();

/**
 * Loads the relay (once per process) and starts its thread. The guardian calls it at start-up, so
 * a missing build stops the guardian with this message rather than failing every tunnel later.
 */
export function loadTunnelRelay(): TunnelRelayAddon {
  if (addon) return addon;
  if (!existsSync(ADDON_PATH)) throw new CloisterError("the guardian's tunnel relay (native/build/tunnel-relay.node) is not built", "run `npm run build` in the cloister package (needs gcc)");
  const loaded = createRequire(import.meta.url)(ADDON_PATH) as TunnelRelayAddon;
  loaded.init((id, bytesUp, bytesDown, end) => {
    const settle = running.get(id);
    running.delete(id);
    settle?.(bytesUp, bytesDown, end);
  });
  addon = loaded;
  return loaded;
}

/**
 * Hands an admitted tunnel's two sockets to the relay thread (native/tunnel-relay.c), which moves
 * their bytes both ways, half-closes included, until both directions are done, either side is
 * reset, or nothing moves for `idleMs`. `early` is what the client sent after its request, before
 * the tunnel was up; it goes first, and counts.
 *
 * node lets go of both sockets here: whatever it still holds for them goes along (the client's
 * reply is flushed first; bytes node read ahead go as early bytes), then its handles are closed,
 * and only the relay's duplicates of their fds stay open.
 */
export async function relayTunnel(client: Socket, upstream: Socket, idleMs: number, early: Buffer): Promise<RelayedTunnel> {
  const relay = loadTunnelRelay();
  const started = Date.now();
  // dial() left the upstream socket without an error listener; while the reply drains, a reset
  // from the origin must not become an uncaught error (the hand-over then sees it destroyed).
  upstream.on("error", () => upstream.destroy());
  const failed = (): RelayedTunnel => {
    client.destroy();
    upstream.destroy();
    return { done: Promise.resolve({ bytesUp: 0, bytesDown: 0, durationMs: Date.now() - started, end: "error" }), cut: () => undefined };
  };
  // The reply (200, or SOCKS's success) was written just before; it is almost always out already.
  if (client.writableLength > 0 && !client.destroyed) await Promise.race([once(client, "drain"), once(client, "close")]).catch(() => undefined);
  const clientFd = socketFd(client);
  const upstreamFd = socketFd(upstream);
  if (clientFd === undefined || upstreamFd === undefined) return failed();
  const earlyUp = Buffer.concat([early, ...readAhead(client)]);
  const earlyDown = Buffer.concat(readAhead(upstream));
  let id: number;
  try {
    id = relay.start(clientFd, upstreamFd, idleMs, earlyUp, earlyDown);
  } catch {
    return failed(); // out of fds or memory: the client sees its connection closed
  }
  // Only node's handles close: the relay holds duplicates of both fds.
  client.destroy();
  upstream.destroy();
  const done = new Promise<TunnelResult>((resolve) => {
    running.set(id, (bytesUp, bytesDown, end) => resolve({ bytesUp, bytesDown, durationMs: Date.now() - started, end: end === "idle" || end === "error" ? end : "closed" }));
  });
  return { done, cut: () => relay.cut(id) };
}

/** How often a hand-over connection is looked at until its message is there. */
const HANDOVER_POLL_MS = 10;

/**
 * Takes the cloister's listening socket out of the hand-over message on `connection` (see
 * listener-handover.ts) and returns its fd, now the caller's. node cannot wait for a message it
 * must not read (a read would drop the descriptor), so this looks every HANDOVER_POLL_MS; the
 * bridge sends right after connecting, so the first look almost always finds it. Throws when the
 * message is bad, the connection closes, or nothing comes within `timeoutMs`.
 */
export async function receiveListener(connection: Socket, port: number, timeoutMs: number): Promise<number> {
  const relay = loadTunnelRelay();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // Looked up each time: once the socket is closed its fd number may belong to something else.
    const fd = socketFd(connection);
    if (fd === undefined) throw new Error("the hand-over connection closed");
    const listener = relay.takeListener(fd, port);
    if (listener !== null) return listener;
    if (Date.now() >= deadline) throw new Error(`no hand-over message within ${timeoutMs} ms`);
    await delay(HANDOVER_POLL_MS);
  }
}

/**
 * A socket's file descriptor. node has no public way to it; `_handle.fd` is what its own TTY and
 * child-process code read, and has been there on Unix since node's first releases. Undefined
 * when the socket is already closed.
 */
function socketFd(socket: Socket): number | undefined {
  if (socket.destroyed) return undefined;
  // Why the cast: `_handle` is not in node's typings.
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === "number" && fd >= 0 ? fd : undefined;
}

/** What node has read from the socket and nobody has consumed yet. */
function readAhead(socket: Socket): Buffer[] {
  const chunks: Buffer[] = [];
  for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) chunks.push(chunk);
  return chunks;
}
