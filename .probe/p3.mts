import { connect, createServer } from "node:net";
import { mkdtempSync } from "node:fs";
import { ProxySchema } from "../src/config/schema.js";
import { emptyPolicy } from "../src/policy/egress.js";
import { parseRule } from "../src/policy/rules.js";
import { EgressContext } from "../src/guardian/proxy/context.js";
import { EgressEndpoint } from "../src/guardian/proxy/endpoint.js";
import { createHttpProxy } from "../src/guardian/proxy/http.js";

process.on("uncaughtException", (e) => { console.log("UNCAUGHT", e.message); });
process.on("unhandledRejection", (e) => { console.log("UNHANDLED", (e as Error).message); });
const raw = createServer((s) => {
  s.on("error", () => {});
  s.on("data", (d) => { console.log("UPSTREAM SAW", JSON.stringify(d.toString("latin1"))); s.end("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); });
});
await new Promise<void>((r) => raw.listen(0, "127.0.0.1", () => r()));
const port = (raw.address() as { port: number }).port;
const settings = { ...ProxySchema.parse(undefined), connect_timeout: 2000, idle_timeout: 1000 };
const policy = { ...emptyPolicy(), global: { allow: [parseRule(`api.test:${port}`, { private: true })], deny: [] } };
const ctx = new EgressContext("c1", "proj", "TOKEN", () => settings, () => ({ policy, overrides: new Map([["api.test", "127.0.0.1"]]), project: "proj" }), (e) => console.log("AUDIT", e.decision ?? e.type, e.detail ?? ""));
const http = createHttpProxy(settings);
const ep = await EgressEndpoint.open(ctx, mkdtempSync("/tmp/cp-"), () => http);
const auth = Buffer.from("u:TOKEN").toString("base64");
const cases: string[] = JSON.parse(process.argv[2]!);
for (const url of cases) {
  await new Promise<void>((resolve) => {
    const c = connect({ path: ep.socketPath });
    c.on("data", (d) => console.log(JSON.stringify(url), "->", JSON.stringify(d.toString("latin1").split("\r\n")[0])));
    c.on("close", () => resolve());
    c.on("error", () => {});
    c.end(`GET ${url.replace("PORT", String(port))} HTTP/1.1\r\nHost: api.test:${port}\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`);
    setTimeout(resolve, 1500);
  });
}
process.exit(0);
