import { closeSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { receiveListener } from "./native-relay.js";
import { listenPrivately } from "../private-socket.js";

/** How long a hand-over connection may take to deliver its message. */
const MESSAGE_TIMEOUT_MS = 1_000;
/** The one-byte answer that tells the bridge the guardian now accepts on its listener. */
const TAKEN = "1";
/** The accept queue the guardian asks for when it takes the listener (the bridge asked for the same). */
const BACKLOG = 1024;

/**
 * The cloister's own listening socket (127.0.0.1:PORT inside it), offered by its bridge
 * (`cloister-init relay --hand-over`) over `handover.sock` so that the guardian accepts the
 * cloister's connections itself and the bridge's hop (a copy each way) drops out of their path.
 * docs/internals/init-protocol.md has the wire format.
 *
 * The listener is still the cloister's alone, so identity is unchanged: whatever arrives on it is
 * this cloister speaking. The guardian accepts on it exactly as long as the hand-over connection
 * lasts; when either side closes it (cloister stopped, guardian gone, bridge restarted), the
 * bridge accepts again by itself, and offers the listener anew.
 *
 * The offer comes from inside the cloister, so it is checked like any other input from there
 * (listener-handover.c): one offer at a time, a message within MESSAGE_TIMEOUT_MS, exactly one
 * descriptor, a listening TCP socket on 127.0.0.1:PORT. A bad offer is closed, and the bridge
 * keeps accepting.
 */
export class ListenerHandover {
  private readonly server: Server;
  /** The offer being read or the one taken; any other is refused. */
  private offer?: Socket;
  /** Accepts on the cloister's listener while the offer that brought it stays open. */
  private listener?: Server;

  private constructor(
    readonly socketPath: string,
    private readonly port: number,
    private readonly onConnection: (socket: Socket) => void,
  ) {
    // Paused: a read by node would drop the descriptor that comes with the message.
    this.server = createServer({ pauseOnConnect: true }, (socket) => void this.take(socket));
  }

  /** Listens at socketPath for offers of a listener bound to 127.0.0.1:port; connections on it go to onConnection. */
  static async open(socketPath: string, port: number, onConnection: (socket: Socket) => void): Promise<ListenerHandover> {
    const handover = new ListenerHandover(socketPath, port, onConnection);
    await listenPrivately(handover.server, socketPath, 8);
    return handover;
  }

  /** Whether the guardian accepts on the cloister's listener now. */
  get taken(): boolean {
    return this.listener !== undefined;
  }

  close(): void {
    this.server.close();
    this.letGo();
    rmSync(this.socketPath, { force: true });
  }

  /** Stops accepting on the cloister's listener (at once: from here on its bridge accepts) and closes the offer. */
  private letGo(): void {
    this.listener?.close();
    this.listener = undefined;
    this.offer?.destroy();
    this.offer = undefined;
  }

  private async take(offer: Socket): Promise<void> {
    offer.on("error", () => offer.destroy());
    if (this.offer) return void offer.destroy();
    this.offer = offer;
    offer.once("close", () => {
      if (this.offer === offer) this.letGo();
    });
    let fd: number;
    try {
      fd = await receiveListener(offer, this.port, MESSAGE_TIMEOUT_MS);
    } catch {
      // The slot is free at once, not on the close event: the bridge's next offer may already be here.
      if (this.offer === offer) this.offer = undefined;
      return void offer.destroy();
    }
    if (offer.destroyed) return closeSync(fd); // closed while the message was being taken
    const listener = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, this.onConnection);
    listener.once("error", () => offer.destroy());
    // Set now: it accepts from the listen() call on, and letGo must be able to stop it from then.
    this.listener = listener;
    // The documented handle form: listen({ fd }, backlog) (an options object with fd ignores its backlog).
    listener.listen({ fd }, BACKLOG, () => {
      offer.write(TAKEN);
      // The bridge sends nothing more; what it might send is read (no descriptor is expected
      // now) only to see the connection end.
      offer.on("data", () => offer.destroy());
      offer.resume();
    });
  }
}
