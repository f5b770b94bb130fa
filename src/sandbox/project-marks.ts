/**
 * Which cloisters of a project run, whatever instance (CLOISTER_HOME) or user started them. Each
 * instance's records say which of its own cloisters need a placeholder, but a placeholder removed
 * from the host while another instance's cloister has it mounted lifts that mount in the other
 * cloister's namespace (the kernel detaches mounts of an unlinked directory entry): a `.vscode/`
 * that cloister could then write. So before an instance removes placeholders it looks for the marks
 * of other instances' cloisters of the project, and leaves them while any is there.
 *
 * A mark is an abstract unix socket name, held by a cloister's keeper for its whole life (and by its
 * launcher until the keeper holds its own): the kernel frees it however its holder ends, so no mark
 * outlives its cloister, and /proc/net/unix lists every bound name of the host's network namespace,
 * whoever bound it. Another user can bind a name with a project's prefix; all that does is keep
 * placeholders in place, which a mark is for.
 */
import { readFileSync, statSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { gitDirsOf } from "./git-dirs.js";

/**
 * What identifies a project across instances: the identity (device and inode, the same under any
 * path) of the directory whose placeholders its cloisters share, the repository's common git dir
 * (its worktrees' cloisters share that one's) or, without git, the project directory.
 */
export function projectKey(projectRoot: string): string {
  const commonDir = gitDirsOf(projectRoot)?.commonDir;
  // A worktree whose repository is gone keys by itself: its launch fails on that with words of its own.
  const { dev, ino } = (commonDir !== undefined ? statSync(commonDir, { throwIfNoEntry: false }) : undefined) ?? statSync(projectRoot);
  return `${dev}-${ino}`;
}

/** The keeper's mark of cloister `id` of the project `key`; its launcher holds the same with LAUNCHER_SUFFIX until then. */
export function markName(key: string, id: string): string {
  return `${markPrefix(key)}${id}`;
}

function markPrefix(key: string): string {
  return `cloister-project-${key}-`;
}

const LAUNCHER_SUFFIX = "-launch";

/** Holds the launcher's mark of cloister `id` until the returned server is closed. */
export function holdLauncherMark(key: string, id: string): Promise<Server> {
  const server = createServer();
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(`\0${markName(key, id)}${LAUNCHER_SUFFIX}`, () => {
      server.unref();
      resolve(server);
    });
  });
}

/** The ids of the project's cloisters whose marks are held now (launchers' and keepers' alike). */
export function markedCloisters(key: string): Set<string> {
  const ids = new Set<string>();
  const wanted = `@${markPrefix(key)}`;
  // "Num RefCount Protocol Flags Type St Inode Path"; an abstract name shows as "@name", each NUL
  // in it as "@" too: node binds the whole sun_path, so a launcher's mark ends in NULs.
  for (const line of readFileSync("/proc/net/unix", "utf8").split("\n")) {
    const path = line.slice(line.lastIndexOf(" ") + 1);
    if (!path.startsWith(wanted)) continue;
    const name = path.slice(wanted.length).replace(/@+$/, "");
    ids.add(name.endsWith(LAUNCHER_SUFFIX) ? name.slice(0, -LAUNCHER_SUFFIX.length) : name);
  }
  return ids;
}
