/**
 * The approval UI as an attacker meets it, against the real guardian: a browser approves a real
 * sandboxed request (screenshot in test-results/), and the web-UI cases of SECURITY.md — wrong Host
 * (DNS rebinding), missing or forged secret, cross-origin writes, hostile strings — fail. A cloister
 * cannot reach the UI or learn its secret, so it cannot approve its own requests.
 */
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { request } from "node:http";
import { after, before, describe, it } from "node:test";
import type { Browser } from "playwright-core";
import type { Pending } from "../../src/guardian/approvals/types.js";
import { startHttpUpstream, type Upstream } from "../fixtures/upstreams.js";
import { launchBrowser } from "../helpers/browser.js";
import { createInstance, spawnCli, waitUntil, type TestInstance } from "../helpers/cloister.js";

interface UiAccess {
  url: string;
  loginUrl: string;
  token: string;
}

/** A raw HTTP exchange with full control of the headers (fetch would fix Host and Origin). */
function raw(url: string, options: { method?: string; headers?: Record<string, string>; body?: string }): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? "GET", headers: options.headers, setHost: options.headers?.host === undefined }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on("error", reject);
    req.end(options.body);
  });
}

describe("escape: the approval UI", () => {
  let t: TestInstance;
  let web: Upstream;
  let ui: UiAccess;
  let browser: Browser;
  const name = "uiesc";

  const pending = async (): Promise<Pending[]> => (JSON.parse((await t.cli(["approvals", "--json"])).stdout) as { pending: Pending[] }).pending;

  before(async () => {
    t = createInstance("ue", { unlisted: "ask" });
    web = await startHttpUpstream();
    const started = await t.cli(["start", "-d", "--name", name, "--resolve", "held.test=127.0.0.1"]);
    assert.equal(started.code, 0, started.stderr);
    const r = await t.cli(["ui", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    ui = JSON.parse(r.stdout) as UiAccess;
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await t.teardown();
    await web.close();
  });

  it("a human approves a waiting sandboxed request in a real browser, and the request completes", async () => {
    const held = spawnCli(t, ["exec", name, "--", "curl", "-sS", "-m", "60", `http://held.test:${web.port}/from-the-cloister`]);
    const page = await (await browser.newContext({ viewport: { width: 900, height: 700 } })).newPage();
    await page.goto(ui.loginUrl);
    const card = page.locator("#pending li.card").filter({ hasText: "held.test" });
    await card.waitFor({ timeout: 30_000 });
    mkdirSync("test-results", { recursive: true });
    await page.screenshot({ path: "test-results/ui-approval-sandboxed.png", fullPage: true });
    await card.getByRole("button", { name: "Allow" }).click();
    await card.waitFor({ state: "detached" });
    const r = await held.done;
    assert.equal(r.stdout, "hello from upstream\n", r.stderr);
    assert.equal(web.requests.at(-1)?.url, "/from-the-cloister");
    await page.context().close();
  });

  it("refuses a wrong Host (DNS rebinding), on pages, the API and the event stream", async () => {
    const port = new URL(ui.url).port;
    for (const host of [`evil.example:${port}`, `127.0.0.1.nip.io:${port}`, "127.0.0.1", `127.0.0.1:${Number(port) + 1}`, `[::1]:${port}`]) {
      for (const path of ["/", "/api/pending", "/api/events", "/assets/app.js"]) {
        const r = await raw(`${ui.url}${path}`, { headers: { host, authorization: `Bearer ${ui.token}` } });
        assert.equal(r.status, 421, `${host} ${path}`);
        assert.doesNotMatch(r.body, /held\.test|pending/);
      }
    }
  });

  it("refuses every route without the secret, with a forged one, or with a used login link", async () => {
    for (const path of ["/", "/api/pending", "/api/recent", "/api/events"]) {
      assert.equal((await raw(`${ui.url}${path}`, {})).status, 401, path);
      assert.equal((await raw(`${ui.url}${path}`, { headers: { authorization: `Bearer ${"0".repeat(64)}` } })).status, 401, path);
      assert.equal((await raw(`${ui.url}${path}`, { headers: { cookie: `cloister_ui=${"a".repeat(64)}` } })).status, 401, path);
    }
    const login = (await t.cli(["ui"])).stdout.trim();
    assert.equal((await raw(login, {})).status, 303);
    assert.notEqual((await raw(login, {})).status, 303, "a login link works once");
  });

  it("refuses cross-origin and non-JSON writes even with a valid session cookie", async () => {
    const login = await raw((await t.cli(["ui"])).stdout.trim(), {});
    const cookie = String((login.headers["set-cookie"] as string[] | undefined)?.[0]).split(";")[0] ?? "";
    const held = spawnCli(t, ["exec", name, "--", "curl", "-sS", "-m", "60", "-o", "/dev/null", "-w", "%{http_code}", `http://held.test:${web.port}/csrf`]);
    let id = "";
    await waitUntil("a pending request", async () => ((id = (await pending())[0]?.id ?? ""), id !== ""));
    const answer = (headers: Record<string, string>, body = JSON.stringify({ verdict: "allow", scope: "global" })) =>
      raw(`${ui.url}/api/requests/${id}/answer`, { method: "POST", headers: { cookie, ...headers }, body });
    assert.equal((await answer({ origin: "http://evil.example", "content-type": "application/json" })).status, 403);
    assert.equal((await answer({ "content-type": "application/json" })).status, 403, "a cookie write without Origin");
    assert.equal((await answer({ origin: ui.url, "content-type": "text/plain" })).status, 415);
    assert.equal((await answer({ origin: ui.url, "content-type": "application/x-www-form-urlencoded" }, "verdict=allow&scope=global")).status, 415);
    assert.equal((await pending()).length, 1, "nothing was answered");
    // The legitimate write works, and no response carries permissive CORS.
    const ok = await answer({ origin: ui.url, "content-type": "application/json" }, JSON.stringify({ verdict: "deny", scope: "once" }));
    assert.equal(ok.status, 200);
    assert.equal(ok.headers["access-control-allow-origin"], undefined);
    assert.match(String(ok.headers["content-security-policy"]), /frame-ancestors 'none'/);
    assert.equal((await held.done).stdout, "403");
  });

  it("a cloister cannot reach the UI, nor learn its secret, so it cannot approve its own requests", async () => {
    const port = new URL(ui.url).port;
    const script = [
      // Its own loopback is not the host's; through the proxy, loopback literals are refused without asking.
      `curl -sS -m 5 -o /dev/null -w 'direct=%{http_code}\\n' --noproxy '*' http://127.0.0.1:${port}/api/pending`,
      `curl -sS -m 5 -o /dev/null -w 'proxied=%{http_code}\\n' -x "$HTTP_PROXY" --noproxy '' http://127.0.0.1:${port}/api/pending`,
      "env; cat ~/.* /run/cloister/guardian/* 2>/dev/null; ls -la /run/cloister /run/cloister/guardian",
    ].join("; ");
    const r = await t.cli(["exec", name, "--", "sh", "-c", script]);
    assert.match(r.stdout, /direct=000/);
    assert.match(r.stdout, /proxied=403/);
    assert.ok(!r.stdout.includes(ui.token) && !r.stderr.includes(ui.token), "the UI token is visible inside the cloister");
    assert.deepEqual(await pending(), [], "the loopback request was put to a human");
  });

  it("shows an agent's hostile argv as inert, visible text in the CLI and as exact data in the API", async () => {
    const hostile = "x\u202egpj.exe\u001b[2J<img src=x onerror=alert(1)>";
    const held = spawnCli(t, ["exec", name, "--", "hostexec", "gh", "pr", "view", hostile]);
    let request: Pending | undefined;
    await waitUntil("the hostile command to wait", async () => ((request = (await pending()).find((p) => p.kind === "command")), request !== undefined));
    const listed = (await t.cli(["approvals"])).stdout;
    assert.ok(listed.includes("\\u{202e}") && listed.includes("\\e[2J"), listed);
    assert.ok(!listed.includes("\u202e") && !listed.includes("\u001b"), "raw bidi/escape bytes reached the terminal");
    const api = JSON.parse((await raw(`${ui.url}/api/pending`, { headers: { authorization: `Bearer ${ui.token}` } })).body) as { requests: Pending[] };
    const same = api.requests.find((p) => p.id === request?.id);
    assert.ok(same?.kind === "command" && same.argv[3] === hostile, "the API returns the exact argv");
    assert.equal((await t.cli(["deny", request?.id ?? ""])).code, 0);
    assert.equal((await held.done).code, 126);
  });
});
