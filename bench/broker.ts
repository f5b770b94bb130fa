/**
 * The `broker` section of `npm run bench`: what TLS interception with credential injection costs,
 * against a plain CONNECT tunnel measured in the same run, by the same client, in the same cloister,
 * to the same loopback HTTPS server. The server answers to two names: bench-api.test has a secret's
 * injection rule (the guardian terminates TLS, swaps the placeholder, opens its own verified TLS to
 * the server), bench-tunnel.test has none (bytes pass untouched; the client verifies the server).
 * Rows: small-request latency on one kept-alive connection, download throughput, and the first byte
 * of a streamed (server-sent events) response.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { fileURLToPath } from "node:url";
import { buildSync } from "esbuild";
import type { Cloister } from "../dist/index.js";
import { CertificateAuthority } from "../dist/guardian/broker/ca.js";
import { fmtMs, fmtRatio, heading, lastLines, percentile, print, table } from "./measure.js";
import { nodeInside, setConfigValues, sink, UNPACED, type ProxyBenchHost } from "./proxy.js";

const CLIENT_FILE = ".bench-broker-client.mjs";
const CA_FILE = ".bench-broker-ca.pem";
const CLIENT_SOURCE = fileURLToPath(new URL("./broker-client.ts", import.meta.url));
const INJECTED = "bench-api.test";
const TUNNELLED = "bench-tunnel.test";
const SECRET = "bench.token";
const TARGET_ADDED_MS = 2;
const TARGET_THROUGHPUT = 0.6;
const ROUNDS = 3;
/** Random bytes: a body of one repeated byte would be a needle-prefix pathology no real download has. */
const CHUNK = randomBytes(1024 * 1024);

interface ClientResult {
  latency: number[];
  mibPerS: number;
  firstByte: number[];
}

export interface BrokerOptions {
  requests: number;
  mib: number;
}

export async function brokerSection(host: ProxyBenchHost, options: BrokerOptions): Promise<void> {
  heading(`8. Credential broker: TLS interception with injection vs a plain CONNECT tunnel (${options.requests} requests and ${options.mib} MiB per run, ${ROUNDS} runs per row, interleaved)`);
  const caDir = mkdtempSync(join(tmpdir(), "cloister-bench-ca-"));
  const ca = await CertificateAuthority.open(caDir);
  const server = await startServer(ca);
  const port = (server.address() as { port: number }).port;
  const restore = setConfigValues(host, [[["proxy", "upstream_ca"], ca.certFile], ...UNPACED]);
  const clientPath = join(host.project, CLIENT_FILE);
  buildSync({ entryPoints: [CLIENT_SOURCE], bundle: true, platform: "node", format: "esm", target: "node20", outfile: clientPath, logLevel: "error" });
  copyFileSync(ca.certFile, join(host.project, CA_FILE));
  let cloister: Cloister | undefined;
  try {
    setSecret(host, port);
    cloister = await host.createCloister({
      project: host.project,
      name: "bench-broker",
      network: true,
      resolve: { [INJECTED]: "127.0.0.1", [TUNNELLED]: "127.0.0.1" },
      allowPrivate: [`${INJECTED}:${port}`, `${TUNNELLED}:${port}`],
      secretEnv: { TOKEN: SECRET },
    });
    const rows = { tunnel: [] as ClientResult[], intercepted: [] as ClientResult[] };
    for (let round = 0; round < ROUNDS; round++) {
      host.checkAbort();
      rows.tunnel.push(await runClient(cloister, TUNNELLED, port, `/work/${CA_FILE}`, options));
      rows.intercepted.push(await runClient(cloister, INJECTED, port, "/run/cloister/ca-bundle.pem", options));
    }
    report(rows.tunnel, rows.intercepted);
  } finally {
    await cloister?.stop().catch(() => undefined);
    spawnSync(process.execPath, [host.cli, "secret", "rm", SECRET], { env: host.env });
    restore();
    rmSync(clientPath, { force: true });
    rmSync(join(host.project, CA_FILE), { force: true });
    await new Promise((resolve) => server.close(resolve));
    server.closeAllConnections();
    rmSync(caDir, { recursive: true, force: true });
  }
}

function report(tunnel: ClientResult[], intercepted: ClientResult[]): void {
  const all = (results: ClientResult[], pick: (r: ClientResult) => number[]) => results.flatMap(pick).sort((a, b) => a - b);
  const [lt, li] = [all(tunnel, (r) => r.latency), all(intercepted, (r) => r.latency)];
  const [ft, fi] = [all(tunnel, (r) => r.firstByte), all(intercepted, (r) => r.firstByte)];
  const median = (values: number[]) => percentile([...values].sort((a, b) => a - b), 50);
  const [mt, mi] = [median(tunnel.map((r) => r.mibPerS)), median(intercepted.map((r) => r.mibPerS))];
  print(
    table([
      ["", "tunnel p50", "tunnel p90", "intercepted p50", "intercepted p90", "added p50"],
      ["small request, kept-alive (ms)", fmtMs(percentile(lt, 50)), fmtMs(percentile(lt, 90)), fmtMs(percentile(li, 50)), fmtMs(percentile(li, 90)), fmtMs(percentile(li, 50) - percentile(lt, 50))],
      ["streamed response, first byte (ms)", fmtMs(percentile(ft, 50)), fmtMs(percentile(ft, 90)), fmtMs(percentile(fi, 50)), fmtMs(percentile(fi, 90)), fmtMs(percentile(fi, 50) - percentile(ft, 50))],
    ]),
  );
  print(`  download throughput (median of ${ROUNDS}): tunnel ${mt.toFixed(0)} MiB/s, intercepted ${mi.toFixed(0)} MiB/s, ratio ${fmtRatio(mi / mt)}`);
  const added = percentile(li, 50) - percentile(lt, 50);
  print(`  TARGET added p50 < ${TARGET_ADDED_MS} ms: ${added < TARGET_ADDED_MS ? "met" : "NOT met"}; throughput ≥ ${fmtRatio(TARGET_THROUGHPUT)} of the tunnel: ${mi / mt >= TARGET_THROUGHPUT ? "met" : "NOT met"}`);
}

/** The secret with an injection rule for bench-api.test, as a user sets one. */
function setSecret(host: ProxyBenchHost, port: number): void {
  const r = spawnSync(process.execPath, [host.cli, "secret", "set", SECRET, "--host", `${INJECTED}:${port}`, "--header", "Authorization: Bearer {}"], {
    env: host.env,
    input: `bench-${"s".repeat(40)}`,
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`cloister secret set failed: ${lastLines(r.stderr)}`);
}

/** The "internet": /small (3 bytes), /blob?mib=N, /sse (first event at once, then a pause, then the end). */
function startServer(ca: CertificateAuthority): Promise<Server> {
  const server = createServer({ SNICallback: (name, done) => void ca.contextFor(name).then((context) => done(null, context), done) }, (req, res) => {
    const url = new URL(req.url ?? "/", "https://bench");
    if (url.pathname === "/blob") {
      let left = Number(url.searchParams.get("mib") ?? "1");
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": left * CHUNK.length });
      const more = () => {
        while (left > 0) {
          left--;
          if (!res.write(CHUNK)) return void res.once("drain", more);
        }
        res.end();
      };
      return more();
    }
    if (url.pathname === "/sse") {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("data: first\n\n");
      return void setTimeout(() => res.end("data: last\n\n"), 20);
    }
    res.writeHead(200, { "content-type": "text/plain", "content-length": 3 });
    res.end("ok\n");
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

async function runClient(cloister: Cloister, name: string, port: number, caFile: string, options: BrokerOptions): Promise<ClientResult> {
  let stdout = "";
  let stderr = "";
  const args = [nodeInside(), `/work/${CLIENT_FILE}`, name, String(port), caFile, String(options.requests), String(options.mib), "$TOKEN"];
  const session = cloister.exec(["sh", "-c", `exec ${args.map((a) => (a === "$TOKEN" ? '"$TOKEN"' : a)).join(" ")}`], {
    stdin: new PassThrough().end(),
    stdout: sink((text) => (stdout += text)),
    stderr: sink((text) => (stderr += text)),
  });
  const { exitCode } = await session.done;
  if (exitCode !== 0) throw new Error(`broker client (${name}) exited ${exitCode}: ${stderr.slice(0, 1500)}`);
  return JSON.parse(stdout.trim().split("\n").pop() ?? "{}") as ClientResult;
}
