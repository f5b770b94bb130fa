import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  BUILTIN_RULES,
  effectiveRules,
  InjectionRuleError,
  parseHeaderPresentation,
  parseInjectionHost,
  render,
  ruleFromSpec,
  rulesFor,
  sightingInRequest,
  swapCredentials,
  type ActiveRule,
  type InjectionRule,
} from "../../src/policy/injection.js";

const github: InjectionRule = ruleFromSpec("github", { hosts: ["api.github.com"], header: "Authorization: Bearer {}" });
const registry: InjectionRule = ruleFromSpec("registry", { hosts: ["npm.example.com:8443"], basic: "deploy" });
const active: ActiveRule[] = [
  { rule: github, placeholder: "ghp_PLACEHOLDERaaaaaaaaaaaaaaaaaaaaaaaa", real: "ghp_REALbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" },
  { rule: registry, placeholder: "PLACEHOLDERcccccccccccccccccc", real: "REALdddddddddddddddddd" },
];
const [gh, reg] = active as [ActiveRule, ActiveRule];

describe("injection rules", () => {
  it("parse hosts as exact canonical names with port 443 by default", () => {
    assert.deepEqual(parseInjectionHost("API.GitHub.com."), { host: "api.github.com", ports: [443] });
    assert.deepEqual(parseInjectionHost("npm.example.com:8443"), { host: "npm.example.com", ports: [8443] });
    for (const bad of ["*.github.com", "10.0.0.1", "[::1]:443", "a b.com", "x.com:0", "x.com:70000", "", "x.com:"]) {
      assert.throws(() => parseInjectionHost(bad), InjectionRuleError, bad);
    }
  });

  it("parse header formats with {} exactly once, and refuse headers the guardian owns", () => {
    assert.deepEqual(parseHeaderPresentation("Authorization: Bearer {}"), { kind: "header", header: "authorization", format: "Bearer {}" });
    for (const bad of ["Authorization Bearer {}", "x-api-key: {}{}", "x-api-key: none", "Host: {}", "Cookie: s={}", "bad name: {}", "x: a\u0001{}"]) {
      assert.throws(() => parseHeaderPresentation(bad), InjectionRuleError, bad);
    }
  });

  it("render the value as the origin expects it", () => {
    assert.equal(render(github.present, "V"), "Bearer V");
    assert.equal(render(registry.present, "V"), `Basic ${Buffer.from("deploy:V").toString("base64")}`);
    // '$&' in a value is not a replacement pattern.
    assert.equal(render(github.present, "a$&b"), "Bearer a$&b");
  });

  it("a user rule replaces the built-in rule of the same secret; the others stay", () => {
    const mine = ruleFromSpec("claude.api_key", { hosts: ["gateway.example.com"], header: "x-api-key: {}" });
    const rules = effectiveRules([mine]);
    assert.equal(rules.filter((r) => r.secret === "claude.api_key").length, 1);
    assert.equal(rules.find((r) => r.secret === "claude.api_key")?.hosts[0]?.host, "gateway.example.com");
    assert.equal(rules.find((r) => r.secret === "claude.api_key")?.prefix, "sk-ant-api03-", "the built-in prefix shapes the placeholder still");
    assert.equal(rules.length, BUILTIN_RULES.length);
  });

  it("a spec needs hosts and exactly one way of presenting the value", () => {
    assert.throws(() => ruleFromSpec("x", { hosts: [], header: "a: {}" }), InjectionRuleError);
    assert.throws(() => ruleFromSpec("x", { hosts: ["a.com"] }), InjectionRuleError);
    assert.throws(() => ruleFromSpec("x", { hosts: ["a.com"], header: "a: {}", basic: "u" }), InjectionRuleError);
    assert.throws(() => ruleFromSpec("x", { hosts: ["a.com"], basic: "u:v" }), InjectionRuleError);
  });

  it("apply to exactly their host and port", () => {
    assert.deepEqual(rulesFor(active, "api.github.com", 443), [gh]);
    assert.deepEqual(rulesFor(active, "api.github.com", 8443), []);
    assert.deepEqual(rulesFor(active, "evil-api.github.com", 443), []);
    assert.deepEqual(rulesFor(active, "npm.example.com", 8443), [reg]);
  });
});

describe("swapCredentials", () => {
  const swap = (host: string, port: number, headers: [string, string][], target = "/") => swapCredentials(active, host, port, headers, target);

  it("puts the real value in place of the placeholder, in the rule's header and format only", () => {
    const result = swap("api.github.com", 443, [["Accept", "*/*"], ["Authorization", `Bearer ${gh.placeholder}`]]);
    assert.deepEqual(result, { ok: true, headers: [["Accept", "*/*"], ["Authorization", `Bearer ${gh.real}`]], injected: ["github"], stripped: [] });
    const basic = swap("npm.example.com", 8443, [["authorization", render(registry.present, reg.placeholder)]]);
    assert.ok(basic.ok && basic.headers[0]?.[1] === render(registry.present, reg.real ?? ""));
  });

  it("strips a client-supplied value of an injection header", () => {
    assert.deepEqual(swap("api.github.com", 443, [["Authorization", "Bearer mine"]]), { ok: true, headers: [], injected: [], stripped: ["authorization"] });
  });

  it("refuses the placeholder in another header, another format, or the URL", () => {
    const cases: [string, [string, string][], string][] = [
      ["another header", [["X-Token", gh.placeholder]], "/"],
      ["another format", [["Authorization", `token ${gh.placeholder}`]], "/"],
      ["the URL", [], `/?t=${gh.placeholder}`],
      ["the URL, percent-encoded", [], `/?t=${[...gh.placeholder].map((c) => `%${c.charCodeAt(0).toString(16)}`).join("")}`],
      ["basic auth of another header", [["X-Auth", `Basic ${Buffer.from(`u:${gh.placeholder}`).toString("base64")}`]], "/"],
    ];
    for (const [what, headers, target] of cases) {
      const result = swap("api.github.com", 443, headers, target);
      assert.ok(!result.ok && "sighting" in result && result.sighting.secret === "github", what);
    }
  });

  it("refuses another secret's placeholder at this host, even in this host's injection header", () => {
    const result = swap("api.github.com", 443, [["Authorization", render(registry.present, reg.placeholder)]]);
    assert.ok(!result.ok && "sighting" in result && result.sighting.secret === "registry");
  });

  it("never injects at a host the rule does not name; the placeholder there is a sighting", () => {
    const result = swap("gist.github.com", 443, [["Authorization", `Bearer ${gh.placeholder}`]]);
    assert.ok(!result.ok && "sighting" in result && result.sighting.where === "header");
  });

  it("says when the value is not available (a locked vault) instead of sending the request without it", () => {
    const locked: ActiveRule[] = [{ ...gh, real: undefined }];
    assert.deepEqual(swapCredentials(locked, "api.github.com", 443, [["Authorization", `Bearer ${gh.placeholder}`]], "/"), { ok: false, unavailable: "github" });
  });
});

describe("sightingInRequest (plain HTTP and hosts without injection)", () => {
  it("finds a placeholder in any header or the URL, and nothing in a clean request", () => {
    assert.equal(sightingInRequest(active, [["Accept", "*/*"]], "/x?y=1"), undefined);
    assert.deepEqual(sightingInRequest(active, [["Authorization", `Bearer ${gh.placeholder}`]], "/"), { secret: "github", where: "header", header: "authorization" });
    assert.deepEqual(sightingInRequest(active, [], `/${reg.placeholder}`), { secret: "registry", where: "url" });
  });
});
