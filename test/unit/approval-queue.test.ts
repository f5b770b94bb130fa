/**
 * The approval queue on its own: holding, coalescing, single-use ids, timeouts that deny, waiters
 * that leave, floods, answers that release other held requests, undo, and a keeper that fails.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { AuditEvent } from "../../src/audit/log.js";
import { ApprovalQueue, MAX_PENDING_PER_CLOISTER, type DecisionKeeper, type DomainQuestion, type Outcome } from "../../src/guardian/approvals/queue.js";
import { ApprovalError, type ApprovalEvent, type DecisionView, type Pending, type Scope, type Verdict } from "../../src/guardian/approvals/types.js";

interface FakeKeeper extends DecisionKeeper {
  kept: { id: string; verdict: Verdict; scope: Scope; wildcard: boolean }[];
  revoked: DecisionView[];
  /** What recheck answers for each host, or argv joined by spaces (the policy after a change). */
  policy: Map<string, Verdict>;
  fail?: Error;
}

function fakeKeeper(): FakeKeeper {
  const keeper: FakeKeeper = {
    kept: [],
    revoked: [],
    policy: new Map(),
    async keep(request, verdict, scope, wildcard) {
      if (keeper.fail) throw keeper.fail;
      keeper.kept.push({ id: request.id, verdict, scope, wildcard });
      if (scope === "once") return null;
      return request.kind === "domain" ? (wildcard ? request.wildcard : request.rule) : JSON.stringify(request.argv);
    },
    async revoke(decision) {
      keeper.revoked.push(decision);
    },
    recheck(request: Pending) {
      return keeper.policy.get(request.kind === "domain" ? request.host : request.argv.join(" "));
    },
  };
  return keeper;
}

function setup() {
  const keeper = fakeKeeper();
  const audit: AuditEvent[] = [];
  const queue = new ApprovalQueue(keeper, (event) => audit.push(event));
  const events: ApprovalEvent[] = [];
  queue.subscribe((event) => events.push(event));
  return { keeper, audit, queue, events };
}

function question(host: string, cloister = "c1", project = "p"): DomainQuestion {
  return { cloister, project, branch: "main", host, port: 443, rule: host, wildcard: `*.${host.split(".").slice(1).join(".")}` };
}

const never = () => new AbortController().signal;

describe("approval queue", () => {
  it("holds a domain request until answered; the answer reaches the waiter and the id is single use", async () => {
    const { queue, events, keeper, audit } = setup();
    const outcome = queue.askDomain(question("api.example.com"), 60_000, never());
    const [pending] = queue.pending();
    assert.ok(pending && pending.kind === "domain");
    assert.match(pending.id, /^[0-9a-f]{32}$/);
    assert.equal(pending.waiting, 1);
    const decision = await queue.answer(pending.id, { verdict: "allow", scope: "session", by: "cli" });
    assert.deepEqual(await outcome, { verdict: "allow", scope: "session", rule: "api.example.com", by: "cli", requestId: pending.id });
    assert.equal(decision.rule, "api.example.com");
    assert.equal(decision.undoable, false);
    assert.deepEqual(keeper.kept, [{ id: pending.id, verdict: "allow", scope: "session", wildcard: false }]);
    assert.deepEqual(queue.pending(), []);
    await assert.rejects(queue.answer(pending.id, { verdict: "deny", scope: "once", by: "cli" }), (e: unknown) => e instanceof ApprovalError && e.status === 404);
    assert.deepEqual(events.map((e) => e.type), ["added", "decided", "removed"]);
    assert.deepEqual(audit.map((e) => e.type), ["approval.request", "approval.decision"]);
  });

  it("coalesces identical requests of one cloister, not of two", async () => {
    const { queue } = setup();
    const a = queue.askDomain(question("x.example.com"), 60_000, never());
    const b = queue.askDomain(question("x.example.com"), 60_000, never());
    const other = queue.askDomain(question("x.example.com", "c2"), 60_000, never());
    const pending = queue.pending();
    assert.equal(pending.length, 2);
    const mine = pending.find((p) => p.cloister === "c1");
    assert.ok(mine && mine.kind === "domain" && mine.waiting === 2);
    await queue.answer(mine.id, { verdict: "deny", scope: "once", by: "ui" });
    assert.equal((await a).verdict, "deny");
    assert.equal((await b).verdict, "deny");
    assert.equal(queue.pending().length, 1);
    queue.cancelAll();
    assert.equal((await other).by, "cancelled");
  });

  it("a timeout is a denial, never an allow", async () => {
    const { queue, events, audit } = setup();
    const outcome = await queue.askDomain(question("slow.example.com"), 20, never());
    assert.deepEqual(outcome, { verdict: "deny", scope: null, rule: null, by: "timeout", requestId: outcome.requestId });
    assert.deepEqual(queue.pending(), []);
    assert.deepEqual(events.at(-1), { type: "removed", id: outcome.requestId, outcome: "timeout" });
    assert.ok(audit.some((e) => e.type === "approval.timeout"));
  });

  it("a request whose every waiter left is withdrawn; one that still has a waiter stays", async () => {
    const { queue, events } = setup();
    const first = new AbortController();
    const second = new AbortController();
    const a = queue.askDomain(question("gone.example.com"), 60_000, first.signal);
    const b = queue.askDomain(question("gone.example.com"), 60_000, second.signal);
    first.abort();
    assert.equal((await a).by, "cancelled");
    const [still] = queue.pending();
    assert.ok(still && still.kind === "domain" && still.waiting === 1);
    second.abort();
    assert.equal((await b).by, "cancelled");
    assert.deepEqual(queue.pending(), []);
    assert.equal(events.filter((e) => e.type === "removed").length, 1);
  });

  it("an already-aborted waiter is not held at all", async () => {
    const { queue } = setup();
    const controller = new AbortController();
    controller.abort();
    assert.equal((await queue.askDomain(question("a.example.com"), 60_000, controller.signal)).by, "cancelled");
    assert.deepEqual(queue.pending(), []);
  });

  it("refuses at once beyond the per-cloister cap, without a question (flood)", async () => {
    const { queue, audit } = setup();
    const held = Array.from({ length: MAX_PENDING_PER_CLOISTER }, (_, i) => queue.askDomain(question(`h${i}.example.com`), 60_000, never()));
    const refused = await queue.askDomain(question("one-more.example.com"), 60_000, never());
    assert.equal(refused.by, "flood");
    assert.equal(queue.pending().length, MAX_PENDING_PER_CLOISTER);
    assert.ok(audit.some((e) => e.type === "approval.flood"));
    // Another cloister is not starved by the first one's flood.
    const other = queue.askDomain(question("fine.example.com", "c2"), 60_000, never());
    assert.equal(queue.pending().length, MAX_PENDING_PER_CLOISTER + 1);
    queue.cancelAll();
    await Promise.all([...held, other]);
  });

  it("checks the answer: verdict, scope, and a wildcard only where one is offered", async () => {
    const { queue } = setup();
    void queue.askDomain({ ...question("example.com"), wildcard: null }, 60_000, never());
    void queue.askCommand({ cloister: "c1", project: "p", branch: null, argv: ["gh", "pr", "view"], cwd: "/p", rule: null , hazards: [] }, 60_000, never()).outcome;
    const [domain, command] = queue.pending();
    assert.ok(domain && command);
    const bad = (e: unknown) => e instanceof ApprovalError && e.status === 400;
    await assert.rejects(queue.answer(domain.id, { verdict: "maybe" as Verdict, scope: "once", by: "cli" }), bad);
    await assert.rejects(queue.answer(domain.id, { verdict: "allow", scope: "forever" as Scope, by: "cli" }), bad);
    await assert.rejects(queue.answer(domain.id, { verdict: "allow", scope: "once", wildcard: true, by: "cli" }), bad);
    await assert.rejects(queue.answer(command.id, { verdict: "allow", scope: "once", wildcard: true, by: "cli" }), bad);
    assert.equal(queue.pending().length, 2, "a refused answer leaves the request waiting");
    queue.cancelAll();
  });

  it("a keeper that cannot keep the answer leaves the request waiting and the waiter held", async () => {
    const { queue, keeper } = setup();
    const outcome = queue.askDomain(question("keep.example.com"), 60_000, never());
    const [pending] = queue.pending();
    assert.ok(pending);
    keeper.fail = new Error("disk full");
    await assert.rejects(queue.answer(pending.id, { verdict: "allow", scope: "project", by: "ui" }), /disk full/);
    assert.equal(queue.pending().length, 1);
    keeper.fail = undefined;
    await queue.answer(pending.id, { verdict: "allow", scope: "project", by: "ui" });
    assert.equal((await outcome).verdict, "allow");
  });

  it("a project answer releases other held requests the policy now decides, and only those", async () => {
    const { queue, keeper } = setup();
    const a = queue.askDomain(question("shared.example.com", "c1"), 60_000, never());
    const b = queue.askDomain(question("shared.example.com", "c2"), 60_000, never());
    const unrelated = queue.askDomain(question("other.example.com", "c3"), 60_000, never());
    const first = queue.pending().find((p) => p.cloister === "c1");
    assert.ok(first);
    keeper.policy.set("shared.example.com", "allow");
    await queue.answer(first.id, { verdict: "allow", scope: "project", by: "ui" });
    assert.equal((await a).verdict, "allow");
    const released = await b;
    assert.equal(released.verdict, "allow");
    assert.equal(released.scope, "project");
    assert.deepEqual(queue.pending().map((p) => p.cloister), ["c3"]);
    queue.cancelAll();
    assert.equal((await unrelated).verdict, "deny");
  });

  it("a deny rule added while a request waited wins over a later allow: the answer is refused and the request denied", async () => {
    const { queue, keeper, audit } = setup();
    const outcome = queue.askDomain(question("late.example.com"), 60_000, never());
    const command = queue.askCommand({ cloister: "c1", project: "p", branch: null, argv: ["ls", "-R"], cwd: "/p", rule: "ask [ls, **]" , hazards: [] }, 60_000, never());
    const [domain] = queue.pending();
    assert.ok(domain && command.request);
    keeper.policy.set("late.example.com", "deny").set("ls -R", "deny");
    for (const id of [domain.id, command.request.id]) {
      await assert.rejects(queue.answer(id, { verdict: "allow", scope: "once", by: "cli" }), (e: unknown) => e instanceof ApprovalError && e.status === 409 && /a deny rule added since covers/.test(e.message));
    }
    assert.deepEqual(await outcome, { verdict: "deny", scope: null, rule: null, by: "policy", requestId: domain.id });
    assert.equal((await command.outcome).by, "policy");
    assert.deepEqual(keeper.kept, []);
    assert.deepEqual(queue.pending(), []);
    assert.equal(audit.filter((e) => e.type === "approval.follows").length, 2);
    assert.equal(audit.filter((e) => e.type === "approval.decision").length, 0);
  });

  it("a rule given outside an answer decides the held requests it covers; a reload releases only what is now denied", async () => {
    const { queue, keeper } = setup();
    const allowed = queue.askDomain(question("ok.example.com"), 60_000, never());
    const denied = queue.askDomain(question("no.example.com"), 60_000, never());
    const command = queue.askCommand({ cloister: "c1", project: "p", branch: null, argv: ["make"], cwd: "/p", rule: "ask [make]" , hazards: [] }, 60_000, never()).outcome;
    keeper.policy.set("ok.example.com", "allow").set("no.example.com", "deny").set("make", "deny");
    queue.policyChanged(null);
    assert.equal((await denied).by, "policy");
    assert.equal((await command).by, "policy");
    assert.deepEqual(queue.pending().map((p) => (p.kind === "domain" ? p.host : "")), ["ok.example.com"]);
    queue.policyChanged({ scope: "project", rule: "ok.example.com", by: "cli" });
    assert.deepEqual(await allowed, { verdict: "allow", scope: "project", rule: "ok.example.com", by: "cli", requestId: (await allowed).requestId });
    assert.deepEqual(queue.pending(), []);
  });

  it("undo revokes a persisted decision once; session and once decisions are not undoable", async () => {
    const { queue, keeper } = setup();
    void queue.askDomain(question("p.example.com"), 60_000, never());
    void queue.askDomain(question("s.example.com"), 60_000, never());
    const [p, s] = queue.pending();
    assert.ok(p && s);
    const persisted = await queue.answer(p.id, { verdict: "allow", scope: "global", wildcard: true, by: "ui" });
    assert.equal(persisted.rule, "*.example.com");
    assert.equal(persisted.undoable, true);
    const session = await queue.answer(s.id, { verdict: "allow", scope: "session", by: "ui" });
    const undone = await queue.undo(persisted.id, "ui");
    assert.equal(undone.undone, true);
    assert.equal(keeper.revoked.length, 1);
    await assert.rejects(queue.undo(persisted.id, "ui"), (e: unknown) => e instanceof ApprovalError && e.status === 409);
    await assert.rejects(queue.undo(session.id, "ui"), (e: unknown) => e instanceof ApprovalError && e.status === 409);
    await assert.rejects(queue.undo("nope", "ui"), (e: unknown) => e instanceof ApprovalError && e.status === 404);
    assert.deepEqual(queue.recent().map((d) => d.id), [session.id, persisted.id]);
  });

  it("commands never coalesce, and their audit subject is the exact argv", async () => {
    const { queue, audit } = setup();
    const ask = () => queue.askCommand({ cloister: "c1", project: "p", branch: null, argv: ["echo", "a b", "$(x)"], cwd: "/p", rule: "ask [echo, **]" , hazards: [] }, 60_000, never()).outcome;
    const outcomes: Promise<Outcome>[] = [ask(), ask()];
    assert.equal(queue.pending().length, 2);
    assert.equal(audit[0]?.subject, JSON.stringify(["echo", "a b", "$(x)"]));
    queue.cancelAll();
    await Promise.all(outcomes);
  });
});
