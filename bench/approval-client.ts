/**
 * Runs inside the cloister for the `approvals` bench section: sequential plain-HTTP requests through
 * the guardian's proxy to one host, printing for each the wall-clock time it was sent and answered
 * (performance.timeOrigin + now: the host's clock, which the bench compares with its own).
 * Usage: node approval-client.js URL COUNT
 */
import { request } from "node:http";
import { performance } from "node:perf_hooks";

const [url = "", countText = "1"] = process.argv.slice(2);
const proxy = new URL(process.env.HTTP_PROXY ?? "");
const auth = `Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString("base64")}`;
const wallMs = () => performance.timeOrigin + performance.now();

function once(): Promise<number> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const req = request({ host: proxy.hostname, port: proxy.port, method: "GET", path: url, headers: { host: target.host, "proxy-authorization": auth }, agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end();
  });
}

for (let i = 0; i < Number(countText); i++) {
  const sent = wallMs();
  const status = await once();
  process.stdout.write(`${JSON.stringify({ sent, done: wallMs(), status })}\n`);
}
