import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";

import {
  ancestorsWithin,
  apparmorProfileText,
  assessBubblewrap,
  assessCgroups,
  assessConfig,
  assessNative,
  assessHostGit,
  assessNode,
  assessSeccomp,
  assessSocat,
  assessUserns,
  buildProbeArgv,
  bwrapFailureFix,
  cgroupDir,
  cgroupLayout,
  classifyBwrapFailure,
  compareVersions,
  createDoctorContext,
  installCommand,
  parseBwrapVersion,
  parseCgroupFile,
  parseControllers,
  parseMountinfo,
  parseMountinfoForCgroup2,
  parseMountinfoForCgroupV1,
  parseOsRelease,
  parseSeccompMode,
  parseSocatVersion,
  profileGrantsUserns,
  run,
  checkConfig,
  runDoctor,
  runSeccompProbe,
  userManagerCgroup,
  type CgroupFacts,
  type HostContext,
  type RunResult,
  type UsernsFacts,
} from "../../src/doctor/checks.js";
import { formatDoctorReport } from "../../src/doctor/report.js";

// ───────────── real-world samples ─────────────

/** Ubuntu 24.04, kernel.apparmor_restrict_unprivileged_userns=1 (srt#74, codex#15057). */
const UBUNTU_APPARMOR_RTM = "bwrap: loopback: Failed RTM_NEWADDR: Operation not permitted\n";
const UBUNTU_APPARMOR_UIDMAP = "bwrap: setting up uid map: Permission denied\n";
/** bubblewrap < 0.9 wording (with its famous grammar) and the newer one. */
const NO_PERMS_OLD =
  "bwrap: No permissions to creating new namespace, likely because the kernel does not allow non-privileged user namespaces. On e.g. debian this can be enabled with 'sysctl kernel.unprivileged_userns_clone=1'.\n";
const NO_PERMS_NEW =
  "bwrap: No permissions to create a new namespace, likely because the kernel does not allow non-privileged user namespaces. See <https://deb.li/bubblewrap> or <file:///usr/share/doc/bubblewrap/README.Debian.gz>.\n";
/** Docker with default seccomp/AppArmor (codex#23468). */
const DOCKER_SLAVE_EACCES = "bwrap: Failed to make / slave: Permission denied\n";
const DOCKER_SLAVE_EPERM = "bwrap: Failed to make / slave: Operation not permitted\n";
const DOCKER_PROC = "bwrap: Can't mount proc on /newroot/proc: Operation not permitted\n";
const NS_FAILED = "bwrap: Creating new namespace failed: Operation not permitted\n";

/** Ubuntu 22.04 desktop: pure cgroup v2. */
const MOUNTINFO_UNIFIED = `22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
27 24 0:25 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
28 24 0:26 / /sys/fs/pstore rw,nosuid,nodev,noexec,relatime shared:10 - pstore pstore rw
`;

/** Ubuntu 20.04: systemd hybrid mode, v1 controllers plus an empty v2 at /sys/fs/cgroup/unified. */
const MOUNTINFO_HYBRID = `25 24 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
31 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct
32 25 0:30 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
33 25 0:31 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,pids
34 25 0:32 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,net_cls,net_prio
`;

/** Debian 12, cgroup v1 only (systemd.unified_cgroup_hierarchy=0, no v2 mount). */
const MOUNTINFO_LEGACY = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
`;

/** Docker on a v2 host: private cgroup namespace, cgroupfs mounted read-only. */
const MOUNTINFO_DOCKER_V2 = `612 611 0:57 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
613 612 0:27 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate,memory_recursiveprot
`;

/** GNOME terminal under systemd's user manager (delegated), and an SSH login session (not). */
const CGROUP_USER_APP =
  "0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-org.gnome.Terminal.slice/vte-spawn-3f2b9c1e.scope\n";
const CGROUP_SSH_SESSION = "0::/user.slice/user-1000.slice/session-3.scope\n";
const CGROUP_HYBRID = `12:pids:/user.slice/user-1000.slice/user@1000.service
11:memory:/user.slice/user-1000.slice/user@1000.service
4:cpu,cpuacct:/user.slice
1:name=systemd:/user.slice/user-1000.slice/user@1000.service/gnome-terminal-server.service
0::/user.slice/user-1000.slice/user@1000.service/gnome-terminal-server.service
`;

/** Ubuntu 24.10's shipped profile (abridged): it attaches to /usr/bin/bwrap and allows userns. */
const UBUNTU_BWRAP_USERNS_RESTRICT = `abi <abi/4.0>,
include <tunables/global>

profile bwrap /usr/bin/bwrap flags=(attach_disconnected,mediate_deleted) {
  allow capability,
  allow file rwlkm /{**,},
  allow userns,
  userns,
  change_profile /** -> unpriv_bwrap,
  include if exists <local/bwrap-userns-restrict>
}
`;

const UBUNTU_OS_RELEASE = `PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
ID=ubuntu
ID_LIKE=debian
`;
const FEDORA_OS_RELEASE = `NAME="Fedora Linux"
VERSION="40 (Workstation Edition)"
ID=fedora
`;

const UBUNTU_RESTRICTED: UsernsFacts = {
  maxUserNamespaces: 63_000,
  unprivilegedClone: null,
  apparmorRestrict: 1,
  apparmorProfileFile: null,
};
const PLAIN_USERNS: UsernsFacts = { maxUserNamespaces: 63_000, unprivilegedClone: null, apparmorRestrict: null, apparmorProfileFile: null };

function host(userns: UsernsFacts, over: Partial<HostContext> = {}): HostContext {
  return { euid: 1000, bwrapPath: "/usr/bin/bwrap", userns, inContainer: false, ...over };
}

function ran(over: Partial<RunResult>): RunResult {
  return { code: 0, signal: null, stdout: "", stderr: "", timedOut: false, timeoutMs: 10_000, ...over };
}

// ───────────── versions and small parsers ─────────────

describe("version parsing", () => {
  it("reads bwrap --version", () => {
    assert.equal(parseBwrapVersion("bubblewrap 0.8.0\n"), "0.8.0");
    assert.equal(parseBwrapVersion("bubblewrap 0.11.0"), "0.11.0");
    assert.equal(parseBwrapVersion("bwrap: unknown option"), null);
  });

  it("compares numerically, not lexically", () => {
    assert.ok(compareVersions("0.11.0", "0.8.0") > 0);
    assert.ok(compareVersions("0.6.1", "0.8.0") < 0);
    assert.equal(compareVersions("0.8", "0.8.0"), 0);
  });

  it("reads socat -V", () => {
    const out = `socat by Gerhard Rieger and contributors - see www.dest-unreach.org
socat version 1.7.4.4 on 06 Nov 2022 08:15:51
   running on Linux version #1 SMP, release 6.1.0, machine x86_64
`;
    assert.equal(parseSocatVersion(out), "1.7.4.4");
  });

  it("reads the Seccomp mode from /proc/<pid>/status", () => {
    assert.equal(parseSeccompMode("Name:\tcat\nSeccomp:\t2\nSeccomp_filters:\t1\n"), 2);
    assert.equal(parseSeccompMode("Name:\tbash\nSeccomp:\t0\n"), 0);
    assert.equal(parseSeccompMode("Name:\tbash\nNoNewPrivs:\t0\n"), null);
  });

  it("picks the package manager from os-release", () => {
    assert.equal(installCommand("bubblewrap", parseOsRelease(UBUNTU_OS_RELEASE)), "sudo apt-get install -y bubblewrap");
    assert.equal(installCommand("bubblewrap", parseOsRelease(FEDORA_OS_RELEASE)), "sudo dnf install -y bubblewrap");
    assert.equal(installCommand("bubblewrap", { ID: "arch" }), "sudo pacman -S bubblewrap");
    const unknown = installCommand("bubblewrap", {});
    for (const cmd of ["apt-get install -y bubblewrap", "dnf install", "pacman -S bubblewrap"]) assert.ok(unknown.includes(cmd));
  });

  it("host git: safe.bareRepository=explicit from the system or global config is ok; unset, another value, or one a repository sets warns with the fix", () => {
    assert.equal(assessHostGit(true, "global\texplicit\n").status, "ok");
    assert.equal(assessHostGit(true, "system\tall\nglobal\texplicit\n").status, "ok");
    assert.equal(assessHostGit(false, "").status, "ok");
    for (const scoped of ["", "global\tall\n", "global\texplicit\nlocal\texplicit\nglobal\tall\n", "local\texplicit\n"]) {
      const finding = assessHostGit(true, scoped);
      assert.equal(finding.status, "warn", scoped);
      assert.equal(finding.fix, "git config --global safe.bareRepository explicit");
    }
  });

  it("Node.js must be 20 or newer", () => {
    assert.equal(assessNode("20.19.0").status, "ok");
    assert.equal(assessNode("22.1.0").status, "ok");
    const old = assessNode("18.20.4");
    assert.equal(old.status, "fail");
    assert.match(old.fix ?? "", /Node\.js 20/);
  });
});

// ───────────── bwrap failures ─────────────

describe("classifyBwrapFailure", () => {
  it("recognises Ubuntu's AppArmor userns restriction and disabled user namespaces", () => {
    for (const s of [UBUNTU_APPARMOR_RTM, UBUNTU_APPARMOR_UIDMAP, NO_PERMS_OLD, NO_PERMS_NEW, NS_FAILED]) {
      assert.equal(classifyBwrapFailure(s).kind, "userns-blocked", s);
    }
  });

  it("recognises containers that forbid mounts or mask /proc", () => {
    assert.equal(classifyBwrapFailure(DOCKER_SLAVE_EACCES).kind, "container-mount");
    assert.equal(classifyBwrapFailure(DOCKER_SLAVE_EPERM).kind, "container-mount");
    assert.equal(classifyBwrapFailure(DOCKER_PROC).kind, "container-proc");
  });

  it("falls back to not-permitted, then unknown", () => {
    assert.equal(classifyBwrapFailure("bwrap: pivot_root: Operation not permitted").kind, "not-permitted");
    assert.equal(classifyBwrapFailure("bwrap: execvp /bin/true: No such file or directory").kind, "unknown");
  });

  it("gives the AppArmor profile as the fix on Ubuntu 24.04", () => {
    const fix = bwrapFailureFix(classifyBwrapFailure(UBUNTU_APPARMOR_RTM).kind, host(UBUNTU_RESTRICTED));
    assert.ok(fix.includes("/etc/apparmor.d/bwrap"));
    assert.ok(fix.includes("profile bwrap /usr/bin/bwrap flags=(unconfined) {"));
    assert.ok(fix.includes("sudo apparmor_parser -r /etc/apparmor.d/bwrap"));
    assert.ok(fix.includes("kernel.apparmor_restrict_unprivileged_userns=0"));
  });

  it("gives the Debian sysctl, or the container options, when that is the cause", () => {
    const debian = bwrapFailureFix("userns-blocked", host({ ...PLAIN_USERNS, unprivilegedClone: 0 }));
    assert.ok(debian.includes("sudo sysctl -w kernel.unprivileged_userns_clone=1"));
    assert.ok(debian.includes("/etc/sysctl.d/"));
    const docker = bwrapFailureFix("userns-blocked", host(PLAIN_USERNS, { inContainer: true }));
    assert.ok(docker.includes("--security-opt seccomp=unconfined --security-opt apparmor=unconfined"));
    const slave = bwrapFailureFix(classifyBwrapFailure(DOCKER_SLAVE_EACCES).kind, host(PLAIN_USERNS));
    assert.ok(slave.includes("--security-opt seccomp=unconfined --security-opt apparmor=unconfined"));
    assert.ok(slave.includes("Docker backend"));
  });
});

describe("assessBubblewrap", () => {
  const base = { setuid: false, rejectedChoice: null, osRelease: parseOsRelease(UBUNTU_OS_RELEASE), host: host(PLAIN_USERNS) };

  it("missing bwrap fails with the install command", () => {
    const f = assessBubblewrap({ ...base, path: null, versionOutput: null, probe: null });
    assert.equal(f.status, "fail");
    assert.equal(f.fix, "sudo apt-get install -y bubblewrap");
  });

  it("a CLOISTER_BWRAP that names no bwrap fails with the setting's fix, not the install command", () => {
    const rejectedChoice = { detail: "CLOISTER_BWRAP=/nonexistent is not an executable file", fix: "unset CLOISTER_BWRAP" };
    const f = assessBubblewrap({ ...base, rejectedChoice, path: null, versionOutput: null, probe: null });
    assert.deepEqual(f, { status: "fail", ...rejectedChoice });
  });

  it("bwrap older than 0.8 fails", () => {
    const f = assessBubblewrap({ ...base, path: "/usr/bin/bwrap", versionOutput: "bubblewrap 0.6.1", probe: null });
    assert.equal(f.status, "fail");
    assert.match(f.detail, /0\.6\.1.*older than 0\.8\.0/);
  });

  it("a setuid bwrap only warns", () => {
    const f = assessBubblewrap({ ...base, setuid: true, path: "/usr/bin/bwrap", versionOutput: "bubblewrap 0.9.0", probe: ran({}) });
    assert.equal(f.status, "warn");
    assert.ok(f.fix?.includes("sudo chmod u-s /usr/bin/bwrap"));
  });

  it("a failed probe reports bwrap's stderr and the matching fix", () => {
    const f = assessBubblewrap({
      ...base,
      host: host(UBUNTU_RESTRICTED),
      path: "/usr/bin/bwrap",
      versionOutput: "bubblewrap 0.9.0",
      probe: ran({ code: 1, stderr: UBUNTU_APPARMOR_RTM }),
    });
    assert.equal(f.status, "fail");
    assert.ok(f.detail.includes("Failed RTM_NEWADDR"));
    assert.ok(!f.detail.includes("\n"));
    assert.ok(f.fix?.includes("apparmor_parser"));
  });

  it("a hung probe fails without waiting forever", () => {
    const f = assessBubblewrap({ ...base, path: "/usr/bin/bwrap", versionOutput: "bubblewrap 0.8.0", probe: ran({ code: null, timedOut: true }) });
    assert.equal(f.status, "fail");
    assert.match(f.detail, /did not finish within 10 s/);
  });
});

describe("buildProbeArgv", () => {
  it("mirrors a merged-/usr host with symlinks", () => {
    const argv = buildProbeArgv(
      [
        { path: "/bin", kind: "symlink", target: "usr/bin" },
        { path: "/lib", kind: "symlink", target: "usr/lib" },
        { path: "/lib64", kind: "symlink", target: "usr/lib64" },
        { path: "/lib32", kind: "missing" },
      ],
      ["/bin/true"],
    );
    assert.deepEqual(argv, [
      "--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr",
      "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
      "--proc", "/proc", "--dev", "/dev", "--", "/bin/true",
    ]);
  });

  it("binds real directories on a split-/usr host, and puts extra options before --", () => {
    const argv = buildProbeArgv([{ path: "/bin", kind: "dir" }], ["/bin/cat", "/proc/self/status"], ["--seccomp", "3"]);
    assert.deepEqual(argv.slice(6, 9), ["--ro-bind", "/bin", "/bin"]);
    assert.deepEqual(argv.slice(argv.indexOf("--seccomp")), ["--seccomp", "3", "--", "/bin/cat", "/proc/self/status"]);
  });
});

// ───────────── user namespaces ─────────────

describe("assessUserns", () => {
  it("Ubuntu 24.04 restriction fails for ordinary users, with the exact profile", () => {
    const f = assessUserns(UBUNTU_RESTRICTED, { euid: 1000 });
    assert.equal(f.status, "fail");
    assert.match(f.detail, /apparmor_restrict_unprivileged_userns = 1/);
    const profile = apparmorProfileText();
    for (const line of profile.split("\n").filter(Boolean)) assert.ok(f.fix?.includes(line), line);
    assert.ok(profile.includes("abi <abi/4.0>,"));
    assert.ok(profile.includes("include <tunables/global>"));
    assert.ok(profile.includes("profile bwrap /usr/bin/bwrap flags=(unconfined) {"));
    assert.ok(profile.includes("  userns,"));
    assert.ok(profile.includes("include if exists <local/bwrap>"));
    assert.ok(f.fix?.includes("sudo apparmor_parser -r /etc/apparmor.d/bwrap"));
    assert.ok(!f.fix?.includes("<<"), "fixes are printed indented, so no heredocs");
  });

  it("root is exempt from the restriction: warn only", () => {
    assert.equal(assessUserns(UBUNTU_RESTRICTED, { euid: 0 }).status, "warn");
  });

  it("an installed profile that grants userns makes it ok", () => {
    const f = assessUserns({ ...UBUNTU_RESTRICTED, apparmorProfileFile: "/etc/apparmor.d/bwrap-userns-restrict" }, { euid: 1000 });
    assert.equal(f.status, "ok");
    assert.ok(f.detail.includes("bwrap-userns-restrict"));
  });

  it("Debian's unprivileged_userns_clone=0 fails with the sysctl, persisted", () => {
    const f = assessUserns({ ...PLAIN_USERNS, unprivilegedClone: 0 }, { euid: 1000 });
    assert.equal(f.status, "fail");
    assert.ok(f.fix?.includes("sudo sysctl -w kernel.unprivileged_userns_clone=1"));
    assert.ok(f.fix?.includes("sudo tee /etc/sysctl.d/"));
  });

  it("max_user_namespaces=0 fails even for root; a kernel without userns fails", () => {
    assert.equal(assessUserns({ ...PLAIN_USERNS, maxUserNamespaces: 0 }, { euid: 0 }).status, "fail");
    assert.equal(assessUserns({ ...PLAIN_USERNS, maxUserNamespaces: null }, { euid: 0 }).status, "fail");
  });

  it("plain enabled user namespaces are ok", () => {
    const f = assessUserns(PLAIN_USERNS, { euid: 1000 });
    assert.equal(f.status, "ok");
    assert.equal(f.fix, undefined);
  });

  it("recognises profiles that grant bwrap userns", () => {
    assert.ok(profileGrantsUserns(UBUNTU_BWRAP_USERNS_RESTRICT, "/usr/bin/bwrap"));
    assert.ok(profileGrantsUserns(apparmorProfileText(), "/usr/bin/bwrap"));
    assert.ok(!profileGrantsUserns(apparmorProfileText("/opt/bin/bwrap"), "/usr/bin/bwrap"));
    assert.ok(!profileGrantsUserns("profile man /usr/bin/man {\n  /usr/bin/bwrap rix,\n}\n", "/usr/bin/bwrap"));
  });
});

// ───────────── cgroups ─────────────

describe("cgroup parsing", () => {
  it("parses mountinfo fields, including escaped spaces", () => {
    const [m] = parseMountinfo("40 31 0:37 / /mnt/my\\040dir rw,relatime shared:3 master:1 - ext4 /dev/sda1 rw\n");
    assert.ok(m);
    assert.equal(m.mountPoint, "/mnt/my dir");
    assert.equal(m.fsType, "ext4");
    assert.equal(m.source, "/dev/sda1");
  });

  it("finds cgroup2 on a unified host, in hybrid mode, and in a container", () => {
    assert.deepEqual(parseMountinfoForCgroup2(MOUNTINFO_UNIFIED), { mountPoint: "/sys/fs/cgroup", root: "/", readOnly: false });
    assert.equal(parseMountinfoForCgroup2(MOUNTINFO_HYBRID)?.mountPoint, "/sys/fs/cgroup/unified");
    assert.equal(parseMountinfoForCgroup2(MOUNTINFO_LEGACY), null);
    assert.equal(parseMountinfoForCgroup2(MOUNTINFO_DOCKER_V2)?.readOnly, true);
  });

  it("maps co-mounted v1 controllers to their hierarchy", () => {
    const v1 = parseMountinfoForCgroupV1(MOUNTINFO_HYBRID);
    assert.equal(v1.cpu?.mountPoint, "/sys/fs/cgroup/cpu,cpuacct");
    assert.equal(v1.cpuacct?.mountPoint, "/sys/fs/cgroup/cpu,cpuacct");
    assert.equal(v1.memory?.mountPoint, "/sys/fs/cgroup/memory");
    assert.equal(v1.net_prio?.mountPoint, "/sys/fs/cgroup/net_cls,net_prio");
    assert.equal(v1["name=systemd"], undefined);
  });

  it("classifies the layout", () => {
    assert.equal(cgroupLayout(MOUNTINFO_UNIFIED), "unified");
    assert.equal(cgroupLayout(MOUNTINFO_HYBRID), "hybrid");
    assert.equal(cgroupLayout(MOUNTINFO_LEGACY), "legacy");
    assert.equal(cgroupLayout(""), "none");
  });

  it("parses /proc/self/cgroup for v2 and v1", () => {
    assert.deepEqual(parseCgroupFile(CGROUP_SSH_SESSION), { unified: "/user.slice/user-1000.slice/session-3.scope", v1: {} });
    const hybrid = parseCgroupFile(CGROUP_HYBRID);
    assert.equal(hybrid.unified, "/user.slice/user-1000.slice/user@1000.service/gnome-terminal-server.service");
    assert.equal(hybrid.v1.cpu, "/user.slice");
    assert.equal(hybrid.v1.cpuacct, "/user.slice");
    assert.equal(hybrid.v1.memory, "/user.slice/user-1000.slice/user@1000.service");
    assert.equal(hybrid.v1["name=systemd"], "/user.slice/user-1000.slice/user@1000.service/gnome-terminal-server.service");
  });

  it("maps a cgroup path to its directory and walks up to the user manager", () => {
    const mount = parseMountinfoForCgroup2(MOUNTINFO_UNIFIED);
    assert.ok(mount);
    const own = parseCgroupFile(CGROUP_USER_APP).unified;
    assert.ok(own);
    const dir = cgroupDir(mount, own);
    assert.equal(dir, `/sys/fs/cgroup${own}`);
    assert.ok(dir);
    const up = ancestorsWithin(dir, "/sys/fs/cgroup");
    assert.equal(up[0], dir);
    assert.equal(up.at(-1), "/sys/fs/cgroup");
    assert.ok(up.includes(`/sys/fs/cgroup${userManagerCgroup(1000)}`));
    assert.equal(cgroupDir(mount, "/"), "/sys/fs/cgroup");
  });

  it("strips a bind-mounted root, and rejects paths outside it", () => {
    const mount = { mountPoint: "/sys/fs/cgroup", root: "/system.slice/docker-ab12.scope", readOnly: false };
    assert.equal(cgroupDir(mount, "/system.slice/docker-ab12.scope/inner"), "/sys/fs/cgroup/inner");
    assert.equal(cgroupDir(mount, "/system.slice/docker-ab12.scope"), "/sys/fs/cgroup");
    assert.equal(cgroupDir(mount, "/user.slice"), null);
  });

  it("reads cgroup.controllers", () => {
    assert.deepEqual(parseControllers("cpuset cpu io memory hugetlb pids rdma misc\n"), ["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"]);
    assert.deepEqual(parseControllers("\n"), []);
  });
});

describe("assessCgroups", () => {
  const v1None: CgroupFacts["v1"] = [
    { controller: "memory", dir: null, writable: false },
    { controller: "pids", dir: null, writable: false },
    { controller: "cpu", dir: null, writable: false },
  ];
  const userApp = `/sys/fs/cgroup${parseCgroupFile(CGROUP_USER_APP).unified ?? ""}`;

  it("ok when our cgroup (or a parent we own) is delegated with memory and pids", () => {
    const f = assessCgroups({
      euid: 1000,
      layout: "unified",
      v2MountPoint: "/sys/fs/cgroup",
      ownDir: userApp,
      writable: { dir: `/sys/fs/cgroup${userManagerCgroup(1000)}`, relation: "ancestor", controllers: ["cpu", "memory", "pids"] },
      v1: v1None,
    });
    assert.equal(f.status, "ok");
    assert.match(f.detail, /user@1000\.service \(cpu, memory, pids\)/);
  });

  it("an SSH session outside the delegated user manager warns, with systemd-run as the fix", () => {
    const f = assessCgroups({
      euid: 1000,
      layout: "unified",
      v2MountPoint: "/sys/fs/cgroup",
      ownDir: "/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope",
      writable: { dir: `/sys/fs/cgroup${userManagerCgroup(1000)}`, relation: "user-manager", controllers: ["memory", "pids"] },
      v1: v1None,
    });
    assert.equal(f.status, "warn");
    assert.match(f.detail, /runs outside it/);
    assert.ok(f.fix?.includes("systemd-run --user --scope -p Delegate=yes cloister ..."));
  });

  it("no delegation: warn, explain the rlimit fallback, offer delegate.conf", () => {
    const f = assessCgroups({
      euid: 1000,
      layout: "unified",
      v2MountPoint: "/sys/fs/cgroup",
      ownDir: "/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope",
      writable: null,
      v1: v1None,
    });
    assert.equal(f.status, "warn");
    assert.match(f.detail, /rlimits/);
    assert.match(f.detail, /oom_score_adj 1000/);
    assert.match(f.detail, /nice 10/);
    assert.match(f.detail, /memory limits \(--memory, limits\.memory\) and CPU caps \(--cpu, limits\.cpu\) are not enforced for this user$/);
    assert.ok(f.fix?.includes("/etc/systemd/system/user@.service.d/delegate.conf"));
    assert.ok(f.fix?.includes("[Service]\n  Delegate=cpu cpuset io memory pids"));
  });

  it("hybrid as root with writable v1 hierarchies: warn, uses v1, suggests the unified hierarchy", () => {
    const f = assessCgroups({
      euid: 0,
      layout: "hybrid",
      v2MountPoint: "/sys/fs/cgroup/unified",
      ownDir: "/sys/fs/cgroup/unified",
      writable: { dir: "/sys/fs/cgroup/unified", relation: "self", controllers: ["hugetlb"] },
      v1: [
        { controller: "memory", dir: "/sys/fs/cgroup/memory", writable: true },
        { controller: "pids", dir: "/sys/fs/cgroup/pids", writable: true },
        { controller: "cpu", dir: "/sys/fs/cgroup/cpu,cpuacct", writable: true },
      ],
    });
    assert.equal(f.status, "warn");
    assert.match(f.detail, /hybrid/);
    assert.match(f.detail, /only hugetlb/);
    assert.match(f.detail, /v1 memory, pids, cpu/);
    assert.doesNotMatch(f.detail, /not enforced/);
    assert.ok(f.fix?.includes("systemd.unified_cgroup_hierarchy=1"));
  });

  it("root with a writable v1 memory hierarchy but no cpu one: CPU caps are said not to be enforced, memory limits are", () => {
    const f = assessCgroups({
      euid: 0,
      layout: "legacy",
      v2MountPoint: null,
      ownDir: null,
      writable: null,
      v1: [
        { controller: "memory", dir: "/sys/fs/cgroup/memory", writable: true },
        { controller: "pids", dir: "/sys/fs/cgroup/pids", writable: true },
        { controller: "cpu", dir: "/sys/fs/cgroup/cpu", writable: false },
      ],
    });
    assert.match(f.detail, /v1 memory, pids hierarchies, and per-process rlimits/);
    assert.match(f.detail, /; CPU caps \(--cpu, limits\.cpu\) are not enforced for this user$/);
  });

  it("delegated cgroup v2 without the cpu controller: ok, but CPU caps are not enforced", () => {
    const f = assessCgroups({
      euid: 1000,
      layout: "unified",
      v2MountPoint: "/sys/fs/cgroup",
      ownDir: userApp,
      writable: { dir: userApp, relation: "self", controllers: ["memory", "pids"] },
      v1: v1None,
    });
    assert.equal(f.status, "ok");
    assert.match(f.detail, /CPU caps \(--cpu, limits\.cpu\) are not enforced/);
  });

  it("hybrid as an ordinary user falls back to rlimits", () => {
    const f = assessCgroups({ euid: 1000, layout: "hybrid", v2MountPoint: "/sys/fs/cgroup/unified", ownDir: null, writable: null, v1: v1None });
    assert.equal(f.status, "warn");
    assert.match(f.detail, /rlimits/);
    assert.ok(f.fix?.includes("systemd-run --user --scope"));
  });
});

// ───────────── the rest ─────────────

describe("other assessments", () => {
  it("missing socat warns that ssh through the proxy needs it", () => {
    const f = assessSocat(null, null, parseOsRelease(UBUNTU_OS_RELEASE));
    assert.equal(f.status, "warn");
    assert.match(f.detail, /ssh/);
    assert.equal(f.fix, "sudo apt-get install -y socat");
    assert.equal(assessSocat("/usr/bin/socat", "socat version 1.8.0.0 on ...", {}).detail, "socat 1.8.0.0 at /usr/bin/socat");
  });

  it("seccomp: needs the Seccomp line and kill_process + errno", () => {
    const skipped = { kind: "skipped", why: "test" } as const;
    assert.equal(assessSeccomp({ selfMode: null, actionsAvail: null, filterProbe: skipped }).status, "fail");
    assert.equal(assessSeccomp({ selfMode: 0, actionsAvail: null, filterProbe: skipped }).status, "fail");
    const noKill = assessSeccomp({ selfMode: 0, actionsAvail: ["kill_thread", "trap", "errno", "allow"], filterProbe: skipped });
    assert.equal(noKill.status, "fail");
    assert.match(noKill.detail, /kill_process/);
    const avail = ["kill_process", "kill_thread", "trap", "errno", "user_notif", "trace", "log", "allow"];
    assert.equal(assessSeccomp({ selfMode: 0, actionsAvail: avail, filterProbe: skipped }).status, "ok");
    const unfiltered = assessSeccomp({ selfMode: 0, actionsAvail: avail, filterProbe: { kind: "ran", result: ran({}), modeInside: 0 } });
    assert.equal(unfiltered.status, "fail");
    const filtered = assessSeccomp({ selfMode: 0, actionsAvail: avail, filterProbe: { kind: "ran", result: ran({}), modeInside: 2 } });
    assert.equal(filtered.status, "ok");
  });

  it("native helper: missing fails with npm run build (and gcc when absent)", () => {
    const base = { helperPath: "/p/native/build/cloister-init", packageRoot: "/p", osRelease: parseOsRelease(UBUNTU_OS_RELEASE) };
    assert.equal(assessNative({ ...base, exists: true, executable: true, gccFound: false, gccVersion: null }).status, "ok");
    const missing = assessNative({ ...base, exists: false, executable: false, gccFound: true, gccVersion: "12.2.0" });
    assert.equal(missing.status, "fail");
    assert.equal(missing.fix, "cd /p && npm run build");
    const noGcc = assessNative({ ...base, exists: false, executable: false, gccFound: false, gccVersion: null });
    assert.equal(noGcc.fix, "sudo apt-get install -y gcc\ncd /p && npm run build");
  });

  it("config: a broken config.yaml fails, a broken project or decision file warns, both name the first problem", () => {
    const global = "/h/config/config.yaml";
    const located = { file: global, line: 3, column: 2, key: "limits.memroy", problem: "unknown key", hint: 'did you mean "memory"?' };
    const project = { file: "/h/config/projects/p.yaml", problem: "/h/config/projects/p.yaml is not a regular file" };
    assert.deepEqual(assessConfig({ globalExists: false, files: [], problems: [] }, global), { status: "ok", detail: `no ${global} yet: the defaults apply` });
    assert.deepEqual(assessConfig({ globalExists: true, files: [global, project.file], problems: [] }, global), { status: "ok", detail: "2 files valid" });
    const broken = assessConfig({ globalExists: true, files: [global, project.file], problems: [located, project] }, global);
    assert.equal(broken.status, "fail");
    assert.equal(broken.detail, `${global}:3:2: limits.memroy: unknown key (did you mean "memory"?) (and 1 more)`);
    assert.match(broken.fix ?? "", /^cloister config validate/);
    assert.equal(assessConfig({ globalExists: true, files: [global, project.file], problems: [project] }, global).status, "warn");
  });

  it("config: a relative CLOISTER_HOME fails with what to set, not as a crash of the check", async () => {
    const result = await checkConfig(createDoctorContext({ env: { CLOISTER_HOME: "rel-home" } }));
    assert.equal(result.status, "fail");
    assert.equal(result.detail, 'CLOISTER_HOME="rel-home" is a relative path, which would name another instance in each directory');
    assert.equal(result.fix, `give an absolute path, e.g. CLOISTER_HOME=${join(process.cwd(), "rel-home")}`);
  });
});

describe("formatDoctorReport", () => {
  const report = {
    ok: false,
    checks: [
      { id: "a", title: "Short", status: "ok" as const, detail: "fine" },
      { id: "b", title: "A longer title", status: "warn" as const, detail: "meh", fix: "line one\n  indented two" },
      { id: "c", title: "Third", status: "fail" as const, detail: "broken", fix: "do this" },
    ],
  };

  it("aligns findings, marks statuses, indents fixes beneath, and sums up", () => {
    const out = formatDoctorReport(report, { color: false });
    const lines = out.split("\n");
    assert.equal(lines[0], "  ✓ Short           fine");
    assert.equal(lines[1], "  ! A longer title  meh");
    assert.equal(lines[2], "                    fix: line one");
    assert.equal(lines[3], "                           indented two");
    assert.equal(lines[4], "  ✗ Third           broken");
    assert.equal(lines[5], "                    fix: do this");
    assert.match(out, /1 ok, 1 warning, 1 failed: cloisters cannot run here until the failures above are fixed/);
    assert.ok(!out.includes("\x1b["));
  });

  it("colours only when asked", () => {
    assert.ok(formatDoctorReport(report, { color: true }).includes("\x1b[31m✗\x1b[0m"));
  });

  it("says the machine is ready when nothing failed", () => {
    const out = formatDoctorReport({ ok: true, checks: [report.checks[0]!] }, { color: false });
    assert.match(out, /1 ok, 0 warnings, 0 failed: this machine can run cloisters\./);
  });
});

// ───────────── on this machine ─────────────

describe("on this machine", () => {
  it("runDoctor: bubblewrap is ok and the report has the documented shape", async () => {
    const report = await runDoctor();
    const ids = report.checks.map((c) => c.id);
    assert.deepEqual(ids, ["userns", "bwrap", "socat", "seccomp", "cgroups", "user", "node", "native", "git", "config"]);
    for (const c of report.checks) {
      assert.ok(["ok", "warn", "fail"].includes(c.status), c.id);
      assert.equal(typeof c.title, "string");
      assert.ok(c.detail.length > 0 && !c.detail.includes("\n"), `${c.id}: one-line detail`);
      if (c.status !== "ok") assert.ok(c.fix, `${c.id}: a fix for anything not ok`);
    }
    const bwrap = report.checks.find((c) => c.id === "bwrap");
    assert.equal(bwrap?.status, "ok", bwrap?.detail);
    assert.match(bwrap?.detail ?? "", /bubblewrap 0\.8\.0/);
    assert.equal(report.checks.find((c) => c.id === "node")?.status, "ok");
    assert.equal(report.ok, report.checks.every((c) => c.status !== "fail"));
    assert.deepEqual(JSON.parse(JSON.stringify(report)), report);
  });

  it("runDoctor: a CLOISTER_BWRAP that names no executable fails the bubblewrap check with how to change it; no check crashes", async () => {
    const report = await runDoctor({ env: { ...process.env, CLOISTER_BWRAP: "/nonexistent" } });
    const bwrap = report.checks.find((c) => c.id === "bwrap");
    assert.equal(bwrap?.status, "fail");
    assert.equal(bwrap?.detail, "CLOISTER_BWRAP=/nonexistent is not an executable file named by an absolute path");
    assert.match(bwrap?.fix ?? "", /^unset CLOISTER_BWRAP to use the system's bwrap, or set it to the absolute path of a bwrap executable$/);
    assert.equal(report.ok, false);
    for (const c of report.checks) assert.doesNotMatch(`${c.detail} ${c.fix ?? ""}`, /crashed|cloister bug/, c.id);
  });

  it("the seccomp probe passes a filter on fd 3 and sees Seccomp: 2 inside", async () => {
    // One classic-BPF instruction: BPF_RET|BPF_K SECCOMP_RET_ALLOW. Independent of cloister's filter.
    const allowAll = Buffer.alloc(8);
    allowAll.writeUInt16LE(0x06, 0);
    allowAll.writeUInt32LE(0x7fff0000, 4);
    const probe = await runSeccompProbe(createDoctorContext(), allowAll);
    assert.equal(probe.kind, "ran");
    if (probe.kind === "ran") assert.equal(probe.modeInside, 2, probe.result.stderr);
  });

  it("run() kills a command that outlives its cap", async () => {
    const r = await run("sleep", ["30"], { timeoutMs: 200 });
    assert.equal(r.timedOut, true);
    assert.equal(r.signal, "SIGKILL");
  });
});
