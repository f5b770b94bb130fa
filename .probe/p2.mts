import { connect, createServer } from "node:net";
import { mkdtempSync } from "node:fs";
import { ProxySchema } from "../src/config/schema.js";
import { emptyPolicy } from "../src/policy/egress.js";
import { parseRule } from "../src/policy/rules.js";
import { EgressContext } from "../src/guardian/proxy/context.js";
import { EgressEndpoint } from "../src/guardian/proxy/endpoint.js";
import { createHttpProxy } from "../src/guardian/proxy/http.js";

process.on("uncaughtException", (e) => { console.log("UNCAUGHT", e); });
const mode = process.argv[2];
const raw = createServer((s) => {
  s.on("error", () => {});
  s.on("data", () => s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
});
await new Promise<void>((r) => raw.listen(0, "127.0.0.1", () => r()));
const port = (raw.address() as { port: number }).port;
const settings = { ...ProxySchema.parse(undefined), connect_timeout: 2000, idle_timeout: 1000 };
const policy = { ...emptyPolicy(), global: { allow: [parseRule(`api.test:${port}`, { private: true })], deny: [] } };
const ctx = new EgressContext("c1", "proj", "TOKEN", () => settings, () => ({ policy, overrides: new Map([["api.test", "127.0.0.1"]]), project: "proj" }), (e) => console.log("AUDIT", JSON.stringify(e)));
const http = createHttpProxy(settings);
const ep = await EgressEndpoint.open(ctx, mkdtempSync("/tmp/cp-"), () => http);
const auth = Buffer.from("u:TOKEN").toString("base64");
const c = connect({ path: ep.socketPath, allowHalfOpen: true });
const t0 = Date.now();
c.on("data", (d) => console.log(Date.now() - t0, "CLIENT GOT", JSON.stringify(d.toString("latin1").slice(0, 60))));
c.on("close", () => { console.log(Date.now() - t0, "client closed"); process.exit(0); });
if (mode === "keepalive") {
  const req = (len: number) => `POST http://api.test:${port}/ HTTP/1.1\r\nHost: api.test:${port}\r\nContent-Length: ${len}\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`;
  c.write(req(0));
  setTimeout(() => c.write(req(100) + "partial"), 300); // second request body stalls
}
if (mode === "socksflood") {
  c.on("error", (e) => console.log("client error", e.message));
  c.write(Buffer.from([5, 1, 0]));
  await new Promise((r) => c.once("data", r));
  const junk = Buffer.alloc(65536, 0x41);
  let sent = 0;
  const pump = () => { while (sent < 300 * 1024 * 1024) { sent += junk.length; if (!c.write(junk)) return void c.once("drain", pump); } console.log("sent all", sent); };
  pump();
  setInterval(() => console.log(Date.now() - t0, "sent MB", sent >> 20, "rss MB", process.memoryUsage().rss >> 20), 1000);
}
setTimeout(() => { console.log("probe timeout"); process.exit(0); }, 8000);
