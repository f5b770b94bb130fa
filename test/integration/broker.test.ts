/**
 * The credential broker end to end: real bubblewrap cloisters, the real guardian intercepting TLS
 * with its own CA, and recording HTTPS servers on loopback (certificates from a test CA the guardian
 * is told to trust upstream). The cloister holds a placeholder; the upstream receives the real value;
 * the placeholder anywhere else is blocked and audited.
 */
import assert from "node:assert/strict";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createInstance, waitUntil, type TestInstance } from "../helpers/cloister.js";
import { createTestCa, startHttpsUpstream, startHttpUpstream, type HttpsUpstream, type TestCa, type Upstream } from "../fixtures/upstreams.js";

const SECRET = `ghp_${"R3alS3cretValue".repeat(2)}abcdef`;

describe("credential broker: placeholders swapped on the way out", () => {
  let t: TestInstance;
  let ca: TestCa;
  let api: HttpsUpstream;
  let other: HttpsUpstream;
  let plain: Upstream;

  const session = () => [
    ...["api.test", "other.test", "plain.test"].flatMap((name) => ["--resolve", `${name}=127.0.0.1`]),
    ...[`api.test:${api.port}`, `other.test:${other.port}`, `plain.test:${plain.port}`].flatMap((rule) => ["--allow-private", rule]),
    "--secret",
    "TOKEN=gh",
  ];
  const run = (script: string) => t.cli(["run", ...session(), "--", "sh", "-c", script]);
  const audit = () =>
    readFileSync(join(t.home, "state", "audit", "audit.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);

  before(async () => {
    t = createInstance("br");
    ca = createTestCa();
    [api, other, plain] = await Promise.all([startHttpsUpstream(ca, ["api.test"]), startHttpsUpstream(ca, ["other.test"]), startHttpUpstream()]);
    const config = join(t.home, "config", "config.yaml");
    const text = readFileSync(config, "utf8").replace(/^  upstream_ca: null$/m, `  upstream_ca: ${ca.certFile}`);
    writeFileSync(config, text);
    const set = await t.cli(["secret", "set", "gh", "--host", `api.test:${api.port}`, "--header", "Authorization: Bearer {}"], { input: SECRET });
    assert.equal(set.code, 0, set.stderr);
  });
  after(async () => {
    if (process.env.KEEP) console.log(t.home); else await t.teardown();
    await Promise.all([api, other, plain].map((u) => u.close()));
    rmSync(ca.dir, { recursive: true, force: true });
  });

  it("the upstream receives the real value; the cloister only ever had the placeholder", async () => {
    const r = await run(`echo "token=$TOKEN"; curl -sS -m 10 -H "Authorization: Bearer $TOKEN" https://api.test:${api.port}/user`);
    assert.equal(r.code, 0, r.stderr);
    const token = /token=(\S+)/.exec(r.stdout)?.[1] ?? "";
    assert.ok(token.startsWith("ghp_") && token !== SECRET && token.length === SECRET.length, token);
    assert.match(r.stdout, /hello from upstream/);
    assert.equal(api.requests.at(-1)?.headers.authorization, `Bearer ${SECRET}`);
    assert.ok(!r.stdout.includes(SECRET) && !r.stderr.includes(SECRET));
    await waitUntil("the injection is audited", () => audit().some((e) => e.type === "credential.inject" && e.name === "gh" && e.header === "authorization"));
    assert.ok(!JSON.stringify(audit()).includes(SECRET), "the audit log never holds the value");
  });
});
