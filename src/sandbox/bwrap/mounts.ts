/**
 * The cloister's filesystem view, built rather than subtracted (DESIGN.md decision 3): only what a
 * workload needs is mounted, so host sockets, HOME and runtime dirs are absent by construction.
 * This module is pure: it turns facts about the host into an ordered list of mount operations.
 */

export type MountOp =
  | { op: "ro-bind" | "bind"; src: string; dest: string }
  | { op: "symlink"; target: string; dest: string }
  | { op: "tmpfs"; dest: string; sizeBytes: number; mode?: number }
  | { op: "proc"; dest: string }
  | { op: "dev"; dest: string };

/** Top-level system entries: mounted read-only, or recreated as the same symlink (usr-merged distros). */
export interface SystemEntry {
  path: string;
  /** Set when the host entry is a symlink (e.g. /bin -> usr/bin). */
  symlinkTarget?: string;
}

export interface MountFacts {
  systemEntries: SystemEntry[];
  /** Host files that would be readable inside although they are secret (root-only files under /etc when running as root, ...). */
  hiddenFiles: string[];
  hiddenDirs: string[];
  /** Kernel knobs under /proc that exist on this host and must be read-only inside. */
  procReadOnly: string[];
  /** Files under /proc that exist on this host and show it to the cloister: covered by /dev/null. */
  procHidden: string[];
  projectRoot: string;
  /** Sandbox HOME on the host (under the data dir). */
  homeSource: string;
  homeDest: string;
  /** Ancestors to pin and protected paths, relative to the project root (see protected-paths.ts). */
  pinnedAncestors: string[];
  protectedPaths: string[];
  /** A worktree cloister's git dirs at their host paths (see linked-git.ts), on top of the project. */
  gitMounts: MountOp[];
  refs: { name: string; hostPath: string }[];
  extraMounts: { src: string; dest: string }[];
  /** Directory on the host holding this cloister's guardian socket; absent with --no-network. */
  guardianSocketDir?: string;
  /** The init binary on the host. */
  initBinary: string;
  /** The guardian's trust bundle (system roots + its interception CA); mounted only with a guardian socket. */
  trustBundle?: string;
  /** The CA and any system root node does not carry, for NODE_EXTRA_CA_CERTS; mounted with the bundle. */
  nodeTrustFile?: string;
  /** The system's CA bundle files that exist on this host; each is overlaid with the trust bundle. */
  systemTrustFiles?: string[];
  /** The hostexec client on the host; mounted only with a guardian socket (it has no other channel). */
  hostexecBinary?: string;
  /** An agent's install (outside the system dirs): host paths bound read-only at the same path. */
  agentMounts: string[];
  /** Host directory with the agent's launcher, bound read-only at AGENT_BIN_PATH. */
  agentBinDir?: string;
  tmpfsBytes: number;
}

export const WORK_DIR = "/work";
export const CLOISTER_RUN_DIR = "/run/cloister";
export const INIT_PATH = `${CLOISTER_RUN_DIR}/init`;
export const GUARDIAN_SOCKET_DIR = `${CLOISTER_RUN_DIR}/guardian`;
/** On PATH inside the cloister (see env.ts). */
export const HOSTEXEC_PATH = `${CLOISTER_RUN_DIR}/bin/hostexec`;
/** The trust bundle inside (SSL_CERT_FILE and friends point here; see env.ts). */
export const TRUST_BUNDLE_PATH = `${CLOISTER_RUN_DIR}/ca-bundle.pem`;
/** What NODE_EXTRA_CA_CERTS names inside: node has the usual roots built in and needs only the rest. */
export const NODE_TRUST_PATH = `${CLOISTER_RUN_DIR}/node-extra-ca.pem`;
/** Where distributions keep the system's CA bundle (Debian/Ubuntu, Fedora/RHEL, Alpine/others). */
export const SYSTEM_TRUST_FILES = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];
/** The agent's launcher (see agents/launch.ts); first on PATH in a cloister set up for an agent. */
export const AGENT_BIN_PATH = `${CLOISTER_RUN_DIR}/agent-bin`;
/** /run only holds cloister plumbing and pid files: a small cap keeps it from becoming a memory sink. */
const RUN_TMPFS_BYTES = 16 * 1024 * 1024;

/**
 * The whole view in bwrap's order. The project's binds come first: for every bind bwrap reads all of
 * /proc/self/mountinfo (to remount it nosuid, nodev and maybe read-only), so each costs in proportion
 * to the mounts made before it, and the project's pinned and protected paths are most of the binds.
 * None of what used to precede them can cover /work (fixed system paths, /proc, /dev, /tmp, /run,
 * hidden /etc and /sys entries, HOME); what may be laid over the project (git dirs, extra mounts)
 * still follows it. Measured with a default project as root: bwrap's median 18.8 → 17.8 ms.
 */
export function planMounts(f: MountFacts): MountOp[] {
  return [
    ...projectView(f),
    ...systemView(f),
    ...privateDirs(f),
    ...hideSecrets(f),
    { op: "bind", src: f.homeSource, dest: f.homeDest },
    ...f.gitMounts,
    ...f.refs.map((r): MountOp => ({ op: "ro-bind", src: r.hostPath, dest: `/refs/${r.name}` })),
    ...f.extraMounts.map((m): MountOp => ({ op: "ro-bind", src: m.src, dest: m.dest })),
    ...agentView(f),
    ...plumbing(f),
  ];
}

function systemView(f: MountFacts): MountOp[] {
  return f.systemEntries.map((e): MountOp =>
    e.symlinkTarget !== undefined ? { op: "symlink", target: e.symlinkTarget, dest: e.path } : { op: "ro-bind", src: e.path, dest: e.path },
  );
}

function privateDirs(f: MountFacts): MountOp[] {
  return [
    { op: "proc", dest: "/proc" },
    // bwrap re-mounts these read-only only when it finds them writable at set-up, and its check
    // fails on /proc/sys; for a cloister of root, whose uid owns them, they would stay writable
    // (host sysctls, core_pattern, sysrq). Bind them read-only explicitly.
    ...f.procReadOnly.map((dest): MountOp => ({ op: "ro-bind", src: dest, dest })),
    ...f.procHidden.map((dest): MountOp => ({ op: "ro-bind", src: "/dev/null", dest })),
    { op: "dev", dest: "/dev" },
    { op: "tmpfs", dest: "/dev/shm", sizeBytes: f.tmpfsBytes },
    { op: "tmpfs", dest: "/tmp", sizeBytes: f.tmpfsBytes, mode: 0o1777 },
    { op: "tmpfs", dest: "/var/tmp", sizeBytes: f.tmpfsBytes, mode: 0o1777 },
    { op: "tmpfs", dest: "/run", sizeBytes: RUN_TMPFS_BYTES, mode: 0o755 },
    { op: "symlink", target: "/run", dest: "/var/run" },
    // bwrap's /proc already has /proc/sys read-only; /sys is bound read-only by systemView.
  ];
}

function hideSecrets(f: MountFacts): MountOp[] {
  return [
    ...f.hiddenDirs.map((dest): MountOp => ({ op: "tmpfs", dest, sizeBytes: 4096, mode: 0o755 })),
    ...f.hiddenFiles.map((dest): MountOp => ({ op: "ro-bind", src: "/dev/null", dest })),
  ];
}

/**
 * The project read-write at /work, then its protected paths read-only on top. Ancestors of protected
 * paths are bound onto themselves first: a mount point cannot be renamed or removed, so the agent
 * cannot move `.claude` away and put a fresh `.claude/settings.json` in its place.
 */
function projectView(f: MountFacts): MountOp[] {
  // bwrap resolves bind sources on the host, destinations inside the new root.
  const onHost = (rel: string) => `${f.projectRoot}/${rel}`;
  const inWork = (rel: string) => `${WORK_DIR}/${rel}`;
  const byDepth = (a: string, b: string) => a.split("/").length - b.split("/").length;
  return [
    { op: "bind", src: f.projectRoot, dest: WORK_DIR },
    ...[...f.pinnedAncestors].sort(byDepth).map((rel): MountOp => ({ op: "bind", src: onHost(rel), dest: inWork(rel) })),
    ...[...f.protectedPaths].sort(byDepth).map((rel): MountOp => ({ op: "ro-bind", src: onHost(rel), dest: inWork(rel) })),
  ];
}

/**
 * The agent's install at the path it has on the host (its scripts and links name their files by
 * absolute path), after HOME: an install under the host HOME lands on the private HOME's path.
 */
function agentView(f: MountFacts): MountOp[] {
  const byDepth = (a: string, b: string) => a.split("/").length - b.split("/").length;
  return [...f.agentMounts].sort(byDepth).map((path): MountOp => ({ op: "ro-bind", src: path, dest: path }));
}

function plumbing(f: MountFacts): MountOp[] {
  const ops: MountOp[] = [{ op: "ro-bind", src: f.initBinary, dest: INIT_PATH }];
  if (f.guardianSocketDir) ops.push({ op: "ro-bind", src: f.guardianSocketDir, dest: GUARDIAN_SOCKET_DIR });
  if (f.guardianSocketDir && f.hostexecBinary) ops.push({ op: "ro-bind", src: f.hostexecBinary, dest: HOSTEXEC_PATH });
  if (f.guardianSocketDir && f.trustBundle) {
    // Tools that ignore SSL_CERT_FILE and its kin read the system bundle: it says the same inside.
    ops.push({ op: "ro-bind", src: f.trustBundle, dest: TRUST_BUNDLE_PATH });
    for (const dest of f.systemTrustFiles ?? []) ops.push({ op: "ro-bind", src: f.trustBundle, dest });
    if (f.nodeTrustFile) ops.push({ op: "ro-bind", src: f.nodeTrustFile, dest: NODE_TRUST_PATH });
  }
  if (f.agentBinDir) ops.push({ op: "ro-bind", src: f.agentBinDir, dest: AGENT_BIN_PATH });
  return ops;
}
