import { spawn } from "node:child_process";
import { constants as fsConstants } from "node:fs";
import { access, lstat, readdir, readFile, readlink, stat } from "node:fs/promises";
import { delimiter, dirname, join } from "node:path";
import { checkAllConfig, type ConfigReport, formatFileProblem } from "../config/check-all.js";
import { checkOwnInstance } from "../config/foreign-instance.js";
import { type CloisterPaths, resolvePaths } from "../config/paths.js";
import { CloisterError } from "../errors.js";
import { PACKAGE_ROOT } from "../package-root.js";
import { bwrapPath as findBwrap } from "../sandbox/native.js";
import type { Writable } from "node:stream";

/**
 * `cloister doctor`: can this machine run cloisters? Each check gathers facts (I/O), then a pure
 * function turns the facts into a status, a one-line finding and, for anything not ok, the exact fix.
 * The pure half (parsers, classifiers, assessments) is exported so unit tests can feed it real-world
 * samples: Ubuntu's AppArmor userns restriction, containers, hybrid cgroups, systemd user slices.
 */

export type CheckStatus = "ok" | "warn" | "fail";

export interface CheckResult {
  id: string;
  title: string;
  status: CheckStatus;
  /** One line: what was found. */
  detail: string;
  /** For anything not ok: the command to run or the file to write (may span lines). */
  fix?: string;
}

export interface DoctorReport {
  checks: CheckResult[];
  /** True when no check failed (warnings allowed). */
  ok: boolean;
}

export interface DoctorOptions {
  env?: NodeJS.ProcessEnv;
  /** Root of the cloister package (where native/build lives). Defaults to this module's package. */
  packageRoot?: string;
  /** Cap for every external command (probes included). Default 10 s: a hung probe must not hang doctor. */
  timeoutMs?: number;
}

/** The assessment part of a check: everything but its id and title. */
export type Finding = Omit<CheckResult, "id" | "title">;

export const MIN_BWRAP_VERSION = "0.8.0";
export const MIN_NODE_MAJOR = 20;
const DEFAULT_TIMEOUT_MS = 10_000;

// ───────────────────────────── pure parsers ─────────────────────────────

/** "bubblewrap 0.8.0" → "0.8.0". */
export function parseBwrapVersion(text: string): string | null {
  const m = /bubblewrap\s+v?(\d+(?:\.\d+)*)/i.exec(text);
  return m?.[1] ?? null;
}

/** `socat -V` → "1.7.4.4" (from "socat version 1.7.4.4 on ..."). */
export function parseSocatVersion(text: string): string | null {
  const m = /socat version\s+(\d+(?:\.\d+)*)/i.exec(text);
  return m?.[1] ?? null;
}

/** `gcc --version` first line → "12.2.0". */
export function parseGccVersion(text: string): string | null {
  const first = text.split("\n")[0] ?? "";
  const m = /(\d+\.\d+(?:\.\d+)?)\s*$/.exec(first.trim()) ?? /(\d+\.\d+(?:\.\d+)?)/.exec(first);
  return m?.[1] ?? null;
}

/** Numeric dotted-version comparison: negative when a < b. Missing parts count as 0. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map((p) => Number.parseInt(p, 10) || 0);
  const pb = b.split(".").map((p) => Number.parseInt(p, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** /etc/os-release → { ID: "ubuntu", ID_LIKE: "debian", ... } (quotes removed). */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (!m?.[1]) continue;
    out[m[1]] = (m[2] ?? "").replace(/^(["'])(.*)\1$/, "$2");
  }
  return out;
}

/** The install command for a package on this distribution family; all three when unknown. */
export function installCommand(pkg: string, osRelease: Record<string, string>): string {
  const ids = `${osRelease.ID ?? ""} ${osRelease.ID_LIKE ?? ""}`.toLowerCase().split(/\s+/);
  if (ids.some((i) => ["debian", "ubuntu"].includes(i))) return `sudo apt-get install -y ${pkg}`;
  if (ids.some((i) => ["fedora", "rhel", "centos"].includes(i))) return `sudo dnf install -y ${pkg}`;
  if (ids.some((i) => ["arch", "manjaro"].includes(i))) return `sudo pacman -S ${pkg}`;
  if (ids.some((i) => ["suse", "opensuse"].includes(i))) return `sudo zypper install ${pkg}`;
  if (ids.includes("alpine")) return `sudo apk add ${pkg}`;
  return [
    `sudo apt-get install -y ${pkg}    # Debian, Ubuntu`,
    `sudo dnf install -y ${pkg}        # Fedora, RHEL`,
    `sudo pacman -S ${pkg}             # Arch`,
  ].join("\n");
}

/** The value of `Seccomp:` in /proc/<pid>/status (0 off, 1 strict, 2 filter); null when absent. */
export function parseSeccompMode(statusText: string): number | null {
  const m = /^Seccomp:\s*(\d+)\s*$/m.exec(statusText);
  return m?.[1] !== undefined ? Number(m[1]) : null;
}

/** One line of /proc/self/cgroup is `hierarchy-id:controllers:path`; `0::/path` is the v2 one. */
export interface ProcCgroups {
  /** Path in the unified (v2) hierarchy, or null when the process is in none. */
  unified: string | null;
  /** v1 controller (or `name=systemd`) → path in that hierarchy. */
  v1: Record<string, string>;
}

export function parseCgroupFile(text: string): ProcCgroups {
  const out: ProcCgroups = { unified: null, v1: {} };
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    const first = line.indexOf(":");
    const second = line.indexOf(":", first + 1);
    if (first < 0 || second < 0) continue;
    const id = line.slice(0, first);
    const controllers = line.slice(first + 1, second);
    const path = line.slice(second + 1);
    if (id === "0" && controllers === "") {
      out.unified = path;
      continue;
    }
    for (const c of controllers.split(",")) if (c) out.v1[c] = path;
  }
  return out;
}

export interface MountEntry {
  mountId: number;
  parentId: number;
  /** Root of the mount within its filesystem (not "/" for bind mounts and some container setups). */
  root: string;
  mountPoint: string;
  mountOptions: string[];
  fsType: string;
  source: string;
  superOptions: string[];
}

/** Mountinfo escapes space, tab, newline and backslash as \ooo octal. */
function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/** /proc/self/mountinfo (see proc(5)): fields, optional fields, "-", fstype, source, super options. */
export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(" ");
    const sep = f.indexOf("-", 6);
    if (f.length < 10 || sep < 0) continue;
    out.push({
      mountId: Number(f[0]),
      parentId: Number(f[1]),
      root: unescapeMountField(f[3] ?? ""),
      mountPoint: unescapeMountField(f[4] ?? ""),
      mountOptions: (f[5] ?? "").split(","),
      fsType: f[sep + 1] ?? "",
      source: unescapeMountField(f[sep + 2] ?? ""),
      superOptions: (f[sep + 3] ?? "").split(","),
    });
  }
  return out;
}

export interface CgroupMount {
  mountPoint: string;
  root: string;
  readOnly: boolean;
}

const toCgroupMount = (m: MountEntry): CgroupMount => ({
  mountPoint: m.mountPoint,
  root: m.root,
  readOnly: m.mountOptions.includes("ro"),
});

/**
 * The cgroup2 mount: /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified in systemd's hybrid
 * mode. When several are mounted (containers, nested setups) the canonical places win; among equals
 * the last mount wins because it shadows earlier ones.
 */
export function parseMountinfoForCgroup2(text: string): CgroupMount | null {
  const mounts = parseMountinfo(text).filter((m) => m.fsType === "cgroup2");
  const pick =
    [...mounts].reverse().find((m) => m.mountPoint === "/sys/fs/cgroup") ??
    [...mounts].reverse().find((m) => m.mountPoint === "/sys/fs/cgroup/unified") ??
    mounts[mounts.length - 1];
  return pick ? toCgroupMount(pick) : null;
}

const V1_CONTROLLERS = [
  "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "net_prio", "blkio",
  "perf_event", "hugetlb", "pids", "rdma", "misc",
];

/** v1 controller → its hierarchy's mount (co-mounted controllers like cpu,cpuacct share one). */
export function parseMountinfoForCgroupV1(text: string): Record<string, CgroupMount> {
  const out: Record<string, CgroupMount> = {};
  for (const m of parseMountinfo(text)) {
    if (m.fsType !== "cgroup") continue;
    for (const opt of m.superOptions) if (V1_CONTROLLERS.includes(opt)) out[opt] ??= toCgroupMount(m);
  }
  return out;
}

export type CgroupLayout = "unified" | "hybrid" | "legacy" | "none";

/** unified = v2 only; hybrid = v1 controllers plus a (usually empty) v2; legacy = v1 only. */
export function cgroupLayout(mountinfo: string): CgroupLayout {
  const v2 = parseMountinfoForCgroup2(mountinfo);
  const v1 = Object.keys(parseMountinfoForCgroupV1(mountinfo)).length > 0;
  if (v2 && v1) return "hybrid";
  if (v2) return "unified";
  if (v1) return "legacy";
  return "none";
}

/**
 * Host directory of a cgroup path from /proc/self/cgroup. The path is relative to the hierarchy root
 * the process sees; if the mount's root is deeper (a bind-mounted subtree), strip that prefix.
 * Null when the cgroup lies outside what is mounted.
 */
export function cgroupDir(mount: CgroupMount, cgPath: string): string | null {
  const root = mount.root === "/" ? "" : mount.root.replace(/\/+$/, "");
  let rel = cgPath;
  if (root) {
    if (cgPath !== root && !cgPath.startsWith(`${root}/`)) return null;
    rel = cgPath.slice(root.length);
  }
  rel = rel.replace(/^\/+/, "").replace(/\/+$/, "");
  return rel ? join(mount.mountPoint, rel) : mount.mountPoint;
}

/** dir, its parent, ... up to and including top. */
export function ancestorsWithin(dir: string, top: string): string[] {
  const out: string[] = [];
  let d = dir;
  for (;;) {
    out.push(d);
    if (d === top || !d.startsWith(`${top}/`)) break;
    const up = dirname(d);
    if (up === d) break;
    d = up;
  }
  return out;
}

/** systemd's per-user manager cgroup: /user.slice/user-UID.slice/user@UID.service. */
export function userManagerCgroup(uid: number): string {
  return `/user.slice/user-${uid}.slice/user@${uid}.service`;
}

/** cgroup.controllers is one space-separated line. */
export function parseControllers(text: string): string[] {
  return text.trim().split(/\s+/).filter(Boolean);
}

// ───────────────────────────── user namespaces ─────────────────────────────

export interface UsernsFacts {
  /** /proc/sys/user/max_user_namespaces; null when absent (kernel without CONFIG_USER_NS). */
  maxUserNamespaces: number | null;
  /** Debian's /proc/sys/kernel/unprivileged_userns_clone; null when absent. */
  unprivilegedClone: number | null;
  /** Ubuntu's kernel.apparmor_restrict_unprivileged_userns; null when absent. */
  apparmorRestrict: number | null;
  /** An /etc/apparmor.d file that grants bwrap `userns`, if any. */
  apparmorProfileFile: string | null;
}

export const APPARMOR_PROFILE_FILE = "/etc/apparmor.d/bwrap";

/** The AppArmor profile that lets bwrap (and only bwrap) create user namespaces on Ubuntu 24.04+. */
export function apparmorProfileText(bwrapPath = "/usr/bin/bwrap"): string {
  return [
    "abi <abi/4.0>,",
    "include <tunables/global>",
    "",
    `profile bwrap ${bwrapPath} flags=(unconfined) {`,
    "  userns,",
    "  include if exists <local/bwrap>",
    "}",
  ].join("\n");
}

/** Does this AppArmor profile text attach to bwrapPath and allow `userns`? */
export function profileGrantsUserns(text: string, bwrapPath: string): boolean {
  const attaches = text.split("\n").some((l) => !l.trim().startsWith("#") && l.includes(bwrapPath));
  return attaches && /^\s*userns\s*,/m.test(text);
}

/** A sysctl set now and persisted across reboots. */
export function sysctlFix(key: string, value: string | number, confFile: string): string {
  return [
    `sudo sysctl -w ${key}=${value}`,
    `echo '${key}=${value}' | sudo tee ${confFile}    # keep it after reboot`,
  ].join("\n");
}

/**
 * Fixes are printed indented, so they hold no heredocs (an indented EOF never ends one): files to
 * write are shown as their content, commands are single lines.
 */
export function apparmorFix(bwrapPath = "/usr/bin/bwrap"): string {
  return [
    `Let bwrap (and only bwrap) create user namespaces: write ${APPARMOR_PROFILE_FILE} (sudoedit ${APPARMOR_PROFILE_FILE}):`,
    ...apparmorProfileText(bwrapPath).split("\n").map((l) => (l ? `  ${l}` : "")),
    `then load it: sudo apparmor_parser -r ${APPARMOR_PROFILE_FILE}`,
    "Less safe alternative (lifts the restriction for every program):",
    sysctlFix("kernel.apparmor_restrict_unprivileged_userns", 0, "/etc/sysctl.d/60-cloister-userns.conf"),
  ].join("\n");
}

const MAX_USERNS_FIX = sysctlFix("user.max_user_namespaces", 15000, "/etc/sysctl.d/50-cloister-userns.conf");
const DEBIAN_CLONE_FIX = sysctlFix("kernel.unprivileged_userns_clone", 1, "/etc/sysctl.d/50-cloister-userns.conf");

/** Merge several findings: worst status wins, details joined, fixes stacked. */
function combine(findings: Finding[], okDetail: string): Finding {
  const bad = findings.filter((f) => f.status !== "ok");
  if (bad.length === 0) return { status: "ok", detail: okDetail };
  const status: CheckStatus = bad.some((f) => f.status === "fail") ? "fail" : "warn";
  const fixes = bad.map((f) => f.fix).filter((f): f is string => Boolean(f));
  return { status, detail: bad.map((f) => f.detail).join("; "), ...(fixes.length ? { fix: fixes.join("\n") } : {}) };
}

/**
 * Root (CAP_SYS_ADMIN) is exempt from Debian's and Ubuntu's unprivileged-userns switches, so there
 * they only warn: cloister works for root but not for ordinary users on this machine.
 */
export function assessUserns(facts: UsernsFacts, ctx: { euid: number; bwrapPath?: string }): Finding {
  const root = ctx.euid === 0;
  const found: Finding[] = [];
  if (facts.maxUserNamespaces === null) {
    return {
      status: "fail",
      detail: "kernel has no user namespaces (/proc/sys/user/max_user_namespaces is missing)",
      fix: "Boot a kernel built with CONFIG_USER_NS=y (every mainstream distribution kernel is).",
    };
  }
  if (facts.maxUserNamespaces === 0) {
    found.push({ status: "fail", detail: "user namespaces are disabled (user.max_user_namespaces = 0)", fix: MAX_USERNS_FIX });
  }
  if (facts.unprivilegedClone === 0) {
    found.push({
      status: root ? "warn" : "fail",
      detail: `unprivileged user namespaces are off (kernel.unprivileged_userns_clone = 0)${root ? "; root is exempt, ordinary users are not" : ""}`,
      fix: DEBIAN_CLONE_FIX,
    });
  }
  if (facts.apparmorRestrict === 1) {
    if (facts.apparmorProfileFile) {
      found.push({
        status: "ok",
        detail: `AppArmor restricts unprivileged user namespaces, and ${facts.apparmorProfileFile} grants them to bwrap`,
      });
    } else {
      found.push({
        status: root ? "warn" : "fail",
        detail: `AppArmor blocks unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1, Ubuntu 24.04+)${root ? "; root is exempt, ordinary users are not" : ""}`,
        fix: apparmorFix(ctx.bwrapPath),
      });
    }
  }
  const extras = [
    facts.unprivilegedClone === 1 ? "unprivileged_userns_clone = 1" : null,
    facts.apparmorRestrict === 1 && facts.apparmorProfileFile ? `AppArmor profile ${facts.apparmorProfileFile} grants bwrap userns` : null,
    facts.apparmorRestrict === 0 ? "AppArmor userns restriction off" : null,
  ].filter(Boolean);
  return combine(
    found,
    `user namespaces enabled (max ${facts.maxUserNamespaces}${extras.length ? `; ${extras.join("; ")}` : ""})`,
  );
}

// ───────────────────────────── bubblewrap ─────────────────────────────

export type BwrapFailureKind =
  | "userns-blocked" // AppArmor (Ubuntu 24.04+), sysctls, or a container's seccomp refused the namespace
  | "container-mount" // "Failed to make / slave": a container forbids mounts (Docker's seccomp/AppArmor)
  | "container-proc" // "Can't mount proc": a container masks /proc
  | "not-permitted" // some other EPERM
  | "unknown";

export interface BwrapFailure {
  kind: BwrapFailureKind;
  /** Why, in words a user can act on. */
  reason: string;
}

/** Recognise bwrap's known startup failures from its stderr. Order matters: specific before general. */
export function classifyBwrapFailure(stderr: string): BwrapFailure {
  const s = stderr.toLowerCase();
  if (s.includes("failed to make / slave")) {
    return {
      kind: "container-mount",
      reason: "bwrap may not set up mounts: typically a container whose seccomp or AppArmor profile forbids mount()",
    };
  }
  if (s.includes("can't mount proc")) {
    return { kind: "container-proc", reason: "bwrap may not mount a fresh /proc: typically a container that masks /proc" };
  }
  if (
    s.includes("no permissions to creat") || // "to creating new namespace" (old) / "to create a new namespace"
    s.includes("setting up uid map: permission denied") ||
    s.includes("rtm_newaddr") ||
    s.includes("loopback: failed") ||
    s.includes("creating new namespace failed")
  ) {
    return {
      kind: "userns-blocked",
      reason:
        "the kernel refused bwrap a usable user namespace (AppArmor's userns restriction on Ubuntu 24.04+, user namespaces disabled, or a container's seccomp profile)",
    };
  }
  if (s.includes("operation not permitted") || s.includes("permission denied")) {
    return { kind: "not-permitted", reason: "a security policy (seccomp, AppArmor, SELinux, or a container) refused bwrap an operation" };
  }
  return { kind: "unknown", reason: "bwrap failed for an unrecognised reason" };
}

export const CONTAINER_FIX = [
  "Inside a container: run it with",
  "  --security-opt seccomp=unconfined --security-opt apparmor=unconfined",
  "(docker run / podman run), or use cloister's Docker backend instead of nesting bubblewrap (coming later).",
].join("\n");

export interface HostContext {
  euid: number;
  bwrapPath: string;
  userns: UsernsFacts;
  inContainer: boolean;
}

/** The fix for a classified probe failure, made concrete by what we know about the host. */
export function bwrapFailureFix(kind: BwrapFailureKind, host: HostContext): string {
  const u = host.userns;
  switch (kind) {
    case "container-mount":
      return CONTAINER_FIX;
    case "container-proc":
      return [
        "Inside a container: let bwrap mount /proc by running it with",
        "  --security-opt systempaths=unconfined --security-opt seccomp=unconfined --security-opt apparmor=unconfined",
        "or use cloister's Docker backend instead of nesting bubblewrap (coming later).",
      ].join("\n");
    case "userns-blocked":
      if (u.maxUserNamespaces === 0) return MAX_USERNS_FIX;
      if (u.apparmorRestrict === 1 && !u.apparmorProfileFile) return apparmorFix(host.bwrapPath);
      if (u.unprivilegedClone === 0) return DEBIAN_CLONE_FIX;
      if (host.inContainer) return CONTAINER_FIX;
      if (u.apparmorRestrict === 1) {
        return `Reload the AppArmor profile (sudo apparmor_parser -r ${u.apparmorProfileFile ?? APPARMOR_PROFILE_FILE}) and check it names ${host.bwrapPath}; see: sudo dmesg | grep -i apparmor`;
      }
      return "Find what refused the namespace: sudo dmesg | grep -iE 'apparmor|selinux|audit'";
    case "not-permitted":
      return host.inContainer
        ? CONTAINER_FIX
        : "Find the policy that refused it: sudo dmesg | grep -iE 'apparmor|selinux|audit|seccomp'";
    case "unknown":
      return "Run the probe by hand to see more: bwrap --unshare-all --ro-bind / / -- /bin/true";
  }
}

/** How / is laid out on the host: merged-/usr symlinks or real directories. */
export interface RootEntry {
  path: string;
  kind: "symlink" | "dir" | "missing";
  target?: string;
}

export const ROOT_LINK_CANDIDATES = ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/** The minimal sandbox the probe starts: /usr read-only, / links mirrored from the host. */
export function buildProbeArgv(layout: RootEntry[], command: string[], extra: string[] = []): string[] {
  const argv = ["--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr"];
  for (const e of layout) {
    if (e.kind === "symlink" && e.target) argv.push("--symlink", e.target, e.path);
    else if (e.kind === "dir") argv.push("--ro-bind", e.path, e.path);
  }
  argv.push("--proc", "/proc", "--dev", "/dev", ...extra, "--", ...command);
  return argv;
}

/** Command output as one line for a finding. */
export function oneLine(text: string, max = 300): string {
  const s = text
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean)
    .join(" / ");
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

export interface BwrapFacts {
  path: string | null;
  /** Why CLOISTER_BWRAP names no usable bwrap (path is then null); null when it is unset or usable. */
  rejectedChoice: { detail: string; fix: string } | null;
  versionOutput: string | null;
  setuid: boolean;
  /** The live probe; null when it was not run (no usable bwrap). */
  probe: RunResult | null;
  osRelease: Record<string, string>;
  host: HostContext;
}

export function assessBubblewrap(f: BwrapFacts): Finding {
  // The user's setting, not the machine, is what stops a launch: the fix is to change the setting.
  if (f.rejectedChoice) return { status: "fail", ...f.rejectedChoice };
  const install = installCommand("bubblewrap", f.osRelease);
  if (!f.path) return { status: "fail", detail: "bwrap not found on PATH or at /usr/bin/bwrap", fix: install };
  const version = f.versionOutput ? parseBwrapVersion(f.versionOutput) : null;
  if (!version) {
    return {
      status: "fail",
      detail: `${f.path} did not report a version${f.versionOutput ? `: ${oneLine(f.versionOutput, 120)}` : ""}`,
      fix: install,
    };
  }
  if (compareVersions(version, MIN_BWRAP_VERSION) < 0) {
    return {
      status: "fail",
      detail: `bubblewrap ${version} at ${f.path} is older than ${MIN_BWRAP_VERSION}`,
      fix: `Upgrade bubblewrap to ${MIN_BWRAP_VERSION} or newer (on older releases from backports):\n${install}`,
    };
  }
  const found: Finding[] = [];
  if (f.setuid) {
    found.push({
      status: "warn",
      detail: `${f.path} is setuid root, which changes how bwrap behaves (it then refuses user-namespace options)`,
      fix: `Once user namespaces work for ordinary users, drop the setuid bit: sudo chmod u-s ${f.path}`,
    });
  }
  const p = f.probe;
  if (p) {
    if (p.timedOut) {
      found.push({
        status: "fail",
        detail: `sandbox probe did not finish within ${Math.round(p.timeoutMs / 1000)} s`,
        fix: "Look for what blocks it: sudo dmesg | tail -50",
      });
    } else if (p.error) {
      found.push({ status: "fail", detail: `could not run ${f.path}: ${p.error}`, fix: install });
    } else if (p.code !== 0) {
      const c = classifyBwrapFailure(p.stderr);
      found.push({
        status: "fail",
        detail: `sandbox probe failed (${c.reason}): ${oneLine(p.stderr) || `exit code ${p.code ?? p.signal}`}`,
        fix: bwrapFailureFix(c.kind, f.host),
      });
    }
  }
  return combine(found, `bubblewrap ${version} at ${f.path}; a test sandbox started (all namespaces, /usr read-only)`);
}

// ───────────────────────────── socat ─────────────────────────────

export function assessSocat(path: string | null, versionOutput: string | null, osRelease: Record<string, string>): Finding {
  if (!path) {
    return {
      status: "warn",
      detail: "socat not found: ssh and git-over-ssh inside cloisters use it to tunnel through the guardian (GIT_SSH_COMMAND); everything else works without it",
      fix: installCommand("socat", osRelease),
    };
  }
  const version = versionOutput ? parseSocatVersion(versionOutput) : null;
  return { status: "ok", detail: `socat ${version ?? "(unknown version)"} at ${path}` };
}

// ───────────────────────────── seccomp ─────────────────────────────

export interface SeccompFacts {
  /** Seccomp mode of this process; null when /proc/self/status has no Seccomp line. */
  selfMode: number | null;
  /** /proc/sys/kernel/seccomp/actions_avail; null when missing. */
  actionsAvail: string[] | null;
  /** Result of running a sandbox with our filter; skipped when there is no filter builder or bwrap. */
  filterProbe:
    | { kind: "skipped"; why: string }
    | { kind: "error"; message: string }
    | { kind: "ran"; result: RunResult; modeInside: number | null };
}

export function assessSeccomp(f: SeccompFacts): Finding {
  if (f.selfMode === null) {
    return {
      status: "fail",
      detail: "kernel has no seccomp (no Seccomp: line in /proc/self/status)",
      fix: "Boot a kernel built with CONFIG_SECCOMP=y and CONFIG_SECCOMP_FILTER=y (every mainstream distribution kernel is).",
    };
  }
  if (f.actionsAvail === null) {
    return {
      status: "fail",
      detail: "kernel too old for cloister's filter (/proc/sys/kernel/seccomp/actions_avail missing; needs Linux 4.14+)",
      fix: "Upgrade to a kernel 4.14 or newer.",
    };
  }
  const missing = ["kill_process", "errno"].filter((a) => !f.actionsAvail?.includes(a));
  if (missing.length) {
    return {
      status: "fail",
      detail: `kernel lacks seccomp actions ${missing.join(", ")} (has: ${f.actionsAvail.join(" ")})`,
      fix: "Upgrade to a kernel 4.14 or newer.",
    };
  }
  const base = "seccomp filters supported (kill_process, errno)";
  const p = f.filterProbe;
  if (p.kind === "skipped") return { status: "ok", detail: `${base}; filter probe skipped: ${p.why}` };
  if (p.kind === "error") {
    return {
      status: "fail",
      detail: `${base}, but building cloister's filter failed: ${oneLine(p.message, 200)}`,
      fix: "This is a cloister bug: please report it with the output of `cloister doctor --json`.",
    };
  }
  if (p.result.timedOut) {
    return { status: "fail", detail: `${base}, but the filtered sandbox probe hung`, fix: "Look for what blocks it: sudo dmesg | tail -50" };
  }
  if (p.result.code !== 0 || p.modeInside !== 2) {
    const why = p.result.code !== 0 ? oneLine(p.result.stderr) || `exit code ${p.result.code ?? p.result.signal}` : `Seccomp: ${p.modeInside ?? "missing"} inside`;
    return {
      status: "fail",
      detail: `${base}, but a sandbox with cloister's filter did not run filtered: ${why}`,
      fix: "Run `cloister doctor --json` and report it: the filter was refused by this kernel.",
    };
  }
  return { status: "ok", detail: `${base}; a sandbox ran under cloister's filter (Seccomp: 2)` };
}

// ───────────────────────────── cgroups ─────────────────────────────

export interface CgroupFacts {
  euid: number;
  layout: CgroupLayout;
  /** Where cgroup2 is mounted, if anywhere. */
  v2MountPoint: string | null;
  /** Our v2 cgroup directory, if we are in the mounted v2 hierarchy. */
  ownDir: string | null;
  /** The first cgroup we can write: ourselves, an ancestor, or systemd's user@UID.service (a sibling). */
  writable: { dir: string; relation: "self" | "ancestor" | "user-manager"; controllers: string[] } | null;
  /** v1 memory/pids/cpu: our directory in each hierarchy and whether we can write it. */
  v1: { controller: string; dir: string | null; writable: boolean }[];
}

const NEEDED = ["memory", "pids"];

export const DELEGATE_CONF = "/etc/systemd/system/user@.service.d/delegate.conf";

function delegationFix(euid: number): string {
  if (euid === 0) {
    return "Run cloister in a delegated scope: systemd-run --scope -p Delegate=yes cloister ...";
  }
  return [
    "Run cloister in a delegated scope: systemd-run --user --scope -p Delegate=yes cloister ...",
    `or enable delegation for every user session: write ${DELEGATE_CONF}:`,
    "  [Service]",
    "  Delegate=cpu cpuset io memory pids",
    "then: sudo systemctl daemon-reload, and log out and back in",
  ].join("\n");
}

const UNIFIED_BOOT_FIX = [
  "Boot with the unified cgroup v2 hierarchy: add systemd.unified_cgroup_hierarchy=1 to GRUB_CMDLINE_LINUX in /etc/default/grub, then:",
  "sudo update-grub && sudo reboot    # Debian, Ubuntu",
  "sudo grubby --update-kernel=ALL --args=systemd.unified_cgroup_hierarchy=1 && sudo reboot    # Fedora, RHEL (no grub edit needed)",
].join("\n");

/**
 * What cloister does when it cannot use delegated cgroup v2 (mirrors the engine's limits code), and
 * which caps it then cannot enforce: a launch refuses --memory and --cpu then, and leaves out (with
 * a warning) what the configuration sets, so the user learns it here before a launch fails.
 */
export function cgroupFallback(f: CgroupFacts): string {
  const rlimits =
    "per-process rlimits, a per-cloister process limit counted inside each cloister's user namespace, nice 10 and oom_score_adj 1000 (so the OOM killer and the scheduler pick the cloister before the guardian)";
  const usable = f.euid === 0 && f.layout !== "unified" ? f.v1.filter((v) => v.writable).map((v) => v.controller) : [];
  const unenforced = [
    ...(usable.includes("memory") ? [] : ["memory limits (--memory, limits.memory)"]),
    ...(usable.includes("cpu") ? [] : ["CPU caps (--cpu, limits.cpu)"]),
  ];
  const gap = unenforced.length > 0 ? `; ${unenforced.join(" and ")} are not enforced for this user` : "";
  if (usable.length === f.v1.length && usable.length > 0) return `cloister uses the writable v1 ${usable.join(", ")} hierarchies${gap}`;
  if (usable.length > 0) return `cloister uses the writable v1 ${usable.join(", ")} hierarchies, and ${rlimits}${gap}`;
  return `cloister falls back to ${rlimits}${gap}`;
}

export function assessCgroups(f: CgroupFacts): Finding {
  const w = f.writable;
  if (w && w.relation !== "user-manager" && NEEDED.every((c) => w.controllers.includes(c))) {
    const cpuNote = w.controllers.includes("cpu") ? "" : "; no cpu controller, so CPU share falls back to nice 10 and CPU caps (--cpu, limits.cpu) are not enforced";
    return {
      status: "ok",
      detail: `cgroup v2 delegated at ${w.dir} (${w.controllers.filter((c) => ["cpu", ...NEEDED].includes(c)).join(", ")})${cpuNote}`,
    };
  }
  const fallback = cgroupFallback(f);
  if (f.layout === "none") {
    return {
      status: "warn",
      detail: `no cgroup filesystem mounted; ${fallback}`,
      fix: "sudo mount -t cgroup2 none /sys/fs/cgroup",
    };
  }
  if (f.layout === "hybrid" || f.layout === "legacy") {
    const where =
      f.layout === "hybrid"
        ? `hybrid cgroups (v1 controllers; v2 at ${f.v2MountPoint ?? "?"} has ${w ? describeControllers(w.controllers) : "nothing we can write"})`
        : "cgroup v1 only";
    return {
      status: "warn",
      detail: `${where}: no delegated cgroup v2; ${fallback}`,
      fix: f.euid === 0 ? UNIFIED_BOOT_FIX : `${UNIFIED_BOOT_FIX}\nthen, for ordinary users:\n${delegationFix(f.euid)}`,
    };
  }
  // Unified hierarchy, but not delegated to us.
  let why: string;
  if (!f.ownDir) why = "this process is outside the mounted cgroup2 tree";
  else if (!w) why = `${f.ownDir} and its parents are not writable by us`;
  else if (w.relation === "user-manager") {
    why = NEEDED.every((c) => w.controllers.includes(c))
      ? `the systemd user manager (${w.dir}) is delegated, but this process runs outside it`
      : `the systemd user manager (${w.dir}) has ${describeControllers(w.controllers)}`;
  } else why = `${w.dir} is writable but has ${describeControllers(w.controllers)} (needs memory and pids)`;
  return { status: "warn", detail: `cgroup v2 not delegated: ${why}; ${fallback}`, fix: delegationFix(f.euid) };
}

function describeControllers(cs: string[]): string {
  return cs.length ? `only ${cs.join(", ")}` : "no controllers";
}

// ───────────────────────────── node, helper, privileges ─────────────────────────────

export function assessNode(version: string): Finding {
  const major = Number.parseInt(version.replace(/^v/, ""), 10);
  if (Number.isFinite(major) && major >= MIN_NODE_MAJOR) return { status: "ok", detail: `Node.js ${version}` };
  return {
    status: "fail",
    detail: `Node.js ${version} is older than ${MIN_NODE_MAJOR}`,
    fix: `Install Node.js ${MIN_NODE_MAJOR} or newer (https://nodejs.org, or: nvm install ${MIN_NODE_MAJOR})`,
  };
}

/**
 * The host's git and bare repositories (see docs/sandbox.md, protected paths): git takes any
 * directory holding HEAD, objects/ and refs/ for a bare repository and runs what its config says
 * (a pager, an ext:: remote), and an agent can make one of any directory of its project. Only git
 * itself can refuse that: safe.bareRepository=explicit, honoured from the system and global config
 * (never a repository's). `scoped` is `git config --show-scope --get-all safe.bareRepository`.
 */
export function assessHostGit(gitFound: boolean, scoped: string): Finding {
  if (!gitFound) return { status: "ok", detail: "git is not installed on the host: nothing of a project's git runs here" };
  const honoured = scoped
    .split("\n")
    .map((line) => line.split("\t"))
    .filter(([scope]) => scope === "system" || scope === "global" || scope === "command");
  const value = honoured.at(-1)?.[1]?.trim();
  if (value === "explicit") return { status: "ok", detail: "safe.bareRepository=explicit: host git runs no bare repository it finds by itself" };
  return {
    status: "warn",
    detail: `safe.bareRepository is ${value === undefined ? "not set" : JSON.stringify(value)}: git on the host takes any directory holding HEAD, objects/ and refs/ for a bare repository and runs its config (a pager for git log, an ext:: remote for git fetch), and an agent can make one of any directory of its project; cloister holds only the project's root`,
    fix: "git config --global safe.bareRepository explicit",
  };
}

export interface NativeFacts {
  helperPath: string;
  exists: boolean;
  executable: boolean;
  gccVersion: string | null;
  gccFound: boolean;
  packageRoot: string;
  osRelease: Record<string, string>;
}

export function assessNative(f: NativeFacts): Finding {
  const gcc = f.gccFound ? `gcc ${f.gccVersion ?? "(unknown version)"}` : "gcc not found";
  const build = `cd ${f.packageRoot} && npm run build`;
  if (f.exists && f.executable) {
    return { status: "ok", detail: `${f.helperPath} present; ${gcc}${f.gccFound ? "" : " (only needed to rebuild it)"}` };
  }
  const what = f.exists ? `${f.helperPath} is not executable` : `${f.helperPath} is missing (not built)`;
  return {
    status: "fail",
    detail: `${what}; ${gcc}`,
    fix: f.gccFound ? build : `${installCommand("gcc", f.osRelease)}\n${build}`,
  };
}

export function assessPrivileges(euid: number): Finding {
  if (euid === 0) {
    return {
      status: "ok",
      detail: "running as root: supported; cloister still drops every capability and sets no_new_privs inside each cloister",
    };
  }
  return { status: "ok", detail: `running as uid ${euid} (unprivileged)` };
}

/**
 * The instance's config files: a broken config.yaml stops every command, a broken project or decision
 * file only that project's (or the guardian's reload). The detail names the first problem; `config
 * validate` lists them all.
 */
export function assessConfig(report: ConfigReport, globalConfigFile: string): Finding {
  const [first] = report.problems;
  if (!first) {
    const detail = report.globalExists ? `${report.files.length} ${report.files.length === 1 ? "file" : "files"} valid` : `no ${globalConfigFile} yet: the defaults apply`;
    return { status: "ok", detail };
  }
  const more = report.problems.length > 1 ? ` (and ${report.problems.length - 1} more)` : "";
  return {
    status: report.problems.some((p) => p.file === globalConfigFile) ? "fail" : "warn",
    detail: oneLine(`${formatFileProblem(first)}${more}`),
    fix: "cloister config validate    # lists every problem with its file, line and key\ncloister config edit        # or edit the file named, then validate again",
  };
}

// ───────────────────────────── I/O helpers ─────────────────────────────

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  timeoutMs: number;
  /** Spawn error (ENOENT, EACCES), if the command could not start. */
  error?: string;
}

/**
 * Run a command with a hard deadline. On timeout the child is SIGKILLed and the promise settles
 * shortly after even if a grandchild keeps the pipes open. `fd3` is written to an extra pipe on fd 3
 * (how bwrap's --seccomp receives its program).
 */
export function run(cmd: string, args: string[], opts: { timeoutMs: number; env?: NodeJS.ProcessEnv; fd3?: Buffer }): Promise<RunResult> {
  return new Promise((resolve) => {
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    let settled = false;
    const finish = (r: Omit<RunResult, "stdout" | "stderr" | "timedOut" | "timeoutMs">): void => {
      if (settled) return;
      settled = true;
      clearTimeout(killTimer);
      clearTimeout(hardTimer);
      resolve({ ...r, stdout, stderr, timedOut, timeoutMs: opts.timeoutMs });
    };
    const child = spawn(cmd, args, {
      env: opts.env ?? process.env,
      stdio: opts.fd3 ? ["ignore", "pipe", "pipe", "pipe"] : ["ignore", "pipe", "pipe"],
    });
    child.stdout?.setEncoding("utf8").on("data", (d: string) => {
      if (stdout.length < 1 << 20) stdout += d;
    });
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      if (stderr.length < 1 << 20) stderr += d;
    });
    if (opts.fd3) {
      const pipe = child.stdio[3] as Writable | null | undefined;
      // bwrap may exit before reading (e.g. it failed earlier): EPIPE here is not our failure.
      pipe?.on("error", () => undefined);
      pipe?.end(opts.fd3);
    }
    const killTimer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, opts.timeoutMs);
    const hardTimer = setTimeout(() => finish({ code: null, signal: "SIGKILL" }), opts.timeoutMs + 1000);
    child.on("error", (e) => finish({ code: null, signal: null, error: e.message }));
    child.on("close", (code, signal) => finish({ code, signal }));
  });
}

async function readText(path: string): Promise<string | null> {
  try {
    return await readFile(path, "utf8");
  } catch {
    return null;
  }
}

async function readInt(path: string): Promise<number | null> {
  const t = await readText(path);
  if (t === null) return null;
  const n = Number.parseInt(t.trim(), 10);
  return Number.isFinite(n) ? n : null;
}

async function canAccess(path: string, mode: number): Promise<boolean> {
  try {
    await access(path, mode);
    return true;
  } catch {
    return false;
  }
}

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile() && (await canAccess(path, fsConstants.X_OK));
  } catch {
    return false;
  }
}

/** First executable `name` on PATH, then the fallbacks. */
export async function findExecutable(name: string, env: NodeJS.ProcessEnv, fallbacks: string[] = []): Promise<string | null> {
  const dirs = (env.PATH ?? "").split(delimiter).filter((d) => d.startsWith("/"));
  for (const p of [...dirs.map((d) => join(d, name)), ...fallbacks]) if (await isExecutableFile(p)) return p;
  return null;
}

async function describeRootLayout(): Promise<RootEntry[]> {
  return Promise.all(
    ROOT_LINK_CANDIDATES.map(async (path): Promise<RootEntry> => {
      try {
        const st = await lstat(path);
        if (st.isSymbolicLink()) return { path, kind: "symlink", target: await readlink(path) };
        if (st.isDirectory()) return { path, kind: "dir" };
      } catch {
        // missing
      }
      return { path, kind: "missing" };
    }),
  );
}

/** The AppArmor profile file (if any) that grants bwrap user namespaces. */
async function findApparmorProfile(bwrapPath: string): Promise<string | null> {
  let names: string[];
  try {
    names = await readdir("/etc/apparmor.d");
  } catch {
    return null;
  }
  for (const n of names.sort()) {
    const p = join("/etc/apparmor.d", n);
    try {
      if (!(await stat(p)).isFile()) continue;
    } catch {
      continue;
    }
    const text = await readText(p);
    if (text && profileGrantsUserns(text, bwrapPath)) return p;
  }
  return null;
}

async function detectContainer(): Promise<boolean> {
  if ((await canAccess("/.dockerenv", fsConstants.F_OK)) || (await canAccess("/run/.containerenv", fsConstants.F_OK))) return true;
  const env1 = await readText("/proc/1/environ");
  return env1 !== null && /(^|\0)container=/.test(env1);
}

async function isWritableCgroup(dir: string): Promise<boolean> {
  return (await canAccess(dir, fsConstants.W_OK)) && (await canAccess(join(dir, "cgroup.procs"), fsConstants.W_OK));
}

// ───────────────────────────── context shared by the checks ─────────────────────────────

export interface DoctorContext {
  env: NodeJS.ProcessEnv;
  packageRoot: string;
  timeoutMs: number;
  euid: number;
  /** The bwrap a launch would run; null when none is found or CLOISTER_BWRAP names none (see bwrapChoice). */
  bwrapPath: () => Promise<string | null>;
  bwrapChoice: () => Promise<BwrapChoice>;
  userns: () => Promise<UsernsFacts>;
  osRelease: () => Promise<Record<string, string>>;
  rootLayout: () => Promise<RootEntry[]>;
  inContainer: () => Promise<boolean>;
}

function once<T>(f: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= f());
}

/** The bwrap a launch would run, or the CLOISTER_BWRAP problem that stops every launch. */
export type BwrapChoice = Pick<BwrapFacts, "path" | "rejectedChoice">;

function chooseBwrap(env: NodeJS.ProcessEnv): BwrapChoice {
  try {
    return { path: findBwrap(env) ?? null, rejectedChoice: null };
  } catch (error) {
    // Only a CLOISTER_BWRAP that names no executable is refused with a CloisterError; anything else is a bug.
    if (!(error instanceof CloisterError)) throw error;
    return { path: null, rejectedChoice: { detail: error.message, fix: error.hint ?? "unset CLOISTER_BWRAP" } };
  }
}

export function createDoctorContext(opts: DoctorOptions = {}): DoctorContext {
  const env = opts.env ?? process.env;
  // The one a launch runs, so that what doctor checks is what cloister uses.
  const bwrapChoice = once(async () => chooseBwrap(env));
  const bwrapPath = once(async () => (await bwrapChoice()).path);
  return {
    env,
    packageRoot: opts.packageRoot ?? PACKAGE_ROOT,
    timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    euid: process.geteuid?.() ?? -1,
    bwrapPath,
    bwrapChoice,
    userns: once(async () => {
      const apparmorRestrict = await readInt("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
      return {
        maxUserNamespaces: await readInt("/proc/sys/user/max_user_namespaces"),
        unprivilegedClone: await readInt("/proc/sys/kernel/unprivileged_userns_clone"),
        apparmorRestrict,
        apparmorProfileFile: apparmorRestrict === 1 ? await findApparmorProfile((await bwrapPath()) ?? "/usr/bin/bwrap") : null,
      };
    }),
    osRelease: once(async () => parseOsRelease((await readText("/etc/os-release")) ?? (await readText("/usr/lib/os-release")) ?? "")),
    rootLayout: once(describeRootLayout),
    inContainer: once(detectContainer),
  };
}

async function hostContext(ctx: DoctorContext): Promise<HostContext> {
  return {
    euid: ctx.euid,
    bwrapPath: (await ctx.bwrapPath()) ?? "/usr/bin/bwrap",
    userns: await ctx.userns(),
    inContainer: await ctx.inContainer(),
  };
}

/** A program inside the probe sandbox: /usr/bin/x when the host has it, /bin/x otherwise. */
async function probeProgram(name: string): Promise<string> {
  return (await isExecutableFile(`/usr/bin/${name}`)) ? `/usr/bin/${name}` : `/bin/${name}`;
}

// ───────────────────────────── the checks ─────────────────────────────

/** A check: call it with a context; its id and title are known without running it. */
export interface DoctorCheck {
  (ctx: DoctorContext): Promise<CheckResult>;
  readonly id: string;
  readonly title: string;
}

/** Wraps a finder with its id and title; a finder that throws fails its own check, not doctor. */
function defineCheck(id: string, title: string, find: (ctx: DoctorContext) => Promise<Finding>): DoctorCheck {
  const check = async (ctx: DoctorContext): Promise<CheckResult> => {
    try {
      return { id, title, ...(await find(ctx)) };
    } catch (e) {
      return {
        id,
        title,
        status: "fail",
        detail: `the check itself crashed: ${oneLine(e instanceof Error ? e.message : String(e), 200)}`,
        fix: "This is a cloister bug: please report it with the output of `cloister doctor --json`.",
      };
    }
  };
  return Object.assign(check, { id, title });
}

export const checkUserNamespaces = defineCheck("userns", "Kernel user namespaces", async (ctx) =>
  assessUserns(await ctx.userns(), { euid: ctx.euid, bwrapPath: (await ctx.bwrapPath()) ?? "/usr/bin/bwrap" }),
);

export const checkBubblewrap = defineCheck("bwrap", "bubblewrap", async (ctx) => {
  const { path, rejectedChoice } = await ctx.bwrapChoice();
  let versionOutput: string | null = null;
  let setuid = false;
  let probe: RunResult | null = null;
  if (path) {
    const v = await run(path, ["--version"], { timeoutMs: ctx.timeoutMs, env: ctx.env });
    versionOutput = `${v.stdout}${v.stderr}`.trim() || null;
    try {
      setuid = ((await stat(path)).mode & 0o4000) !== 0;
    } catch {
      setuid = false;
    }
    const version = versionOutput ? parseBwrapVersion(versionOutput) : null;
    if (version && compareVersions(version, MIN_BWRAP_VERSION) >= 0) {
      const argv = buildProbeArgv(await ctx.rootLayout(), [await probeProgram("true")]);
      probe = await run(path, argv, { timeoutMs: ctx.timeoutMs, env: ctx.env });
    }
  }
  return assessBubblewrap({ path, rejectedChoice, versionOutput, setuid, probe, osRelease: await ctx.osRelease(), host: await hostContext(ctx) });
});

export const checkSocat = defineCheck("socat", "socat (ssh through the proxy)", async (ctx) => {
  const path = await findExecutable("socat", ctx.env);
  let versionOutput: string | null = null;
  if (path) {
    const v = await run(path, ["-V"], { timeoutMs: ctx.timeoutMs, env: ctx.env });
    versionOutput = `${v.stdout}${v.stderr}`;
  }
  return assessSocat(path, versionOutput, await ctx.osRelease());
});

export const checkSeccomp = defineCheck("seccomp", "seccomp", async (ctx) => {
  const selfMode = parseSeccompMode((await readText("/proc/self/status")) ?? "");
  const avail = await readText("/proc/sys/kernel/seccomp/actions_avail");
  const actionsAvail = avail === null ? null : avail.trim().split(/\s+/);
  let filterProbe: SeccompFacts["filterProbe"] = { kind: "skipped", why: "kernel support missing" };
  if (selfMode !== null && actionsAvail) {
    filterProbe = await probeSeccompFilter(ctx);
  }
  return assessSeccomp({ selfMode, actionsAvail, filterProbe });
});

async function probeSeccompFilter(ctx: DoctorContext): Promise<SeccompFacts["filterProbe"]> {
  let program: Buffer;
  try {
    // Loaded here, not at the top: a broken filter builder should fail this one check, not doctor.
    const { buildSeccompFilter } = await import("../sandbox/bwrap/seccomp.js");
    const out: unknown = buildSeccompFilter();
    if (!Buffer.isBuffer(out) || out.length === 0 || out.length % 8 !== 0) {
      return { kind: "error", message: "buildSeccompFilter() did not return a Buffer of 8-byte BPF instructions" };
    }
    program = out;
  } catch (e) {
    return { kind: "error", message: e instanceof Error ? e.message : String(e) };
  }
  return runSeccompProbe(ctx, program);
}

/** Start the probe sandbox with `program` as its seccomp filter (on fd 3) and read its Seccomp mode. */
export async function runSeccompProbe(ctx: DoctorContext, program: Buffer): Promise<SeccompFacts["filterProbe"]> {
  const bwrap = await ctx.bwrapPath();
  if (!bwrap) return { kind: "skipped", why: "no bwrap to run it in" };
  const argv = buildProbeArgv(await ctx.rootLayout(), [await probeProgram("cat"), "/proc/self/status"], ["--seccomp", "3"]);
  const result = await run(bwrap, argv, { timeoutMs: ctx.timeoutMs, env: ctx.env, fd3: program });
  if (result.code !== 0 && !result.timedOut && !result.error) {
    // The plain probe (bwrap check) reports sandbox startup failures; here only the filter matters.
    const plain = classifyBwrapFailure(result.stderr);
    if (plain.kind !== "unknown") return { kind: "skipped", why: "bwrap cannot start a sandbox here (see the bubblewrap check)" };
  }
  return { kind: "ran", result, modeInside: parseSeccompMode(result.stdout) };
}

export const checkCgroups = defineCheck("cgroups", "cgroup v2 delegation", async (ctx) => {
  const mountinfo = (await readText("/proc/self/mountinfo")) ?? "";
  const own = parseCgroupFile((await readText("/proc/self/cgroup")) ?? "");
  const v2 = parseMountinfoForCgroup2(mountinfo);
  const ownDir = v2 && own.unified !== null ? cgroupDir(v2, own.unified) : null;

  let writable: CgroupFacts["writable"] = null;
  if (v2) {
    const candidates: { dir: string; relation: "self" | "ancestor" | "user-manager" }[] = ownDir
      ? ancestorsWithin(ownDir, v2.mountPoint).map((dir, i) => ({ dir, relation: i === 0 ? "self" : "ancestor" }))
      : [];
    if (ctx.euid > 0) {
      const um = cgroupDir(v2, userManagerCgroup(ctx.euid));
      if (um && !candidates.some((c) => c.dir === um || c.dir.startsWith(`${um}/`))) candidates.push({ dir: um, relation: "user-manager" });
    }
    for (const c of candidates) {
      if (!v2.readOnly && (await isWritableCgroup(c.dir))) {
        writable = { ...c, controllers: parseControllers((await readText(join(c.dir, "cgroup.controllers"))) ?? "") };
        break;
      }
    }
  }

  const v1Mounts = parseMountinfoForCgroupV1(mountinfo);
  const v1 = await Promise.all(
    ["memory", "pids", "cpu"].map(async (controller) => {
      const mount = v1Mounts[controller];
      const path = own.v1[controller];
      const dir = mount && path !== undefined ? cgroupDir(mount, path) : null;
      return { controller, dir, writable: dir !== null && !mount?.readOnly && (await isWritableCgroup(dir)) };
    }),
  );

  return assessCgroups({ euid: ctx.euid, layout: cgroupLayout(mountinfo), v2MountPoint: v2?.mountPoint ?? null, ownDir, writable, v1 });
});

export const checkPrivileges = defineCheck("user", "User", async (ctx) => assessPrivileges(ctx.euid));

export const checkNode = defineCheck("node", "Node.js", async () => assessNode(process.versions.node));

export const checkHostGit = defineCheck("git", "Host git", async (ctx) => {
  const git = await findExecutable("git", ctx.env);
  if (!git) return assessHostGit(false, "");
  const scoped = await run(git, ["config", "--show-scope", "--get-all", "safe.bareRepository"], { timeoutMs: ctx.timeoutMs, env: ctx.env });
  return assessHostGit(true, scoped.stdout);
});

export const checkNativeHelper = defineCheck("native", "Native helper (cloister-init)", async (ctx) => {
  const helperPath = join(ctx.packageRoot, "native", "build", "cloister-init");
  const exists = await canAccess(helperPath, fsConstants.F_OK);
  const executable = exists && (await isExecutableFile(helperPath));
  const gcc = await findExecutable("gcc", ctx.env);
  let gccVersion: string | null = null;
  if (gcc) {
    const v = await run(gcc, ["--version"], { timeoutMs: ctx.timeoutMs, env: ctx.env });
    gccVersion = parseGccVersion(v.stdout);
  }
  return assessNative({
    helperPath,
    exists,
    executable,
    gccFound: gcc !== null,
    gccVersion,
    packageRoot: ctx.packageRoot,
    osRelease: await ctx.osRelease(),
  });
});

export const checkConfig = defineCheck("config", "Configuration", async (ctx) => {
  let paths: CloisterPaths;
  try {
    paths = resolvePaths(ctx.env);
    checkOwnInstance(paths);
  } catch (error) {
    // The environment names no instance (a relative CLOISTER_HOME), or another user's: the person's to fix, not a bug.
    if (!(error instanceof CloisterError)) throw error;
    return { status: "fail", detail: error.message, ...(error.hint ? { fix: error.hint } : {}) };
  }
  return assessConfig(await checkAllConfig(paths), paths.globalConfigFile);
});

/** In the order they are printed. */
export const DOCTOR_CHECKS: readonly DoctorCheck[] = [
  checkUserNamespaces,
  checkBubblewrap,
  checkSocat,
  checkSeccomp,
  checkCgroups,
  checkPrivileges,
  checkNode,
  checkNativeHelper,
  checkHostGit,
  checkConfig,
];

/** Run every check concurrently; facts several checks need are gathered once through the context. */
export async function runDoctor(opts: DoctorOptions = {}): Promise<DoctorReport> {
  const ctx = createDoctorContext(opts);
  const checks = await Promise.all(DOCTOR_CHECKS.map((check) => check(ctx)));
  return { checks, ok: checks.every((c) => c.status !== "fail") };
}
