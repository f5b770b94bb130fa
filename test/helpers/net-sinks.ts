/**
 * Host-side listeners for the network escape cases: recording TCP sinks on chosen loopback
 * addresses (so an allowed and a denied name can share one port and differ only by name), and
 * listeners on every host address (TCP and UDP) that a direct connection from a cloister would hit
 * if it had a route. Each counts what arrived; a secure run leaves them at zero.
 */
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";

export interface TcpSink {
  host: string;
  port: number;
  /** Connections accepted, counted before any byte is read. */
  connections: number;
  /** Every byte received, all connections in arrival order. */
  received: Buffer;
  close(): Promise<void>;
}

/** What a sink answers once a request head has arrived, so a request that got through is visible to the client too. */
const SINK_REPLY = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nsink reached\n";

/**
 * A TCP server on `host:port` (port 0: any free port) that records every connection and byte.
 * Rejects with the listen error (EADDRINUSE when the port is taken on that address).
 */
export function startTcpSink(host: string, port = 0): Promise<TcpSink> {
  const chunks: Buffer[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sink.connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    let head = "";
    socket.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      head += chunk.toString("latin1");
      if (head.includes("\r\n\r\n")) socket.end(SINK_REPLY);
    });
  });
  const sink: TcpSink = {
    host,
    port,
    connections: 0,
    get received() {
      return Buffer.concat(chunks);
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port, ipv6Only: host.includes(":") }, () => {
      const address = server.address();
      if (address !== null && typeof address !== "string") sink.port = address.port;
      resolve(sink);
    });
  });
}

/**
 * Sinks on several loopback addresses sharing one port (e.g. 127.0.0.2 and 127.0.0.3 next to an
 * upstream already on 127.0.0.1:port). All or none: when one address has the port taken, the
 * others are closed again and the listen error is thrown (the caller picks another port).
 */
export async function startSinksOnPort(hosts: readonly string[], port: number): Promise<TcpSink[]> {
  const started: TcpSink[] = [];
  try {
    for (const host of hosts) started.push(await startTcpSink(host, port));
    return started;
  } catch (error) {
    await Promise.all(started.map((s) => s.close()));
    throw error;
  }
}

export interface HostListeners {
  /** The port the TCP and UDP listeners share (on every address of the host). */
  port: number;
  tcpConnections: number;
  udpDatagrams: number;
  close(): Promise<void>;
}

/**
 * A TCP and a UDP listener on all host addresses (IPv4 and IPv6) on one port: what a direct
 * connection or datagram from a cloister to any host address would reach, if it had a route.
 */
export async function startHostListeners(): Promise<HostListeners> {
  const listeners: HostListeners = { port: 0, tcpConnections: 0, udpDatagrams: 0, close: async () => undefined };
  const tcp = createServer((socket: Socket) => {
    listeners.tcpConnections++;
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once("error", reject);
    // "::" without ipv6Only takes IPv4 too (dual stack); fall back to IPv4 alone where IPv6 is off.
    tcp.listen({ host: "::", port: 0 }, () => resolve());
  }).catch(
    () =>
      new Promise<void>((resolve, reject) => {
        tcp.once("error", reject);
        tcp.listen({ host: "0.0.0.0", port: 0 }, () => resolve());
      }),
  );
  const address = tcp.address();
  if (address === null || typeof address === "string") throw new Error("host listener: no TCP address");
  listeners.port = address.port;
  const udp: UdpSocket[] = [];
  for (const [type, host] of [["udp4", "0.0.0.0"], ["udp6", "::"]] as const) {
    const socket = createSocket({ type, ipv6Only: type === "udp6" });
    socket.on("message", () => listeners.udpDatagrams++);
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once("error", reject);
        socket.bind(listeners.port, host, () => resolve());
      });
      udp.push(socket);
    } catch {
      socket.close();
    }
  }
  listeners.close = async () => {
    for (const socket of udp) socket.close();
    await new Promise<void>((resolve) => tcp.close(() => resolve()));
  };
  return listeners;
}

/** A TCP port on 127.0.0.1 that was free a moment ago (another process may take it before the caller does). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
