import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { cloisterRuntimeDir, type CloisterPaths } from "../config/paths.js";
import { cgroupDirsOfProcess, detectLimitMechanism, plannedCgroupDirs } from "./limits.js";
import { processStartTime, readRecords, setRecordAside, type CloisterRecord } from "./records.js";
import { withRecordsLock } from "./records-lock.js";

/**
 * Cloisters that no readable record names. A torn, empty or corrupted record counts as none (see
 * isRecordOf), so `list` and `stop` no longer see its cloister, while its keeper and bwrap run on
 * (QA F7). What is left to find it by is its runtime dir, run/c/<id>, named by its id.
 */

/** The cloisters' runtime dirs (by id) and their records, read in that order: see unrecordedIds. */
export interface CloisterSnapshot {
  runtimeIds: string[];
  records: CloisterRecord[];
  /** Record files there that read as no record. */
  unreadable: string[];
}

/** Lists the runtime dirs, then reads every record once: one pass serves the guardian's whole reconcile. */
export function snapshotCloisters(paths: CloisterPaths): CloisterSnapshot {
  let runtimeIds: string[];
  try {
    runtimeIds = readdirSync(join(paths.runtimeDir, "c")).filter((entry) => /^[0-9a-f]{8}$/.test(entry));
  } catch {
    runtimeIds = [];
  }
  return { runtimeIds, ...readRecords(paths) };
}

/**
 * Ids of runtime dirs that no readable record names. The dirs are listed before the records: a
 * launch writes its record before it makes its runtime dir, and a stop removes the dir before the
 * record, so a dir that was there before the records were read and that none of them names has lost
 * its record. (The guardian makes the runtime dir of a grant too: its caller skips those.)
 */
export function unrecordedIds(snapshot: CloisterSnapshot): string[] {
  const recorded = new Set(snapshot.records.map((record) => record.id));
  return snapshot.runtimeIds.filter((id) => !recorded.has(id));
}

/** Nothing was added to or removed from the cloister's runtime dir for `ms` (a launch makes its entries within a second). */
export function runtimeDirUnchangedFor(paths: CloisterPaths, id: string, ms: number): boolean {
  try {
    return Date.now() - statSync(cloisterRuntimeDir(paths, id)).mtimeMs > ms;
  } catch {
    return false;
  }
}

/**
 * A record for the cloister of runtime dir `id`, made up from what can be found, for
 * destroyCloister: its keeper, its cgroups (the guardian's planned ones, and those its keeper is
 * in), its runtime dir and, for a `run`, its HOME (a persistent HOME is kept, as by any stop). The
 * name is the one the guardian knew it by, else `#ID`, which no record can bear, so that nothing
 * done by name (ending its egress, its record) reaches another cloister. Its placeholders in the
 * project are not known: they stay.
 */
export function orphanRecord(paths: CloisterPaths, id: string, known: { name: string; project: string } | undefined): CloisterRecord {
  const runtimeDir = cloisterRuntimeDir(paths, id);
  const initSocket = join(runtimeDir, "init.sock");
  const keeperPid = keeperListeningOn(initSocket);
  const keeperCgroups = keeperPid === undefined ? [] : cgroupDirsOfProcess(keeperPid, id);
  return {
    name: known?.name ?? `#${id}`,
    id,
    project: known?.project ?? "",
    projectRoot: "",
    persistent: false,
    network: false,
    createdAt: "",
    keeperPid,
    keeperStartTime: keeperPid === undefined ? undefined : processStartTime(keeperPid),
    initSocket,
    runtimeDir,
    homeDir: join(paths.homesDir, `.run-${id}`),
    ephemeralHome: true,
    cgroupDirs: [...new Set([...plannedCgroupDirs(detectLimitMechanism(), id), ...keeperCgroups])],
    placeholders: [],
    limitMechanism: "unknown",
  };
}

/**
 * The keeper whose init socket is `initSocket`: a process of this user started as
 * `cloister-init keep ... --listen SOCKET`. Matched by its command line, which every keeper ever
 * started has (a pid file the keeper wrote would take a native change, and keepers of older builds
 * would have none), rather than by who holds the listening socket, which needs every process's fds
 * walked. This is cleanup, not a security check: a process that forges that command line (one
 * in a cloister can) gets itself killed, nothing more.
 */
function keeperListeningOn(initSocket: string): number | undefined {
  const uid = process.getuid?.();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (statSync(`/proc/${entry}`).uid !== uid) continue;
      const argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (argv[1] === "keep" && argv[argv.indexOf("--listen") + 1] === initSocket) return Number(entry);
    } catch {
      // Gone meanwhile.
    }
  }
  return undefined;
}

/**
 * Renames every unreadable record aside (NAME.json.unreadable) and returns their paths. Under the
 * records lock, so a launch claiming the name meanwhile (which writes over an unreadable record)
 * keeps its own; its caller first makes sure that no unrecorded runtime dir is left, of which one
 * of these may be the only record.
 */
export async function setAsideUnreadableRecords(paths: CloisterPaths): Promise<string[]> {
  return withRecordsLock(paths, () => readRecords(paths).unreadable.map((name) => setRecordAside(paths, name)));
}
