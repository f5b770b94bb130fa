/**
 * Host directories a cloister must never be given, whatever a config entry or the project's location
 * asks for: the host's HOME as a whole, the places secrets are kept, cloister's own files (the vault
 * key, the guardian's control socket, other cloisters' homes) and the directories of host sockets.
 * A read-only mount does not help with any of them: secrets are read, and a unix socket in a
 * read-only directory still answers connect().
 *
 * The project (mounted at /work), project `refs:` and `sandbox.mounts` all pass this check with the
 * real path they would mount, so a symlink or a dotfiles repository in HOME cannot widen the view.
 */
import { homedir } from "node:os";
import { isAbsolute, join } from "node:path";
import { resolvePaths, type CloisterPaths } from "../config/paths.js";
import { isUnder } from "../path-under.js";
import { realPath } from "./git-dirs.js";

/**
 * Relative to HOME: where host tools keep keys and tokens (SECURITY.md's list, with a few more of
 * the same kind). Also used to refuse agents' `config_dirs` that would copy them.
 */
export const HOME_SECRET_STORES: readonly string[] = [
  ".ssh",
  ".gnupg",
  ".aws",
  ".azure",
  ".kube",
  ".docker",
  ".config/gh",
  ".config/gcloud",
  ".netrc",
  ".git-credentials",
  ".npmrc",
  ".pypirc",
  ".password-store",
  ".local/share/keyrings",
];

/** Host socket directories (docker, D-Bus, systemd, the user's runtime dir). /tmp is refused only as a whole (X11, ssh-agent). */
const SOCKET_DIRS = ["/run"];
/**
 * The kernel's views of the host: every process's argv and layout (/proc), devices and firmware
 * (/sys, /dev). A cloister gets its own /proc and a minimal /dev; these would show the host's.
 */
const KERNEL_VIEWS = ["/proc", "/sys", "/dev"];
const SHARED_TMP = "/tmp";

/** Real paths of what exposureProblem guards. */
export interface GuardedPaths {
  home: string;
  /** configDir, stateDir, dataDir and runtimeDir of this cloister instance. */
  cloisterDirs: string[];
  /** Inside the data dir, but made to be a cloister's project: `cloister start -b` worktrees. */
  worktreesDir: string;
}

export function guardedPaths(paths: CloisterPaths, home = homedir()): GuardedPaths {
  return {
    home: realOrSame(home),
    cloisterDirs: [paths.configDir, paths.stateDir, paths.dataDir, paths.runtimeDir].map(realOrSame),
    worktreesDir: realOrSame(join(paths.dataDir, "worktrees")),
  };
}

/** Why the real path `hostPath` must not be mounted into a cloister, or undefined when it may. */
export function exposureProblem(hostPath: string, guarded: GuardedPaths): string | undefined {
  if (hostPath === "/") return "it is the root of the host's filesystem";
  if (isUnder(guarded.home, hostPath)) return `it ${hostPath === guarded.home ? "is" : "contains"} your home directory (${guarded.home})`;
  for (const dir of guarded.cloisterDirs) {
    const inWorktree = isUnder(hostPath, guarded.worktreesDir);
    if (isUnder(dir, hostPath) || (isUnder(hostPath, dir) && !inWorktree)) {
      return `it overlaps cloister's own files in ${dir} (the vault key, the guardian's sockets, cloisters' homes)`;
    }
  }
  for (const store of HOME_SECRET_STORES.map((rel) => join(guarded.home, rel))) {
    if (isUnder(store, hostPath) || isUnder(hostPath, store)) return `it overlaps ${store}, where secrets are kept`;
  }
  for (const dir of SOCKET_DIRS) {
    if (isUnder(hostPath, dir)) return `it is in ${dir}, which holds the host's sockets`;
  }
  for (const dir of KERNEL_VIEWS) {
    if (isUnder(hostPath, dir)) return `it is in ${dir}, the kernel's view of the host (its processes, devices and firmware)`;
  }
  if (isUnder(SHARED_TMP, hostPath)) return `it contains ${SHARED_TMP}, where other programs keep their sockets (X11, ssh-agent)`;
  return undefined;
}

/** A running cloister, as the launch check below needs it. */
export interface RunningProject {
  name: string;
  /** Real path of its project directory, mounted read-write in it. */
  projectRoot: string;
}

/**
 * The running cloister of another project whose project holds `hostPath` (a real path), if any. An
 * agent there can rename any directory on the way to `hostPath` while a launch checks it and while
 * bwrap mounts it (swapping in a link to HOME, found by QA), and can rewrite whatever a new cloister
 * would protect: a project, ref or mount in there is refused until that cloister stops.
 */
export function writableByRunningCloister(hostPath: string, ownRoot: string, running: readonly RunningProject[]): RunningProject | undefined {
  return running.find((other) => other.projectRoot !== ownRoot && isUnder(hostPath, other.projectRoot));
}

/**
 * The first file or directory cloister covers in a cloister's view of the system (/etc/shadow, and
 * for root every file in /etc others may not read: see hiddenPaths) that the real path `hostPath`
 * is, holds or lies in: mounted elsewhere (a ref of /etc/ssh), it would show what the cover hides.
 */
export function coveredInside(hostPath: string, covered: readonly string[]): string | undefined {
  return covered.find((path) => isUnder(path, hostPath) || isUnder(hostPath, path));
}

/** For config entries: the same check on the path's real location when it exists, else on the path as written. */
export function configuredPathProblem(path: string, guarded: GuardedPaths = guardedPaths(resolvePaths())): string | undefined {
  if (!isAbsolute(path)) return undefined; // refused as such by the schema
  const problem = exposureProblem(realOrSame(path), guarded);
  return problem === undefined ? undefined : `a cloister must not see ${path}: ${problem}`;
}

/** The real path where there is one, else the path as given (a config entry may name what is not there yet). */
function realOrSame(path: string): string {
  return realPath(path) ?? path;
}
