import assert from "node:assert/strict";
import { networkInterfaces } from "node:os";
import { describe, it } from "node:test";
import { isHostAddress } from "../../src/guardian/proxy/local-addresses.js";

describe("isHostAddress: this host's own interface addresses count as local", () => {
  it("knows every address of every interface, whatever block it is in", () => {
    const own = Object.values(networkInterfaces()).flatMap((entries) => (entries ?? []).map((e) => e.address));
    assert.ok(own.length > 0);
    for (const address of own) assert.equal(isHostAddress(address), true, address);
  });

  it("reads an IPv4-mapped IPv6 address as the IPv4 address", () => {
    assert.equal(isHostAddress("::ffff:127.0.0.1"), true);
    assert.equal(isHostAddress("::FFFF:127.0.0.1"), true);
  });

  it("does not claim other addresses", () => {
    for (const address of ["8.8.8.8", "2001:4860:4860::8888", "203.0.113.80"]) assert.equal(isHostAddress(address), false, address);
  });
});
