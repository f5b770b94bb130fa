import { type Dirent, existsSync, lstatSync, readdirSync, readlinkSync, realpathSync } from "node:fs";
import { dirname, join } from "node:path";
import type { SystemEntry } from "./mounts.js";

/** Host directories a workload needs, read-only: programs, libraries, configuration, kernel views. */
const SYSTEM_PATHS = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/sys", "/nix"];

/** Secrets that a needed mount (/etc) still carries. Files are covered by /dev/null, directories by an empty tmpfs. */
const ALWAYS_HIDDEN_FILES = ["/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers", "/etc/security/opasswd", "/etc/krb5.keytab"];
const ALWAYS_HIDDEN_DIRS = ["/etc/sudoers.d", "/etc/ssl/private"];
/** Kernel debug and firmware views: unreadable for ordinary users already, readable for uid 0 without capabilities. */
const ROOT_HIDDEN_DIRS = ["/sys/kernel/debug", "/sys/kernel/tracing", "/sys/firmware", "/sys/kernel/security"];

const PROC_READ_ONLY = ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"];
/**
 * /proc files a fresh /proc still shows of the host, covered by /dev/null: the descriptions of the
 * user's kernel keys (keys follow the uid, not the namespace: found by red team), and the host's
 * timers and scheduler state, which name its processes.
 */
const PROC_HIDDEN = ["/proc/keys", "/proc/key-users", "/proc/timer_list", "/proc/sched_debug"];

/** The /proc knobs to bind read-only (not every kernel has all of them). */
export function procReadOnly(): string[] {
  return PROC_READ_ONLY.filter((p) => existsSync(p));
}

/** The /proc files to cover (those this kernel has). */
export function procHidden(): string[] {
  return PROC_HIDDEN.filter((p) => existsSync(p));
}

export function systemEntries(): SystemEntry[] {
  const entries: SystemEntry[] = [];
  for (const path of SYSTEM_PATHS) {
    try {
      const st = lstatSync(path);
      entries.push(st.isSymbolicLink() ? { path, symlinkTarget: readlinkSync(path) } : { path });
    } catch {
      // Not on this host (e.g. /libx32, /nix).
    }
  }
  return entries;
}

export interface HiddenPaths {
  files: string[];
  dirs: string[];
}

/**
 * What to cover inside the read-only system view. The cloister keeps the host uid, so for root the
 * usual protection of root-only files (file mode) does not apply: every /etc file that is not
 * world-readable is covered too, found by a scan rather than a list that would go stale.
 */
export function hiddenPaths(uid: number): HiddenPaths {
  const hidden: HiddenPaths = {
    files: ALWAYS_HIDDEN_FILES.filter((p) => existsSync(p)),
    dirs: [...ALWAYS_HIDDEN_DIRS.filter((p) => existsSync(p)), ...hostNetworkSysfs()],
  };
  if (uid === 0) {
    const scanned = notWorldReadable("/etc", hidden.dirs);
    hidden.files = [...new Set([...hidden.files, ...scanned.files])];
    hidden.dirs.push(...scanned.dirs, ...ROOT_HIDDEN_DIRS.filter((p) => existsSync(p)));
  }
  return hidden;
}

/**
 * Where sysfs shows the host's network interfaces (names, MAC addresses, live traffic counters): a
 * cloister has its own network namespace, but /sys is the host's. /sys/class/net links each device
 * into its bus directory (…/devices/pci…/net/eth0); each such `net` directory is covered too.
 */
function hostNetworkSysfs(): string[] {
  const classDir = "/sys/class/net";
  let devices: string[];
  try {
    devices = readdirSync(classDir);
  } catch {
    return [];
  }
  const dirs = new Set([classDir]);
  for (const device of devices) {
    try {
      dirs.add(dirname(realpathSync(join(classDir, device))));
    } catch {
      // The interface went away while we looked.
    }
  }
  return [...dirs];
}

function notWorldReadable(dir: string, skipDirs: readonly string[]): HiddenPaths {
  const found: HiddenPaths = { files: [], dirs: [] };
  // Runs for every launch as root: directory entries say which are symlinks (skipped) without a
  // stat each, which makes the scan about a third faster. Paths are joined by hand (`dir` and each
  // directory below it are normalized already, an entry name has no slash) and a vanished entry is
  // no exception: path.join's normalizing and the throws cost ~15% more (2.8-3.0 vs 3.3-3.5 ms).
  const walk = (current: string): void => {
    let entries: Dirent[];
    try {
      entries = readdirSync(current, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (entry.isSymbolicLink()) continue;
      const full = `${current}/${entry.name}`;
      if (skipDirs.includes(full)) continue;
      let st;
      try {
        st = lstatSync(full, { throwIfNoEntry: false });
      } catch {
        continue;
      }
      if (!st) continue;
      if (st.isDirectory()) {
        // A directory closed to others hides all it holds: cover it whole.
        if ((st.mode & 0o005) !== 0o005) found.dirs.push(full);
        else walk(full);
      } else if ((st.mode & 0o004) === 0) {
        found.files.push(full);
      }
    }
  };
  walk(dir);
  return found;
}
