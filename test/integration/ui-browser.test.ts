/**
 * The approval UI in a real browser (Debian's Chromium through playwright-core) against the real
 * UI server and an in-memory approval service: sign-in, live requests, answers with confirmation,
 * undo, hostile strings shown as inert visible text, and a cross-origin page that gets nowhere.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { after, before, describe, it } from "node:test";
import type { Browser, Page } from "playwright-core";
import { ApprovalError } from "../../src/guardian/approvals/types.js";
import { UiServer } from "../../src/guardian/ui/server.js";
import { PACKAGE_ROOT } from "../../src/package-root.js";
import { launchBrowser } from "../helpers/browser.js";
import { commandRequest, domainRequest, FakeApprovals } from "../helpers/fake-approvals.js";

/** Markup, attribute breakouts, a terminal escape, a bidi override, a zero-width space and a newline. */
const HOSTILE = `<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>"><img src=y onerror=window.pwned=3>\u001b[31mred\u202Etxt.exe\u200B\n</title>`;
/** What visible() must have left no trace of in the page's text. */
const RAW_HIDDEN = /[\u0000-\u001f\u007f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/;

describe("approval UI in a browser", () => {
  const assetsDir = mkdtempSync(join(tmpdir(), "cuib-"));
  const service = new FakeApprovals();
  const pageErrors: string[] = [];
  const logged: string[] = [];
  const refusals = () => logged.filter((line) => line.includes("refused a write"));
  let ui: UiServer;
  let browser: Browser;
  let page: Page;
  let attacker: Server;

  before(async () => {
    const { bundleUi } = (await import(pathToFileURL(join(PACKAGE_ROOT, "scripts/bundle.mjs")).href)) as { bundleUi(outdir: string): Promise<void> };
    await bundleUi(assetsDir);
    ui = await UiServer.start({ service, port: 0, assetsDir, log: (message) => logged.push(message) });
    browser = await launchBrowser();
    const context = await browser.newContext({ viewport: { width: 400, height: 900 } });
    context.setDefaultTimeout(10_000);
    page = await context.newPage();
    page.on("pageerror", (error) => pageErrors.push(error.message));
    // Error statuses the app handles itself (and the favicon it does not have) are logged as
    // "Failed to load resource"; anything else, a CSP violation above all, is a failure.
    page.on("console", (message) => void (message.type() === "error" && !message.text().startsWith("Failed to load resource") && pageErrors.push(message.text())));
    attacker = createServer((_req, res) => res.end("<!doctype html><title>elsewhere</title>"));
    await new Promise<void>((resolve) => attacker.listen(0, "127.0.0.1", resolve));
  });

  after(async () => {
    await browser?.close();
    await ui?.close();
    attacker?.close();
    rmSync(assetsDir, { recursive: true, force: true });
  });

  const card = (id: string) => page.locator(`#pending li.card[data-id="${id}"]`);
  const dialog = () => page.locator("dialog#confirm");

  it("signs in through the login link and waits on the live stream", async () => {
    const streamOpen = page.waitForResponse((response) => response.url().endsWith("/api/events"));
    await page.goto(ui.loginUrl());
    assert.equal(page.url(), `${ui.url}/`);
    assert.equal((await streamOpen).status(), 200);
    assert.equal(await page.title(), "Cloister approvals");
    assert.equal(await page.locator("#pending-empty").isVisible(), true);
    const [cookie] = await page.context().cookies();
    assert.equal(cookie?.name, "cloister_ui");
    assert.equal(cookie?.httpOnly, true);
    assert.equal(cookie?.sameSite, "Strict");
    assert.equal(cookie?.expires, -1, "a browser-session cookie");
    // The chime is armed by the first interaction.
    await page.mouse.click(5, 5);
  });

  it("shows a domain request that arrives after the page loaded, with a countdown", async () => {
    const request = service.add(domainRequest());
    await card(request.id).waitFor();
    assert.equal(await page.title(), "(1) Cloister approvals");
    const text = await card(request.id).innerText();
    for (const expected of ["api.example.com:443", "shop-1", "shop", "main", "api.example.com", "*.example.com"]) assert.ok(text.includes(expected), `${expected} in ${text}`);
    assert.match(text, /expires in [01]:\d\d/);
  });

  it("asks before answering for the project, and Cancel answers nothing", async () => {
    const [request] = service.pending();
    assert.ok(request);
    await card(request.id).locator("select").selectOption("project");
    await card(request.id).getByRole("button", { name: "Allow" }).click();
    await dialog().waitFor();
    await page.locator("#confirm-cancel").click();
    assert.equal(await dialog().isVisible(), false);
    assert.deepEqual(service.answers, []);
    assert.equal(await card(request.id).count(), 1);
  });

  it("allows for the project after confirming, naming the rule and the project's file", async () => {
    const [request] = service.pending();
    assert.ok(request);
    await card(request.id).getByRole("button", { name: "Allow" }).click();
    await dialog().waitFor();
    const text = await dialog().innerText();
    assert.match(text, /The rule api\.example\.com \(for api\.example\.com:443\) is written to the allow list in the decision file of project shop/);
    await page.locator("#confirm-ok").click();
    await card(request.id).waitFor({ state: "detached" });
    assert.deepEqual(service.answers, [{ id: request.id, input: { verdict: "allow", scope: "project", wildcard: false, by: "ui" } }]);
    assert.equal(await page.title(), "Cloister approvals");
    const decision = page.locator("#recent li").first();
    assert.match(await decision.innerText(), /allowed project api\.example\.com:443/);
  });

  it("undoes the decision from Recent decisions after confirming", async () => {
    const [decision] = service.recent();
    assert.ok(decision);
    const entry = page.locator("#recent li").first();
    await entry.getByRole("button", { name: "Undo" }).click();
    await dialog().waitFor();
    assert.match(await dialog().innerText(), /removes the rule api\.example\.com from the allow list of the decisions of project shop/);
    await page.locator("#confirm-ok").click();
    await entry.getByText("undone").waitFor();
    assert.deepEqual(service.undos, [{ id: decision.id, by: "ui" }]);
    assert.equal(await entry.getByRole("button", { name: "Undo" }).count(), 0);
  });

  it("answers a command request once without a confirmation, showing one chip per argument", async () => {
    const request = service.add(commandRequest({ argv: ["git", "push", "origin", "main"] }));
    await card(request.id).waitFor();
    assert.deepEqual(await card(request.id).locator(".argv li").allInnerTexts(), ["git", "push", "origin", "main"]);
    await card(request.id).getByRole("button", { name: "Allow" }).click();
    await card(request.id).waitFor({ state: "detached" });
    assert.deepEqual(service.answers.at(-1), { id: request.id, input: { verdict: "allow", scope: "once", wildcard: false, by: "ui" } });
  });

  it("shows a command's hazards on its card, as text (QA H9: the argv alone did not say what --output does)", async () => {
    const hazard = `argument 3 (--output=~/.bashrc) writes a file on the host <b>${HOSTILE}</b>`;
    const request = service.add(commandRequest({ argv: ["git", "log", "-1", "--output=~/.bashrc"], hazards: [hazard] }));
    await card(request.id).waitFor();
    assert.equal(await card(request.id).locator(".hazards li").count(), 1);
    assert.match(await card(request.id).locator(".hazards li").innerText(), /^argument 3 \(--output=~\/\.bashrc\) writes a file on the host <b><img src=x/);
    assert.equal(await card(request.id).locator(".hazards b, .hazards img, .hazards script").count(), 0, "the hazard text was rendered as HTML");
    const plain = service.add(commandRequest());
    await card(plain.id).waitFor();
    assert.equal(await card(plain.id).locator(".hazards").count(), 0);
  });

  it("confirms a wildcard even for the session, and sends it", async () => {
    const request = service.add(domainRequest({ host: "img.cdn.example.com", rule: "img.cdn.example.com", wildcard: "*.cdn.example.com" }));
    await card(request.id).waitFor();
    await card(request.id).locator("select").selectOption("session");
    await card(request.id).getByLabel(/apply to/).check();
    await card(request.id).getByRole("button", { name: "Deny" }).click();
    await dialog().waitFor();
    assert.match(await dialog().innerText(), /The rule \*\.cdn\.example\.com \(every name it matches, not only img\.cdn\.example\.com:443\) goes on the deny list of cloister shop-1 until it stops/s);
    await page.locator("#confirm-ok").click();
    await card(request.id).waitFor({ state: "detached" });
    assert.deepEqual(service.answers.at(-1)?.input, { verdict: "deny", scope: "session", wildcard: true, by: "ui" });
  });

  it("shows a refused answer on the card and keeps the card", async () => {
    const request = service.add(commandRequest());
    await card(request.id).waitFor();
    service.failNext = new ApprovalError("no pending request (answered elsewhere)", 404);
    await card(request.id).getByRole("button", { name: "Deny" }).click();
    await card(request.id).getByRole("alert").getByText("answered elsewhere").waitFor();
    assert.equal(await card(request.id).count(), 1);
  });

  it("renders hostile strings as inert text with hidden characters made visible", async () => {
    const before = await page.title();
    const domain = service.add(domainRequest({ host: HOSTILE, cloister: HOSTILE, project: HOSTILE, branch: HOSTILE, rule: HOSTILE, wildcard: HOSTILE }));
    const command = service.add(commandRequest({ argv: ["sh", HOSTILE, "", "\u2066x\u2069"], cwd: HOSTILE, rule: HOSTILE }));
    await card(domain.id).waitFor();
    await card(command.id).waitFor();
    const count = Number(/^\((\d+)\)/.exec(before)?.[1] ?? 0) + 2;
    assert.equal(await page.title(), `(${count}) Cloister approvals`);
    const dom = await page.evaluate(() => ({
      images: document.images.length,
      scripts: document.querySelectorAll("script").length,
      pwned: (window as { pwned?: unknown }).pwned ?? null,
      text: document.querySelector("#pending")?.textContent ?? "",
    }));
    assert.deepEqual({ images: dom.images, scripts: dom.scripts, pwned: dom.pwned }, { images: 0, scripts: 1, pwned: null });
    assert.doesNotMatch(dom.text, RAW_HIDDEN);
    assert.ok(dom.text.includes(String.raw`\e[31mred\u{202e}txt.exe\u{200b}\n</title>`), "escapes shown literally");
    assert.ok(dom.text.includes(`<img src=x onerror="window.pwned=1"><script>`), "markup shown as text");
    assert.ok(dom.text.includes(String.raw`\u{2066}x\u{2069}`));
    assert.deepEqual(await card(command.id).locator(".argv li").evaluateAll((items) => items.map((item) => item.className)), ["", "", "empty", ""]);
    mkdirSync(join(PACKAGE_ROOT, "test-results"), { recursive: true });
    await page.screenshot({ path: join(PACKAGE_ROOT, "test-results/ui-approvals.png"), fullPage: true });
    assert.deepEqual(pageErrors, [], "no script errors or CSP violations on the UI's own page");
  });

  it("gives a page on another origin no way to answer, even with the cookie attached", async () => {
    const answered = service.answers.length;
    const [target] = service.pending();
    assert.ok(target);
    const url = `${ui.url}/api/requests/${target.id}/answer`;
    const attackerOrigin = `http://127.0.0.1:${(attacker.address() as AddressInfo).port}`;
    await page.goto(`${attackerOrigin}/`);
    // No named functions inside evaluate(): tsx would wrap them in a helper the page does not have.
    const [simple, json] = await page.evaluate(
      (url) =>
        Promise.all(
          [{ mode: "no-cors", headers: { "content-type": "text/plain" } } as const, { headers: { "content-type": "application/json" } }].map((init) =>
            fetch(url, { method: "POST", credentials: "include", body: JSON.stringify({ verdict: "allow", scope: "global" }), ...init }).then(
              (response) => `status ${response.status} (${response.type})`,
              (error: Error) => `failed: ${error.name}`,
            ),
          ),
        ),
      url,
    );
    // The simple request goes out (cookie included: 127.0.0.1 on another port is the same site) and
    // is refused for its foreign Origin; the JSON one dies at the CORS preflight this server never grants.
    assert.deepEqual(refusals(), [`approval UI: refused a write from origin "${attackerOrigin}"`]);
    assert.equal(simple, "failed: TypeError");
    assert.equal(json, "failed: TypeError");

    // A cross-site form post navigates to the UI and gets only the refusal.
    const response = await Promise.all([
      page.waitForNavigation(),
      page.evaluate((url) => {
        const form = document.createElement("form");
        form.method = "POST";
        form.action = url;
        form.enctype = "text/plain";
        const field = document.createElement("input");
        field.name = '{"verdict":"allow","scope":"global","x":"';
        field.value = '"}';
        form.append(field);
        document.body.append(form);
        form.submit();
      }, url),
    ]).then(([navigation]) => navigation);
    assert.equal(response?.status(), 403);
    assert.equal(refusals().length, 2);
    assert.equal(service.answers.length, answered);
    assert.ok(service.pending().some((request) => request.id === target.id));
  });
});
