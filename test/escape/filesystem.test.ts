/**
 * Escape suite, FILESYSTEM section of SECURITY.md. Each case is the attacker's step run inside a
 * real cloister, with the secure outcome asserted, plus the oracles: canaries (never in output,
 * project or logs), markers (/tmp/ESCAPED-<case> never on the host, also not after host git),
 * hash snapshots of host-sensitive files, and liveness (a second cloister still runs).
 */
import assert from "node:assert/strict";
import { chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { asUserSkipReason, chownTree, createUserInstance, type UserInstance } from "../helpers/as-user.js";
import { createInstance, type TestInstance } from "../helpers/cloister.js";
import {
  assertLive,
  assertNoCanaryAnywhere,
  assertRefused,
  diffSnapshots,
  hostGit,
  hostSensitiveSnapshot,
  marker,
  mergeSnapshots,
  NO_PYTHON,
  parseSteps,
  plantMoreSecrets,
  presentMarkers,
  PY_PRELUDE,
  PYTHON,
  removeMarkers,
  SH_PRELUDE,
  snapshotTree,
  stepsWithPrefix,
  type Snapshot,
} from "../helpers/oracles.js";

const IS_ROOT = process.getuid?.() === 0;

/** A shell snippet that runs `body` (after the step prelude) with the host's python3 inside. */
function python(body: string): string {
  return `${PYTHON} - <<'PYEOF'\n${PY_PRELUDE}\n${body}\nPYEOF\n`;
}

/** Runs a shell script inside a fresh cloister. ESCAPE_DEBUG=1 prints what the attacker saw. */
async function attack(t: Pick<TestInstance, "cli">, script: string) {
  const r = await t.cli(["run", "--", "sh", "-c", SH_PRELUDE + script]);
  if (process.env.ESCAPE_DEBUG) process.stderr.write(`--- attack (exit ${r.code})\n${r.stdout}${r.stderr}`);
  return r;
}

const py = (value: unknown): string => JSON.stringify(value);

// ---------------------------------------------------------------------------------------------
// Attacks shared by the root and the non-root variants

/** Reading host secrets: host HOME paths, the private HOME, a canary grep over the whole tree. */
function secretsScript(hostHome: string, extraHostPaths: string[]): string {
  const rels = [".ssh", ".ssh/id_canary", ".aws/credentials", ".gnupg", ".netrc", ".config/gh", ".docker", ".kube", ".git-credentials", ".npmrc", ".pypirc", ".config/gcloud", ".azure"];
  const hostPaths = [hostHome, ...rels.map((r) => `${hostHome}/${r}`), ...extraHostPaths, "/root"];
  return `
for p in ${hostPaths.map((p) => `'${p}'`).join(" ")}; do
  if [ -e "$p" ] || [ -L "$p" ]; then echo "STEP present:$p OK"; else echo "STEP present:$p absent"; fi
done
for r in ${rels.join(" ")}; do
  if [ -e "$HOME/$r" ]; then echo "STEP inside-home:$r OK"; else echo "STEP inside-home:$r absent"; fi
done
# The attacker does not know the canaries, only what secrets look like: grep for the common prefix
# (spelled so that grep's own command line, readable in /proc, does not match).
hits=$(grep -rls 'CANAR[Y]-' /home /root /etc /tmp /run /var /work 2>/dev/null | head -5 | tr '\\n' ' ')
if [ -n "$hits" ]; then echo "STEP grep-tree OK $hits"; else echo "STEP grep-tree none"; fi
n=$(cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n' | grep -c 'CANAR[Y]-')
if [ "$n" != 0 ]; then echo "STEP grep-proc OK $n"; else echo "STEP grep-proc none"; fi
${python(`
for p in ["/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/sudoers"]:
    if os.path.lexists(p):
        step("read:" + p, lambda p=p: len(open(p, "rb").read()))
`)}`;
}

/** Files the host must never see changed, and the attacker's targets outside the project. */
interface OutsideTargets {
  /** Files created on the host for this case: destructive attacks are safe on them. */
  victims: string[];
  /** Real host files: only attacks that would change nothing if they worked. */
  reals: string[];
  /** Directories to create entries in. */
  dirs: string[];
}

function outsideTargets(hostHome: string, owner?: { uid: number; gid: number }): { targets: OutsideTargets; cleanup: () => void } {
  const tag = Math.random().toString(16).slice(2, 8);
  const victims = [join(hostHome, "victim.txt")];
  if (IS_ROOT) {
    victims.push(`/etc/cloister-victim-${tag}`, `/usr/share/cloister-victim-${tag}`);
    if (existsSync("/opt")) victims.push(`/opt/cloister-victim-${tag}`);
  }
  for (const v of victims) {
    writeFileSync(v, "host data\n", { mode: 0o644 });
    // Owned by the cloister's user, so only the mount (not file permissions) can stop the attack.
    if (owner) chownSync(v, owner.uid, owner.gid);
  }
  const reals = ["/etc/hostname", "/etc/passwd", "/etc/hosts", "/usr/bin/env"].filter((p) => existsSync(p));
  const dirs = ["/usr", "/usr/share", "/usr/bin", "/etc", "/opt", "/sys", "/sys/fs/cgroup", "/root", hostHome, join(hostHome, ".ssh")];
  return {
    targets: { victims, reals, dirs },
    cleanup: () => {
      for (const v of victims) for (const suffix of ["", ".moved"]) rmSync(v + suffix, { force: true });
    },
  };
}

function outsideSnapshot(targets: OutsideTargets): Snapshot {
  return mergeSnapshots(...[...targets.victims, ...targets.reals].map((p) => snapshotTree(p)));
}

/** Every kind of change to files and directories outside the project, and writable mmap. */
function outsideScript(targets: OutsideTargets): string {
  return python(`
import mmap
victims, reals, dirs = ${py(targets.victims)}, ${py(targets.reals)}, ${py(targets.dirs)}
def write(p):
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"ESCAPED\\n")
    finally:
        os.close(fd)
def map_shared_rw(p, flags, poke):
    fd = os.open(p, flags)
    try:
        m = mmap.mmap(fd, 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        if poke:  # only on files created for the test: a real host file is never written
            m[0:1] = b"E"
            m.flush()
    finally:
        os.close(fd)
for p in victims:
    step("write:" + p, lambda p=p: write(p))
    step("truncate:" + p, lambda p=p: os.truncate(p, 0))
    step("chmod:" + p, lambda p=p: os.chmod(p, 0o777))
    step("chown:" + p, lambda p=p: os.chown(p, os.getuid(), os.getgid()))
    step("utime:" + p, lambda p=p: os.utime(p, (0, 0)))
    step("xattr:" + p, lambda p=p: os.setxattr(p, "user.escaped", b"1"))
    step("hardlink:" + p, lambda p=p: os.link(p, "/work/hardlink-" + os.path.basename(p)))
    step("mmap-ro-fd:" + p, lambda p=p: map_shared_rw(p, os.O_RDONLY, True))
    step("mmap-rw-fd:" + p, lambda p=p: map_shared_rw(p, os.O_RDWR, True))
    step("rename:" + p, lambda p=p: os.rename(p, p + ".moved"))
    step("unlink:" + p, lambda p=p: os.unlink(p))
for p in reals:
    st = os.stat(p)
    step("open-w:" + p, lambda p=p: os.close(os.open(p, os.O_WRONLY)))
    step("chmod-same:" + p, lambda p=p, st=st: os.chmod(p, st.st_mode & 0o7777))
    step("chown-same:" + p, lambda p=p, st=st: os.chown(p, st.st_uid, st.st_gid))
    step("utime-same:" + p, lambda p=p, st=st: os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns)))
    step("mmap-ro-fd:" + p, lambda p=p: map_shared_rw(p, os.O_RDONLY, False))
for d in dirs:
    step("create:" + d, lambda d=d: os.close(os.open(d + "/ESCAPED-file", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)))
    step("mkdir:" + d, lambda d=d: os.mkdir(d + "/ESCAPED-dir"))
    step("symlink:" + d, lambda d=d: os.symlink("/work", d + "/ESCAPED-link"))
    step("mkfifo:" + d, lambda d=d: os.mkfifo(d + "/ESCAPED-fifo"))
`);
}

/** Mount syscalls (old and new API), new namespaces, setns, chroot, pivot_root: all refused. */
function mountScript(): string {
  return `
step unshare-Ur unshare -Ur true
step unshare-m unshare -m true
step mount-tmpfs mount -t tmpfs x /work
step mount-remount-rw mount -o remount,rw,bind /work/.git/config
step umount-protected umount /work/.git/config
step nsenter nsenter -t 1 -m -U true
step chroot-cmd chroot / true
${python(`
import platform
arm = platform.machine() in ("aarch64", "arm64")
NR_pivot_root = 41 if arm else 155
NR_open_tree, NR_move_mount, NR_fsopen, NR_fsmount, NR_fspick, NR_mount_setattr = 428, 429, 430, 432, 433, 442
AT_FDCWD = -100
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC = 1, 32, 4096, 16384
libc.syscall.restype = ctypes.c_long
def sc(*args):
    return check(libc.syscall(*[ctypes.c_long(a) if isinstance(a, int) else a for a in args]))
flags = {"user": 0x10000000, "mnt": 0x00020000, "user+mnt": 0x10020000, "pid": 0x20000000, "net": 0x40000000,
         "ipc": 0x08000000, "uts": 0x04000000, "cgroup": 0x02000000, "time": 0x00000080}
for name, f in flags.items():
    step("unshare:" + name, lambda f=f: check(libc.unshare(f)))
step("mount-tmpfs-work", lambda: check(libc.mount(b"none", b"/work", b"tmpfs", 0, None)))
step("mount-bind-remount-rw", lambda: check(libc.mount(None, b"/work/.git/config", None, MS_REMOUNT | MS_BIND, None)))
step("mount-bind-host-dir", lambda: check(libc.mount(b"/work", b"/tmp", None, MS_BIND | MS_REC, None)))
step("umount2-protected", lambda: check(libc.umount2(b"/work/.git/config", 0)))
step("umount2-detach-protected", lambda: check(libc.umount2(b"/work/.git/hooks", 2)))
step("umount2-detach-proc-mask", lambda: check(libc.umount2(b"/etc/shadow", 2)))
step("chroot", lambda: check(libc.chroot(b"/tmp")))
os.makedirs("/tmp/newroot/old", exist_ok=True)
step("pivot_root", lambda: sc(NR_pivot_root, b"/tmp/newroot", b"/tmp/newroot/old"))
step("open_tree-clone", lambda: sc(NR_open_tree, AT_FDCWD, b"/work", 1 | 0x80000))
step("fsopen-tmpfs", lambda: sc(NR_fsopen, b"tmpfs", 0))
step("fspick-protected", lambda: sc(NR_fspick, AT_FDCWD, b"/work/.git/config", 0))
attr = ctypes.create_string_buffer(32)
ctypes.c_uint64.from_buffer(attr, 8).value = 1  # attr_clr = MOUNT_ATTR_RDONLY
step("mount_setattr-clear-ro", lambda: sc(NR_mount_setattr, AT_FDCWD, b"/work/.git/config", 0, attr, 32))
step("move_mount", lambda: sc(NR_move_mount, AT_FDCWD, b"/work/.git/config", AT_FDCWD, b"/tmp/x", 0))
def setns(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        check(libc.setns(fd, 0))
    finally:
        os.close(fd)
step("setns-pid1-mnt", lambda: setns("/proc/1/ns/mnt"))
step("setns-own-user", lambda: setns("/proc/self/ns/user"))
`)}
step still-read-only sh -c 'echo "[core] hooksPath = /tmp" >> /work/.git/config'
`;
}

const MOUNT_STEPS_SH = ["unshare-Ur", "unshare-m", "mount-tmpfs", "mount-remount-rw", "umount-protected", "nsenter", "chroot-cmd", "still-read-only"];

/** /proc/sys and /sys: opening for write (never actually writing) is refused. */
function kernelTunablesScript(): string {
  return python(`
for p in ["/proc/sys/kernel/core_pattern", "/proc/sys/vm/swappiness", "/proc/sys/fs/suid_dumpable", "/proc/sys/kernel/hostname",
          "/proc/sys/net/ipv4/ip_forward", "/proc/sysrq-trigger",
          "/sys/kernel/mm/transparent_hugepage/enabled", "/sys/power/state", "/sys/kernel/uevent_helper"]:
    if os.path.exists(p):
        step("open-w:" + p, lambda p=p: os.close(os.open(p, os.O_WRONLY)))
step("mkdir:/sys/fs/cgroup/escaped", lambda: os.mkdir("/sys/fs/cgroup/escaped"))
step("mkdir:/proc/sys/escaped", lambda: os.mkdir("/proc/sys/escaped"))
`);
}

/** Host values of sysctls a write to /proc/sys would change. */
function hostSysctls(): Record<string, string> {
  const values: Record<string, string> = {};
  for (const p of ["/proc/sys/kernel/core_pattern", "/proc/sys/vm/swappiness", "/proc/sys/fs/suid_dumpable", "/proc/sys/kernel/hostname"]) {
    try {
      values[p] = readFileSync(p, "utf8");
    } catch {
      // Not on this kernel.
    }
  }
  return values;
}

// ---------------------------------------------------------------------------------------------

describe("escape/filesystem: host files", { skip: NO_PYTHON }, () => {
  let t: TestInstance;
  let hostBefore: Snapshot;
  const markers: string[] = [];
  before(() => {
    t = createInstance("fs");
    plantMoreSecrets(t);
    hostBefore = hostSensitiveSnapshot(t);
  });
  after(async () => {
    removeMarkers(markers);
    await t.teardown();
  });

  it("host secrets are invisible: not at their host paths, not in the private HOME, no canary anywhere under /", async () => {
    const r = await attack(t, secretsScript(t.hostHome, []));
    const steps = parseSteps(r.stdout);
    assertRefused(steps, [...stepsWithPrefix(steps, "present:"), ...stepsWithPrefix(steps, "inside-home:"), "grep-tree", "grep-proc"], ["absent", "none"], r.stderr);
    // /etc/shadow is covered: unreadable even though the cloister runs with the host uid (root in CI).
    assertRefused(steps, stepsWithPrefix(steps, "read:"), ["EACCES", "EPERM", "ENOENT"]);
    assert.ok(steps.has("read:/etc/shadow") || !existsSync("/etc/shadow"), "the /etc/shadow step did not run");
    assertNoCanaryAnywhere(t, r.stdout, r.stderr);
  });

  it("root-only files under /etc (readable by uid 0 without capabilities) show nothing of their content", { skip: IS_ROOT ? false : "only matters when cloister runs as root" }, async () => {
    // What the host hides: every /etc file that is not world-readable (as host-facts.ts scans).
    const secretFiles: string[] = [];
    const walk = (dir: string): void => {
      for (const name of readdirSync(dir)) {
        const full = join(dir, name);
        const st = lstatSync(full);
        if (st.isDirectory()) walk(full);
        else if (st.isFile() && (st.mode & 0o004) === 0 && st.size > 0) secretFiles.push(full);
      }
    };
    walk("/etc");
    const r = await attack(
      t,
      python(`
import hashlib
for p in ${py(secretFiles)}:
    step("read:" + p, lambda p=p: hashlib.sha256(open(p, "rb").read()).hexdigest())
`),
    );
    const steps = parseSteps(r.stdout);
    const { createHash } = await import("node:crypto");
    const leaked = secretFiles.filter((p) => steps.get(`read:${p}`) === `OK ${createHash("sha256").update(readFileSync(p)).digest("hex")}`);
    assert.deepEqual(leaked, [], "root-only host files readable inside with their real content");
    assert.equal(stepsWithPrefix(steps, "read:").length, secretFiles.length, r.stderr);
  });

  it(
    "a root-only file that appears in /etc between two launches is not readable in the second cloister",
    {
      skip: IS_ROOT ? false : "only matters when cloister runs as root",
    },
    async () => {
      const secret = `/etc/cloister-secret-${Math.random().toString(16).slice(2, 8)}`;
      t.canaries.etcSecret = `CANARY-etc-${Math.random().toString(16).slice(2)}`;
      try {
        await assertLive(t); // an earlier launch: the guardian has scanned /etc
        writeFileSync(secret, `${t.canaries.etcSecret}\n`, { mode: 0o600 });
        const r = await attack(t, python(`step("read", lambda: open(${py(secret)}).read().strip())`));
        assert.ok(parseSteps(r.stdout).has("read"), r.stderr);
        assertNoCanaryAnywhere(t, r.stdout, r.stderr);
      } finally {
        rmSync(secret, { force: true });
      }
    },
  );

  it("no write, truncate, chmod, chown, utime, xattr, link, rename, unlink or writable mmap outside the project", async () => {
    const { targets, cleanup } = outsideTargets(t.hostHome);
    try {
      const before = outsideSnapshot(targets);
      const r = await attack(t, outsideScript(targets));
      const steps = parseSteps(r.stdout);
      assert.ok(steps.size > 50, `too few steps ran: ${r.stdout}\n${r.stderr}`);
      assertRefused(steps, [...steps.keys()], ["EROFS", "ENOENT", "EACCES", "EPERM", "EXDEV"]);
      // The host HOME is not there at all; system files are refused by the read-only mounts.
      for (const v of targets.victims.filter((p) => p.startsWith(t.hostHome))) assert.equal(steps.get(`write:${v}`), "ENOENT");
      for (const v of targets.victims.filter((p) => !p.startsWith(t.hostHome))) {
        assert.equal(steps.get(`write:${v}`), "EROFS");
        assert.equal(steps.get(`mmap-ro-fd:${v}`), "EACCES", "a shared writable mapping of a read-only fd");
        assert.equal(steps.get(`hardlink:${v}`), "EXDEV", "a hard link into the project would make the host file writable");
      }
      assert.deepEqual(diffSnapshots(before, outsideSnapshot(targets)), []);
      assert.deepEqual(readdirSync(t.project).filter((n) => n.startsWith("hardlink-")), []);
    } finally {
      cleanup();
    }
  });

  it("symlinks made inside resolve inside; host-side cloister code never follows them", async () => {
    const links: Record<string, string> = {
      "/work/link-shadow": "/etc/shadow",
      "/work/link-ssh-key": `${t.hostHome}/.ssh/id_canary`,
      "/work/link-host-home": t.hostHome,
      "/work/link-etc": "/etc",
      "/work/.claude/link-home": t.hostHome,
      // A link in .git stops the cloister at once: escape/git-symlinks.test.ts.
    };
    const r = await attack(
      t,
      python(`
links = ${py(links)}
for link, target in links.items():
    step("make:" + link, lambda link=link, target=target: os.symlink(target, link))
home = os.environ["HOME"]
step("make:home-link", lambda: os.symlink(${py(t.hostHome)}, home + "/link-host-home"))
step("make:home-link-ssh", lambda: os.symlink(${py(`${t.hostHome}/.ssh`)}, home + "/.ssh"))
step("read:link-shadow", lambda: len(open("/work/link-shadow", "rb").read()))
step("read:link-ssh-key", lambda: open("/work/link-ssh-key").read())
step("list:link-host-home", lambda: os.listdir("/work/link-host-home"))
step("write:link-host-home", lambda: open("/work/link-host-home/.bashrc", "a").write("touch /tmp/x\\n"))
step("write:link-etc", lambda: open("/work/link-etc/ESCAPED-file", "w").write("x"))
step("append:link-shadow", lambda: open("/work/link-shadow", "a").write("x"))
step("write:home-link", lambda: open(home + "/link-host-home/.profile", "a").write("x"))
`),
    );
    const steps = parseSteps(r.stdout);
    assertRefused(steps, ["read:link-shadow", "read:link-ssh-key", "list:link-host-home", "write:link-host-home", "write:link-etc", "append:link-shadow", "write:home-link"], ["EACCES", "ENOENT", "EROFS", "EPERM"]);
    for (const name of stepsWithPrefix(steps, "make:")) assert.equal(steps.get(name), "OK", `${name}: ${r.stderr}`);
    assertNoCanaryAnywhere(t, r.stdout, r.stderr);
    // After the run (placeholder removal, removal of the ephemeral HOME holding links to the host
    // HOME) and after a second run (protected-path preparation), the host HOME is untouched and the
    // links are still plain links in the project.
    await assertLive(t);
    assert.deepEqual(diffSnapshots(hostBefore, hostSensitiveSnapshot(t)).filter((l) => !l.includes("project/.claude")), []);
    for (const link of Object.keys(links)) assert.ok(lstatSync(join(t.project, link.slice("/work/".length))).isSymbolicLink(), link);
    // The link in .claude kept that placeholder directory alive; take it away for the later cases.
    rmSync(join(t.project, ".claude", "link-home"));
    rmSync(join(t.project, ".claude"), { recursive: true });
    assert.ok(existsSync(join(t.hostHome, ".ssh", "id_canary")), "the host HOME was removed through a link");
  });

  it("mount syscalls (old and new API), new namespaces, setns, chroot and pivot_root all fail", async () => {
    const r = await attack(t, mountScript());
    const steps = parseSteps(r.stdout);
    assertRefused(steps, MOUNT_STEPS_SH, ["FAIL"], r.stderr);
    const syscalls = [...steps.keys()].filter((k) => !MOUNT_STEPS_SH.includes(k));
    assert.ok(syscalls.length >= 20, r.stdout + r.stderr);
    assertRefused(steps, syscalls, ["EPERM", "EACCES", "ENOSPC", "EINVAL", "ENOSYS", "EROFS"]);
  });

  it("/tmp, /var/tmp, /dev/shm and /run are private: files written there reach neither the host nor the next cloister", async () => {
    const name = "private-tmp";
    const m = marker(name);
    const paths = [m, m.replace("/tmp/", "/var/tmp/"), m.replace("/tmp/", "/dev/shm/"), m.replace("/tmp/", "/run/"), m.replace("/tmp/", "/var/run/")];
    markers.push(...paths);
    const r1 = await attack(t, paths.map((p) => `step 'write:${p}' sh -c 'echo escaped > ${p}'\n`).join(""));
    const steps1 = parseSteps(r1.stdout);
    for (const p of paths) assert.equal(steps1.get(`write:${p}`), "OK", `the private dir holding ${p} is not writable: ${r1.stderr}`);
    assert.deepEqual(presentMarkers(paths), [], "a file written in a private dir inside appeared on the host");
    const r2 = await attack(t, paths.map((p) => `if [ -e '${p}' ]; then echo 'STEP seen:${p} OK'; else echo 'STEP seen:${p} absent'; fi\n`).join(""));
    assertRefused(parseSteps(r2.stdout), paths.map((p) => `seen:${p}`), ["absent"], r2.stderr);
  });

  it("XDG_RUNTIME_DIR is unset inside even when set on the host, and no /run/user exists", async () => {
    t.env.XDG_RUNTIME_DIR = `/run/user/${process.getuid?.() ?? 0}`;
    try {
      const r = await attack(t, `echo "STEP env ${"$"}{XDG_RUNTIME_DIR-unset}"; if [ -e /run/user ]; then echo "STEP run-user OK"; else echo "STEP run-user absent"; fi`);
      const steps = parseSteps(r.stdout);
      assert.equal(steps.get("env"), "unset", r.stderr);
      assert.equal(steps.get("run-user"), "absent");
    } finally {
      delete t.env.XDG_RUNTIME_DIR;
    }
  });

  it("/dev is minimal: no disks, memory or kernel log devices; /dev/null and /dev/zero work; mknod fails", async () => {
    const r = await attack(
      t,
      `ls -A /dev | sed 's/^/STEP dev:/; s/$/ present/'
step null-write sh -c 'echo x > /dev/null'
echo "STEP null-read $(wc -c < /dev/null)"
echo "STEP zero-read $(head -c 4 /dev/zero | wc -c)"
step mknod-mem mknod /tmp/mem c 1 1
step mknod-disk mknod /dev/shm/disk b 8 0
`,
    );
    const steps = parseSteps(r.stdout);
    const devs = stepsWithPrefix(steps, "dev:").map((k) => k.slice("dev:".length));
    const allowed = ["console", "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"];
    assert.deepEqual(devs.filter((d) => !allowed.includes(d)), [], `unexpected devices: ${devs.join(" ")}`);
    for (const d of ["sda", "vda", "nvme0", "mem", "kmem", "port", "kmsg", "loop0", "fuse", "kvm", "net"]) assert.ok(!devs.includes(d), d);
    assert.equal(steps.get("null-write"), "OK");
    assert.equal(steps.get("null-read"), "0");
    assert.equal(steps.get("zero-read"), "4");
    assertRefused(steps, ["mknod-mem", "mknod-disk"], ["FAIL"]);
  });

  it("/sys is read-only", async () => {
    const r = await attack(t, kernelTunablesScript());
    const steps = parseSteps(r.stdout);
    assertRefused(steps, [...stepsWithPrefix(steps, "open-w:/sys/"), "mkdir:/sys/fs/cgroup/escaped"], ["EROFS", "EACCES", "EPERM"], r.stderr);
  });

  it(
    "/proc/sys is read-only: kernel tunables cannot be opened for writing",
    async () => {
      const sysctlsBefore = hostSysctls();
      const r = await attack(t, kernelTunablesScript());
      const steps = parseSteps(r.stdout);
      assert.deepEqual(hostSysctls(), sysctlsBefore);
      assert.ok(steps.has("open-w:/proc/sys/kernel/core_pattern"), r.stderr);
      assertRefused(steps, [...stepsWithPrefix(steps, "open-w:/proc/"), "mkdir:/proc/sys/escaped"], ["EROFS", "EACCES", "EPERM", "ENOENT"]);
    },
  );

  it("only fds 0, 1 and 2 are open in the workload", async () => {
    const r = await t.cli(["run", "--", "sh", "-c", "ls /proc/$$/fd"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n"), ["0", "1", "2"]);
  });

  it("files created in the project keep the host owner", async () => {
    const r = await attack(t, "step file touch /work/owned-file\nstep dir mkdir /work/owned-dir\n");
    assert.equal(parseSteps(r.stdout).get("file"), "OK", r.stderr);
    try {
      for (const name of ["owned-file", "owned-dir"]) {
        const st = lstatSync(join(t.project, name));
        assert.equal(st.uid, process.getuid?.(), name);
        assert.equal(st.gid, process.getgid?.(), name);
      }
    } finally {
      rmSync(join(t.project, "owned-file"), { force: true });
      rmSync(join(t.project, "owned-dir"), { recursive: true, force: true });
    }
  });

  it("afterwards: host files unchanged, no marker (also after host git status), no canary in project or logs, a second cloister runs", async () => {
    assert.equal(hostGit(t.project, ["status", "--short"], { home: t.hostHome }), 0);
    assert.deepEqual(presentMarkers(markers), []);
    assert.deepEqual(diffSnapshots(hostBefore, hostSensitiveSnapshot(t)), []);
    assertNoCanaryAnywhere(t);
    await assertLive(t);
  });
});

// ---------------------------------------------------------------------------------------------

/** Protected paths that exist before the run (created by the test) and that do not. */
const EXISTING_FILES = [".git/config", ".git/hooks/pre-commit", ".git/info/exclude", ".vscode/settings.json"];
const EXISTING_DIRS = [".git/hooks", ".git/info", ".vscode"];
const MISSING = [".mcp.json", ".claude/settings.json", ".claude/settings.local.json", ".claude/commands", ".claude/agents", ".envrc", ".git/commondir", ".git/config.worktree", ".gitmodules", ".idea", ".codex", ".gemini", ".bashrc", ".npmrc"];
const PARENTS = [".claude", ".git"];

function protectedScript(hookMarker: string): string {
  const hook = `#!/bin/sh\ntouch ${hookMarker}\n`;
  const config = `[core]\n\thooksPath = /work/junk/hooks\n\tfsmonitor = touch ${hookMarker}\n[alias]\n\tstatus = !touch ${hookMarker}\n`;
  return `
mkdir -p /work/junk/hooks
for h in pre-commit post-commit commit-msg prepare-commit-msg; do printf '%s' '${hook}' > /work/junk/hooks/$h; chmod +x /work/junk/hooks/$h; done
step git-config-hookspath git -C /work config core.hooksPath /work/junk/hooks
step git-config-fsmonitor git -C /work config core.fsmonitor 'touch ${hookMarker}'
step git-config-worktree git -C /work config --worktree core.hooksPath /work/junk/hooks
${python(`
import shutil
existing_files, existing_dirs, missing, parents = ${py(EXISTING_FILES)}, ${py(EXISTING_DIRS)}, ${py(MISSING)}, ${py(PARENTS)}
HOOK, CONFIG = ${py(hook)}, ${py(config)}
W = "/work/"
made = []
def junk(kind, parent):
    p = "%s/src-%d" % (parent, len(made))
    made.append(p)
    if kind == "dir":
        os.mkdir(p)
        open(p + "/settings.json", "w").write(CONFIG)
    else:
        open(p, "w").write(HOOK if "hook" in kind else CONFIG)
    return p
def write(p, data):
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o755)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)
def remove(p):
    if os.path.isdir(p) and not os.path.islink(p):
        os.rmdir(p)
    else:
        os.unlink(p)
def attack_path(rel):
    p = W + rel
    payload = HOOK if "hooks" in rel else CONFIG
    step("write:" + rel, lambda: write(p, payload))
    step("create-inside:" + rel, lambda: write(p + "/pre-commit", HOOK))
    step("mkdir-inside:" + rel, lambda: os.mkdir(p + "/commands"))
    step("chmod:" + rel, lambda: os.chmod(p, 0o777))
    step("utime:" + rel, lambda: os.utime(p, (0, 0)))
    step("xattr:" + rel, lambda: os.setxattr(p, "user.escaped", b"1"))
    step("rename-away:" + rel, lambda: os.rename(p, os.path.dirname(p) + "/moved-" + os.path.basename(p)))
    step("move-out:" + rel, lambda: os.rename(p, "/work/junk/moved-" + rel.replace("/", "_")))
    step("remove:" + rel, lambda: remove(p))
    kind = "file-hook" if "hooks" in rel else "file"
    # From the same directory (same mount: only the mount point itself can refuse) and from elsewhere.
    step("replace-by-file:" + rel, lambda: os.rename(junk(kind, os.path.dirname(p)), p))
    step("replace-by-dir:" + rel, lambda: os.rename(junk("dir", os.path.dirname(p)), p))
    step("replace-from-outside:" + rel, lambda: os.rename(junk(kind, "/work/junk"), p))
    step("symlink-over:" + rel, lambda: os.symlink("/work/junk/hooks", p))
    step("hardlink-out:" + rel, lambda: os.link(p, "/work/junk/hl-" + rel.replace("/", "_")))
for rel in existing_files + existing_dirs + missing:
    attack_path(rel)
for rel in existing_dirs:
    step("plant-hook:" + rel, lambda rel=rel: write(W + rel + "/post-commit", HOOK))
for rel in parents:
    step("rename-parent:" + rel, lambda rel=rel: os.rename(W + rel, "/work/junk/parent-" + rel.strip(".")))
    step("rmdir-parent:" + rel, lambda rel=rel: os.rmdir(W + rel))
step("shutil-rmtree-parent:.claude", lambda: shutil.rmtree(W + ".claude"))
# Other spellings of the same paths: enforcement is by mount, so every spelling is refused alike.
os.symlink("../.git", "/work/junk/alias")
os.symlink("/work/.git", "/work/junk/alias-abs")
spellings = ["/work/./.git/config", "/work/.git/../.git/config", "/work//.git//config", "/work/junk/alias/config",
             "/work/junk/alias-abs/config", "/proc/self/root/work/.git/config", "/proc/self/cwd/.git/config",
             "/work/.git/hooks/../config", "/work/.GIT/config"]
for s in spellings:
    step("spelling-write:" + s, lambda s=s: write(s, CONFIG))
def via_dirfd():
    d = os.open("/work/.git", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = os.open("config", os.O_WRONLY | os.O_TRUNC, dir_fd=d)
        os.close(fd)
    finally:
        os.close(d)
step("dirfd-write:.git/config", via_dirfd)
def via_opath():
    fd = os.open("/work/.git/config", os.O_PATH)
    try:
        os.close(os.open("/proc/self/fd/%d" % fd, os.O_WRONLY))
    finally:
        os.close(fd)
step("opath-reopen-write:.git/config", via_opath)
# The attacker's scratch files next to protected paths go (so placeholders can be removed); junk/ stays.
for p in made:
    if os.path.isdir(p) and not os.path.islink(p):
        shutil.rmtree(p, ignore_errors=True)
    elif os.path.lexists(p):
        os.unlink(p)
`)}`;
}

describe("escape/filesystem: mandatory read-only paths in the project", { skip: NO_PYTHON }, () => {
  let t: TestInstance;
  let hostBefore: Snapshot;
  let projectBefore: Snapshot;
  const hookMarker = marker("hook");
  const skipJunk = (rel: string) => rel === "junk" || rel === ".git/index";
  before(() => {
    t = createInstance("prot");
    const hooks = join(t.project, ".git", "hooks");
    writeFileSync(join(hooks, "pre-commit"), "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    mkdirSync(join(t.project, ".vscode"));
    writeFileSync(join(t.project, ".vscode", "settings.json"), '{ "editor.tabSize": 2 }\n');
    hostBefore = hostSensitiveSnapshot(t);
    projectBefore = snapshotTree(t.project, "project", skipJunk);
    // Sanity: the missing ones are missing, so the placeholder path is what gets attacked.
    for (const rel of MISSING) assert.ok(!existsSync(join(t.project, rel)), rel);
  });
  after(async () => {
    removeMarkers([hookMarker]);
    await t.teardown();
  });

  it("writing, creating inside, renaming, removing or replacing protected paths and their parents all fail; no placeholder is left", async () => {
    const r = await attack(t, protectedScript(hookMarker));
    const steps = parseSteps(r.stdout);
    assertRefused(steps, ["git-config-hookspath", "git-config-fsmonitor", "git-config-worktree"], ["FAIL"], r.stderr);
    const attacks = [...steps.keys()].filter((k) => !k.startsWith("git-config-"));
    assert.ok(attacks.length > 200, `too few steps ran:\n${r.stdout}\n${r.stderr}`);
    assertRefused(
      steps,
      attacks,
      ["EROFS", "EBUSY", "EXDEV", "EISDIR", "ENOTDIR", "EEXIST", "ENOTEMPTY", "EACCES", "EPERM", "ENOENT"],
    );
    // Every protected path was attacked where it is, and refused by the mount, not by luck:
    for (const rel of [...EXISTING_FILES, ...MISSING.filter((m) => m !== ".git/commondir")]) {
      assert.ok(["EROFS", "EISDIR"].includes(steps.get(`write:${rel}`) ?? ""), `write:${rel} -> ${steps.get(`write:${rel}`)}`);
    }
    // The protected paths are mount points (EBUSY); files inside protected directories are on a read-only mount.
    for (const rel of [...EXISTING_DIRS, ...MISSING, ".git/config"]) assert.equal(steps.get(`rename-away:${rel}`), "EBUSY", `rename-away:${rel}`);
    for (const rel of EXISTING_FILES.filter((f) => f !== ".git/config")) assert.equal(steps.get(`rename-away:${rel}`), "EROFS", `rename-away:${rel}`);
    for (const rel of PARENTS) assert.equal(steps.get(`rename-parent:${rel}`), "EBUSY", `rename-parent:${rel}`);

    // The host sees no change: protected content, editor/agent config, the host HOME; the project
    // holds exactly the entries it had (no placeholder left), apart from the attacker's junk dir.
    assert.deepEqual(diffSnapshots(projectBefore, snapshotTree(t.project, "project", skipJunk)), []);
    assert.deepEqual(diffSnapshots(hostBefore, hostSensitiveSnapshot(t)), []);
    assertNoCanaryAnywhere(t, r.stdout, r.stderr);
  });

  it("a hook planted inside does not fire on the host's next git status or git commit", async () => {
    assert.equal(hostGit(t.project, ["status", "--short"], { home: t.hostHome }), 0);
    assert.equal(hostGit(t.project, ["commit", "-q", "--allow-empty", "-m", "after the session"], { home: t.hostHome }), 0);
    assert.deepEqual(presentMarkers([hookMarker]), []);
  });

  it("a second cloister of the project still starts (liveness) and leaves the project as it was", async () => {
    await assertLive(t);
    assert.deepEqual(presentMarkers([hookMarker]), []);
    const now = snapshotTree(t.project, "project", (rel) => skipJunk(rel) || rel.startsWith(".git/"));
    const then = new Map([...projectBefore].filter(([k]) => !k.startsWith("project/.git/")));
    assert.deepEqual(diffSnapshots(then, now), []);
  });
});

// ---------------------------------------------------------------------------------------------

describe("escape/filesystem: code the host's git runs later", () => {
  let t: TestInstance;
  const markers: string[] = [];
  before(() => {
    t = createInstance("gitx");
  });
  after(async () => {
    removeMarkers(markers);
    await t.teardown();
  });

  it(
    "a nested repository registered as a gitlink cannot make the host's git status run its core.fsmonitor",
    {
      todo:
        "BUG: .git/index and the worktree are writable, so the attacker adds a gitlink entry for a nested repo whose own .git/config sets core.fsmonitor; host `git status` recurses into it and runs the command. Not covered by any protected path.",
    },
    async () => {
      const m = marker("gitlink-fsmonitor");
      markers.push(m);
      const r = await attack(
        t,
        `set -e
mkdir -p /work/vendor/lib && cd /work/vendor/lib
git init -q && git -c user.email=a@b -c user.name=a commit -q --allow-empty -m lib
git config core.fsmonitor 'touch ${m}; false'
cd /work && git update-index --add --cacheinfo 160000,$(git -C vendor/lib rev-parse HEAD),vendor/lib
echo "STEP planted OK"
`,
      );
      assert.deepEqual(presentMarkers([m]), [], r.stderr);
      hostGit(t.project, ["status", "--short"], { home: t.hostHome });
      assert.deepEqual(presentMarkers([m]), [], "host `git status` ran a command the sandbox planted");
    },
  );

  it("a garbage .git/HEAD cannot turn the project root into a bare repository whose config the host's git runs (git log's pager, an ext:: remote on fetch)", async () => {
    const m = marker("implicit-bare");
    markers.push(m);
    const headBefore = readFileSync(join(t.project, ".git", "HEAD"), "utf8");
    // What git needs to take /work itself for a git dir once .git is none: HEAD, objects/, refs/;
    // then its config is /work/config (red team: the host's `git fetch` ran the ext:: command).
    const r = await attack(
      t,
      `cd /work
step copy-objects cp -r .git/objects .git/refs .
step head sh -c 'cp .git/HEAD HEAD'
step config sh -c "printf '[protocol \\"ext\\"]\\n\\tallow = always\\n[remote \\"origin\\"]\\n\\turl = ext::sh -c touch%% ${m}\\n[core]\\n\\tpager = touch ${m}; cat\\n' > config"
step garbage-head sh -c 'echo garbage > .git/HEAD'
`,
    );
    const steps = parseSteps(r.stdout);
    assert.deepEqual([steps.get("copy-objects"), steps.get("config"), steps.get("garbage-head")], ["OK", "OK", "OK"], r.stdout + r.stderr);
    assert.equal(steps.get("head"), "FAIL", "the project root's HEAD must be held");
    try {
      hostGit(t.project, ["fetch", "-q", "origin"], { home: t.hostHome });
      hostGit(t.project, ["-p", "log", "-1"], { home: t.hostHome });
      assert.deepEqual(presentMarkers([m]), [], "the host's git took the project for a bare repository the sandbox wrote");
    } finally {
      writeFileSync(join(t.project, ".git", "HEAD"), headBefore);
      for (const planted of ["objects", "refs", "config"]) rmSync(join(t.project, planted), { recursive: true, force: true });
    }
    assert.ok(!existsSync(join(t.project, "HEAD")), "the placeholder goes with the cloister");
  });

  it("in a plain directory (--allow-no-git), `git init` inside cannot make a repository whose core.fsmonitor the host's git status runs", async () => {
    const m = marker("nogit-init");
    markers.push(m);
    const plain = mkdtempSync(join(tmpdir(), "cloister-escape-plain-"));
    try {
      const r = await t.cli(
        ["run", "--allow-no-git", "--", "sh", "-c", `git init -q /work && echo INIT-OK; git -C /work config core.fsmonitor 'touch ${m}; false' && echo PLANTED; git -C /work status >/dev/null 2>&1; cat /work/.git; true`],
        { cwd: plain },
      );
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stdout, /INIT-OK|PLANTED/);
      assert.match(r.stdout, /no git repository; held read-only/);
      hostGit(plain, ["status"], { home: t.hostHome });
      assert.deepEqual(presentMarkers([m]), []);
      assert.deepEqual(readdirSync(plain), [], "nothing left in the directory: .git and HEAD were placeholders");
      // While it runs, a second launch there is still a plain directory's, not a repository's.
      const held = await t.cli(["start", "-d", "--allow-no-git", "--name", "plainheld"], { cwd: plain });
      assert.equal(held.code, 0, held.stderr);
      try {
        const second = await t.cli(["run", "--allow-no-git", "--", "sh", "-c", "cat /work/.git"], { cwd: plain });
        assert.equal(second.code, 0, second.stderr);
        assert.match(second.stdout, /no git repository/);
        assert.ok(!existsSync(join(plain, ".git", "hooks")));
      } finally {
        await t.cli(["stop", "plainheld"]);
      }
    } finally {
      rmSync(plain, { recursive: true, force: true });
    }
  });

  it(
    "with core.hooksPath pointing into the worktree (husky), hooks planted there do not fire on the host's git commit",
    async () => {
      const m = marker("hookspath");
      markers.push(m);
      mkdirSync(join(t.project, ".husky"));
      writeFileSync(join(t.project, ".husky", "pre-commit"), "#!/bin/sh\nexit 0\n", { mode: 0o755 });
      hostGit(t.project, ["config", "core.hooksPath", ".husky"]);
      const r = await attack(t, `step plant sh -c "printf '#!/bin/sh\\ntouch ${m}\\n' > /work/.husky/pre-commit"\n`);
      assert.ok(parseSteps(r.stdout).has("plant"), r.stderr);
      hostGit(t.project, ["commit", "-q", "--allow-empty", "-m", "after the session"], { home: t.hostHome });
      assert.deepEqual(presentMarkers([m]), [], "the host's git commit ran a hook the sandbox planted");
    },
  );
});

// ---------------------------------------------------------------------------------------------

describe("escape/filesystem: the project's submodules", () => {
  let t: TestInstance;
  const markers: string[] = [];
  before(() => {
    t = createInstance("submod");
  });
  after(async () => {
    removeMarkers(markers);
    await t.teardown();
  });

  it("a submodule's git dir (config, hooks, pointers) and its checkout's .git cannot be changed to run code on the host's next git status or commit", async () => {
    const m = marker("submodule-git");
    markers.push(m);
    const sources = mkdtempSync(join(tmpdir(), "cloister-escape-sub-"));
    try {
      const source = (name: string): string => {
        const dir = join(sources, name);
        assert.equal(hostGit(sources, ["init", "-q", dir]), 0);
        assert.equal(hostGit(dir, ["commit", "-q", "--allow-empty", "-m", name]), 0);
        return dir;
      };
      const files = ["-c", "protocol.file.allow=always"];
      const inner = source("inner");
      const lib = source("lib");
      assert.equal(hostGit(lib, [...files, "submodule", "add", "-q", inner, "deep"]), 0);
      assert.equal(hostGit(lib, ["commit", "-qm", "deep"]), 0);
      assert.equal(hostGit(t.project, [...files, "submodule", "add", "-q", lib, "deps/lib"]), 0);
      assert.equal(hostGit(t.project, ["commit", "-qm", "submodule"]), 0);
      assert.equal(hostGit(t.project, [...files, "submodule", "update", "-q", "--init", "--recursive"]), 0);
      const modules = join(t.project, ".git", "modules");
      // What git inside may change in a module git dir (its index, objects, refs) is left out.
      const steering = () => snapshotTree(modules, "modules", (rel) => /\/(objects|refs|logs|index)(\/|$)/.test(rel));
      const before = steering();

      const run = `touch ${m}; false`;
      const r = await attack(
        t,
        `cd /work
step inside-status git -C deps/lib status --short
step fsmonitor git -C deps/lib config core.fsmonitor '${run}'
step deep-fsmonitor git -C deps/lib/deep config core.fsmonitor '${run}'
step filter git -C deps/lib config filter.x.clean '${run}'
step hook sh -c "printf '#!/bin/sh\\n${run}\\n' > .git/modules/deps/lib/hooks/pre-commit"
step hook-chmod chmod +x .git/modules/deps/lib/hooks/pre-commit
step commondir sh -c "echo /work/evil > .git/modules/deps/lib/commondir"
step config-worktree sh -c "echo x > .git/modules/deps/lib/config.worktree"
step worktrees mkdir .git/modules/deps/lib/worktrees/x
step repoint sh -c "echo 'gitdir: /work/evil' > deps/lib/.git"
step unlink-dotgit rm -f deps/lib/.git
step nested-gitmodules sh -c "echo x >> deps/lib/.gitmodules"
step rename-module mv .git/modules/deps/lib .git/modules/deps/lib2
step rename-modules mv .git/modules .git/modules2
step rename-checkout mv deps/lib deps/lib2
step rename-parent mv deps deps2
`,
      );
      const steps = parseSteps(r.stdout);
      assert.equal(steps.get("inside-status"), "OK", `git must still work in the submodule:\n${r.stdout}${r.stderr}`);
      const attacks = [...steps.keys()].filter((k) => k !== "inside-status");
      assert.equal(attacks.length, 15, r.stdout);
      assert.deepEqual(attacks.filter((k) => steps.get(k) !== "FAIL"), [], r.stdout);

      assert.deepEqual(diffSnapshots(before, steering()), []);
      hostGit(t.project, ["status", "--short"], { home: t.hostHome });
      hostGit(join(t.project, "deps", "lib"), ["commit", "-q", "--allow-empty", "-m", "after the session"], { home: t.hostHome });
      assert.deepEqual(presentMarkers([m]), [], "the host's git ran a command the sandbox planted in a submodule");
    } finally {
      rmSync(sources, { recursive: true, force: true });
    }
  });

  it("a cloister started in the submodule's checkout is the superproject's, with the same protections (it was the submodule alone, where git failed)", async () => {
    const m = marker("submodule-start");
    markers.push(m);
    const r = await t.cli(
      ["run", "--", "sh", "-c", `pwd; git status --short >/dev/null && echo STATUS-OK; git config core.fsmonitor 'touch ${m}; false' && echo PLANTED; git -C /work config core.fsmonitor 'touch ${m}; false' && echo PLANTED-SUPER; true`],
      { cwd: join(t.project, "deps", "lib") },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n"), ["/work/deps/lib", "STATUS-OK"], r.stderr);
    hostGit(t.project, ["status", "--short"], { home: t.hostHome });
    assert.deepEqual(presentMarkers([m]), []);
  });
});

describe("escape/filesystem: a repository's git dir as the project", () => {
  let t: TestInstance;
  const markers: string[] = [];
  before(() => {
    t = createInstance("baregit");
  });
  after(async () => {
    removeMarkers(markers);
    await t.teardown();
  });

  it("a bare repository (or a directory in it) is refused, --allow-no-git too: its config and hooks are what the host's git runs", async () => {
    const m = marker("bare-hooks");
    markers.push(m);
    const bare = mkdtempSync(join(tmpdir(), "cloister-escape-bare-"));
    try {
      assert.equal(hostGit(bare, ["init", "-q", "--bare"]), 0);
      const config = readFileSync(join(bare, "config"), "utf8");
      const plant = `printf '[core]\\n\\tpager = touch ${m}\\n' >> /work/config; printf '#!/bin/sh\\ntouch ${m}\\n' > /work/hooks/pre-receive`;
      for (const cwd of [bare, join(bare, "hooks")]) {
        for (const flags of [[], ["--allow-no-git"]]) {
          const r = await t.cli(["run", ...flags, "--", "sh", "-c", plant], { cwd });
          assert.equal(r.code, 125, `${cwd} ${flags.join(" ")}: ${r.stdout}${r.stderr}`);
          assert.match(r.stderr, /is a git repository's own directory, not a work tree/);
          assert.doesNotMatch(r.stderr, /allow-no-git/);
        }
      }
      assert.equal(readFileSync(join(bare, "config"), "utf8"), config);
      assert.ok(!existsSync(join(bare, "hooks", "pre-receive")));
      hostGit(bare, ["log", "--oneline"], { home: t.hostHome });
      assert.deepEqual(presentMarkers([m]), []);
    } finally {
      rmSync(bare, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------------------------

const USER_SKIP = asUserSkipReason();

describe("escape/filesystem: as a non-root user", { skip: USER_SKIP || NO_PYTHON }, () => {
  let t: UserInstance;
  let hostBefore: Snapshot;
  let realHomeCanary: string;
  let realHomeBefore: Snapshot;
  const createdInRealHome: string[] = [];
  const hookMarker = marker("user-hook");
  before(() => {
    t = createUserInstance("cu");
    plantMoreSecrets(t);
    chownTree(t.hostHome, t.user.uid, t.user.gid);
    // The user's real HOME on the host gets a canary too: inside, the same path is the private HOME.
    const ssh = join(t.user.home, ".ssh");
    if (!existsSync(ssh)) {
      mkdirSync(ssh, { mode: 0o700 });
      chownSync(ssh, t.user.uid, t.user.gid);
      createdInRealHome.push(ssh);
    }
    realHomeCanary = join(ssh, `id_canary_${Math.random().toString(16).slice(2, 8)}`);
    t.canaries.realHome = `CANARY-realhome-${Math.random().toString(16).slice(2)}`;
    writeFileSync(realHomeCanary, t.canaries.realHome, { mode: 0o600 });
    chownSync(realHomeCanary, t.user.uid, t.user.gid);
    createdInRealHome.unshift(realHomeCanary);
    realHomeBefore = snapshotTree(t.user.home, "realhome");
    hostBefore = hostSensitiveSnapshot(t);
  });
  after(async () => {
    for (const p of createdInRealHome) rmSync(p, { recursive: true, force: true });
    removeMarkers([hookMarker]);
    await t.teardown();
  });

  it("host secrets are invisible (fake HOME, the user's real HOME, /etc/shadow)", async () => {
    const r = await attack(t, secretsScript(t.hostHome, [realHomeCanary]));
    const steps = parseSteps(r.stdout);
    assert.equal(r.code, 0, r.stderr);
    assertRefused(steps, [...stepsWithPrefix(steps, "present:"), ...stepsWithPrefix(steps, "inside-home:"), "grep-tree", "grep-proc"], ["absent", "none"], r.stderr);
    assertRefused(steps, stepsWithPrefix(steps, "read:"), ["EACCES", "EPERM", "ENOENT"]);
    assertNoCanaryAnywhere(t, r.stdout, r.stderr);
  });

  it("no change outside the project, even to files the user owns; no writable mmap", async () => {
    const { targets, cleanup } = outsideTargets(t.hostHome, t.user);
    try {
      const before = outsideSnapshot(targets);
      const r = await attack(t, outsideScript(targets));
      const steps = parseSteps(r.stdout);
      assert.ok(steps.size > 50, `too few steps ran: ${r.stdout}\n${r.stderr}`);
      assertRefused(steps, [...steps.keys()], ["EROFS", "ENOENT", "EACCES", "EPERM", "EXDEV"]);
      assert.deepEqual(diffSnapshots(before, outsideSnapshot(targets)), []);
    } finally {
      cleanup();
    }
  });

  it("/proc/sys and /sys are read-only", async () => {
    const sysctlsBefore = hostSysctls();
    const r = await attack(t, kernelTunablesScript());
    const steps = parseSteps(r.stdout);
    assert.ok(steps.has("open-w:/proc/sys/vm/swappiness"), r.stderr);
    assertRefused(steps, [...steps.keys()], ["EROFS", "EACCES", "EPERM", "ENOENT"]);
    assert.deepEqual(hostSysctls(), sysctlsBefore);
  });

  it("mount syscalls, new namespaces, setns, chroot and pivot_root all fail", async () => {
    const r = await attack(t, mountScript());
    const steps = parseSteps(r.stdout);
    assertRefused(steps, MOUNT_STEPS_SH, ["FAIL"], r.stderr);
    assertRefused(steps, [...steps.keys()].filter((k) => !MOUNT_STEPS_SH.includes(k)), ["EPERM", "EACCES", "ENOSPC", "EINVAL", "ENOSYS", "EROFS"]);
  });

  it("protected paths cannot be changed, and the host's git commit runs no planted hook", async () => {
    const before = snapshotTree(t.project, "project", (rel) => rel === "junk" || rel === ".git/index");
    const r = await attack(t, protectedScript(hookMarker));
    const steps = parseSteps(r.stdout);
    assert.ok(steps.size > 200, r.stdout + r.stderr);
    assertRefused(steps, ["git-config-hookspath", "git-config-fsmonitor", "git-config-worktree"], ["FAIL"]);
    assertRefused(
      steps,
      [...steps.keys()].filter((k) => !k.startsWith("git-config-")),
      ["EROFS", "EBUSY", "EXDEV", "EISDIR", "ENOTDIR", "EEXIST", "ENOTEMPTY", "EACCES", "EPERM", "ENOENT"],
    );
    assert.deepEqual(diffSnapshots(before, snapshotTree(t.project, "project", (rel) => rel === "junk" || rel === ".git/index")), []);
    assert.equal(hostGit(t.project, ["commit", "-q", "--allow-empty", "-m", "host"], { home: t.hostHome, runAs: t.user.name }), 0);
    assert.deepEqual(presentMarkers([hookMarker]), []);
  });

  it("private /tmp, only fds 0-2, project files owned by the user", async () => {
    const m = marker("user-private-tmp");
    const r = await attack(t, `step tmp sh -c 'echo x > ${m}'\nstep own touch /work/owned-file\n`);
    const steps = parseSteps(r.stdout);
    // A command of its own: with a pipe or a redirection the shell itself holds one more fd while ls looks.
    const fds = await t.cli(["run", "--", "sh", "-c", "ls /proc/$$/fd"]);
    try {
      assert.equal(steps.get("tmp"), "OK", r.stderr);
      assert.deepEqual(presentMarkers([m]), []);
      assert.deepEqual(fds.stdout.trim().split("\n"), ["0", "1", "2"], fds.stderr);
      assert.equal(lstatSync(join(t.project, "owned-file")).uid, t.user.uid);
    } finally {
      rmSync(join(t.project, "owned-file"), { force: true });
      removeMarkers([m]);
    }
  });

  it("afterwards: host files unchanged, no canary in project or logs, a second cloister runs", async () => {
    assert.deepEqual(diffSnapshots(hostBefore, hostSensitiveSnapshot(t)), []);
    assert.deepEqual(diffSnapshots(realHomeBefore, snapshotTree(t.user.home, "realhome")), []);
    assertNoCanaryAnywhere(t);
    await assertLive(t);
  });
});
