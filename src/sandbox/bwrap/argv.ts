import type { MountOp } from "./mounts.js";
import { WORK_DIR } from "./mounts.js";

export interface BwrapPlan {
  hostname: string;
  uid: number;
  gid: number;
  mounts: MountOp[];
  /** fd (in bwrap's process) from which bwrap reads the seccomp program. */
  seccompFd: number;
  /** True when bwrap itself runs as root: capabilities must then be dropped explicitly. */
  runningAsRoot: boolean;
  /** PID 1 of the cloister and its arguments. */
  command: string[];
}

/**
 * bubblewrap's command line for one cloister. Every namespace is new; the network namespace has
 * only loopback. The cloister's init becomes PID 1 (`--as-pid-1`) so that no process inside runs
 * without the seccomp filter, and further user namespaces are disabled, since a nested user
 * namespace could detach the read-only binds.
 */
export function bwrapArgv(plan: BwrapPlan): string[] {
  return [
    "--unshare-user",
    "--unshare-pid",
    "--unshare-net",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup",
    "--disable-userns",
    "--assert-userns-disabled",
    "--uid", String(plan.uid),
    "--gid", String(plan.gid),
    "--hostname", plan.hostname,
    "--die-with-parent",
    "--new-session",
    "--as-pid-1",
    ...(plan.runningAsRoot ? ["--cap-drop", "ALL"] : []),
    "--clearenv",
    "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
    ...plan.mounts.flatMap(mountArgs),
    "--chdir", WORK_DIR,
    "--seccomp", String(plan.seccompFd),
    "--",
    ...plan.command,
  ];
}

function mountArgs(m: MountOp): string[] {
  switch (m.op) {
    case "ro-bind":
    case "bind":
      return [`--${m.op}`, m.src, m.dest];
    case "symlink":
      return ["--symlink", m.target, m.dest];
    case "tmpfs":
      return [...(m.mode === undefined ? [] : ["--perms", m.mode.toString(8)]), "--size", String(m.sizeBytes), "--tmpfs", m.dest];
    case "proc":
      return ["--proc", m.dest];
    case "dev":
      return ["--dev", m.dest];
  }
}
