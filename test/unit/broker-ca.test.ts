import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it, mock } from "node:test";
import { createServer, type Server } from "node:net";
import { connect, rootCertificates, TLSSocket, type SecureContext } from "node:tls";
import { CloisterError } from "../../src/errors.js";
import { CertificateAuthority, nodeExtraCertificates, systemRootsPem } from "../../src/guardian/broker/ca.js";

const base = mkdtempSync(join(tmpdir(), "cloister-ca-"));
after(() => rmSync(base, { recursive: true, force: true }));
let counter = 0;
const freshDir = () => join(base, `ca-${counter++}`);

/** The leaf certificate a context presents, read from an unverified handshake with a throwaway server. */
async function leafOf(ca: CertificateAuthority, host: string): Promise<X509Certificate> {
  const server = await listen(await ca.contextFor(host));
  try {
    const peer = await new Promise<X509Certificate>((resolve, reject) => {
      const socket = connect({ port: port(server), host: "127.0.0.1", rejectUnauthorized: false }, () => {
        const cert = socket.getPeerX509Certificate();
        socket.end();
        if (cert) resolve(cert);
        else reject(new Error("no peer certificate"));
      });
      socket.on("error", reject);
    });
    return peer;
  } finally {
    server.close();
  }
}

/** A server that says "hello" over TLS with `context`, wrapping plain sockets as the guardian does after CONNECT. */
function listen(context: SecureContext): Promise<Server> {
  const server = createServer((raw) => {
    const socket = new TLSSocket(raw, { isServer: true, secureContext: context });
    socket.on("secure", () => socket.end("hello"));
    socket.on("error", () => raw.destroy()); // the client refused us: expected in some tests
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

function port(server: Server): number {
  const address = server.address();
  assert.ok(address && typeof address === "object");
  return address.port;
}

/** Resolves with what the server sent, or rejects with the client's verification error. */
function fetchGreeting(server: Server, servername: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port: port(server), host: "127.0.0.1", servername, ca }, () => {
      let data = "";
      socket.setEncoding("utf8");
      socket.on("data", (chunk: string) => (data += chunk));
      socket.on("end", () => resolve(data));
    });
    socket.on("error", reject);
  });
}

/** `openssl verify -x509_strict` (the checks behind Python 3.13's default VERIFY_X509_STRICT). */
function opensslVerify(caFile: string, pem: string, purpose: string[] = ["-purpose", "sslserver"]): string {
  const file = join(base, `cert-${counter++}.pem`);
  writeFileSync(file, pem);
  return execFileSync("openssl", ["verify", "-x509_strict", ...purpose, "-CAfile", caFile, file], { encoding: "utf8" });
}

async function rejectsNaming(promise: Promise<unknown>, file: string, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof CloisterError, String(error));
    assert.match(error.message, pattern);
    assert.ok(error.message.includes(file), error.message);
    return true;
  });
}

describe("CertificateAuthority: files", () => {
  it("creates the directory 0700, the key 0600 and the certificate 0644", async () => {
    const dir = freshDir();
    const ca = await CertificateAuthority.open(dir);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(statSync(join(dir, "ca-key.pem")).mode & 0o777, 0o600);
    assert.equal(statSync(ca.certFile).mode & 0o777, 0o644);
    assert.equal(ca.certFile, join(dir, "ca.pem"));
    assert.equal(readFileSync(ca.certFile, "utf8"), ca.certPem);
    assert.match(readFileSync(join(dir, "ca-key.pem"), "utf8"), /^-----BEGIN PRIVATE KEY-----\n/);
  });

  it("loads the same CA when reopened", async () => {
    const dir = freshDir();
    const first = await CertificateAuthority.open(dir);
    const second = await CertificateAuthority.open(dir);
    assert.equal(second.certPem, first.certPem);
    // and leaves issued by the reopened instance chain to the original certificate
    const leaf = await leafOf(second, "api.example.test");
    assert.ok(leaf.verify(new X509Certificate(first.certPem).publicKey));
  });

  it("refuses a key readable by group or others", async () => {
    const dir = freshDir();
    await CertificateAuthority.open(dir);
    const keyFile = join(dir, "ca-key.pem");
    chmodSync(keyFile, 0o640);
    await assert.rejects(CertificateAuthority.open(dir), (error: unknown) => {
      assert.ok(error instanceof CloisterError);
      assert.ok(error.message.includes(keyFile));
      assert.match(error.hint ?? "", /chmod 600/);
      return true;
    });
    chmodSync(keyFile, 0o600);
    await CertificateAuthority.open(dir);
  });

  it("refuses a corrupted certificate, naming the file and saying how to start over", async () => {
    const dir = freshDir();
    const ca = await CertificateAuthority.open(dir);
    writeFileSync(ca.certFile, ca.certPem.slice(0, 200));
    await rejectsNaming(CertificateAuthority.open(dir), ca.certFile, /does not hold a valid certificate/);
    await assert.rejects(CertificateAuthority.open(dir), (error: unknown) => error instanceof CloisterError && /move both .* aside/.test(error.hint ?? ""));
  });

  it("refuses a corrupted key, naming the file", async () => {
    const dir = freshDir();
    await CertificateAuthority.open(dir);
    const keyFile = join(dir, "ca-key.pem");
    writeFileSync(keyFile, "-----BEGIN PRIVATE KEY-----\nnot base64 der\n-----END PRIVATE KEY-----\n");
    await rejectsNaming(CertificateAuthority.open(dir), keyFile, /valid private key/);
  });

  it("refuses a key that does not belong to the certificate", async () => {
    const [a, b] = [freshDir(), freshDir()];
    await CertificateAuthority.open(a);
    await CertificateAuthority.open(b);
    writeFileSync(join(a, "ca-key.pem"), readFileSync(join(b, "ca-key.pem")), { mode: 0o600 });
    await rejectsNaming(CertificateAuthority.open(a), join(a, "ca-key.pem"), /is not the key of/);
  });

  it("refuses half a pair instead of silently making a new CA", async () => {
    const dir = freshDir();
    const ca = await CertificateAuthority.open(dir);
    rmSync(ca.certFile);
    await rejectsNaming(CertificateAuthority.open(dir), ca.certFile, /missing/);
  });
});

describe("CertificateAuthority: certificates", () => {
  let ca: CertificateAuthority;
  let caCert: X509Certificate;
  before(async () => {
    ca = await CertificateAuthority.open(freshDir());
    caCert = new X509Certificate(ca.certPem);
  });

  it("makes a self-signed CA certificate that OpenSSL accepts strictly", () => {
    assert.ok(caCert.ca);
    assert.ok(caCert.verify(caCert.publicKey));
    assert.match(caCert.subject, /^O=Cloister\nCN=Cloister CA \(.+@.+\\, \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)$/);
    assert.equal(caCert.issuer, caCert.subject);
    const years = (Date.parse(caCert.validTo) - Date.now()) / (365.25 * 24 * 3600_000);
    assert.ok(years > 9.9 && years < 10.1, `valid for ${years} years`);
    assert.match(opensslVerify(ca.certFile, ca.certPem, []), /OK/);
  });

  it("issues a DNS leaf that node and OpenSSL verify against the CA", async () => {
    const leaf = await leafOf(ca, "api.example.test");
    assert.ok(leaf.verify(caCert.publicKey));
    assert.ok(leaf.checkIssued(caCert));
    assert.equal(leaf.ca, false);
    assert.equal(leaf.subjectAltName, "DNS:api.example.test");
    assert.equal(leaf.checkHost("api.example.test"), "api.example.test");
    assert.equal(leaf.checkHost("other.test"), undefined);
    assert.deepEqual(leaf.keyUsage, ["1.3.6.1.5.5.7.3.1"]);
    const days = (Date.parse(leaf.validTo) - Date.now()) / (24 * 3600_000);
    assert.ok(days > 6.9 && days <= 7, `valid for ${days} days`);
    assert.ok(Date.parse(leaf.validFrom) < Date.now() - 50 * 60_000, "backdated for clock skew");
    assert.match(opensslVerify(ca.certFile, leaf.toString()), /OK/);
    const text = execFileSync("openssl", ["x509", "-noout", "-text"], { input: leaf.toString(), encoding: "utf8" });
    assert.match(text, /Authority Key Identifier/);
    assert.match(text, /Subject Key Identifier/);
    assert.match(text, /Key Usage: critical\s+Digital Signature\n/);
    assert.match(text, /Basic Constraints: critical\s+CA:FALSE/);
  });

  it("issues IP literal leaves with iPAddress SANs", async () => {
    const v4 = await leafOf(ca, "127.0.0.1");
    assert.equal(v4.subjectAltName, "IP Address:127.0.0.1");
    assert.equal(v4.checkIP("127.0.0.1"), "127.0.0.1");
    assert.equal(v4.checkHost("127.0.0.1", { subject: "never" }), undefined, "not a dNSName");
    assert.match(opensslVerify(ca.certFile, v4.toString()), /OK/);

    const v6 = await leafOf(ca, "2001:db8::ffff:10.0.0.1");
    assert.equal(v6.subjectAltName, "IP Address:2001:DB8:0:0:0:FFFF:A00:1");
    assert.equal(v6.checkIP("2001:db8::ffff:a00:1"), "2001:db8::ffff:a00:1");
    for (const ip of ["::1", "::", "1::", "fe80::1:2", "::ffff:192.0.2.1", "1:2:3:4:5:6:7:8"]) {
      assert.equal((await leafOf(ca, ip)).checkIP(ip), ip);
    }
  });

  it("gives a name too long for a CN an empty subject and a critical SAN", async () => {
    const host = `${"a".repeat(60)}.example.test`;
    const leaf = await leafOf(ca, host);
    assert.ok(!leaf.subject, "no subject");
    assert.equal(leaf.checkHost(host), host);
    assert.match(opensslVerify(ca.certFile, leaf.toString()), /OK/);
    const text = execFileSync("openssl", ["x509", "-noout", "-text"], { input: leaf.toString(), encoding: "utf8" });
    assert.match(text, /Subject Alternative Name: critical/);
  });

  it("refuses names that are neither DNS names nor IP literals", async () => {
    await assert.rejects(ca.contextFor("[::1]"));
    await assert.rejects(ca.contextFor("bad host"));
    await assert.rejects(ca.contextFor("fe80::1%eth0"));
  });

  it("caches contexts per host and shares concurrent issuance", async () => {
    const [a, b] = await Promise.all([ca.contextFor("cache.example.test"), ca.contextFor("cache.example.test")]);
    assert.equal(a, b);
    assert.equal(await ca.contextFor("cache.example.test"), a);
    assert.notEqual(await ca.contextFor("other.example.test"), a);
  });

  it("re-issues a cached leaf that expires within a day", async (t) => {
    const first = await ca.contextFor("renew.example.test");
    t.after(() => mock.timers.reset());
    mock.timers.enable({ apis: ["Date"], now: Date.now() });
    mock.timers.tick(5.5 * 24 * 3600_000);
    assert.equal(await ca.contextFor("renew.example.test"), first, "still valid for 1.5 days");
    mock.timers.tick(1 * 24 * 3600_000);
    assert.notEqual(await ca.contextFor("renew.example.test"), first, "12 hours left");
  });

  it("evicts the least recently used leaf beyond 1000 hosts", async () => {
    const fresh = await CertificateAuthority.open(freshDir());
    const first = await fresh.contextFor("h0.test");
    for (let i = 1; i <= 1000; i++) await fresh.contextFor(`h${i}.test`);
    assert.notEqual(await fresh.contextFor("h0.test"), first);
    assert.equal(await fresh.contextFor("h0.test"), await fresh.contextFor("h0.test"));
  });

  it("writes a trust bundle of the system roots followed by the CA, and node's extra certificates", async () => {
    const files = { bundle: join(base, "bundle.pem"), nodeExtra: join(base, "node-extra.pem") };
    await ca.writeTrustFiles(files);
    const bundle = readFileSync(files.bundle, "utf8");
    assert.equal(statSync(files.bundle).mode & 0o777, 0o644);
    assert.equal(statSync(files.nodeExtra).mode & 0o777, 0o644);
    assert.ok(bundle.startsWith(systemRootsPem()));
    assert.ok(bundle.endsWith(ca.certPem));
    assert.ok((bundle.match(/BEGIN CERTIFICATE/g) ?? []).length > 10);
    assert.equal(readFileSync(files.nodeExtra, "utf8"), nodeExtraCertificates(systemRootsPem(), ca.certPem));
  });

  it("gives node the CA and only the system roots it does not carry itself", async () => {
    const stranger = await CertificateAuthority.open(freshDir());
    const [first = "", second = ""] = rootCertificates;
    // The same root wrapped at another width is still the same root.
    const rewrapped = first.replace(/\n/g, "").replace(/-----BEGIN CERTIFICATE-----/, "-----BEGIN CERTIFICATE-----\n").replace(/-----END/, "\n-----END");
    const system = `${rewrapped}\n${stranger.certPem}${second}\n`;
    const extra = nodeExtraCertificates(system, ca.certPem);
    assert.equal(extra, `${stranger.certPem.trim()}\n${ca.certPem.trim()}\n`);
    assert.equal(nodeExtraCertificates(`${rootCertificates.join("\n")}\n`, ca.certPem), `${ca.certPem.trim()}\n`);
    assert.equal(new X509Certificate(nodeExtraCertificates("", ca.certPem)).subject, new X509Certificate(ca.certPem).subject);
  });

  it("completes a real TLS handshake for the right name and fails it for another", async () => {
    const server = await listen(await ca.contextFor("api.example.test"));
    try {
      assert.equal(await fetchGreeting(server, "api.example.test", ca.certPem), "hello");
      await assert.rejects(fetchGreeting(server, "other.test", ca.certPem), { code: "ERR_TLS_CERT_ALTNAME_INVALID" });
      // and a client that does not trust the CA refuses the leaf
      const stranger = await CertificateAuthority.open(freshDir());
      await assert.rejects(fetchGreeting(server, "api.example.test", stranger.certPem), { code: "SELF_SIGNED_CERT_IN_CHAIN" });
    } finally {
      server.close();
    }
  });
});
