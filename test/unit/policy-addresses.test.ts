import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { classifyAddress, needsOptIn, type AddressClass } from "../../src/policy/addresses.js";
import { canonicalHost, hostText } from "../../src/policy/hosts.js";

const IPV4: [string, AddressClass][] = [
  // metadata first: these sit inside link-local, CGNAT or public space
  ["169.254.169.254", "metadata"],
  ["169.254.170.2", "metadata"],
  ["100.100.100.200", "metadata"],
  ["168.63.129.16", "metadata"],
  ["0.0.0.0", "unspecified"],
  ["0.1.2.3", "unspecified"],
  ["0.255.255.255", "unspecified"],
  ["127.0.0.1", "loopback"],
  ["127.0.0.0", "loopback"],
  ["127.255.255.254", "loopback"],
  ["127.1.2.3", "loopback"],
  ["10.0.0.0", "private"],
  ["10.1.2.3", "private"],
  ["10.255.255.255", "private"],
  ["172.16.0.0", "private"],
  ["172.20.1.1", "private"],
  ["172.31.255.255", "private"],
  ["172.15.255.255", "public"],
  ["172.32.0.0", "public"],
  ["192.168.0.1", "private"],
  ["192.168.255.255", "private"],
  ["192.167.255.255", "public"],
  ["192.169.0.0", "public"],
  ["100.64.0.0", "cgnat"],
  ["100.64.0.1", "cgnat"],
  ["100.127.255.255", "cgnat"],
  ["100.100.100.199", "cgnat"],
  ["100.63.255.255", "public"],
  ["100.128.0.0", "public"],
  ["169.254.0.1", "link-local"],
  ["169.254.169.253", "link-local"],
  ["169.254.255.255", "link-local"],
  ["169.253.255.255", "public"],
  ["169.255.0.0", "public"],
  ["224.0.0.1", "multicast"],
  ["239.255.255.250", "multicast"],
  ["240.0.0.1", "reserved"],
  ["255.255.255.254", "reserved"],
  ["255.255.255.255", "reserved"],
  ["192.0.0.8", "reserved"],
  ["192.0.2.1", "reserved"],
  ["198.51.100.7", "reserved"],
  ["203.0.113.9", "reserved"],
  ["198.18.0.1", "reserved"],
  ["198.19.255.255", "reserved"],
  ["198.20.0.0", "public"],
  ["192.88.99.1", "reserved"],
  ["1.1.1.1", "public"],
  ["8.8.8.8", "public"],
  ["93.184.216.34", "public"],
  ["223.255.255.255", "public"],
  ["168.63.129.15", "public"],
];

const IPV6: [string, AddressClass][] = [
  ["::", "unspecified"],
  ["0:0:0:0:0:0:0:0", "unspecified"],
  ["::1", "loopback"],
  ["0:0:0:0:0:0:0:1", "loopback"],
  ["fd00:ec2::254", "metadata"],
  ["fd00:ec2::253", "private"],
  ["fc00::1", "private"],
  ["fd12:3456:789a::1", "private"],
  ["fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "private"],
  ["fec0::1", "private"],
  ["feff::1", "private"],
  ["fe80::1", "link-local"],
  ["FE80::1", "link-local"],
  ["febf:ffff::1", "link-local"],
  ["ff02::1", "multicast"],
  ["ff05::1:3", "multicast"],
  // IPv4-mapped, written either way: classified as the IPv4 address
  ["::ffff:127.0.0.1", "loopback"],
  ["::ffff:7f00:1", "loopback"],
  ["::FFFF:7F00:1", "loopback"],
  ["0:0:0:0:0:ffff:7f00:1", "loopback"],
  ["::ffff:10.0.0.1", "private"],
  ["::ffff:169.254.169.254", "metadata"],
  ["::ffff:a9fe:a9fe", "metadata"],
  ["::ffff:100.64.0.1", "cgnat"],
  ["::ffff:0.0.0.0", "unspecified"],
  ["::ffff:8.8.8.8", "public"],
  // IPv4-translated (SIIT)
  ["::ffff:0:127.0.0.1", "loopback"],
  ["::ffff:0:808:808", "public"],
  // IPv4-compatible (deprecated)
  ["::127.0.0.1", "loopback"],
  ["::7f00:1", "loopback"],
  ["::10.0.0.1", "private"],
  ["::8.8.8.8", "public"],
  ["::2", "unspecified"],
  // NAT64
  ["64:ff9b::127.0.0.1", "loopback"],
  ["64:ff9b::a9fe:a9fe", "metadata"],
  ["64:ff9b::8.8.8.8", "public"],
  ["64:ff9b:1::1", "private"],
  // 6to4: IPv4 in groups 1-2
  ["2002:7f00:1::", "loopback"],
  ["2002:c0a8:101::1", "private"],
  ["2002:a9fe:a9fe::1", "metadata"],
  ["2002:808:808::1", "public"],
  // special IPv6 blocks
  ["100::1", "reserved"],
  ["2001::1", "reserved"],
  ["2001:0:4136:e378::1", "reserved"],
  ["2001:2::1", "reserved"],
  ["2001:db8::1", "reserved"],
  ["3fff::1", "reserved"],
  ["5f00::1", "reserved"],
  // outside global unicast 2000::/3
  ["4000::1", "reserved"],
  ["1::1", "reserved"],
  ["e000::1", "reserved"],
  ["64:ff9c::1", "reserved"],
  // global unicast
  ["2001:4860:4860::8888", "public"],
  ["2606:4700:4700::1111", "public"],
  ["2a00:1450:4001:81b::200e", "public"],
  ["2001:200::1", "public"],
];

describe("classifyAddress: IPv4", () => {
  for (const [address, cls] of IPV4) {
    it(`${address} is ${cls}`, () => assert.equal(classifyAddress(address), cls));
  }
});

describe("classifyAddress: IPv6", () => {
  for (const [address, cls] of IPV6) {
    it(`${address} is ${cls}`, () => assert.equal(classifyAddress(address), cls));
  }
});

describe("classifyAddress: on canonicalHost output", () => {
  // Every spelling of a dangerous address classifies as what it is once canonicalized.
  const cases: [string, AddressClass][] = [
    ["127.1", "loopback"],
    ["0x7f.0.0.1", "loopback"],
    ["0177.0.0.1", "loopback"],
    ["2130706433", "loopback"],
    ["0x7f000001", "loopback"],
    ["0", "unspecified"],
    ["0xa9fea9fe", "metadata"],
    ["[::1]", "loopback"],
    ["[0:0:0:0:0:0:0:1]", "loopback"],
    ["[::ffff:127.0.0.1]", "loopback"],
    ["[::ffff:7f00:1]", "loopback"],
    ["[::ffff:169.254.169.254]", "metadata"],
    ["[::127.0.0.1]", "loopback"],
    ["[64:ff9b::169.254.169.254]", "metadata"],
  ];
  for (const [raw, cls] of cases) {
    it(`${raw} is ${cls}`, () => {
      const host = canonicalHost(raw);
      assert.equal(host.kind, "ip");
      assert.equal(classifyAddress(hostText(host)), cls);
    });
  }
});

describe("classifyAddress: zone ids are ignored", () => {
  const cases: [string, AddressClass][] = [
    ["fe80::1%eth0", "link-local"],
    ["fe80::1%25", "link-local"],
    ["::1%lo", "loopback"],
    ["ff02::1%2", "multicast"],
  ];
  for (const [address, cls] of cases) {
    it(`${address} is ${cls}`, () => assert.equal(classifyAddress(address), cls));
  }
});

describe("classifyAddress: not an address", () => {
  for (const text of ["", "example.com", "127.1", "0x7f.0.0.1", "010.0.0.1", "1.2.3.256", "1.2.3.4%eth0", "[::1]", "::1%", " ::1", "::g"]) {
    it(JSON.stringify(text), () => assert.throws(() => classifyAddress(text), TypeError));
  }
});

describe("needsOptIn", () => {
  const classes: AddressClass[] = ["public", "loopback", "private", "cgnat", "link-local", "metadata", "unspecified", "multicast", "reserved"];
  for (const cls of classes) {
    const expected = cls !== "public" && cls !== "reserved";
    it(`${cls}: ${expected}`, () => assert.equal(needsOptIn(cls), expected));
  }
});
