import { chmodSync, rmSync } from "node:fs";
import type { Server } from "node:net";

/**
 * Makes `server` listen on the unix socket at `path`, replacing a stale socket file a crashed
 * guardian left there, and leaves the socket 0600: the guardian's sockets (control, each cloister's
 * proxy and hand-over sockets) are for this user alone, in directories that are 0700 as well.
 */
export async function listenPrivately(server: Server, path: string, backlog?: number): Promise<void> {
  rmSync(path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ path, backlog }, () => resolve());
  });
  chmodSync(path, 0o600);
}
