/**
 * The generated seccomp filter under real bubblewrap: builds test/fixtures/syscall-probe.c, runs it
 * in a bare bwrap sandbox with `--seccomp 3`, and checks that every probe is refused with the
 * intended errno, that other ABIs die with SIGSYS, and that what must keep working (clone, ptrace,
 * ordinary sockets and ioctls) does.
 *
 * Runs as the current user, and additionally as the user `cloister-test` (override with
 * CLOISTER_TEST_USER) when we are root and that user exists. No user is ever created here.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, existsSync, lstatSync, mkdtempSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import { buildSeccompFilter } from "../../src/sandbox/bwrap/seccomp.js";

const BWRAP = "/usr/bin/bwrap";
const PROBE_SOURCE = fileURLToPath(new URL("../fixtures/syscall-probe.c", import.meta.url));
const SIGSYS = 31;
const EPERM = 1;
const ENOSYS = 38;
const EAFNOSUPPORT = 97;

/** What the filter must answer for each probe (see syscall-probe.c). */
const EXPECTED: Record<string, string> = {
  mount: `errno=${EPERM}`,
  umount2: `errno=${EPERM}`,
  pivot_root: `errno=${EPERM}`,
  chroot: `errno=${EPERM}`,
  open_tree: `errno=${EPERM}`,
  open_tree_attr: `errno=${EPERM}`,
  move_mount: `errno=${EPERM}`,
  fsopen: `errno=${EPERM}`,
  fsconfig: `errno=${EPERM}`,
  fsmount: `errno=${EPERM}`,
  fspick: `errno=${EPERM}`,
  mount_setattr: `errno=${EPERM}`,
  "unshare-newuser": `errno=${EPERM}`,
  "clone-newuser": `errno=${EPERM}`,
  clone3: `errno=${ENOSYS}`,
  setns: `errno=${EPERM}`,
  bpf: `errno=${EPERM}`,
  perf_event_open: `errno=${EPERM}`,
  keyctl: `errno=${EPERM}`,
  add_key: `errno=${EPERM}`,
  request_key: `errno=${EPERM}`,
  io_uring_setup: `errno=${EPERM}`,
  userfaultfd: `errno=${EPERM}`,
  init_module: `errno=${EPERM}`,
  finit_module: `errno=${EPERM}`,
  delete_module: `errno=${EPERM}`,
  name_to_handle_at: `errno=${EPERM}`,
  open_by_handle_at: `errno=${EPERM}`,
  syslog: `errno=${EPERM}`,
  acct: `errno=${EPERM}`,
  swapoff: `errno=${EPERM}`,
  "personality-rie": `errno=${EPERM}`,
  tiocsti: `errno=${EPERM}`,
  "tiocsti-hibits": `errno=${EPERM}`,
  tioclinux: `errno=${EPERM}`,
  "socket-vsock": `errno=${EAFNOSUPPORT}`,
  "socket-vsock-hibits": `errno=${EAFNOSUPPORT}`,
  "socket-packet": `errno=${EAFNOSUPPORT}`,
  "socketpair-vsock": `errno=${EAFNOSUPPORT}`,
  // must keep working
  clone: "ok",
  ptrace: "ok",
  tcgets: "ok",
  "personality-query": "ok",
  "personality-norandom": "ok",
  "socket-inet": "ok",
  "socket-inet6": "ok",
  "socket-unix": "ok",
  "socket-netlink": "ok",
  "socketpair-unix": "ok",
};

/**
 * Probes that only the filter stops (no capability check or sysctl in the way on a stock kernel):
 * without --seccomp they must NOT give the filter's answer, which proves the filter is what refuses
 * them above rather than the missing capabilities.
 */
const FILTER_ONLY = ["open_tree", "unshare-newuser", "clone3", "personality-rie", "tiocsti-hibits"];

const FATAL = ["i386", "x32", "x32-thread"];

function whySkip(): string | false {
  if (process.platform !== "linux") return "linux only";
  if (!existsSync(BWRAP)) return `${BWRAP} not installed`;
  try {
    execFileSync("cc", ["--version"], { stdio: "ignore" });
  } catch {
    return "no C compiler (cc)";
  }
  return false;
}

/** /lib, /lib64, /bin inside the sandbox: the same symlinks into /usr as on the host (merged /usr),
 * or read-only binds of the real directories on hosts without it. */
function rootLayout(): string[] {
  const args: string[] = [];
  for (const dir of ["lib", "lib64", "bin"]) {
    const host = `/${dir}`;
    if (!existsSync(host)) continue;
    if (lstatSync(host).isSymbolicLink()) args.push("--symlink", readlinkSync(host), host);
    else args.push("--ro-bind", host, host);
  }
  return args;
}

interface User {
  label: string;
  uid?: number;
  gid?: number;
}

function otherUser(): User | string {
  const name = process.env.CLOISTER_TEST_USER ?? "cloister-test";
  if (process.getuid?.() !== 0) return `not root: cannot switch to ${name}`;
  try {
    const id = (flag: string) => Number(execFileSync("id", [flag, name], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim());
    return { label: `as ${name}`, uid: id("-u"), gid: id("-g") };
  } catch {
    return `user ${name} does not exist (\`id ${name}\` failed); not creating one`;
  }
}

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  results: Map<string, string>;
}

interface RunOptions {
  user: User;
  dir: string;
  probeArgs: string[];
  filter?: Buffer;
  capDrop?: boolean;
}

function runProbe(opts: RunOptions): Promise<Run> {
  const probe = join(opts.dir, "syscall-probe");
  const args = [
    "--unshare-all",
    "--die-with-parent",
    "--new-session",
    // bwrap run by root keeps its capabilities (scoped to the new user namespace) unless told
    // otherwise; the cloister must have none.
    ...(opts.capDrop === false ? [] : ["--cap-drop", "ALL"]),
    "--ro-bind", "/usr", "/usr",
    ...rootLayout(),
    "--proc", "/proc",
    "--dev", "/dev",
    "--ro-bind", opts.dir, opts.dir,
    ...(opts.filter ? ["--seccomp", "3"] : []),
    "--",
    probe,
    ...opts.probeArgs,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(BWRAP, args, {
      stdio: ["ignore", "pipe", "pipe", opts.filter ? "pipe" : "ignore"],
      env: { PATH: "/usr/bin:/bin" },
      ...(opts.user.uid === undefined ? {} : { uid: opts.user.uid, gid: opts.user.gid }),
    });
    let stdout = "";
    let stderr = "";
    child.stdout?.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr?.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const fd3 = child.stdio[3];
    if (opts.filter) {
      if (!(fd3 instanceof Writable)) throw new Error("no pipe on fd 3");
      fd3.on("error", reject);
      fd3.end(opts.filter); // bwrap reads the program until EOF
    }
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const results = new Map<string, string>();
      for (const line of stdout.split("\n")) {
        const sp = line.indexOf(" ");
        if (sp > 0) results.set(line.slice(0, sp), line.slice(sp + 1));
      }
      resolve({ code, signal, stdout, stderr, results });
    });
  });
}

function describeRun(r: Run): string {
  return `exit ${r.code} signal ${r.signal}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
}

/** "Seccomp=2 NoNewPrivs=1 …" → record. */
function statusFields(r: Run): Record<string, string> {
  const line = r.results.get("status");
  assert.ok(line, `no status line\n${describeRun(r)}`);
  return Object.fromEntries(line.split(" ").map((kv) => kv.split("=") as [string, string]));
}

const skip = whySkip();

describe("seccomp filter under real bubblewrap", { skip }, () => {
  let dir = "";
  const filter = buildSeccompFilter();

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "cloister-seccomp-"));
    chmodSync(dir, 0o755); // readable by the unprivileged variant
    execFileSync("cc", ["-O1", "-Wall", "-pthread", "-o", join(dir, "syscall-probe"), PROBE_SOURCE], {
      stdio: ["ignore", "inherit", "inherit"],
    });
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const other = otherUser();
  const variants: Array<[User, string | false]> = [
    [{ label: process.getuid?.() === 0 ? "as root" : "as the current user" }, false],
    typeof other === "string" ? [{ label: "as an ordinary user" }, other] : [other, false],
  ];

  for (const [user, skipVariant] of variants) {
    describe(user.label, { skip: skipVariant }, () => {
      let filtered: Run;
      let baseline: Run;

      before(async () => {
        filtered = await runProbe({ user, dir, probeArgs: [], filter });
        baseline = await runProbe({ user, dir, probeArgs: [] });
      });

      it("the probe ran to completion", () => {
        assert.equal(filtered.code, 0, describeRun(filtered));
        assert.equal(baseline.code, 0, describeRun(baseline));
        assert.deepEqual([...filtered.results.keys()].sort(), ["status", ...Object.keys(EXPECTED)].sort());
      });

      it("/proc/self/status: Seccomp 2, NoNewPrivs 1, no capabilities", () => {
        const s = statusFields(filtered);
        assert.equal(s.Seccomp, "2");
        assert.equal(s.Seccomp_filters, "1");
        assert.equal(s.NoNewPrivs, "1");
        for (const cap of ["CapEff", "CapPrm", "CapAmb"]) assert.match(s[cap] ?? "", /^0+$/, cap);
      });

      for (const [probe, expected] of Object.entries(EXPECTED)) {
        it(`${probe} → ${expected}`, () => {
          assert.equal(filtered.results.get(probe), expected, describeRun(filtered));
        });
      }

      it("without the filter, the filter-only probes behave differently", () => {
        assert.equal(statusFields(baseline).Seccomp, "0");
        for (const probe of FILTER_ONLY) {
          const got = baseline.results.get(probe);
          assert.ok(got !== undefined, `${probe} missing\n${describeRun(baseline)}`);
          assert.notEqual(got, EXPECTED[probe], `${probe} gives the same answer without the filter`);
        }
      });

      it("i386 and x32 syscalls die with SIGSYS, the whole process (KILL_PROCESS)", { skip: process.arch === "x64" ? false : "x86_64 only" }, async () => {
        const r = await runProbe({ user, dir, probeArgs: FATAL, filter });
        assert.equal(r.code, 0, describeRun(r));
        for (const probe of FATAL) assert.equal(r.results.get(probe), `signal=${SIGSYS}`, `${probe}\n${describeRun(r)}`);
        // Control: the same probes survive without the filter, so SIGSYS above is the filter's doing.
        const b = await runProbe({ user, dir, probeArgs: FATAL });
        for (const probe of FATAL) assert.notEqual(b.results.get(probe), `signal=${SIGSYS}`, `${probe}\n${describeRun(b)}`);
      });

      it("the workload itself is killed: bwrap reports 128+SIGSYS", { skip: process.arch === "x64" ? false : "x86_64 only" }, async () => {
        for (const probe of ["i386", "x32-thread"]) {
          const r = await runProbe({ user, dir, probeArgs: ["--direct", probe], filter });
          assert.equal(r.code, 128 + SIGSYS, `${probe}\n${describeRun(r)}`);
          assert.equal(r.results.get(probe), undefined, "the probe must not get to report");
        }
      });

      it("the filter alone holds when bwrap keeps capabilities (root without --cap-drop)", { skip: user.uid === undefined && process.getuid?.() === 0 ? false : "root only" }, async () => {
        const r = await runProbe({ user, dir, probeArgs: ["--allow-caps"], filter, capDrop: false });
        assert.equal(r.code, 0, describeRun(r));
        assert.doesNotMatch(statusFields(r).CapEff ?? "", /^0+$/, "expected bwrap to keep capabilities here");
        for (const [probe, expected] of Object.entries(EXPECTED)) {
          assert.equal(r.results.get(probe), expected, `${probe}\n${describeRun(r)}`);
        }
      });
    });
  }
});
