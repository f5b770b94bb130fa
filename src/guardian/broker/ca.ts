/**
 * The guardian's per-install certificate authority. To swap a cloister's placeholder API key for the
 * real one, the guardian must read the request, so it terminates the cloister's TLS to chosen hosts
 * (e.g. api.anthropic.com) with a leaf certificate issued here; cloisters trust this CA through the
 * files written by `writeTrustFiles`. Node's crypto cannot create certificates, hence pkijs.
 *
 * Keys are ECDSA P-256 with SHA-256: generated in milliseconds and accepted by every TLS stack we
 * care about (OpenSSL/curl, node, Python ssl, git).
 */
import * as asn1js from "asn1js";
import * as pkijs from "pkijs";
import { createHash, createPrivateKey, randomBytes, webcrypto, X509Certificate, type KeyObject } from "node:crypto";
import { constants, existsSync, readFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { isIP } from "node:net";
import { hostname, userInfo } from "node:os";
import { join } from "node:path";
import { createSecureContext, rootCertificates, type SecureContext } from "node:tls";
import { CloisterError } from "../../errors.js";
import { createFileAtomic, ensurePrivateDir, writeFileAtomic } from "../../config/atomic-write.js";
import { LruMap } from "../../lru-map.js";

// Node's webcrypto implements the DOM Crypto interface pkijs is typed against; only the declarations differ.
pkijs.setEngine("node", new pkijs.CryptoEngine({ name: "node", crypto: webcrypto as Crypto }));

const EC_P256 = { name: "ECDSA", namedCurve: "P-256" } as const;
const HOUR = 3600_000;
const DAY = 24 * HOUR;
const CA_VALIDITY = 3652 * DAY; // ten years: a CA that expires silently breaks every cloister at once
const LEAF_VALIDITY = 7 * DAY; // short, since leaves are cheap to re-issue and never revoked
const BACKDATE = HOUR; // tolerate clients whose clock is a little behind ours
const RENEW_BEFORE = DAY;
const MAX_CACHED = 1000;

const OID = {
  commonName: "2.5.4.3",
  organization: "2.5.4.10",
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
  extKeyUsage: "2.5.29.37",
  subjectAltName: "2.5.29.17",
  subjectKeyId: "2.5.29.14",
  authorityKeyId: "2.5.29.35",
  serverAuth: "1.3.6.1.5.5.7.3.1",
} as const;

interface CachedLeaf {
  notAfter: number;
  context: Promise<SecureContext>;
}

export class CertificateAuthority {
  /** Issued leaves by host, the least recently used dropped past MAX_CACHED. */
  private readonly leaves = new LruMap<string, CachedLeaf>(MAX_CACHED);

  private constructor(
    /** The CA certificate (PEM): what cloisters must trust. */
    readonly certPem: string,
    /** Path of ca.pem, for callers that hand the file itself to a cloister. */
    readonly certFile: string,
    private readonly caCert: pkijs.Certificate,
    private readonly caKey: CryptoKey,
    private readonly caKeyId: ArrayBuffer,
    /** One key pair shared by all leaves of this instance: signing a certificate is cheap, keygen less so. */
    private readonly leafPublicKey: CryptoKey,
    private readonly leafKeyPem: string,
  ) {}

  /**
   * Loads the CA from `dir` (created 0700 if missing), or creates it on first use: `ca-key.pem`
   * (PKCS#8 PEM, mode 0600) and `ca.pem` (certificate PEM, 0644). The CA is never replaced
   * automatically: running cloisters trust this exact certificate, so a damaged, unreadable or
   * mismatched pair is an error that says how to start over. A key file open to group/others is
   * refused, since whoever can read it can impersonate any host to every cloister.
   */
  static async open(dir: string): Promise<CertificateAuthority> {
    ensurePrivateDir(dir);
    const keyFile = join(dir, "ca-key.pem");
    const certFile = join(dir, "ca.pem");
    const haveKey = existsSync(keyFile);
    const haveCert = existsSync(certFile);
    if (!haveKey && !haveCert) await createCa(keyFile, certFile);
    else if (!haveKey || !haveCert) {
      throw new CloisterError(`${haveKey ? certFile : keyFile} is missing (its partner ${haveKey ? keyFile : certFile} exists)`, startOver(keyFile, certFile));
    }

    const keyObject = await readKey(keyFile, certFile);
    const x509 = readCert(certFile, keyFile);
    if (!x509.checkPrivateKey(keyObject)) {
      throw new CloisterError(`${keyFile} is not the key of the certificate in ${certFile}`, startOver(keyFile, certFile));
    }
    const caCert = pkijs.Certificate.fromBER(x509.raw);
    if (caCert.notAfter.value.getTime() - Date.now() < RENEW_BEFORE) {
      throw new CloisterError(`the CA certificate ${certFile} has expired or expires within a day`, startOver(keyFile, certFile));
    }
    const caKey = await importSigningKey(keyObject);
    const caKeyId = declaredKeyId(caCert) ?? keyIdOf(caCert.subjectPublicKeyInfo);

    const leafKeys = await webcrypto.subtle.generateKey(EC_P256, true, ["sign", "verify"]);
    const leafKeyPem = pkcs8Pem(await webcrypto.subtle.exportKey("pkcs8", leafKeys.privateKey));
    return new CertificateAuthority(x509.toString(), certFile, caCert, caKey, caKeyId, leafKeys.publicKey, leafKeyPem);
  }

  /**
   * A TLS secure context presenting a leaf certificate for `host`: a canonical DNS name, or an
   * IPv4/IPv6 literal without brackets (which gets an iPAddress SAN, as clients check those by type).
   * Leaves are issued on first use and cached (at most 1000, least recently used evicted); concurrent
   * calls for one host share one issuance, and a leaf within a day of expiry is re-issued.
   */
  async contextFor(host: string): Promise<SecureContext> {
    const now = Date.now();
    const cached = this.leaves.use(host);
    if (cached && cached.notAfter - now > RENEW_BEFORE) return cached.context;
    const notAfter = now + LEAF_VALIDITY;
    const context = this.issueLeaf(host, now, notAfter).then((leafPem) =>
      // The chain includes the CA so clients that want a complete chain get one; it is the trust anchor anyway.
      createSecureContext({ key: this.leafKeyPem, cert: leafPem + this.certPem }),
    );
    const entry: CachedLeaf = { notAfter, context };
    this.leaves.set(host, entry);
    // A failed issuance must not stick in the cache; the next call tries again.
    context.catch(() => {
      if (this.leaves.peek(host) === entry) this.leaves.delete(host);
    });
    return context;
  }

  /**
   * Writes the files cloisters trust, atomically (mode 0644):
   * - `bundle`: the system's root certificates followed by this CA's certificate. Cloisters get this
   *   as their only bundle, so intercepted hosts verify against our CA while every other host keeps
   *   verifying against the usual roots;
   * - `nodeExtra`, for NODE_EXTRA_CA_CERTS: see nodeExtraCertificates.
   */
  async writeTrustFiles(files: { bundle: string; nodeExtra: string }): Promise<void> {
    const roots = systemRootsPem();
    await writeFileAtomic(files.bundle, `${roots}${roots.endsWith("\n") ? "" : "\n"}${this.certPem}`, 0o644);
    await writeFileAtomic(files.nodeExtra, nodeExtraCertificates(roots, this.certPem), 0o644);
  }

  private async issueLeaf(host: string, now: number, notAfter: number): Promise<string> {
    const ipBytes = ipLiteralBytes(host);
    if (!ipBytes && !isDnsName(host)) throw new Error(`cannot issue a certificate for ${JSON.stringify(host)}: not a DNS name or IP literal`);
    const cert = newCertificate(now - BACKDATE, notAfter);
    // X.520 caps a CN at 64 characters. The SAN is what clients check, so a longer name gets an empty
    // subject instead, and then RFC 5280 wants the SAN marked critical.
    const withCn = host.length <= 64;
    cert.subject = distinguishedName(withCn ? [[OID.commonName, host]] : []);
    cert.issuer = this.caCert.subject; // the CA's subject exactly as encoded, so chain building matches it
    await cert.subjectPublicKeyInfo.importKey(this.leafPublicKey);
    const altName = ipBytes
      ? new pkijs.GeneralName({ type: 7, value: new asn1js.OctetString({ valueHex: ipBytes }) })
      : new pkijs.GeneralName({ type: 2, value: host });
    cert.extensions = [
      extension(OID.basicConstraints, true, new pkijs.BasicConstraints({ cA: false }).toSchema()),
      extension(OID.keyUsage, true, keyUsage(0x80, 7)), // digitalSignature (what ECDHE-ECDSA needs)
      extension(OID.extKeyUsage, false, new pkijs.ExtKeyUsage({ keyPurposes: [OID.serverAuth] }).toSchema()),
      extension(OID.subjectAltName, !withCn, new pkijs.GeneralNames({ names: [altName] }).toSchema()),
      // Python 3.13's VERIFY_X509_STRICT (on by default) rejects leaves without AKI and SKI.
      extension(OID.authorityKeyId, false, new pkijs.AuthorityKeyIdentifier({ keyIdentifier: new asn1js.OctetString({ valueHex: this.caKeyId }) }).toSchema()),
      extension(OID.subjectKeyId, false, new asn1js.OctetString({ valueHex: keyIdOf(cert.subjectPublicKeyInfo) })),
    ];
    await cert.sign(this.caKey, "SHA-256");
    return new X509Certificate(Buffer.from(cert.toSchema(true).toBER(false))).toString();
  }
}

/**
 * The system's trusted roots as PEM text: the first existing of the usual distribution bundles
 * (Debian/Ubuntu, Fedora, Alpine/macOS), else node's built-in Mozilla roots. The distribution's file
 * comes first because it carries roots an administrator added (e.g. a corporate proxy's).
 */
export function systemRootsPem(): string {
  for (const file of ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"]) {
    try {
      return readFileSync(file, "utf8");
    } catch {
      // not this distribution's layout (or unreadable): try the next
    }
  }
  return `${rootCertificates.join("\n")}\n`;
}

/**
 * What node needs on top of the roots built into it to trust what the bundle trusts: the system's
 * certificates node does not carry (an administrator's corporate root, say) and the CA. Node reads
 * NODE_EXTRA_CA_CERTS in full at the start of every process, and parsing a whole distribution bundle
 * (~140 roots) cost each `node` in a cloister ~90 ms (0.13 s against 0.04 s for `node -e ""`).
 */
export function nodeExtraCertificates(systemPem: string, caPem: string, builtIn: readonly string[] = rootCertificates): string {
  const known = new Set(builtIn.map(pemBody));
  const missing = pemBlocks(systemPem).filter((block) => !known.has(pemBody(block)));
  return [...missing, caPem.trim()].map((block) => `${block}\n`).join("");
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

function pemBlocks(text: string): string[] {
  return text.match(PEM_CERTIFICATE) ?? [];
}

/** The base64 between the armour lines, without line breaks: the same certificate compares equal however it was wrapped. */
function pemBody(block: string): string {
  return block.replace(/-----(BEGIN|END) CERTIFICATE-----/g, "").replace(/\s+/g, "");
}

function startOver(keyFile: string, certFile: string): string {
  return `move both ${keyFile} and ${certFile} aside to create a new CA; cloisters started before then must restart`;
}

async function createCa(keyFile: string, certFile: string): Promise<void> {
  const keys = await webcrypto.subtle.generateKey(EC_P256, true, ["sign", "verify"]);
  const now = Date.now();
  const cert = newCertificate(now - BACKDATE, now + CA_VALIDITY);
  cert.subject = distinguishedName([
    [OID.organization, "Cloister"],
    [OID.commonName, caCommonName(now)],
  ]);
  cert.issuer = cert.subject;
  await cert.subjectPublicKeyInfo.importKey(keys.publicKey);
  cert.extensions = [
    // pathLen 0: this CA signs leaves only, never another CA.
    extension(OID.basicConstraints, true, new pkijs.BasicConstraints({ cA: true, pathLenConstraint: 0 }).toSchema()),
    extension(OID.keyUsage, true, keyUsage(0x06, 1)), // keyCertSign, cRLSign
    extension(OID.subjectKeyId, false, new asn1js.OctetString({ valueHex: keyIdOf(cert.subjectPublicKeyInfo) })),
  ];
  await cert.sign(keys.privateKey, "SHA-256");
  const certPem = new X509Certificate(Buffer.from(cert.toSchema(true).toBER(false))).toString();
  const keyPem = pkcs8Pem(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey));
  // Key first: a crash in between leaves a key without a certificate, which `open` reports, rather
  // than a certificate nobody can sign with. createFileAtomic never replaces a file another process wrote.
  if (!(await createFileAtomic(keyFile, keyPem, 0o600)) || !(await createFileAtomic(certFile, certPem, 0o644))) {
    throw new CloisterError(`another process created a CA in the same directory as ${keyFile} at the same time`, "try again");
  }
}

/** "Cloister CA (user@host, date)": tells a user who finds it in a trust store where it came from. */
function caCommonName(now: number): string {
  let user: string;
  try {
    user = userInfo().username;
  } catch {
    user = String(process.getuid?.() ?? "unknown"); // no passwd entry, e.g. in a container
  }
  const date = new Date(now).toISOString().replace(/\.\d+Z$/, "Z");
  const suffix = `, ${date})`;
  // X.520 caps a CN at 64 characters; shorten user@host rather than break strict parsers.
  return `Cloister CA (${`${user}@${hostname()}`.slice(0, 64 - "Cloister CA (".length - suffix.length)}${suffix}`;
}

/** Reads the key without following symlinks and checks the mode on the open file, not on the name. */
async function readKey(keyFile: string, certFile: string): Promise<KeyObject> {
  let text: string;
  let mode: number;
  try {
    const handle = await open(keyFile, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      mode = (await handle.stat()).mode;
      text = await handle.readFile("utf8");
    } finally {
      await handle.close();
    }
  } catch (error) {
    throw new CloisterError(`cannot read the CA key ${keyFile}: ${errorText(error)}`, startOver(keyFile, certFile));
  }
  if ((mode & 0o077) !== 0) {
    throw new CloisterError(
      `the CA key ${keyFile} is accessible to other users (mode ${(mode & 0o777).toString(8)}); refusing to use it, since whoever reads it can impersonate any host to cloisters`,
      `chmod 600 ${keyFile}`,
    );
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(text);
  } catch (error) {
    throw new CloisterError(`${keyFile} does not hold a valid private key: ${errorText(error)}`, startOver(keyFile, certFile));
  }
  if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw new CloisterError(`${keyFile} is not an ECDSA P-256 key`, startOver(keyFile, certFile));
  }
  return key;
}

function readCert(certFile: string, keyFile: string): X509Certificate {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(readFileSync(certFile));
  } catch (error) {
    throw new CloisterError(`${certFile} does not hold a valid certificate: ${errorText(error)}`, startOver(keyFile, certFile));
  }
  if (!x509.ca) throw new CloisterError(`${certFile} is not a CA certificate`, startOver(keyFile, certFile));
  return x509;
}

async function importSigningKey(key: KeyObject): Promise<CryptoKey> {
  const der = key.export({ type: "pkcs8", format: "der" });
  return webcrypto.subtle.importKey("pkcs8", der, EC_P256, false, ["sign"]);
}

function pkcs8Pem(der: ArrayBuffer): string {
  return createPrivateKey({ key: Buffer.from(der), format: "der", type: "pkcs8" }).export({ type: "pkcs8", format: "pem" }).toString();
}

/** A v3 certificate with a random serial and the given validity; the caller adds names, key, extensions. */
function newCertificate(notBefore: number, notAfter: number): pkijs.Certificate {
  const cert = new pkijs.Certificate();
  cert.version = 2; // v3
  // 16 random bytes, positive (top bit clear) and with a nonzero first byte so the DER stays minimal.
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) || 0x01;
  cert.serialNumber = new asn1js.Integer({ valueHex: serial });
  cert.notBefore = time(notBefore);
  cert.notAfter = time(notAfter);
  return cert;
}

/** RFC 5280: UTCTime through 2049, GeneralizedTime from 2050 on. Whole seconds, as DER requires. */
function time(ms: number): pkijs.Time {
  const value = new Date(Math.floor(ms / 1000) * 1000);
  return new pkijs.Time({ type: value.getUTCFullYear() < 2050 ? pkijs.TimeType.UTCTime : pkijs.TimeType.GeneralizedTime, value });
}

/**
 * A Name with one attribute per RDN, most significant first (O before CN, by convention). Built by
 * hand because pkijs puts all of `typesAndValues` into a single multi-valued RDN ("CN=x + O=y").
 */
function distinguishedName(attributes: [type: string, value: string][]): pkijs.RelativeDistinguishedNames {
  const rdns = attributes.map(
    ([type, value]) => new asn1js.Set({ value: [new pkijs.AttributeTypeAndValue({ type, value: new asn1js.Utf8String({ value }) }).toSchema()] }),
  );
  return pkijs.RelativeDistinguishedNames.fromBER(new asn1js.Sequence({ value: rdns }).toBER(false));
}

function extension(extnID: string, critical: boolean, value: asn1js.BaseBlock): pkijs.Extension {
  return new pkijs.Extension({ extnID, critical, extnValue: value.toBER(false) });
}

/** KeyUsage is a named BIT STRING: DER drops trailing zero bits, so `unusedBits` counts them. */
function keyUsage(bits: number, unusedBits: number): asn1js.BitString {
  return new asn1js.BitString({ valueHex: new Uint8Array([bits]), unusedBits });
}

/** The conventional key identifier: SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2, method 1). */
function keyIdOf(spki: pkijs.PublicKeyInfo): ArrayBuffer {
  const digest = createHash("sha1").update(spki.subjectPublicKey.valueBlock.valueHexView).digest();
  return new Uint8Array(digest).buffer;
}

/** The SKI the CA certificate declares: leaves' AKI must match it byte for byte. */
function declaredKeyId(cert: pkijs.Certificate): ArrayBuffer | undefined {
  const ext = cert.extensions?.find((e) => e.extnID === OID.subjectKeyId);
  const parsed = ext && asn1js.fromBER(ext.extnValue.valueBlock.valueHexView);
  return parsed && parsed.result instanceof asn1js.OctetString ? new Uint8Array(parsed.result.valueBlock.valueHexView).buffer : undefined;
}

function isDnsName(host: string): boolean {
  return host.length <= 253 && /^(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*$/i.test(host);
}

/** The 4 or 16 network-order bytes of an IP literal, or undefined for anything else (zone ids included). */
function ipLiteralBytes(host: string): Uint8Array | undefined {
  const version = host.includes("%") ? 0 : isIP(host);
  if (version === 4) return Uint8Array.from(host.split(".").map(Number));
  if (version !== 6) return undefined;
  // Expand a trailing dotted IPv4 into two groups, then "::" into the missing zero groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(host)?.[1];
  const text = v4 ? host.slice(0, -v4.length) + hex16(v4) : host;
  const [head = "", tail] = text.split("::");
  const groups = (part: string | undefined) => (part ? part.split(":") : []);
  const known = [...groups(head), ...groups(tail)];
  const all = tail === undefined ? known : [...groups(head), ...Array<string>(8 - known.length).fill("0"), ...groups(tail)];
  const bytes = new Uint8Array(16);
  all.forEach((group, i) => {
    const value = parseInt(group, 16);
    bytes[2 * i] = value >> 8;
    bytes[2 * i + 1] = value & 0xff;
  });
  return bytes;
}

function hex16(v4: string): string {
  const [a = 0, b = 0, c = 0, d = 0] = v4.split(".").map(Number);
  return `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
