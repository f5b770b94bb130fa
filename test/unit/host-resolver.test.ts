/**
 * The proxy's memory of DNS answers (src/guardian/proxy/host-resolver.ts): an answer is reused for
 * ANSWER_TTL_MS and no longer, lookups of one name at once share one query, failures are never
 * remembered, and at most MAX_NAMES names are kept (the oldest answer goes first). Under the proxy's
 * address check (admit), a remembered answer is checked on every use and a rebound name is judged
 * on its new answer once the old one is too old.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ANSWER_TTL_MS, HostResolver, MAX_NAMES, MAX_QUERIES_AT_ONCE, type ResolvedAddress } from "../../src/guardian/proxy/host-resolver.js";
import { admit, type JudgeInput } from "../../src/guardian/proxy/judge.js";
import { emptyPolicy, type Decision } from "../../src/policy/egress.js";
import { canonicalHost } from "../../src/policy/hosts.js";

/** A resolver under test with a fake host resolver and clock; `asked` lists the names the host was asked for. */
function fixture(answer: (name: string) => Promise<ResolvedAddress[]> = async (name) => [{ address: `192.0.2.${name.length}`, family: 4 }]) {
  const asked: string[] = [];
  let clock = 1_000;
  const resolver = new HostResolver(
    (name) => {
      asked.push(name);
      return answer(name);
    },
    () => clock,
  );
  return { resolver, asked, advance: (ms: number) => (clock += ms) };
}

describe("HostResolver", () => {
  it("reuses an answer while it is fresh and asks the host again once it is not", async () => {
    const { resolver, asked, advance } = fixture();
    const first = await resolver.lookup("a.test");
    assert.deepEqual(first, [{ address: "192.0.2.6", family: 4 }]);
    advance(ANSWER_TTL_MS - 1);
    assert.deepEqual(await resolver.lookup("a.test"), first);
    assert.deepEqual(asked, ["a.test"]);
    advance(1);
    await resolver.lookup("a.test");
    assert.deepEqual(asked, ["a.test", "a.test"], "an answer was used past its time");
  });

  it("keeps names apart", async () => {
    const { resolver, asked } = fixture();
    assert.equal((await resolver.lookup("a.test"))[0]?.address, "192.0.2.6");
    assert.equal((await resolver.lookup("bb.test"))[0]?.address, "192.0.2.7");
    assert.deepEqual(asked, ["a.test", "bb.test"]);
  });

  it("lets lookups of one name made at once share one query", async () => {
    let release: (addresses: ResolvedAddress[]) => void = () => undefined;
    const { resolver, asked } = fixture(() => new Promise((resolve) => (release = resolve)));
    const all = Promise.all(Array.from({ length: 100 }, () => resolver.lookup("many.test")));
    release([{ address: "2001:db8::1", family: 6 }]);
    const answers = await all;
    assert.equal(asked.length, 1);
    for (const a of answers) assert.deepEqual(a, [{ address: "2001:db8::1", family: 6 }]);
  });

  it("does not remember a failure: every caller of the failed query sees it, the next lookup asks again", async () => {
    let fail = true;
    const { resolver, asked } = fixture(async (name) => {
      if (fail) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: "ENOTFOUND" });
      return [{ address: "192.0.2.1", family: 4 }];
    });
    const results = await Promise.allSettled([resolver.lookup("later.test"), resolver.lookup("later.test")]);
    for (const r of results) assert.equal(r.status === "rejected" && (r.reason as NodeJS.ErrnoException).code, "ENOTFOUND");
    fail = false;
    assert.deepEqual(await resolver.lookup("later.test"), [{ address: "192.0.2.1", family: 4 }]);
    assert.deepEqual(asked, ["later.test", "later.test"]);
  });

  it(`asks the host for at most ${MAX_QUERIES_AT_ONCE} names at once; the rest wait their turn, in order, also after a failure`, async () => {
    const answers = new Map<string, { resolve: (a: ResolvedAddress[]) => void; reject: (e: Error) => void }>();
    const { resolver, asked } = fixture((name) => new Promise((resolve, reject) => answers.set(name, { resolve, reject })));
    const names = ["a.test", "b.test", "c.test", "d.test"];
    const lookups = names.map((name) => resolver.lookup(name));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(asked, names.slice(0, MAX_QUERIES_AT_ONCE));
    answers.get("a.test")?.reject(new Error("timed out"));
    await assert.rejects(lookups[0] as Promise<unknown>, /timed out/);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(asked, names.slice(0, MAX_QUERIES_AT_ONCE + 1), "a failed query gives its place to the next");
    for (const name of names.slice(1)) answers.get(name)?.resolve([{ address: "192.0.2.1", family: 4 }]);
    await new Promise((resolve) => setImmediate(resolve));
    answers.get("d.test")?.resolve([{ address: "192.0.2.1", family: 4 }]);
    await Promise.all(lookups.slice(1));
    assert.deepEqual(asked, names);
    // All places given back: the next lookup is asked at once.
    void resolver.lookup("e.test");
    assert.deepEqual(asked, [...names, "e.test"]);
  });

  it(`keeps at most ${MAX_NAMES} names, forgetting the oldest answer first`, async () => {
    const { resolver, asked } = fixture();
    for (let i = 0; i < MAX_NAMES; i++) await resolver.lookup(`n${i}.test`);
    await resolver.lookup("n0.test"); // still known: not asked again (and a reuse does not make an answer younger)
    assert.equal(asked.length, MAX_NAMES);
    await resolver.lookup("one-more.test"); // the oldest answer, n0's, goes
    await resolver.lookup("n1.test");
    assert.equal(asked.length, MAX_NAMES + 1, "n1 was forgotten instead of n0, the oldest");
    await resolver.lookup("n0.test");
    assert.equal(asked.at(-1), "n0.test", "more than MAX_NAMES answers were kept");
  });
});

describe("HostResolver under the proxy's address check (admit)", () => {
  const allowPublicOnly: Decision = { verdict: "allow", rule: { text: "rebind.test", tier: "global", list: "allow" }, allowPrivate: false };
  const host = canonicalHost("rebind.test");
  const input = (resolver: HostResolver): JudgeInput => ({ policy: emptyPolicy(), overrides: new Map(), project: "proj", cloister: "cl", lookup: (name) => resolver.lookup(name) });

  it("checks a remembered answer on every use: a name answering public and private only ever reaches the public address", async () => {
    const { resolver, asked } = fixture(async () => [
      { address: "10.0.0.7", family: 4 },
      { address: "192.0.2.10", family: 4 },
    ]);
    for (let i = 0; i < 3; i++) {
      const verdict = await admit(input(resolver), host, 443, allowPublicOnly);
      assert.equal(verdict.ok && verdict.address, "192.0.2.10");
    }
    assert.equal(asked.length, 1);
  });

  it("a name rebound to a private address is refused once its remembered answer is too old", async () => {
    let answer = "192.0.2.10";
    const { resolver, advance } = fixture(async () => [{ address: answer, family: 4 }]);
    assert.equal((await admit(input(resolver), host, 443, allowPublicOnly)).ok, true);
    answer = "127.0.0.1";
    advance(ANSWER_TTL_MS);
    const verdict = await admit(input(resolver), host, 443, allowPublicOnly);
    assert.equal(verdict.ok, false);
    assert.equal(!verdict.ok && verdict.reason, "address");
  });
});
