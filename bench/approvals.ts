/**
 * The `approvals` section of `npm run bench`: how quickly a human sees a held request and how quickly
 * an answer releases it. A client in a cloister sends plain-HTTP requests to an unlisted host, one
 * after the other; the bench, connected to the approval UI's event stream (SSE) like a browser, allows
 * each one ("once") through the JSON API as soon as it appears. Measured per request, on the host's
 * clock (the client prints its own wall-clock times):
 *   held → event:     the client sends → the SSE "added" event reaches the bench
 *   answer → release: the bench sends its answer → the client has the upstream's response
 * Baseline in the same run: the same client and server, to an allowed host (no question).
 */
import { rmSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";
import { buildSync } from "esbuild";
import type { Cloister } from "../dist/index.js";
import { fmtMs, fmtRatio, heading, lastLines, loadAverage, percentile, print, table } from "./measure.js";
import { nodeInside, setConfigValues, sink, type ProxyBenchHost } from "./proxy.js";
import { startSmallHttp } from "./proxy-servers.js";

const CLIENT_FILE = ".bench-approval-client.mjs";
const CLIENT_SOURCE = fileURLToPath(new URL("./approval-client.ts", import.meta.url));
const HELD = "held.test";
const ALLOWED = "allowed.test";
/** The target for both latencies, p50. */
const TARGET_MS = 50;

interface ClientLine {
  sent: number;
  done: number;
  status: number;
}

interface Answered {
  event: number;
  answer: number;
}

export async function approvalsSection(host: ProxyBenchHost, requests: number): Promise<void> {
  heading("6. Approvals: a held request as the approval UI sees it, and the release after an answer");
  const server = await startSmallHttp();
  const restore = setConfigValues(host, [[["proxy", "unlisted"], "ask"]]);
  const clientPath = join(host.project, CLIENT_FILE);
  buildSync({ entryPoints: [CLIENT_SOURCE], bundle: true, platform: "node", format: "esm", target: "node20", outfile: clientPath, logLevel: "error" });
  let cloister: Cloister | undefined;
  let stream: EventStream | undefined;
  try {
    cloister = await host.createCloister({
      project: host.project,
      name: "bench-approvals",
      network: true,
      resolve: { [HELD]: "127.0.0.1", [ALLOWED]: "127.0.0.1" },
      allowPrivate: [`${ALLOWED}:${server.port}`],
    });
    const ui = uiAccess(host);
    stream = await EventStream.open(ui);
    print(`  load average at the start: ${loadAverage()}; ${requests} requests per row, sequential`);
    const baseline = await runClient(cloister, `http://${ALLOWED}:${server.port}/`, requests);
    const answered: Answered[] = [];
    stream.onAdded = (id, at) => void answer(ui, id).then((sentAt) => answered.push({ event: at, answer: sentAt }));
    const held = await runClient(cloister, `http://${HELD}:${server.port}/`, requests);
    report(baseline, held, answered);
  } finally {
    stream?.close();
    await cloister?.stop().catch(() => undefined);
    restore();
    rmSync(clientPath, { force: true });
    await server.close();
  }
}

function report(baseline: ClientLine[], held: ClientLine[], answered: Answered[]): void {
  const failed = held.filter((line) => line.status !== 200).length + baseline.filter((line) => line.status !== 200).length;
  const pairs = held.slice(0, answered.length).map((line, i) => ({ line, answered: answered[i] as Answered }));
  const toEvent = pairs.map(({ line, answered: a }) => a.event - line.sent).sort((a, b) => a - b);
  const toRelease = pairs.map(({ line, answered: a }) => line.done - a.answer).sort((a, b) => a - b);
  const plain = baseline.map((line) => line.done - line.sent).sort((a, b) => a - b);
  const row = (name: string, samples: number[]) => [name, fmtMs(percentile(samples, 50)), fmtMs(percentile(samples, 95)), fmtRatio(percentile(samples, 50) / percentile(plain, 50))];
  print(
    table([
      ["", "p50 ms", "p95 ms", "p50 vs allowed request"],
      row("allowed request (baseline: no question)", plain),
      row("held request → SSE event", toEvent),
      row("answer sent → response in the cloister", toRelease),
    ]),
  );
  const ok = percentile(toEvent, 50) < TARGET_MS && percentile(toRelease, 50) < TARGET_MS;
  print(`  ${pairs.length} held requests answered, ${failed} failed   TARGET each p50 < ${TARGET_MS} ms: ${ok && failed === 0 ? "met" : "NOT met"}`);
}

/** The UI's address and API token, from the CLI as a script would get them. */
function uiAccess(host: ProxyBenchHost): { url: string; token: string } {
  const r = spawnSync(process.execPath, [host.cli, "ui", "--json"], { env: host.env, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`cloister ui --json failed: ${lastLines(r.stderr)}`);
  return JSON.parse(r.stdout) as { url: string; token: string };
}

/** Allows a request once through the JSON API; resolves with the time the answer was sent. */
async function answer(ui: { url: string; token: string }, id: string): Promise<number> {
  const sentAt = wallMs();
  const response = await fetch(`${ui.url}/api/requests/${id}/answer`, {
    method: "POST",
    headers: { authorization: `Bearer ${ui.token}`, "content-type": "application/json" },
    body: JSON.stringify({ verdict: "allow", scope: "once" }),
  });
  if (response.status !== 200) throw new Error(`answer ${id}: ${response.status} ${await response.text()}`);
  return sentAt;
}

function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

/** The UI's SSE stream, read the way a browser's EventSource would. */
class EventStream {
  onAdded: (id: string, at: number) => void = () => undefined;
  private constructor(private readonly stop: () => void) {}

  static open(ui: { url: string; token: string }): Promise<EventStream> {
    return new Promise((resolve, reject) => {
      let stream: EventStream | undefined;
      const req = request(`${ui.url}/api/events`, { headers: { authorization: `Bearer ${ui.token}`, accept: "text/event-stream" } }, (res) => {
        if (res.statusCode !== 200) return reject(new Error(`SSE: ${res.statusCode}`));
        let buffered = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          const at = wallMs();
          buffered += chunk;
          let end: number;
          while ((end = buffered.indexOf("\n\n")) >= 0) {
            const event = buffered.slice(0, end);
            buffered = buffered.slice(end + 2);
            const type = /^event: (.*)$/m.exec(event)?.[1];
            const data = /^data: (.*)$/m.exec(event)?.[1];
            if (type === "added" && data) stream?.onAdded((JSON.parse(data) as { request: { id: string } }).request.id, at);
          }
        });
        stream = new EventStream(() => req.destroy());
        resolve(stream);
      });
      req.on("error", reject);
      req.end();
    });
  }

  close(): void {
    this.stop();
  }
}

async function runClient(cloister: Cloister, url: string, count: number): Promise<ClientLine[]> {
  let stdout = "";
  let stderr = "";
  const session = cloister.exec([nodeInside(), `/work/${CLIENT_FILE}`, url, String(count)], {
    stdin: new PassThrough().end(),
    stdout: sink((text) => (stdout += text)),
    stderr: sink((text) => (stderr += text)),
  });
  const { exitCode } = await session.done;
  if (exitCode !== 0) throw new Error(`approval client exited ${exitCode}: ${lastLines(stderr)}`);
  return stdout.trim().split("\n").map((line) => JSON.parse(line) as ClientLine);
}
