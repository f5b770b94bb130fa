/**
 * The client of the broker bench, run inside a cloister (bundled into the project by bench/broker.ts).
 * Over ONE kept-alive HTTPS connection through the cloister's proxy (CONNECT), it measures small
 * request latency, download throughput and the first byte of a streamed response, then prints one
 * JSON line. Usage: node client.mjs HOST PORT CA_FILE REQUESTS MIB TOKEN
 */
import { request as httpRequest } from "node:http";
import { Agent, request, type RequestOptions } from "node:https";
import { readFileSync } from "node:fs";
import { connect as tlsConnect } from "node:tls";
import type { Duplex } from "node:stream";

const [host = "", port = "443", caFile = "", requests = "1000", mib = "64", token = ""] = process.argv.slice(2);
const proxy = new URL(process.env.HTTPS_PROXY ?? "");
const ca = readFileSync(caFile);
const WARMUP = 50;
const STREAMS = 30;

/** Opens each connection as a CONNECT tunnel through the cloister's proxy, then TLS to `host`. */
class TunnelAgent extends Agent {
  override createConnection(_options: RequestOptions, callback?: (error: Error | null, socket: Duplex) => void): undefined {
    const auth = Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString("base64");
    const req = httpRequest({ host: proxy.hostname, port: proxy.port, method: "CONNECT", path: `${host}:${port}`, headers: { host: `${host}:${port}`, "proxy-authorization": `Basic ${auth}` } });
    req.on("connect", (res, socket) => {
      if (res.statusCode !== 200) return callback?.(new Error(`CONNECT: ${res.statusCode}`), socket);
      const secure = tlsConnect({ socket, servername: host, ca });
      secure.once("secureConnect", () => callback?.(null, secure));
      secure.once("error", (error) => callback?.(error, secure));
    });
    req.on("error", (error) => callback?.(error, undefined as unknown as Duplex));
    req.end();
    return undefined;
  }
}

const agent = new TunnelAgent({ keepAlive: true, maxSockets: 1 });

/** One GET; resolves with [ms to the first body byte, ms to the end, bytes]. */
function get(path: string): Promise<[number, number, number]> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = request({ agent, host, port: Number(port), path, headers: { authorization: `Bearer ${token}` } }, (res) => {
      let first = -1;
      let bytes = 0;
      res.on("data", (chunk: Buffer) => {
        if (first < 0) first = performance.now() - started;
        bytes += chunk.length;
      });
      res.on("end", () => (res.statusCode === 200 ? resolve([first, performance.now() - started, bytes]) : reject(new Error(`${path}: ${res.statusCode}`))));
    });
    req.on("error", reject);
    req.end();
  });
}

const latency: number[] = [];
for (let i = 0; i < WARMUP + Number(requests); i++) {
  const [, total] = await get("/small");
  if (i >= WARMUP) latency.push(total);
}
const [, downloadMs, downloaded] = await get(`/blob?mib=${mib}`);
const firstByte: number[] = [];
for (let i = 0; i < STREAMS; i++) firstByte.push((await get("/sse"))[0]);
agent.destroy();
process.stdout.write(`${JSON.stringify({ latency, mibPerS: downloaded / 1048576 / (downloadMs / 1000), firstByte })}\n`);
