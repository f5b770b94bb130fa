/**
 * Escape suite, NETWORK AND PROXY section of SECURITY.md. Each case is the attacker's step, run
 * inside a real cloister against the real guardian, with the secure outcome asserted:
 *
 * - no way out but the proxy: only `lo`, direct TCP/UDP/raw/packet sockets fail at once, no DNS,
 *   only 127.0.0.1:3128 answers inside;
 * - the proxy refuses what the policy refuses, on CONNECT, absolute-form HTTP and SOCKS5 alike, in
 *   every spelling of the name, address and port, also from inside a tunnel or through a relay;
 * - tokens are per cloister and die with it; credentials never reach an origin;
 * - floods of one cloister leave the guardian and other cloisters working.
 *
 * Oracles: a recording sink on the denied names (sink.test, sink.lab.test and every trick name
 * resolve to it, on the same port as the allowed upstream, so only the name tells them apart) must
 * see zero connections; a "quiet" upstream that is allowed but only ever named in requests that must
 * be refused sees zero connections; host listeners on every host address see no direct connection
 * or datagram; canaries and tokens appear at no upstream and in no log; the host's sensitive files
 * are unchanged; and during every attack a bystander cloister still gets 200 and the guardian's pid
 * is unchanged (liveness).
 */
import assert from "node:assert/strict";
import { readFileSync, readdirSync, existsSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { asUserSkipReason, createUserInstance, type UserInstance } from "../helpers/as-user.js";
import { createInstance, spawnCli, waitUntil, type CliResult, type TestInstance } from "../helpers/cloister.js";
import { startHostListeners, startSinksOnPort, type HostListeners, type TcpSink } from "../helpers/net-sinks.js";
import { assertNoCanaryAnywhere, diffSnapshots, hostSensitiveSnapshot, NO_PYTHON, parseSteps, PY_PRELUDE, PYTHON, stepsWithPrefix, type Snapshot } from "../helpers/oracles.js";
import { startHttpUpstream, startTcpEcho, type Upstream } from "../fixtures/upstreams.js";
import { HANDOVER_OFFER_PY } from "../helpers/handover.js";

// ---------------------------------------------------------------------------------------------
// The network every case shares

/**
 * Where the names point. The allowed upstream `web` is 127.0.0.1:P; the denied sink is 127.0.0.2:P
 * and the quiet upstream 127.0.0.3:P, the same port, so a rule that matched the wrong name would
 * reach a recording server rather than fail for a port mismatch.
 */
interface Net {
  web: Upstream;
  echo: Upstream;
  sink: TcpSink;
  quiet: TcpSink;
  host: HostListeners;
  /** The port web, sink and quiet share. */
  P: number;
}

/** Names that must be refused; each resolves (guardian side) to the sink, so a wrong allow would show there. */
const TRAP_NAMES = [
  "sink.test",
  "sink.lab.test",
  "web.test.sink.test",
  "evil-web.test",
  "evilweb.test",
  "web.testx",
  "xweb.test",
  "lab.test",
  "evillab.test",
  "lab.test.sink.test",
];

/**
 * The session rules of every cloister here: web.test:P and *.lab.test:P allowed, sink.test:P both
 * allowed and denied (deny wins), sink.lab.test:P denied under the allowed wildcard, quiet.test:P
 * allowed (but only named in requests that must fail), localhost:P allowed without the private opt-in.
 */
function sessionFlags(n: Net): string[] {
  const resolve: Record<string, string> = {
    "web.test": "127.0.0.1",
    "www.lab.test": "127.0.0.1",
    "echo.test": "127.0.0.1",
    "quiet.test": "127.0.0.3",
    // Denied, on the allowed upstream's own address: a kept-alive origin connection to web.test must not carry it.
    "shadow.test": "127.0.0.1",
    ...Object.fromEntries(TRAP_NAMES.map((name) => [name, "127.0.0.2"])),
  };
  return [
    ...Object.entries(resolve).flatMap(([name, ip]) => ["--resolve", `${name}=${ip}`]),
    ...["web.test", "*.lab.test", "sink.test", "quiet.test", "localhost"].flatMap((h) => ["--allow", `${h}:${n.P}`]),
    "--allow",
    `echo.test:${n.echo.port}`,
    ...["sink.test", "sink.lab.test", "shadow.test"].flatMap((h) => ["--deny", `${h}:${n.P}`]),
  ];
}

/** web on 127.0.0.1:P, then sink and quiet on 127.0.0.2:P and 127.0.0.3:P (another P if one is taken). */
async function startNet(): Promise<Net> {
  for (let attempt = 0; ; attempt++) {
    const web = await startHttpUpstream();
    try {
      const [sink, quiet] = await startSinksOnPort(["127.0.0.2", "127.0.0.3"], web.port);
      if (!sink || !quiet) throw new Error("sinks did not start");
      const [echo, host] = await Promise.all([startTcpEcho(), startHostListeners()]);
      return { web, echo, sink, quiet, host, P: web.port };
    } catch (error) {
      await web.close();
      if (attempt >= 5) throw error;
    }
  }
}

async function stopNet(n: Net | undefined): Promise<void> {
  if (!n) return;
  await Promise.all([n.web.close(), n.echo.close(), n.sink.close(), n.quiet.close(), n.host.close()]);
}

/** What the denied destinations saw: all of it must stay empty. */
function deniedSaw(n: Net): string[] {
  const seen: string[] = [];
  if (n.sink.connections > 0) seen.push(`denied sink: ${n.sink.connections} connection(s), bytes: ${JSON.stringify(n.sink.received.toString("latin1").slice(0, 400))}`);
  if (n.quiet.connections > 0) seen.push(`quiet upstream: ${n.quiet.connections} connection(s), bytes: ${JSON.stringify(n.quiet.received.toString("latin1").slice(0, 400))}`);
  if (n.host.tcpConnections > 0) seen.push(`host TCP listener: ${n.host.tcpConnections} direct connection(s)`);
  if (n.host.udpDatagrams > 0) seen.push(`host UDP listener: ${n.host.udpDatagrams} datagram(s)`);
  return seen;
}

// ---------------------------------------------------------------------------------------------
// Attacker scripts

/** A bash script inside a fresh cloister with the session rules. ESCAPE_DEBUG=1 prints what the attacker saw. */
async function attack(t: Pick<TestInstance, "cli">, n: Net, script: string): Promise<CliResult> {
  const r = await t.cli(["run", ...sessionFlags(n), "--", "bash", "-c", script]);
  if (process.env.ESCAPE_DEBUG) process.stderr.write(`--- attack (exit ${r.code})\n${r.stdout}${r.stderr}`);
  return r;
}

/** Runs `body` with the host's python3 inside, after the step prelude and the proxy client below; or says it is absent. */
function python(body: string): string {
  return `if command -v python3 >/dev/null 2>&1 && [ -x ${PYTHON} ]; then ${PYTHON} - <<'PYEOF'
${PY_PRELUDE}
${PROXY_CLIENT_PY}
${body}
PYEOF
else echo "STEP python absent"; fi
`;
}

/**
 * A hand-rolled proxy client (no library would send the malformed requests): every function
 * returns the outcome as one word, the HTTP status ("403"), "reply:N" for a SOCKS5 reply code,
 * "auth:XXXX"/"method:XX" for a refused SOCKS5 handshake, or how the connection ended. When an
 * attack gets through (200, reply:0), it also sends a request naming the probe, so the
 * destination's recording shows which one it was.
 */
const PROXY_CLIENT_PY = String.raw`
import base64, hashlib, json, re, struct
PROXY_PORT = 3128
_m = re.search(r"cloister:([0-9a-f]+)@", os.environ.get("HTTP_PROXY", ""))
TOKEN = _m.group(1) if _m else ""
def out(name, result):
    print("STEP %s %s" % (name, result), flush=True)
def errname(e):
    if isinstance(e, OSError) and e.errno:
        return _name(e.errno)
    return type(e).__name__
def auth(token=None):
    tok = TOKEN if token is None else token
    return b"Proxy-Authorization: Basic " + base64.b64encode(b"cloister:" + tok.encode()) + b"\r\n"
def dial(port=None, unix=None):
    if unix:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(15)
        s.connect(unix)
        return s
    return socket.create_connection(("127.0.0.1", port or PROXY_PORT), timeout=15)
def read_until(s, marker=b"\r\n\r\n", want=None, limit=1 << 20):
    data = b""
    while (marker not in data if want is None else len(data) < want) and len(data) < limit:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return data, "timeout"
        except OSError as e:
            return data, errname(e)
        if not chunk:
            return data, "closed"
        data += chunk
    return data, None
def read_all(s):
    return read_until(s, marker=b"\x00never\x00")
def status(data, problem):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return m.group(1).decode() if m else (problem or "garbage")
def proof(s, name):
    try:
        s.sendall(b"GET /escaped-" + name.encode() + b" HTTP/1.1\r\nHost: escaped\r\n\r\n")
    except OSError:
        pass
def exchange(name, raw, port=None, unix=None, token=None):
    raw = raw.replace(b"{{AUTH}}", auth(token))
    try:
        s = dial(port, unix)
    except OSError as e:
        return "dial:" + errname(e), b""
    try:
        s.sendall(raw)
        data, problem = read_until(s)
        st = status(data, problem)
        if st == "200" and raw.startswith(b"CONNECT"):
            proof(s, name)
        return st, data
    except OSError as e:
        return errname(e), b""
    finally:
        s.close()
def stream(name, raw, port=None, unix=None, token=None):
    # Sends everything at once (pipelined) and lists every status that comes back until the close.
    raw = raw.replace(b"{{AUTH}}", auth(token))
    s = dial(port, unix)
    try:
        s.sendall(raw)
        data, problem = read_all(s)
        codes = [c.decode() for c in re.findall(rb"HTTP/1\.[01] (\d{3})", data)]
        return ",".join(codes) or (problem or "nothing")
    finally:
        s.close()
def connect_req(target, extra=b""):
    return b"CONNECT " + target + b" HTTP/1.1\r\nHost: " + target + b"\r\n{{AUTH}}" + extra + b"\r\n"
def get_req(url, host, extra=b""):
    return b"GET " + url + b" HTTP/1.1\r\nHost: " + host + b"\r\n{{AUTH}}" + extra + b"Connection: close\r\n\r\n"
def socks_addr(atyp, addr):
    return bytes([atyp]) + (bytes([len(addr)]) + addr if atyp == 3 else addr)
def socks_open(name, atyp, addr, port, proxy_port=None, unix=None, token=None, cmd=1, methods=b"\x02"):
    # Returns (socket or None, outcome); the socket is open only when the proxy said reply:0.
    s = dial(proxy_port, unix)
    try:
        s.sendall(b"\x05" + bytes([len(methods)]) + methods)
        r, problem = read_until(s, want=2)
        if r != b"\x05\x02":
            s.close()
            return None, "method:" + (r.hex() or problem or "")
        pw = (TOKEN if token is None else token).encode()
        s.sendall(b"\x01\x08cloister" + bytes([len(pw)]) + pw)
        r, problem = read_until(s, want=2)
        if r != b"\x01\x00":
            s.close()
            return None, "auth:" + (r.hex() or problem or "")
        s.sendall(b"\x05" + bytes([cmd]) + b"\x00" + socks_addr(atyp, addr) + struct.pack(">H", port))
        r, problem = read_until(s, want=10 if atyp != 4 else 4)
        if len(r) < 2:
            s.close()
            return None, problem or "closed"
        if r[1] != 0:
            s.close()
            return None, "reply:%d" % r[1]
        return s, "reply:0"
    except OSError as e:
        s.close()
        return None, errname(e)
def socks(name, atyp, addr, port, proxy_port=None, unix=None, token=None, cmd=1, methods=b"\x02"):
    s, result = socks_open(name, atyp, addr, port, proxy_port, unix, token, cmd, methods)
    if s is not None:
        proof(s, name)
        s.close()
    return result
def run_probes(probes):
    for p in probes:
        a = bytes.fromhex(p["a"])
        b = bytes.fromhex(p.get("b", ""))
        where = dict(port=p.get("proxyPort"), unix=p.get("unix"), token=p.get("token"))
        try:
            kind = p["kind"]
            if kind == "connect":
                result = exchange(p["name"], connect_req(a), **where)[0]
            elif kind == "get":
                result = exchange(p["name"], get_req(a, b), **where)[0]
            elif kind == "raw":
                result = exchange(p["name"], a, **where)[0]
            elif kind == "stream":
                result = stream(p["name"], a, **where)
            else:
                result = socks(p["name"], p["atyp"], a, p["port"], where["port"], where["unix"], where["token"], p.get("cmd", 1), bytes.fromhex(p.get("methods", "02")))
        except OSError as e:
            result = "error:" + errname(e)
        out(p["name"], result)
`;

/** One request an attacker sends, and the outcomes that count as refused. */
interface Probe {
  name: string;
  /** What is attempted, for failure messages (the name is only an id). */
  what: string;
  kind: "connect" | "get" | "raw" | "stream" | "socks";
  /** Hex: CONNECT target, GET URL, raw request bytes, or SOCKS address bytes. */
  a: string;
  /** Hex: the Host header of a GET. */
  b?: string;
  atyp?: 1 | 3 | 4;
  port?: number;
  /** SOCKS5 command (1 CONNECT, 2 BIND, 3 UDP ASSOCIATE; default 1) and offered methods (hex; default "02", user/password). */
  cmd?: number;
  methods?: string;
  proxyPort?: number;
  unix?: string;
  token?: string;
  expect: readonly string[];
}

const hex = (s: string | Buffer): string => (typeof s === "string" ? Buffer.from(s, "utf8") : s).toString("hex");

const FORBIDDEN = ["403"];
const MALFORMED = ["400"];
const SOCKS_NOT_ALLOWED = ["reply:2"];
const SOCKS_MALFORMED = ["reply:1"];

/** Probes of one host on CONNECT, absolute-form HTTP and SOCKS5 (domain): `host` as written in an authority. */
function everyProtocol(group: string, host: string, port: number, expectHttp: readonly string[], expectSocks: readonly string[]): Probe[] {
  const authority = `${host}:${port}`;
  const socksName = host.startsWith("[") ? host.slice(1, -1) : host;
  return [
    { name: `${group}.connect`, what: `CONNECT ${JSON.stringify(authority)}`, kind: "connect", a: hex(authority), expect: expectHttp },
    { name: `${group}.http`, what: `GET http://${JSON.stringify(authority)}/`, kind: "get", a: hex(`http://${authority}/${group}`), b: hex(authority), expect: expectHttp },
    { name: `${group}.socks`, what: `SOCKS5 CONNECT domain ${JSON.stringify(socksName)} port ${port}`, kind: "socks", atyp: 3, a: hex(socksName), port, expect: expectSocks },
  ];
}

function probesScript(probes: readonly Probe[]): string {
  // Only what the client needs: descriptions and expectations stay here.
  const plain = JSON.stringify(probes, (key: string, value: unknown) => (key === "what" || key === "expect" ? undefined : value));
  return python(`out("own-token", TOKEN)\nrun_probes(json.loads(r'''${plain}'''))`);
}

/** Every probe that did not end in one of its refusals, described. */
function probeViolations(steps: Map<string, string>, probes: readonly Probe[]): string[] {
  return probes.flatMap((p) => {
    const got = steps.get(p.name);
    if (got === undefined) return [`${p.name} (${p.what}): did not run`];
    return p.expect.includes(got) ? [] : [`${p.name} (${p.what}): got ${got}, expected ${p.expect.join(" or ")}`];
  });
}

function assertProbes(steps: Map<string, string>, probes: readonly Probe[], r: CliResult): void {
  assert.ok(probes.length > 0);
  if (steps.get("python") === "absent") return;
  assert.deepEqual(probeViolations(steps, probes), [], `attacker output:\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-2000)}`);
}

// ---------------------------------------------------------------------------------------------
// Attack 1: the network namespace (no proxy involved)

/** Addresses that would reach the host or the outside if the cloister had any route. */
function directTargets(n: Net): { name: string; proto: "tcp" | "udp"; host: string; port: number; expect: readonly string[] }[] {
  const hostAddresses = Object.values(networkInterfaces())
    .flat()
    .filter((a) => a !== undefined && !a.internal && !(a.family === "IPv6" && a.address.toLowerCase().startsWith("fe80")))
    .map((a) => a?.address ?? "");
  // EAFNOSUPPORT: IPv6 turned off in the kernel; it fails at once just the same.
  const unreachable = ["ENETUNREACH", "EHOSTUNREACH", "EACCES", "EPERM", "EADDRNOTAVAIL", "EAFNOSUPPORT"];
  const nameservers = readFileSync("/etc/resolv.conf", "utf8")
    .split("\n")
    .map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1])
    .filter((a): a is string => a !== undefined && !a.startsWith("127.") && a !== "::1" && !a.includes("%"));
  const remote = [
    ...hostAddresses.map((a) => [a, n.host.port] as const),
    ...["10.0.0.1", "172.17.0.1", "192.168.1.1", "100.64.0.1"].map((a) => [a, n.host.port] as const),
    ["169.254.169.254", 80],
    ["100.100.100.200", 80],
    ["fd00:ec2::254", 80],
    ["8.8.8.8", 53],
    ["1.1.1.1", 443],
    ["2001:4860:4860::8888", 443],
    ...nameservers.map((a) => [a, 53] as const),
  ] as const;
  const seen = new Set<string>();
  const targets: ReturnType<typeof directTargets> = [];
  for (const [host, port] of remote) {
    for (const proto of ["tcp", "udp"] as const) {
      const name = `direct-${proto}:${host}:${port}`;
      if (seen.has(name)) continue;
      seen.add(name);
      targets.push({ name, proto, host, port, expect: unreachable });
    }
  }
  // Loopback inside is the cloister's own: the host's listeners on 127.0.0.1 are not there.
  for (const [host, port] of [["127.0.0.1", n.P], ["127.0.0.2", n.P], ["127.0.0.1", n.echo.port], ["::1", n.host.port]] as const) {
    targets.push({ name: `direct-tcp:${host}:${port}`, proto: "tcp", host, port, expect: host === "::1" ? ["ECONNREFUSED", "EAFNOSUPPORT", "EADDRNOTAVAIL"] : ["ECONNREFUSED"] });
  }
  return targets;
}

/** Ports an attacker tries first on loopback (plus the host-side test servers' ports). */
function commonPorts(n: Net): number[] {
  return [...new Set([21, 22, 25, 53, 80, 111, 443, 631, 1080, 2375, 2376, 3000, 3306, 5000, 5432, 5900, 6000, 6379, 8000, 8080, 8081, 8443, 8888, 9000, 9090, 9229, 9418, 11211, 27017, n.P, n.echo.port, n.host.port, 3128])];
}

function directScript(n: Net): string {
  const targets = directTargets(n);
  return String.raw`
echo "STEP sys-class-net $(ls /sys/class/net | sort | tr '\n' ',')"
echo "STEP proc-net-dev $(awk -F: 'NR > 2 { gsub(/ /, "", $1); print $1 }' /proc/net/dev | sort | tr '\n' ',')"
reason() {
  case "$1" in
    *"Network is unreachable"*) echo ENETUNREACH ;;
    *"Connection refused"*) echo ECONNREFUSED ;;
    *"No route to host"*) echo EHOSTUNREACH ;;
    *"Permission denied"*) echo EACCES ;;
    *"Operation not permitted"*) echo EPERM ;;
    *"Cannot assign requested address"*) echo EADDRNOTAVAIL ;;
    *"Address family not supported"*) echo EAFNOSUPPORT ;;
    *) echo "FAIL:$(printf '%s' "$1" | tr -c 'A-Za-z0-9' '_' | cut -c1-60)" ;;
  esac
}
# bash's /dev/tcp and /dev/udp: socket + connect (+ one byte). "timeout" would mean it hung.
net() {
  out=$(timeout 5 bash -c 'exec 3<>"/dev/$1/$2/$3" && printf x >&3' _ "$2" "$3" "$4" 2>&1); rc=$?
  if [ "$rc" = 0 ]; then echo "STEP $1 OK"; elif [ "$rc" = 124 ]; then echo "STEP $1 timeout"; else echo "STEP $1 $(reason "$out")"; fi
}
${targets.map((x) => `net '${x.name}' ${x.proto} '${x.host}' ${x.port}`).join("\n")}
for p in ${commonPorts(n).join(" ")}; do net "loopback-port:$p" tcp 127.0.0.1 "$p"; done
getent hosts example.com >/dev/null 2>&1; echo "STEP getent:example.com rc$?"
getent hosts web.test >/dev/null 2>&1; echo "STEP getent:web.test rc$?"
getent ahosts sink.test >/dev/null 2>&1; echo "STEP getent:sink.test rc$?"
${python(String.raw`
print("STEP if-nameindex " + ",".join(sorted(n for _, n in socket.if_nameindex())), flush=True)
AF_PACKET = getattr(socket, "AF_PACKET", 17)
def sock(*args):
    socket.socket(*args).close()
step("raw:icmp", lambda: sock(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
step("raw:tcp", lambda: sock(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP))
step("raw:udp", lambda: sock(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP))
step("raw:ip-hdrincl", lambda: sock(socket.AF_INET, socket.SOCK_RAW, 255))
step("raw:icmpv6", lambda: sock(socket.AF_INET6, socket.SOCK_RAW, 58))
step("packet:raw", lambda: sock(AF_PACKET, socket.SOCK_RAW, socket.htons(3)))
step("packet:dgram", lambda: sock(AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800)))
step("packet:inet-sock-packet", lambda: sock(socket.AF_INET, 10, socket.htons(3)))
def ping(addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    try:
        s.sendto(b"\x08\x00\x00\x00\x00\x01\x00\x01", (addr, 0))
    finally:
        s.close()
step("ping-socket:host", lambda: ping(${JSON.stringify(targets.find((x) => x.proto === "udp" && !x.host.includes(":"))?.host ?? "10.0.0.1")}))
def udp_send(addr, port):
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(b"escape", (addr, port))
    finally:
        s.close()
for addr, port in ${JSON.stringify(targets.filter((x) => x.proto === "udp").map((x) => [x.host, x.port]))}:
    step("sendto:%s:%d" % (addr, port), lambda a=addr, p=port: udp_send(a, p))
step("getaddrinfo:example.com", lambda: socket.getaddrinfo("example.com", 443))
step("getaddrinfo:web.test", lambda: socket.getaddrinfo("web.test", 80))
# Every resolver /etc/resolv.conf names (loopback ones included): a real query, 2 s for an answer.
QUERY = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"
def dns(addr):
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    try:
        s.sendto(QUERY, (addr, 53))
        return len(s.recv(512))
    finally:
        s.close()
for line in open("/etc/resolv.conf"):
    f = line.split()
    if len(f) >= 2 and f[0] == "nameserver":
        step("dns-query:" + f[1], lambda a=f[1]: dns(a))
# Every TCP port on both loopback addresses (a connection to itself, TCP's simultaneous open, does not count).
listening = []
for fam, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    try:
        socket.socket(fam, socket.SOCK_STREAM).close()
    except OSError:
        continue  # no IPv6 in this kernel
    for port in range(1, 65536):
        s = socket.socket(fam, socket.SOCK_STREAM)
        try:
            if s.connect_ex((addr, port)) == 0 and s.getsockname()[:2] != s.getpeername()[:2]:
                listening.append("%s:%d" % (addr, port))
        finally:
            s.close()
print("STEP listening " + ",".join(listening), flush=True)
`)}`;
}

// ---------------------------------------------------------------------------------------------
// Attack 2: the proxy's decisions

function denyProbes(n: Net): Probe[] {
  const P = n.P;
  const hosts = [
    // Denied names, in the spellings a matcher might treat differently.
    "sink.test",
    "SINK.TEST",
    "sink.test.",
    "Sink.Test.",
    "sink.lab.test",
    "SINK.lab.TEST.",
    "sink.lab.test.",
    // Label boundaries and suffix tricks around the allowed web.test and *.lab.test.
    ...TRAP_NAMES.slice(2),
    // Not on any list (and not resolvable either).
    "unlisted.test",
  ];
  const probes = hosts.flatMap((h, i) => everyProtocol(`deny.${i}`, h, P, FORBIDDEN, SOCKS_NOT_ALLOWED));
  // Unicode spellings that IDN mapping folds to sink.lab.test (fullwidth letters, ideographic full stop).
  const unicode = ["ｓｉｎｋ.lab.test", "sink。lab。test", "ＳＩＮＫ．ｌａｂ．ｔｅｓｔ"];
  probes.push(...unicode.flatMap((h, i) => everyProtocol(`deny-idn.${i}`, h, P, [...FORBIDDEN, ...MALFORMED], [...SOCKS_NOT_ALLOWED, ...SOCKS_MALFORMED])));
  // SOCKS5 BIND and UDP ASSOCIATE (a UDP path out) even for an allowed name; a client offering no authentication.
  probes.push(
    { name: "socks-cmd.bind", what: "SOCKS5 BIND web.test", kind: "socks", atyp: 3, a: hex("web.test"), port: P, cmd: 2, expect: ["reply:7"] },
    { name: "socks-cmd.udp", what: "SOCKS5 UDP ASSOCIATE web.test", kind: "socks", atyp: 3, a: hex("web.test"), port: P, cmd: 3, expect: ["reply:7"] },
    { name: "socks-cmd.udp-sink", what: "SOCKS5 UDP ASSOCIATE sink.test", kind: "socks", atyp: 3, a: hex("sink.test"), port: P, cmd: 3, expect: ["reply:7", "reply:2"] },
    { name: "socks-noauth", what: "SOCKS5 offering only 'no authentication'", kind: "socks", atyp: 3, a: hex("web.test"), port: P, methods: "00", expect: ["method:05ff"] },
  );
  // Ports other than the rule's on an allowed name.
  for (const [i, port] of [P === 65535 ? P - 1 : P + 1, 80, 443, 22, 3128].entries()) {
    probes.push(...everyProtocol(`deny-port.${i}`, "web.test", port, ["403"], SOCKS_NOT_ALLOWED));
  }
  return probes;
}

function allowedControls(n: Net): Probe[] {
  // The same paths work when the request is allowed: the refusals below are the policy, not a broken setup.
  const P = n.P;
  return [
    ...everyProtocol("control.web", "web.test", P, ["200"], ["reply:0"]),
    ...everyProtocol("control.lab", "www.lab.test", P, ["200"], ["reply:0"]),
    // A non-canonical spelling of an allowed name: the origin gets the checked, canonical authority as Host.
    { name: "control.canonical.http", what: `GET http://WEB.Test.:${P}/canonical`, kind: "get", a: hex(`http://WEB.Test.:${P}/canonical`), b: hex(`WEB.Test.:${P}`), expect: ["200"] },
  ];
}

function junkProbes(n: Net): Probe[] {
  const P = n.P;
  // Hostnames with control bytes, NUL, spaces, and @ / \ ? # % (each next to an allowed name, so a
  // parser that cut the name there would pick the allowed or the denied one).
  const names = [
    "web.test@sink.test",
    `web.test:${P}@sink.test`,
    "sink.test%2e",
    "sink%2etest",
    "sink.test..",
    ".sink.test",
    "sink.te\x01st",
    "sink.test\x00",
    "web.test\x00.sink.test",
    "sink.test\x00web.test",
    "sink.test web.test",
    "sink.test\tweb.test",
    "sink.te\tst",
    "web.test/sink.test",
    "web.test\\sink.test",
    "web.test?sink.test",
    "web.test#sink.test",
    "sink.test\r\nX-Injected: 1",
    "sink.test\x7f",
    "sink.test\u0085",
    "*.lab.test",
    "[sink.test]",
    "",
  ];
  const probes: Probe[] = [];
  names.forEach((h, i) => {
    const authority = `${h}:${P}`;
    probes.push({ name: `junk.${i}.connect`, what: `CONNECT ${JSON.stringify(authority)}`, kind: "connect", a: hex(authority), expect: MALFORMED });
    probes.push({ name: `junk.${i}.socks`, what: `SOCKS5 domain ${JSON.stringify(h)}`, kind: "socks", atyp: 3, a: hex(h), port: P, expect: h === "" ? ["reply:1", "closed"] : SOCKS_MALFORMED });
  });
  // Absolute-form URLs whose authority hides another host.
  const urls = [
    `http://web.test:${P}@sink.test:${P}/`,
    `http://sink.test:${P}#@web.test:${P}/`,
    `http://sink.test:${P}?@web.test:${P}/`,
    `http://web.test:${P}\\@sink.test:${P}/`,
    `http://sink.test%2e:${P}/`,
    `http://web.test%00.sink.test:${P}/`,
    `http://cloister:x@web.test:${P}/`,
    `http://web.test:${P}:${P}/`,
    `https://web.test:${P}/`,
    `http:/web.test:${P}/`,
    `ftp://web.test:${P}/`,
    `//web.test:${P}/`,
  ];
  urls.forEach((u, i) => probes.push({ name: `junk-url.${i}.http`, what: `GET ${u}`, kind: "get", a: hex(u), b: hex(`web.test:${P}`), expect: MALFORMED }));
  // Strict ports: one port, one spelling.
  const ports = [`0${P}`, `+${P}`, `${P + 65536}`, `${P}.0`, ` ${P}`, "", "0", "-1", "65536", `0x${P.toString(16)}`, `${P}:${P}`, `${P},80`];
  ports.forEach((port, i) => {
    probes.push({ name: `junk-port.${i}.connect`, what: `CONNECT web.test:${JSON.stringify(port)}`, kind: "connect", a: hex(`web.test:${port}`), expect: MALFORMED });
    probes.push({ name: `junk-port.${i}.http`, what: `GET http://web.test:${JSON.stringify(port)}/`, kind: "get", a: hex(`http://web.test:${port}/`), b: hex(`web.test:${port}`), expect: MALFORMED });
  });
  probes.push({ name: "junk-port.noport.connect", what: "CONNECT web.test (no port)", kind: "connect", a: hex("web.test"), expect: MALFORMED });
  return probes;
}

/** IP literals for loopback (the allowed upstream's and the sink's address), metadata, and the unspecified address. */
function literalProbes(n: Net): Probe[] {
  const P = n.P;
  const spellings = [
    // 127.0.0.1 (web listens there on P)
    "127.0.0.1",
    "127.1",
    "127.0.1",
    "0x7f.0.0.1",
    "0x7f.1",
    "0177.0.0.1",
    "0177.1",
    "2130706433",
    "0x7f000001",
    "017700000001",
    "127.0.0.1.",
    "127.000.000.001",
    "[::1]",
    "[0:0:0:0:0:0:0:1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::127.0.0.1]",
    "[::ffff:0:127.0.0.1]",
    "[64:ff9b::127.0.0.1]",
    // 127.0.0.2 (the sink) and 127.0.0.3 (quiet)
    "127.0.0.2",
    "127.2",
    "0x7f000002",
    "2130706434",
    "[::ffff:127.0.0.2]",
    "127.0.0.3",
    // 0.0.0.0 reaches the host's own listeners on Linux
    "0.0.0.0",
    "0",
    "0x0",
    "[::]",
    "[::ffff:0.0.0.0]",
    // Cloud metadata
    "169.254.169.254",
    "0xa9fea9fe",
    "2852039166",
    "0251.0376.0251.0376",
    "169.254.43518",
    "0xa9.0xfe.0xa9.0xfe",
    "[::ffff:169.254.169.254]",
    "[::ffff:a9fe:a9fe]",
    "[fd00:ec2::254]",
    "100.100.100.200",
    // Names that resolve to loopback on the host (/etc/hosts), allowed by a plain rule without --allow-private.
    // All but the first request for them take the guardian's remembered answer (proxy/host-resolver.ts),
    // which must be checked again on every use.
    "localhost",
    "LOCALHOST.",
    "localhost.",
  ];
  const probes = spellings.flatMap((s, i) => everyProtocol(`literal.${i}`, s, P, FORBIDDEN, SOCKS_NOT_ALLOWED));
  // SOCKS5 with binary addresses.
  const v4 = (a: string): Buffer => Buffer.from(a.split(".").map(Number));
  const v6 = (groups: number[]): Buffer => Buffer.concat(groups.map((g) => Buffer.from([g >> 8, g & 0xff])));
  const binary: [string, 1 | 4, Buffer][] = [
    ["127.0.0.1", 1, v4("127.0.0.1")],
    ["127.0.0.2", 1, v4("127.0.0.2")],
    ["0.0.0.0", 1, v4("0.0.0.0")],
    ["169.254.169.254", 1, v4("169.254.169.254")],
    ["::1", 4, v6([0, 0, 0, 0, 0, 0, 0, 1])],
    ["::ffff:127.0.0.2", 4, v6([0, 0, 0, 0, 0, 0xffff, 0x7f00, 2])],
    ["::", 4, v6([0, 0, 0, 0, 0, 0, 0, 0])],
  ];
  binary.forEach(([label, atyp, bytes], i) =>
    probes.push({ name: `literal-bin.${i}.socks`, what: `SOCKS5 ATYP ${atyp} ${label} port ${P}`, kind: "socks", atyp, a: hex(bytes), port: P, expect: SOCKS_NOT_ALLOWED }),
  );
  return probes;
}

// ---------------------------------------------------------------------------------------------
// Attack 3: tunnels, relays, kept-alive connections, conflicting requests

/** Raw request bytes with `{{AUTH}}` where the client's Proxy-Authorization line goes. */
function rawGet(url: string, host: string, extra = "", close = false): string {
  return `GET ${url} HTTP/1.1\r\nHost: ${host}\r\n{{AUTH}}${extra}${close ? "Connection: close\r\n" : ""}\r\n`;
}

function conflictProbes(n: Net): Probe[] {
  const P = n.P;
  const q = `quiet.test:${P}`;
  const s = `sink.test:${P}`;
  const raw: [string, string, readonly string[]][] = [
    ["URL names quiet.test, Host names sink.test", rawGet(`http://${q}/c1`, s, "", true), MALFORMED],
    ["URL names sink.test, Host names quiet.test", rawGet(`http://${s}/c2`, q, "", true), [...MALFORMED, ...FORBIDDEN]],
    ["two Host headers (quiet.test, sink.test)", rawGet(`http://${q}/c3`, q, `Host: ${s}\r\n`, true), MALFORMED],
    ["Host names quiet.test on another port", rawGet(`http://${q}/c4`, `quiet.test:${P === 65535 ? 1 : P + 1}`, "", true), MALFORMED],
    ["Host with userinfo", rawGet(`http://${q}/c5`, `${q}@${s}`, "", true), MALFORMED],
    ["origin-form request with Host quiet.test", rawGet("/c6", q, "", true), MALFORMED],
    ["Content-Length and Transfer-Encoding together", `POST http://${q}/c7 HTTP/1.1\r\nHost: ${q}\r\n{{AUTH}}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, MALFORMED],
    ["two different Content-Length headers", `POST http://${q}/c8 HTTP/1.1\r\nHost: ${q}\r\n{{AUTH}}Content-Length: 1\r\nContent-Length: 2\r\n\r\nxx`, MALFORMED],
    ["space before the colon of Host", `GET http://${q}/c9 HTTP/1.1\r\nHost : ${s}\r\n{{AUTH}}\r\n`, MALFORMED],
    ["obsolete line folding in Host", `GET http://${q}/c10 HTTP/1.1\r\nHost: ${q}\r\n {{AUTH}}\r\n`, MALFORMED],
    ["bare LF line endings with a second Host", `GET http://${q}/c11 HTTP/1.1\nHost: ${q}\nHost: ${s}\n{{AUTH}}\n`, MALFORMED],
    ["CONNECT to the denied sink with a request pipelined behind it", `CONNECT ${s} HTTP/1.1\r\nHost: ${s}\r\n{{AUTH}}\r\nGET /pipelined HTTP/1.1\r\nHost: ${s}\r\n\r\n`, FORBIDDEN],
    ["CONNECT with an absolute URL as target", `CONNECT http://${s}/ HTTP/1.1\r\nHost: ${s}\r\n{{AUTH}}\r\n`, MALFORMED],
    ["HTTP/1.0 absolute-form to the sink", `GET http://${s}/c14 HTTP/1.0\r\n{{AUTH}}\r\n`, FORBIDDEN],
    ["SOCKS4 CONNECT to 127.0.0.2 (the sink)", `\u0004\u0001${String.fromCharCode(P >> 8, P & 0xff)}\u007f\u0000\u0000\u0002cloister\u0000`, [...MALFORMED, "closed"]],
    ["SOCKS4a CONNECT to sink.test", `\u0004\u0001${String.fromCharCode(P >> 8, P & 0xff)}\u0000\u0000\u0000\u0001cloister\u0000sink.test\u0000`, [...MALFORMED, "closed"]],
    ["HTTP/2 prior-knowledge preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", [...MALFORMED, "closed"]],
    ["POST to the denied sink", `POST http://${s}/c19 HTTP/1.1\r\nHost: ${s}\r\n{{AUTH}}Content-Length: 2\r\n\r\nhi`, FORBIDDEN],
    ["OPTIONS with a path-less absolute URL, to the sink", `OPTIONS http://${s} HTTP/1.1\r\nHost: ${s}\r\n{{AUTH}}\r\n`, FORBIDDEN],
    ["CONNECT/1.0 to the denied sink", `CONNECT ${s} HTTP/1.0\r\n{{AUTH}}\r\n`, FORBIDDEN],
    ["HTTP/0.9-style request line (no version, no credentials)", `GET http://${s}/c15\r\n\r\n`, [...MALFORMED, "407"]],
  ];
  const probes: Probe[] = raw.map(([what, bytes, expect], i) => ({ name: `conflict.${i}`, what, kind: "raw", a: hex(Buffer.from(bytes, "latin1")), expect }));
  // Each request on a kept-alive connection is judged on its own.
  const w = `web.test:${P}`;
  const streams: [string, string, string[]][] = [
    ["kept-alive: allowed, denied, allowed", rawGet(`http://${w}/ka1`, w) + rawGet(`http://${s}/ka2`, s) + rawGet(`http://${w}/ka3`, w, "", true), ["200,403,200"]],
    // The CONNECT's refusal is written straight to the socket and ends it, so the pending GET's
    // answer may be lost ("403" alone): not what HTTP/1.1 pipelining asks, but nothing gets through.
    ["kept-alive: allowed, then CONNECT to the denied sink", rawGet(`http://${w}/kb1`, w) + `CONNECT ${s} HTTP/1.1\r\nHost: ${s}\r\n{{AUTH}}\r\n`, ["200,403", "403"]],
    ["kept-alive: allowed, then origin-form naming the sink in Host", rawGet(`http://${w}/kc1`, w) + rawGet("/kc2", s, "", true), ["200,400"]],
    ["kept-alive: allowed, then the sink without credentials", rawGet(`http://${w}/kd1`, w) + `GET http://${s}/kd2 HTTP/1.1\r\nHost: ${s}\r\nConnection: close\r\n\r\n`, ["200,407"]],
  ];
  streams.forEach(([what, bytes, expect], i) => probes.push({ name: `keepalive.${i}`, what, kind: "stream", a: hex(bytes), expect }));
  return probes;
}

/** The denied requests again, through a relay the attacker runs inside, and on the guardian's socket directly. */
function relayProbes(n: Net, via: { label: string; proxyPort?: number; unix?: string }): Probe[] {
  const P = n.P;
  const base: Probe[] = [
    ...everyProtocol(`relay-${via.label}.deny`, "sink.test", P, FORBIDDEN, SOCKS_NOT_ALLOWED),
    ...everyProtocol(`relay-${via.label}.literal`, "127.0.0.2", P, FORBIDDEN, SOCKS_NOT_ALLOWED),
    ...everyProtocol(`relay-${via.label}.localhost`, "localhost", P, FORBIDDEN, SOCKS_NOT_ALLOWED),
    {
      name: `relay-${via.label}.noauth`,
      what: "GET an allowed URL without credentials",
      kind: "raw",
      a: hex(`GET http://web.test:${P}/noauth HTTP/1.1\r\nHost: web.test:${P}\r\nConnection: close\r\n\r\n`),
      expect: ["407"],
    },
    { name: `relay-${via.label}.control`, what: "GET an allowed URL (works as directly)", kind: "get", a: hex(`http://web.test:${P}/relay`), b: hex(`web.test:${P}`), expect: ["200"] },
  ];
  return base.map((p) => ({ ...p, ...(via.proxyPort ? { proxyPort: via.proxyPort } : {}), ...(via.unix ? { unix: via.unix } : {}), what: `${p.what} via ${via.label}` }));
}

function tunnelScript(n: Net): string {
  const P = n.P;
  return String.raw`
# A relay of the attacker's own: another loopback port and a unix socket, forwarding to 3128.
if command -v socat >/dev/null 2>&1; then
  socat TCP-LISTEN:18080,bind=127.0.0.1,reuseaddr,fork TCP:127.0.0.1:3128 &
  socat UNIX-LISTEN:/tmp/relay.sock,fork TCP:127.0.0.1:3128 &
  for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/18080) 2>/dev/null && [ -S /tmp/relay.sock ] && break; sleep 0.05; done
  echo "STEP socat present"
else
  echo "STEP socat absent"
fi
${python(String.raw`
P = ${P}
ECHO = ${n.echo.port}
def inner_connect(token=True):
    req = b"CONNECT sink.test:%d HTTP/1.1\r\nHost: sink.test:%d\r\n" % (P, P)
    return req + (auth() if token else b"") + b"\r\n"
def socks_inner():
    pw = TOKEN.encode()
    return b"\x05\x01\x02" + b"\x01\x08cloister" + bytes([len(pw)]) + pw + b"\x05\x01\x00" + socks_addr(3, b"sink.test") + struct.pack(">H", P)
def through(s, inner):
    s.sendall(inner)
    got, problem = read_until(s, want=len(inner))
    s.close()
    if got == inner:
        return "echoed"
    if got.startswith(b"HTTP/"):
        return "answered:" + status(got, problem)
    return "other:" + (problem or got[:16].hex())
def connect_tunnel(target):
    s = dial()
    s.sendall(connect_req(target).replace(b"{{AUTH}}", auth()))
    head, problem = read_until(s)
    st = status(head, problem)
    if st != "200":
        s.close()
        return None, "outer:" + st
    return s, "200"
# CONNECT inside a CONNECT tunnel to an allowed host: the proxy never reads it; the destination gets the bytes.
s, r = connect_tunnel(b"echo.test:%d" % ECHO)
out("tunnel:connect-in-connect", through(s, inner_connect()) if s else r)
# SOCKS5 inside a CONNECT tunnel, and CONNECT inside a SOCKS5 tunnel.
s, r = connect_tunnel(b"echo.test:%d" % ECHO)
out("tunnel:socks-in-connect", through(s, socks_inner()) if s else r)
s, r = socks_open("tunnel", 3, b"echo.test", ECHO)
out("tunnel:connect-in-socks", through(s, inner_connect()) if s else r)
# The same to an HTTP origin (web.test): it receives a CONNECT it does not serve (sent without the token).
s, r = connect_tunnel(b"web.test:%d" % P)
out("tunnel:connect-in-connect-web", through(s, inner_connect(token=False)) if s else r)
`)}`;
}

// ---------------------------------------------------------------------------------------------
// Token and socket probes (run inside a persistent cloister with `exec`)

function tokenScript(n: Net, foreign: string, label: string): string {
  const P = n.P;
  const wrongSameLength = foreign.replace(/./g, (c) => (c === "0" ? "1" : "0"));
  // Failure responses must not tell a near miss from a stranger: the same bytes for every wrong token.
  const variants: Record<string, string> = {
    foreign: `Proxy-Authorization: Basic ${Buffer.from(`cloister:${foreign}`).toString("base64")}\r\n`,
    wrongSameLength: `Proxy-Authorization: Basic ${Buffer.from(`cloister:${wrongSameLength}`).toString("base64")}\r\n`,
    prefix: `Proxy-Authorization: Basic ${Buffer.from(`cloister:${foreign.slice(0, 32)}`).toString("base64")}\r\n`,
    none: "",
    garbage: "Proxy-Authorization: Basic !!!\r\n",
    bearer: `Proxy-Authorization: Bearer ${foreign}\r\n`,
    ownPlusForeign: `{{AUTH}}Proxy-Authorization: Basic ${Buffer.from(`cloister:${foreign}`).toString("base64")}\r\n`,
  };
  return `${probesScript(tokenVariantsProbes(n, foreign, label))}
${python(String.raw`
def whole_response(raw):
    # The head and the whole body (Content-Length), so two answers can be compared byte for byte.
    s = dial()
    try:
        s.sendall(raw.replace(b"{{AUTH}}", auth()))
        data, problem = read_until(s)
        m = re.search(rb"(?im)^content-length: *(\d+)", data)
        if m and b"\r\n\r\n" in data:
            want = data.index(b"\r\n\r\n") + 4 + int(m.group(1))
            more, _ = read_until(s, want=want - len(data))
            data += more
        return status(data, problem), data
    finally:
        s.close()
variants = json.loads(r'''${JSON.stringify(variants)}''')
for name, header in variants.items():
    st, data = whole_response(b"CONNECT web.test:${P} HTTP/1.1\r\nHost: web.test:${P}\r\n" + header.encode() + b"\r\n")
    out("${label}-bytes:" + name, st + ":" + hashlib.sha256(data).hexdigest()[:16])
    # Absolute-form replies carry a Date header: compare them without it.
    st, data = whole_response(b"GET http://web.test:${P}/v HTTP/1.1\r\nHost: web.test:${P}\r\n" + header.encode() + b"\r\n")
    data = re.sub(rb"(?im)^date:[^\r\n]*\r\n", b"", data)
    out("${label}-http-bytes:" + name, st + ":" + hashlib.sha256(data).hexdigest()[:16])
`)}`;
}

/** What the cloister can see of unix sockets, and whether it can reach the other cloister's or the guardian's. */
function socketsScript(otherSocket: string, controlSocket: string, ownHostSocket: string): string {
  return String.raw`
find / \( -path /proc -o -path /sys -o -path /usr -o -path /nix \) -prune -o -type s -print 2>/dev/null | sort | sed 's/^/STEP socket-file /'
awk '$5 == "/run/cloister/guardian" { print "STEP guardian-mount-options " $6 }' /proc/self/mountinfo
${python(String.raw`
def unix(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(path)
    finally:
        s.close()
for label, path in (("other-cloister", ${JSON.stringify(otherSocket)}), ("guardian-control", ${JSON.stringify(controlSocket)}), ("own-host-path", ${JSON.stringify(ownHostSocket)})):
    step("connect:" + label, lambda p=path: unix(p))
    step("connect-via-proc:" + label, lambda p=path: unix("/proc/1/root" + p))
`)}`;
}

/**
 * Offers over the cloister's hand-over socket (helpers/handover.ts), each printed
 * as `STEP offer-NAME OK closed` when the guardian refused it (or `OK answer:1` when it took it).
 * The real listener is the bridge's and cannot be sent; the attacker also tries to bind its port.
 */
function handoverScript(): string {
  return python(String.raw`
import time
HO = "/run/cloister/guardian/handover.sock"
${HANDOVER_OFFER_PY}
def offer_to(data, make=lambda: []):
    outcome, s = offer(HO, data, make(), timeout=10)
    s.close()
    return outcome
def grab(options):
    s = socket.socket()
    for o in options:
        s.setsockopt(socket.SOL_SOCKET, o, 1)
    s.bind(("127.0.0.1", PROXY_PORT))
    s.listen()
def listening(family=socket.AF_INET, kind=socket.SOCK_STREAM, addr=("127.0.0.1", 0)):
    s = socket.socket(family, kind)
    if addr is not None:
        s.bind(addr)
    if kind == socket.SOCK_STREAM:
        s.listen()
    return s
step("bind-3128", lambda: grab([]))
step("bind-3128-reuse", lambda: grab([socket.SO_REUSEADDR, socket.SO_REUSEPORT]))
CASES = [
    ("other-port", MAGIC, lambda: [listening()]),
    ("other-address", MAGIC, lambda: [listening(addr=("127.0.0.2", PROXY_PORT))]),
    ("udp", MAGIC, lambda: [listening(kind=socket.SOCK_DGRAM, addr=("127.0.0.1", PROXY_PORT))]),
    ("ipv6", MAGIC, lambda: [listening(socket.AF_INET6, addr=None)]),
    ("unix", MAGIC, lambda: [listening(socket.AF_UNIX, addr="\0attacker-%d" % time.monotonic_ns())]),
    ("connected", MAGIC, lambda: [socket.create_connection(("127.0.0.1", PROXY_PORT))]),
    ("pipe", MAGIC, lambda: [os.pipe()[0]]),
    ("two", MAGIC, lambda: [listening(), listening()]),
    ("no-descriptor", MAGIC, lambda: []),
    ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", lambda: [listening()]),
    ("other-magic", b"cloister-listener 2\n", lambda: [listening()]),
    ("silence", b"", lambda: []),
]
def offers(prefix):
    for name, data, make in CASES:
        step(prefix + name, lambda d=data, m=make: offer_to(d, m))
def bridges():
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = open("/proc/%s/cmdline" % pid, "rb").read().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[1] == b"relay":
            found.append(int(pid))
    return found
# While A's bridge's offer is taken, every other offer is refused at once.
offers("offer-taken-")
# The attacker kills its bridge, which ends that offer, and races the bridge init restarts.
def kill_bridges():
    pids = bridges()
    for pid in pids:
        os.kill(pid, 9)
    return len(pids)
step("bridge-killed", kill_bridges)
offers("offer-racing-")
`);
}

// ---------------------------------------------------------------------------------------------

interface CloisterRecord {
  name: string;
  id: string;
  runtimeDir: string;
}

function cloisterRecord(t: TestInstance, name: string): CloisterRecord {
  return JSON.parse(readFileSync(join(t.home, "state", "cloisters", `${name}.json`), "utf8")) as CloisterRecord;
}

function tokenOf(text: string): string {
  const token = /cloister:([0-9a-f]{64})@/.exec(text)?.[1];
  assert.ok(token, `no proxy token in ${JSON.stringify(text.slice(0, 300))}`);
  return token;
}

/** Every file under `dir` that contains one of `needles`. */
function filesContaining(dir: string, needles: readonly string[]): string[] {
  if (!existsSync(dir)) return [];
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...filesContaining(full, needles));
    else if (entry.isFile()) {
      const text = readFileSync(full, "latin1");
      for (const needle of needles) if (text.includes(needle)) found.push(`${full} contains token ${needle.slice(0, 8)}…`);
    }
  }
  return found;
}

/** Tokens the attacker scripts printed (their own, from HTTP_PROXY). */
function printedTokens(text: string): string[] {
  return [...text.matchAll(/^STEP own-token ([0-9a-f]{64})$/gm)].map((m) => m[1] ?? "");
}

describe("escape/network", () => {
  let t: TestInstance;
  let n: Net;
  let guardianPid = 0;
  let hostBefore: Snapshot;
  /** Every proxy token seen during the suite: none may reach an origin or a log. */
  const tokens = new Set<string>();
  /** Attacker output, for the canary oracle at the end. */
  const outputs: string[] = [];
  const BYSTANDER = "bystander";
  let alive = 0;

  before(async () => {
    t = createInstance("net");
    n = await startNet();
    hostBefore = hostSensitiveSnapshot(t);
    const r = await t.cli(["start", "-d", "--name", BYSTANDER, ...sessionFlags(n)]);
    assert.equal(r.code, 0, r.stderr);
    guardianPid = (await guardianStatus(t)).pid ?? 0;
    assert.ok(guardianPid > 0);
    tokens.add(tokenOf((await t.cli(["exec", BYSTANDER, "--", "printenv", "HTTP_PROXY"])).stdout));
  });
  after(async () => {
    await t?.teardown();
    await stopNet(n);
  });

  /** Liveness: the bystander cloister gets 200 from the allowed upstream, and the guardian is the same process. */
  async function assertLiveness(context: string): Promise<void> {
    const path = `/alive-${++alive}`;
    const [r, status] = await Promise.all([
      t.cli(["exec", BYSTANDER, "--", "curl", "-sS", "-m", "20", "-o", "/dev/null", "-w", "%{http_code}", `http://web.test:${n.P}${path}`]),
      guardianStatus(t),
    ]);
    assert.equal(r.stdout, "200", `${context}: the bystander cloister got no answer: ${r.stdout} ${r.stderr}`);
    assert.equal(status.running, true, `${context}: the guardian is not running`);
    assert.equal(status.pid, guardianPid, `${context}: the guardian died and was restarted`);
  }

  /**
   * Runs an attack that prints `marker` once it holds what it opened, then waits for a line on its
   * stdin before it lets go; `meanwhile` runs while it holds.
   */
  async function whileHeld(script: string, marker: string, ms: number, meanwhile: () => Promise<void>): Promise<CliResult> {
    const run = spawnCli(t, ["run", ...sessionFlags(n), "--", "bash", "-c", script]);
    try {
      await run.waitFor(marker, ms);
      await meanwhile();
    } finally {
      run.endInput();
    }
    const r = await run.done;
    outputs.push(r.stdout, r.stderr);
    return r;
  }

  /** Runs an attack while the bystander makes its request, then checks liveness once more. */
  async function during(context: string, attacking: Promise<CliResult>): Promise<CliResult> {
    const [r] = await Promise.all([attacking, assertLiveness(`during ${context}`)]);
    outputs.push(r.stdout, r.stderr);
    await assertLiveness(`after ${context}`);
    return r;
  }

  // ---------------------------------------------------------------------------------------------
  describe("the network namespace", () => {
    let result: Promise<CliResult> | undefined;
    const probe = (): Promise<CliResult> => (result ??= during("the direct-connection attacks", attack(t, n, directScript(n))));

    it("the attacker lists interfaces: only lo exists (/proc/net/dev, if_nameindex)", async () => {
      const r = await probe();
      const steps = parseSteps(r.stdout);
      assert.equal(steps.get("proc-net-dev"), "lo,", r.stderr);
      if (steps.get("python") !== "absent") assert.equal(steps.get("if-nameindex"), "lo");
    });

    it("the attacker reads /sys/class/net: no host interface is listed (sysfs is the host's, its network views are covered)", async () => {
      const steps = parseSteps((await probe()).stdout);
      const listed = (steps.get("sys-class-net") ?? "").split(",").filter((name) => name !== "" && name !== "lo");
      assert.deepEqual(listed, []);
    });

    it("the attacker connects directly (TCP) to host addresses, private ranges, metadata and public resolvers: each fails at once; loopback is its own", async () => {
      const r = await probe();
      const steps = parseSteps(r.stdout);
      const violations = directTargets(n)
        .filter((x) => x.proto === "tcp")
        .flatMap((x) => (x.expect.includes(steps.get(x.name) ?? "did not run") ? [] : [`${x.name}: ${steps.get(x.name) ?? "did not run"}`]));
      assert.deepEqual(violations, [], r.stderr);
      assert.deepEqual(deniedSaw(n), []);
    });

    it("the attacker sends UDP to host addresses and resolvers (bash /dev/udp and sendto): each fails at once, the host's UDP listener gets nothing", async () => {
      const r = await probe();
      const steps = parseSteps(r.stdout);
      const udp = directTargets(n).filter((x) => x.proto === "udp");
      const violations = udp.flatMap((x) => (x.expect.includes(steps.get(x.name) ?? "did not run") ? [] : [`${x.name}: ${steps.get(x.name) ?? "did not run"}`]));
      if (steps.get("python") !== "absent") {
        for (const x of udp) {
          const got = steps.get(`sendto:${x.host}:${x.port}`);
          if (!x.expect.includes(got ?? "did not run")) violations.push(`sendto:${x.host}:${x.port}: ${got ?? "did not run"}`);
        }
      }
      assert.deepEqual(violations, [], r.stderr);
      assert.equal(n.host.udpDatagrams, 0);
    });

    it("the attacker opens raw, packet and ping sockets: all refused", async (ctx) => {
      const steps = parseSteps((await probe()).stdout);
      if (steps.get("python") === "absent") return ctx.skip("python3 is not installed: raw sockets need it");
      const names = [...steps.keys()].filter((k) => k.startsWith("raw:") || k.startsWith("packet:") || k.startsWith("ping-socket:"));
      assert.equal(names.length, 9);
      const bad = names.filter((k) => !["EPERM", "EACCES", "EAFNOSUPPORT", "EPROTONOSUPPORT", "ESOCKTNOSUPPORT", "ENETUNREACH", "EINVAL"].includes(steps.get(k) ?? ""));
      assert.deepEqual(bad.map((k) => `${k}: ${steps.get(k)}`), []);
    });

    it("the attacker resolves names: no resolver answers (getent, getaddrinfo, a query to every nameserver in /etc/resolv.conf)", async () => {
      const r = await probe();
      const steps = parseSteps(r.stdout);
      // getent exits 2 for "not found".
      for (const name of ["getent:example.com", "getent:web.test", "getent:sink.test"]) assert.equal(steps.get(name), "rc2", `${name}: ${r.stderr}`);
      if (steps.get("python") === "absent") return;
      // A resolver error (EAI_*: negative codes), not an address.
      assert.match(steps.get("getaddrinfo:example.com") ?? "", /^(gaierror|E-\d+)$/);
      assert.match(steps.get("getaddrinfo:web.test") ?? "", /^(gaierror|E-\d+)$/);
      const queries = [...steps.keys()].filter((k) => k.startsWith("dns-query:"));
      assert.deepEqual(
        queries.filter((k) => !["ENETUNREACH", "EHOSTUNREACH", "ECONNREFUSED", "TimeoutError", "timeout"].includes(steps.get(k) ?? "")).map((k) => `${k}: ${steps.get(k)}`),
        [],
      );
    });

    it("the attacker scans loopback: only 127.0.0.1:3128 answers (every TCP port on 127.0.0.1 and ::1)", async () => {
      const r = await probe();
      const steps = parseSteps(r.stdout);
      const open = commonPorts(n).filter((p) => steps.get(`loopback-port:${p}`) !== "ECONNREFUSED");
      assert.deepEqual(open, [3128], `common ports: ${r.stderr}`);
      assert.equal(steps.get("loopback-port:3128"), "OK");
      if (steps.get("python") !== "absent") assert.equal(steps.get("listening"), "127.0.0.1:3128");
      assert.deepEqual(deniedSaw(n), []);
    });
  });

  // ---------------------------------------------------------------------------------------------
  describe("the proxy's decisions", { skip: NO_PYTHON }, () => {
    const groups = {
      controls: () => allowedControls(n),
      deny: () => denyProbes(n),
      junk: () => junkProbes(n),
      literals: () => literalProbes(n),
      conflicts: () => conflictProbes(n),
    };
    let result: Promise<CliResult> | undefined;
    const probe = (): Promise<CliResult> =>
      (result ??= during(
        "the proxy-decision attacks",
        attack(t, n, probesScript([...groups.controls(), ...groups.deny(), ...groups.junk(), ...groups.literals(), ...groups.conflicts()])),
      ));
    const webPathsFor = (prefix: string) => n.web.requests.filter((q) => q.url.startsWith(prefix)).map((q) => q.url);

    it("sanity: the same paths work for allowed names (CONNECT, absolute-form and SOCKS5 all get through); the origin sees the checked authority as Host", async () => {
      const r = await probe();
      assertProbes(parseSteps(r.stdout), groups.controls(), r);
      assert.deepEqual(n.web.requests.filter((q) => q.url === "/canonical").map((q) => q.headers.host), [`web.test:${n.P}`]);
    });

    it("the attacker asks for denied names on every protocol, in every spelling (case, trailing dot, IDN), and for names past a label boundary: 403 / SOCKS refusal, the denied sink sees nothing", async () => {
      const r = await probe();
      assertProbes(parseSteps(r.stdout), groups.deny(), r);
      assert.deepEqual(deniedSaw(n), []);
    });

    it("the attacker hides another host in the authority (user@host, control bytes, NUL, spaces, / \\ ? # %, bad ports): 400 / SOCKS failure, nothing dialed", async () => {
      const r = await probe();
      assertProbes(parseSteps(r.stdout), groups.junk(), r);
      assert.deepEqual(deniedSaw(n), []);
      assert.deepEqual(webPathsFor("/escaped-junk"), []);
    });

    it("the attacker uses IP literals in every spelling (loopback, 0.0.0.0, metadata; IPv4, IPv6, mapped; SOCKS ATYP 1 and 4) and names that resolve to loopback under a plain allow rule: all refused", async () => {
      const r = await probe();
      assertProbes(parseSteps(r.stdout), groups.literals(), r);
      assert.deepEqual(deniedSaw(n), []);
      assert.deepEqual(webPathsFor("/literal"), [], "a literal reached the allowed upstream's address");
      assert.deepEqual(webPathsFor("/escaped-literal"), []);
    });

    it("the attacker sends conflicting or ambiguous requests (Host against URL, two Hosts, CL+TE) and mixes verdicts on one kept-alive connection: 400s, each request judged on its own", async () => {
      const r = await probe();
      assertProbes(parseSteps(r.stdout), groups.conflicts(), r);
      assert.deepEqual(deniedSaw(n), [], "the quiet upstream (only named in refused requests) or the sink was reached");
      // The allowed requests of the kept-alive connections arrived, and nothing else from them.
      assert.deepEqual(webPathsFor("/k").filter((u) => u !== "/kb1").sort(), ["/ka1", "/ka3", "/kc1", "/kd1"]);
    });

    it("the attacker follows an allowed request with a denied name that resolves to the same address, on one kept-alive proxy connection: 403, and the origin connection the guardian keeps for that address never carries it", async () => {
      const urls = [`http://web.test:${n.P}/pooled-1`, `http://shadow.test:${n.P}/pooled-2`, `http://web.test:${n.P}/pooled-3`, `http://shadow.test:${n.P}/pooled-4`];
      const r = await t.cli(["exec", BYSTANDER, "--", "curl", "-sS", "-m", "20", "-w", "%{http_code} %{num_connects}\\n", ...urls.flatMap((url) => ["-o", "/dev/null", url])]);
      outputs.push(r.stdout, r.stderr);
      const answers = r.stdout.trim().split("\n");
      assert.deepEqual(answers.map((line) => line.split(" ")[0]), ["200", "403", "200", "403"], r.stderr);
      assert.deepEqual(answers.slice(1).map((line) => line.split(" ")[1]), ["0", "0", "0"], "curl opened a new proxy connection: the test needs one kept-alive connection");
      assert.deepEqual(webPathsFor("/pooled"), ["/pooled-1", "/pooled-3"]);
    });

    it("every refusal is audited with its decision; the checked authority is the one logged", async () => {
      await probe();
      const tail = await t.cli(["audit", "tail", "-n", "5000", "--json"]);
      const events = tail.stdout.trim().split("\n").map((l) => JSON.parse(l) as { type?: string; host?: string | null; decision?: string; address?: string | null });
      const egress = events.filter((e) => e.type === "egress");
      assert.ok(egress.some((e) => e.host === "sink.test" && e.decision === "denied"));
      assert.ok(egress.some((e) => e.host === "sink.lab.test" && e.decision === "denied"));
      assert.ok(egress.some((e) => e.host === "localhost" && e.decision === "address"));
      assert.ok(egress.some((e) => e.decision === "invalid"));
      // Only the allowed names were dialed, each at the address of the name it was judged for.
      const dialed = new Set(egress.filter((e) => e.decision === "allow").map((e) => `${e.host}->${e.address}`));
      assert.deepEqual([...dialed].filter((d) => !["web.test->127.0.0.1", "www.lab.test->127.0.0.1", "echo.test->127.0.0.1"].includes(d)), []);
    });
    it("the attacker reaches a host denied without a port on the port a wildcard allow names (deny portless.lab.test, allow *.lab.test:P): 403 / SOCKS refusal on every protocol, the sink sees nothing", async () => {
      const probes = [...everyProtocol("deny-portless", "portless.lab.test", n.P, FORBIDDEN, SOCKS_NOT_ALLOWED), ...everyProtocol("control.portless", "www.lab.test", n.P, ["200"], ["reply:0"])];
      const flags = ["--resolve", "portless.lab.test=127.0.0.2", "--deny", "portless.lab.test"];
      const r = await t.cli(["run", ...sessionFlags(n), ...flags, "--", "bash", "-c", probesScript(probes)]);
      outputs.push(r.stdout, r.stderr);
      assertProbes(parseSteps(r.stdout), probes, r);
      assert.deepEqual(deniedSaw(n), []);
    });
  });

  // ---------------------------------------------------------------------------------------------
  describe("tunnels and relays", { skip: NO_PYTHON }, () => {
    const relays = () => [
      ...relayProbes(n, { label: "socat-tcp", proxyPort: 18080 }),
      ...relayProbes(n, { label: "socat-unix", unix: "/tmp/relay.sock" }),
      ...relayProbes(n, { label: "guardian-socket", unix: "/run/cloister/guardian/proxy.sock" }),
    ];
    let result: Promise<CliResult> | undefined;
    const probe = (): Promise<CliResult> => (result ??= during("the tunnel and relay attacks", attack(t, n, tunnelScript(n) + probesScript(relays()))));

    it("the attacker sends a CONNECT (or a SOCKS5 request) inside an allowed tunnel: the allowed destination gets the bytes, the denied sink nothing", async () => {
      const echoedBefore = n.echo.received.length;
      const r = await probe();
      const steps = parseSteps(r.stdout);
      assert.equal(steps.get("tunnel:connect-in-connect"), "echoed", r.stderr);
      assert.equal(steps.get("tunnel:socks-in-connect"), "echoed");
      assert.equal(steps.get("tunnel:connect-in-socks"), "echoed");
      assert.ok(steps.has("tunnel:connect-in-connect-web"));
      assert.doesNotMatch(steps.get("tunnel:connect-in-connect-web") ?? "", /^answered:200$|^outer:/);
      assert.ok(n.echo.received.length > echoedBefore);
      assert.match(n.web.received.toString("latin1"), new RegExp(`CONNECT sink\\.test:${n.P} HTTP/1\\.1`), "the inner CONNECT went to the allowed upstream");
      assert.deepEqual(deniedSaw(n), []);
    });

    it("the attacker relays through its own listener (socat on another loopback port and on a unix socket) or talks to the guardian's socket directly: nothing new is allowed", async (ctx) => {
      const r = await probe();
      const steps = parseSteps(r.stdout);
      const all = relays();
      const socat = steps.get("socat") === "present";
      assertProbes(steps, socat ? all : all.filter((p) => p.name.startsWith("relay-guardian-socket")), r);
      assert.deepEqual(deniedSaw(n), []);
      if (!socat) ctx.diagnostic("socat is not installed: only the guardian-socket path was tried");
    });
  });

  // ---------------------------------------------------------------------------------------------
  describe("tokens and sockets", { skip: NO_PYTHON }, () => {
    const A = "attacker";
    let tokenA = "";
    let tokenB = "";
    let recordA: CloisterRecord;
    let recordB: CloisterRecord;
    const exec = (name: string, script: string) => t.cli(["exec", name, "--", "bash", "-c", script]);

    before(async () => {
      const r = await t.cli(["start", "-d", "--name", A, ...sessionFlags(n)]);
      assert.equal(r.code, 0, r.stderr);
      tokenA = tokenOf((await t.cli(["exec", A, "--", "printenv", "HTTP_PROXY"])).stdout);
      tokenB = tokenOf((await t.cli(["exec", BYSTANDER, "--", "printenv", "HTTP_PROXY"])).stdout);
      tokens.add(tokenA);
      tokens.add(tokenB);
      recordA = cloisterRecord(t, A);
      recordB = cloisterRecord(t, BYSTANDER);
    });
    after(async () => {
      await t.cli(["stop", A]);
    });

    it("the attacker in cloister B uses cloister A's token (read from A's environment): 407 on every protocol, with the same bytes as any wrong token", async () => {
      assert.notEqual(tokenA, tokenB);
      const r = await during("the foreign-token attack", exec(BYSTANDER, tokenScript(n, tokenA, "foreign")));
      const steps = parseSteps(r.stdout);
      assert.deepEqual(probeViolations(steps, tokenVariantsProbes(n, tokenA, "foreign")), [], r.stdout + r.stderr);
      for (const kind of ["bytes", "http-bytes"]) {
        const answers = [...steps.entries()].filter(([k]) => k.startsWith(`foreign-${kind}:`));
        assert.equal(answers.length, 7, r.stdout);
        assert.deepEqual(new Set(answers.map(([, v]) => v)).size, 1, `different failure responses: ${JSON.stringify(answers)}`);
        assert.match(answers[0]?.[1] ?? "", /^407:/);
      }
      assert.equal(n.web.requests.filter((q) => q.url === "/foreign").length, 0);
    });

    it("the attacker in A looks for other sockets: the only ones are its own proxy and hand-over sockets, read-only; B's socket and the guardian's control socket are not in its mount namespace", async () => {
      const otherSocket = join(recordB.runtimeDir, "guardian", "proxy.sock");
      const control = join(t.home, "run", "guardian.sock");
      const ownHostPath = join(recordA.runtimeDir, "guardian", "proxy.sock");
      assert.ok(existsSync(otherSocket) && existsSync(control) && existsSync(ownHostPath), "sanity: the sockets exist on the host");
      const r = await during("the socket search", exec(A, socketsScript(otherSocket, control, ownHostPath)));
      outputs.push(r.stdout);
      const steps = parseSteps(r.stdout);
      const files = r.stdout.split("\n").filter((l) => l.startsWith("STEP socket-file ")).map((l) => l.slice("STEP socket-file ".length));
      assert.deepEqual(files, ["/run/cloister/guardian/handover.sock", "/run/cloister/guardian/proxy.sock"], r.stderr);
      assert.match(steps.get("guardian-mount-options") ?? "", /(^|,)ro(,|$)/);
      for (const label of ["other-cloister", "guardian-control", "own-host-path"]) {
        assert.equal(steps.get(`connect:${label}`), "ENOENT", label);
        // Through /proc/1/root: PID 1 is the cloister's own init (EACCES: not dumpable), in the same mount namespace.
        assert.match(steps.get(`connect-via-proc:${label}`) ?? "", /^(ENOENT|EACCES)$/, label);
      }
      // The socket it has is its own: A's token works through it, B's does not.
      const own = await exec(A, tokenScript(n, tokenB, "fromA"));
      assert.deepEqual(probeViolations(parseSteps(own.stdout), tokenVariantsProbes(n, tokenB, "fromA")), [], own.stdout + own.stderr);
    });

    it("the attacker in A offers the guardian sockets of its own as A's listener (another port or address, UDP, IPv6, unix, connected, a pipe, two at once, garbage, silence), also after killing its bridge, and tries to take port 3128: every offer is refused, the port stays the bridge's, and the guardian accepts on A's real listener again", async () => {
      const before = (await guardianStatus(t)).directListeners;
      assert.equal(before, 2, "sanity: the guardian accepts on the bystander's and A's listeners");
      const r = await during("the hand-over attack", exec(A, handoverScript()));
      outputs.push(r.stdout);
      const steps = parseSteps(r.stdout);
      for (const grab of ["bind-3128", "bind-3128-reuse"]) assert.equal(steps.get(grab), "EADDRINUSE", `${grab}: ${r.stdout}${r.stderr}`);
      const offers = stepsWithPrefix(steps, "offer-");
      assert.equal(offers.length, 24, r.stdout + r.stderr);
      for (const offer of offers) assert.equal(steps.get(offer), "OK closed", `${offer}: ${r.stdout}`);
      assert.equal(steps.get("bridge-killed"), "OK 1", r.stdout);
      // init restarts the bridge, which offers the real listener again.
      await waitUntil("the guardian to accept on A's listener again", async () => (await guardianStatus(t)).directListeners === before);
      const own = await exec(A, `curl -sS -m 10 -o /dev/null -w '%{http_code}' http://web.test:${n.P}/after-handover-attack`);
      assert.equal(own.stdout, "200", own.stderr);
    });

    it("after `cloister stop A`, A's socket is gone and its token fails everywhere (B, a fresh cloister)", async () => {
      const socketA = join(recordA.runtimeDir, "guardian", "proxy.sock");
      const stop = await t.cli(["stop", A]);
      assert.equal(stop.code, 0, stop.stderr);
      assert.equal(existsSync(socketA), false, "A's proxy socket is still on the host");
      assert.equal(existsSync(join(recordA.runtimeDir, "guardian", "handover.sock")), false, "A's hand-over socket is still on the host");
      const hostSide = await new Promise<string>((resolve) => {
        const s = netConnect(socketA);
        s.on("connect", () => {
          s.destroy();
          resolve("connected");
        });
        s.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
      });
      assert.equal(hostSide, "ENOENT");
      const [inB, inFresh] = await Promise.all([exec(BYSTANDER, tokenScript(n, tokenA, "stopped")), attack(t, n, tokenScript(n, tokenA, "stopped"))]);
      outputs.push(inB.stdout, inFresh.stdout);
      for (const r of [inB, inFresh]) assert.deepEqual(probeViolations(parseSteps(r.stdout), tokenVariantsProbes(n, tokenA, "stopped")), [], r.stdout + r.stderr);
      await assertLiveness("after A stopped");
    });

    it("the attacker sends its credentials and hop-by-hop headers along: the origin sees neither (no Proxy-Authorization, no token anywhere in what it received)", async () => {
      const P = n.P;
      const r = await during(
        "the credential-forwarding attempt",
        exec(
          BYSTANDER,
          [
            `curl -sS -m 10 -o /dev/null -w '%{http_code}\\n' -H 'Connection: X-Hop, Keep-Alive' -H 'X-Hop: hop' -H 'Proxy-Connection: keep-alive' -H 'TE: trailers' -H 'Upgrade: websocket' http://web.test:${P}/creds-1`,
            `curl -sS -m 10 -o /dev/null -w '%{http_code}\\n' -x "socks5h://cloister:$(printenv HTTP_PROXY | sed 's/.*cloister:\\([0-9a-f]*\\)@.*/\\1/')@127.0.0.1:3128" http://web.test:${P}/creds-2`,
            `curl -sS -m 10 -o /dev/null -w '%{http_code}\\n' -p http://web.test:${P}/creds-3`,
          ].join("; "),
        ),
      );
      assert.deepEqual(r.stdout.trim().split("\n"), ["200", "200", "200"], r.stderr);
      const seen = n.web.requests.filter((q) => q.url.startsWith("/creds-"));
      assert.equal(seen.length, 3);
      for (const q of seen) for (const h of ["proxy-authorization", "proxy-connection", "x-hop", "te", "upgrade", "keep-alive"]) assert.equal(q.headers[h], undefined, `${q.url}: ${h}`);
      const received = n.web.received.toString("latin1");
      assert.deepEqual([...tokens].filter((tok) => received.includes(tok) || received.includes(Buffer.from(`cloister:${tok}`).toString("base64"))).map((tok) => tok.slice(0, 8)), []);
    });
  });

  // ---------------------------------------------------------------------------------------------
  describe("floods", { skip: NO_PYTHON }, () => {
    it("the attacker opens 2,000 connections at once, keeps 50 slowloris connections dribbling headers and sends a 64 KiB header line: 431 for the header, the guardian and the bystander keep working", async (ctx) => {
      const P = n.P;
      const flood = String.raw`
import resource, threading, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
# Huge headers first (once the flood holds the cloister's share, its own new connections are refused).
big = b"GET http://web.test:${P}/huge HTTP/1.1\r\nHost: web.test:${P}\r\n{{AUTH}}X-Big: " + b"a" * 65536 + b"\r\n\r\n"
out("huge-header", exchange("huge", big)[0])
many = b"GET http://web.test:${P}/many HTTP/1.1\r\nHost: web.test:${P}\r\n{{AUTH}}" + b"".join(b"X-H%d: v\r\n" % i for i in range(300)) + b"\r\n"
out("many-headers", exchange("many", many)[0])
huge_connect = b"CONNECT web.test:${P} HTTP/1.1\r\nHost: web.test:${P}\r\n{{AUTH}}X-Big: " + b"a" * 65536 + b"\r\n\r\n"
out("huge-connect", exchange("hugec", huge_connect)[0])
# Slowloris: header bytes one per second, on 50 connections.
slow = []
for i in range(50):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=30)
    s.sendall(b"G")
    slow.append(s)
stop = threading.Event()
def dribble():
    line = b"ET http://web.test:${P}/slow HTTP/1.1\r\nHost: web.test:${P}\r\nX-Slow: " + b"s" * 1000
    i = 0
    while not stop.is_set() and i < len(line):
        for s in slow:
            try:
                s.send(line[i:i + 1])
            except OSError:
                pass
        i += 1
        stop.wait(1)
threading.Thread(target=dribble, daemon=True).start()
# The flood: 2,000 connections, half idle, half with an unfinished CONNECT.
held, failed = [], 0
for i in range(2000):
    try:
        s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
        if i % 2:
            s.sendall(b"CONNECT sink.test:${P} HTTP/1.1\r\nHost: sin")
        held.append(s)
    except OSError:
        failed += 1
print("flooding %d %d" % (len(held), failed), flush=True)
stop_after = time.time() + 15
# How many the guardian cut (read returns EOF or reset at once). The relay hands connections over as
# the guardian accepts them, so the count settles over a moment: poll until it stops growing.
def count_cut():
    n = 0
    for s in held:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                n += 1
        except BlockingIOError:
            pass
        except OSError:
            n += 1
    return n
cut, last = 0, -1
while time.time() < stop_after and (cut == 0 or cut != last):
    last = cut
    time.sleep(1)
    cut = count_cut()
stop.set()
out("cut", cut)
`;
      const r = await whileHeld(python(flood), "flooding", 90_000, async () => {
        // Meanwhile: the bystander, a fresh cloister and the guardian's status all work.
        await assertLiveness("during the flood");
        const fresh = await t.cli(["run", ...sessionFlags(n), "--", "curl", "-sS", "-m", "20", "-o", "/dev/null", "-w", "%{http_code}", `http://web.test:${P}/fresh`]);
        assert.equal(fresh.stdout, "200", `a fresh cloister during the flood: ${fresh.stderr}`);
        await assertLiveness("during the flood, again");
      });
      const steps = parseSteps(r.stdout);
      ctx.diagnostic(`flood: ${/flooding (\d+ \d+)/.exec(r.stdout)?.[1] ?? "?"} (open, failed); cut by the guardian: ${steps.get("cut") ?? "?"}; huge header: ${steps.get("huge-header") ?? "?"}`);
      // 431, or (see the todo case below) a close without any answer: never forwarded either way.
      assert.match(steps.get("huge-header") ?? "", /^(431|closed)$/, r.stdout + r.stderr);
      assert.equal(steps.get("many-headers"), "431");
      assert.match(steps.get("huge-connect") ?? "", /^(431|closed)$/);
      assert.equal(n.web.requests.filter((q) => ["/huge", "/many", "/slow"].includes(q.url)).length, 0);
      // The per-cloister cap (proxy.max_connections, default 1024) is what cut the rest.
      const tail = await t.cli(["audit", "tail", "-n", "10000", "--json"]);
      assert.ok(tail.stdout.split("\n").some((l) => l.includes('"over-limit"')), "no connection was refused as over the per-cloister limit");
      assert.deepEqual(deniedSaw(n), []);
      await assertLiveness("after the flood");
    });
  });

  it("the attacker drips its request headers across a `guardian reload` (and a new connection after it): the replaced server still cuts it with 408, nothing is forwarded", { skip: NO_PYTHON }, async () => {
    const P = n.P;
    const drip = String.raw`
import threading, time
s = socket.create_connection(("127.0.0.1", 3128), timeout=90)
s.sendall(b"G")
stop = threading.Event()
def dribble():
    line = b"ET http://web.test:${P}/drip HTTP/1.1\r\nHost: web.test:${P}\r\n" + auth() + b"X-Slow: " + b"s" * 1000
    for i in range(len(line)):
        if stop.wait(0.5):
            return
        try:
            s.send(line[i:i + 1])
        except OSError:
            return
threading.Thread(target=dribble, daemon=True).start()
print("dripping", flush=True)
sys.stdin.readline()
data, problem = read_until(s)
stop.set()
out("drip", status(data, problem))
`;
    const r = await whileHeld(python(drip), "dripping", 60_000, async () => {
      assert.equal((await t.cli(["guardian", "reload"])).code, 0);
      // The bystander's request is the first connection after the reload: it gets the new server.
      await assertLiveness("after the reload");
    });
    // The header deadline is 15 s, checked every 15 s; dripping goes on for ~9 minutes.
    assert.equal(parseSteps(r.stdout).get("drip"), "408", r.stdout + r.stderr);
    assert.equal(n.web.requests.filter((q) => q.url === "/drip").length, 0);
  });

  it(
    "the attacker holds more admitted tunnels than its share (1,100 CONNECTs to an allowed echo, each used): the guardian's relay counts them against the cap, refuses the surplus, and cuts every one when the cloister ends",
    { skip: NO_PYTHON },
    async () => {
      const openBefore = n.echo.openConnections;
      const hold = String.raw`
import resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
held, refused = [], 0
for i in range(1100):
    try:
        s = dial()
        s.sendall(b"CONNECT echo.test:${n.echo.port} HTTP/1.1\r\nHost: echo.test:${n.echo.port}\r\n" + auth() + b"\r\n")
        head, problem = read_until(s)
        if status(head, problem) != "200":
            s.close()
            refused += 1
            continue
        line = b"held %d\n" % i
        s.sendall(line)
        back, problem = read_until(s, marker=b"\n")
        if back != line:
            s.close()
            refused += 1
            continue
        held.append(s)
    except OSError:
        refused += 1
print("holding %d %d" % (len(held), refused), flush=True)
sys.stdin.readline()
# Still held, still working: every tunnel the guardian admitted is a live one.
alive = 0
for i, s in enumerate(held):
    s.sendall(b"again %d\n" % i)
    back, problem = read_until(s, marker=b"\n")
    alive += back == b"again %d\n" % i
out("held", len(held))
out("refused", refused)
out("alive", alive)
`;
      let heldAtOrigin = 0;
      const r = await whileHeld(python(hold), "holding", 120_000, async () => {
        heldAtOrigin = n.echo.openConnections - openBefore;
        await assertLiveness("while the tunnels are held");
      });
      const steps = parseSteps(r.stdout);
      const held = Number(steps.get("held"));
      // The cap is 1024 connections per cloister (proxy.max_connections); the bystander's own are elsewhere.
      assert.ok(held > 0 && held <= 1024, r.stdout + r.stderr);
      assert.equal(held + Number(steps.get("refused")), 1100);
      assert.equal(Number(steps.get("alive")), held, "a held tunnel stopped carrying bytes");
      assert.equal(heldAtOrigin, held, "the origin saw a different number of connections than the tunnels admitted");
      const tail = await t.cli(["audit", "tail", "-n", "5000", "--json"]);
      assert.ok(tail.stdout.split("\n").some((l) => l.includes('"over-limit"')), "no tunnel was refused as over the per-cloister limit");
      // The cloister is gone: not one of its tunnels is left open at the origin.
      await waitUntil("the held tunnels to close at the origin", () => n.echo.openConnections === openBefore);
      await assertLiveness("after the tunnels");
    },
  );

  it(
    "the attacker sends a 64 KiB header line, 20 times: each gets its 431 through 127.0.0.1:3128",
    {
      skip: NO_PYTHON,
    },
    async () => {
      const P = n.P;
      const r = await during(
        "the huge-header attack",
        attack(
          t,
          n,
          python(String.raw`
big = b"GET http://web.test:${P}/huge20 HTTP/1.1\r\nHost: web.test:${P}\r\n{{AUTH}}X-Big: " + b"a" * 65536 + b"\r\n\r\n"
for i in range(20):
    out("huge.%d" % i, exchange("huge", big)[0])
`),
        ),
      );
      const steps = parseSteps(r.stdout);
      const answers = [...steps.entries()].filter(([k]) => k.startsWith("huge.")).map(([, v]) => v);
      assert.equal(answers.length, 20, r.stdout + r.stderr);
      assert.equal(n.web.requests.filter((q) => q.url === "/huge20").length, 0);
      assert.deepEqual(answers.filter((a) => a !== "431"), []);
    },
  );

  // ---------------------------------------------------------------------------------------------
  it("afterwards: no canary or token at any upstream, in any output, log or audit record; host files unchanged; denied destinations saw nothing", async () => {
    const upstreamBytes = [n.web.received, n.sink.received, n.quiet.received].map((b) => b.toString("latin1")).join("\n");
    // The echo upstream is left out of the token check: the tunnel case sent it a token on purpose (the attacker's own bytes).
    assertNoCanaryAnywhere(t, ...outputs, upstreamBytes, n.echo.received.toString("latin1"));
    for (const text of outputs) for (const tok of printedTokens(text)) tokens.add(tok);
    const all = [...tokens];
    assert.ok(all.length >= 4, `tokens collected: ${all.length}`);
    const encoded = all.flatMap((tok) => [tok, Buffer.from(`cloister:${tok}`).toString("base64")]);
    assert.deepEqual(encoded.filter((e) => upstreamBytes.includes(e)).map((e) => e.slice(0, 8)), [], "a token reached an origin");
    const tail = await t.cli(["audit", "tail", "-n", "100000", "--json"]);
    assert.equal(tail.code, 0, tail.stderr);
    assert.deepEqual(encoded.filter((e) => tail.stdout.includes(e)).map((e) => e.slice(0, 8)), [], "a token in `audit tail --json`");
    assert.deepEqual(filesContaining(join(t.home, "state", "audit"), encoded), []);
    const log = existsSync(join(t.home, "state", "guardian.log")) ? readFileSync(join(t.home, "state", "guardian.log"), "latin1") : "";
    assert.deepEqual(encoded.filter((e) => log.includes(e)).map((e) => e.slice(0, 8)), [], "a token in the guardian log");
    const verify = await t.cli(["audit", "verify"]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.deepEqual(deniedSaw(n), []);
    await assertLiveness("at the end");
    // Nothing the user did not ask for prints a token.
    const listings = await Promise.all([t.cli(["list"]), t.cli(["guardian", "status", "--json"]), t.cli(["guardian", "status"])]);
    assert.deepEqual(encoded.filter((e) => listings.some((l) => (l.stdout + l.stderr).includes(e))).map((e) => e.slice(0, 8)), [], "a token in `list` or `guardian status`");
    // A running cloister keeps its placeholders for protected paths in the project; they go with it.
    assert.equal((await t.cli(["stop", BYSTANDER])).code, 0);
    assert.deepEqual(diffSnapshots(hostBefore, hostSensitiveSnapshot(t)), []);
  });
});

/** The per-protocol probes of tokenScript, for checking its output. */
function tokenVariantsProbes(n: Net, foreign: string, label: string): Probe[] {
  const P = n.P;
  return [
    { name: `${label}.get`, what: "GET with another cloister's token", kind: "get", a: hex(`http://web.test:${P}/${label}`), b: hex(`web.test:${P}`), token: foreign, expect: ["407"] },
    { name: `${label}.connect`, what: "CONNECT with another cloister's token", kind: "connect", a: hex(`web.test:${P}`), token: foreign, expect: ["407"] },
    { name: `${label}.socks`, what: "SOCKS5 with another cloister's token", kind: "socks", atyp: 3, a: hex("web.test"), port: P, token: foreign, expect: ["auth:0101"] },
    { name: `${label}.control`, what: "GET with the cloister's own token", kind: "get", a: hex(`http://web.test:${P}/own`), b: hex(`web.test:${P}`), expect: ["200"] },
  ];
}

async function guardianStatus(t: Pick<TestInstance, "cli">): Promise<{ running: boolean; pid?: number; directListeners?: number }> {
  const r = await t.cli(["guardian", "status", "--json"]);
  try {
    return JSON.parse(r.stdout) as { running: boolean; pid?: number; directListeners?: number };
  } catch {
    return { running: false };
  }
}

// ---------------------------------------------------------------------------------------------

const USER_SKIP = asUserSkipReason();

describe("escape/network: as a non-root user", { skip: USER_SKIP }, () => {
  let t: UserInstance;
  let n: Net;
  before(async () => {
    t = createUserInstance("nu");
    n = await startNet();
  });
  after(async () => {
    await t?.teardown();
    await stopNet(n);
  });

  it("the attacker connects directly and looks for a resolver: only lo, direct TCP/UDP fail at once, no DNS, only 3128 on loopback", async () => {
    const r = await attack(t, n, directScript(n));
    const steps = parseSteps(r.stdout);
    assert.equal(steps.get("proc-net-dev"), "lo,", r.stderr);
    const violations = directTargets(n).flatMap((x) => (x.expect.includes(steps.get(x.name) ?? "did not run") ? [] : [`${x.name}: ${steps.get(x.name) ?? "did not run"}`]));
    assert.deepEqual(violations, []);
    assert.deepEqual(commonPorts(n).filter((p) => steps.get(`loopback-port:${p}`) !== "ECONNREFUSED"), [3128]);
    assert.equal(steps.get("getent:example.com"), "rc2");
    if (steps.get("python") !== "absent") {
      assert.equal(steps.get("listening"), "127.0.0.1:3128");
      const sockets = [...steps.keys()].filter((k) => k.startsWith("raw:") || k.startsWith("packet:"));
      assert.deepEqual(sockets.filter((k) => !["EPERM", "EACCES", "EAFNOSUPPORT", "EPROTONOSUPPORT", "ESOCKTNOSUPPORT"].includes(steps.get(k) ?? "")), []);
    }
    assert.deepEqual(deniedSaw(n), []);
  });

  it("the attacker asks for denied names, IP literals and loopback names on every protocol: refused, the denied sink sees nothing", { skip: NO_PYTHON }, async () => {
    const probes = [...allowedControls(n), ...denyProbes(n), ...literalProbes(n).filter((p) => /^literal(-bin)?\.(0|1|13|14|19|25|30|40)\./.test(p.name)), ...junkProbes(n).slice(0, 12)];
    const r = await attack(t, n, probesScript(probes));
    assertProbes(parseSteps(r.stdout), probes, r);
    assert.deepEqual(deniedSaw(n), []);
    const status = await t.cli(["guardian", "status", "--json"]);
    assert.equal((JSON.parse(status.stdout) as { running: boolean }).running, true);
    assertNoCanaryAnywhere(t, r.stdout, r.stderr, n.web.received.toString("latin1"));
  });
});
