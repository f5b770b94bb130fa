import { existsSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { CloisterPaths } from "../config/paths.js";
import { ensurePrivateDir, replaceFileSync } from "../config/atomic-write.js";
import { CloisterError } from "../errors.js";
import { foreignInstanceError, isPermissionDenied } from "../config/foreign-instance.js";

/**
 * What is known about one cloister, kept as a JSON file in the state dir. The guardian reads these
 * when it (re)starts, so a guardian crash or restart loses no cloister, and `stop` can always find
 * every process to kill.
 */
export interface CloisterRecord {
  name: string;
  /** Short random id: names the runtime dir and cgroups (names can be long, socket paths cannot). */
  id: string;
  project: string;
  projectRoot: string;
  persistent: boolean;
  network: boolean;
  createdAt: string;
  /** Host pid of the keeper and its start time (from /proc/PID/stat), to tell it from a reused pid. */
  keeperPid?: number;
  keeperStartTime?: string;
  /**
   * The process launching the cloister, and its start time. Until the keeper runs, the record lists
   * what the launch creates before it creates it: one whose launcher is gone was killed midway.
   */
  launcherPid?: number;
  launcherStartTime?: string;
  /**
   * The keeper from its spawn until it has started bwrap (then `keeperPid`). A launch killed in
   * between leaves it running where nothing else would end it (`start`'s keeper outlives its
   * launcher, and without cgroups no sweep finds it): the guardian's cleanup kills it.
   */
  spawnedKeeperPid?: number;
  spawnedKeeperStartTime?: string;
  initSocket: string;
  runtimeDir: string;
  homeDir: string;
  /** HOME is removed with the cloister (fresh HOME for `run`). */
  ephemeralHome: boolean;
  cgroupDirs: string[];
  placeholders: string[];
  /**
   * Protected paths that are files, on the host: a read-only bind over a file is lifted inside the
   * cloister when the host replaces the file by rename (`git config` does), so the guardian watches them.
   */
  protectedFiles?: string[];
  limitMechanism: string;
  /** Password of this cloister's proxy URL (never shown by `list`). */
  proxyToken?: string;
  /** The guardian's trust bundle mounted at TRUST_BUNDLE_PATH (absent: none, e.g. --no-network). */
  trustBundle?: string;
  /** Host path of the file mounted at NODE_TRUST_PATH (absent in cloisters started before it existed: node then reads the bundle). */
  nodeTrustFile?: string;
  /** Egress rules and name overrides for this cloister alone (`--allow`, `--resolve`, ...). */
  session?: SessionRules;
  /**
   * The environment the cloister was started with (`--env`, and `--secret`'s placeholders, never a
   * secret's value): the cloister's own, so every later command in it (`exec`, `start` again) gets
   * it too, under what that command sets itself, as `docker exec` does with `docker run -e`. The
   * values are what the user typed, so the record stays private (0600), as for the proxy token.
   */
  env?: Record<string, string>;
}

/**
 * Rules given on the command line for one cloister. Kept in its record so a restarted guardian
 * applies the same rules; they end with the cloister.
 */
export interface SessionRules {
  allow: string[];
  deny: string[];
  /** Allow rules that may reach loopback/private addresses (`--allow-private`). */
  allowPrivate: string[];
  /** Host name → IP (`--resolve NAME=IP`), on top of config `proxy.resolve`. */
  resolve: Record<string, string>;
}

function recordFile(paths: CloisterPaths, name: string): string {
  return join(paths.cloisterRecordDir, `${name}.json`);
}

export function writeRecord(paths: CloisterPaths, record: CloisterRecord): void {
  ensurePrivateDir(paths.cloisterRecordDir);
  // Not fsynced: records describe processes, which do not survive a machine crash either.
  replaceFileSync(recordFile(paths, record.name), `${JSON.stringify(record, null, 2)}\n`);
}

/** The error for a name no record is kept under (the CLI's and the guardian's alike). */
export function noSuchCloister(name: string): CloisterError {
  return new CloisterError(`no cloister named ${JSON.stringify(name)}`, "see `cloister list`");
}

export function readRecord(paths: CloisterPaths, name: string): CloisterRecord | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(recordFile(paths, name), "utf8"));
  } catch (error) {
    refuseForeignInstance(error, paths);
    return undefined;
  }
  return isRecordOf(parsed, name) ? parsed : undefined;
}

/**
 * The fields every reader relies on, of the right types, under its own file's name. One record with
 * a number for a name broke `list` for every cloister ("text3 is not iterable") and made
 * `stop --all` fail (found by QA); such a file counts as no record, like a torn one.
 */
function isRecordOf(value: unknown, name: string): value is CloisterRecord {
  if (typeof value !== "object" || value === null) return false;
  const record = value as Record<string, unknown>;
  const strings = ["name", "id", "project", "projectRoot", "initSocket", "runtimeDir", "homeDir", "createdAt"].every((key) => typeof record[key] === "string");
  const lists = ["cgroupDirs", "placeholders"].every((key) => Array.isArray(record[key]) && (record[key] as unknown[]).every((item) => typeof item === "string"));
  const pids = ["keeperPid", "launcherPid", "spawnedKeeperPid"].every((key) => record[key] === undefined || typeof record[key] === "number");
  return strings && lists && pids && record.name === name;
}

/**
 * A cloister as listings show it (`cloister list`, the guardian's, the library's): its record without
 * the proxy token (the password of its proxy URL) nor the values of the environment it was started
 * with (one may be a key), and whether it runs.
 */
export type CloisterListing = Omit<CloisterRecord, "proxyToken" | "env"> & { running: boolean };

export function cloisterListing(record: CloisterRecord): CloisterListing {
  const { proxyToken: _token, env: _env, ...shown } = record;
  return { ...shown, running: isKeeperAlive(record) };
}

export function listRecords(paths: CloisterPaths): CloisterRecord[] {
  return readRecords(paths).records;
}

/**
 * Every record file, each read once: the records, and the names of the files there that read as no
 * record (torn, empty, corrupted: see setRecordAside).
 */
export function readRecords(paths: CloisterPaths): { records: CloisterRecord[]; unreadable: string[] } {
  const records: CloisterRecord[] = [];
  const unreadable: string[] = [];
  for (const name of recordNames(paths)) {
    const record = readRecord(paths, name);
    if (record) records.push(record);
    else if (existsSync(recordFile(paths, name))) unreadable.push(name);
  }
  return { records, unreadable };
}

/** The names of the record files there are, readable or not. */
function recordNames(paths: CloisterPaths): string[] {
  try {
    return readdirSync(paths.cloisterRecordDir)
      .filter((f) => f.endsWith(".json"))
      .map((f) => f.slice(0, -".json".length));
  } catch (error) {
    refuseForeignInstance(error, paths);
    return [];
  }
}

/** Renames an unreadable record to NAME.json.unreadable, kept for a look but no longer a record; returns its old path. */
export function setRecordAside(paths: CloisterPaths, name: string): string {
  const file = recordFile(paths, name);
  renameSync(file, `${file}.unreadable`);
  return file;
}

/**
 * Records that cannot be read for lack of permission belong to another user's instance (a
 * CLOISTER_HOME shared by mistake): saying "no cloisters" there would be wrong, so it is said so.
 * Anything else unreadable (missing, torn) counts as no record.
 */
function refuseForeignInstance(error: unknown, paths: CloisterPaths): void {
  if (isPermissionDenied(error)) throw foreignInstanceError("read the cloisters of the instance", paths.stateDir);
}

export function deleteRecord(paths: CloisterPaths, name: string): void {
  rmSync(recordFile(paths, name), { force: true });
}

/** Field 22 of /proc/PID/stat: the process start time in clock ticks since boot. */
export function processStartTime(pid: number): string | undefined {
  return processStat(pid)?.startTime;
}

/** The process `pid` is the one that started at `startTime`, and has not died (a zombie has). */
export function isRunningProcess(pid: number, startTime: string | undefined): boolean {
  const stat = processStat(pid);
  return stat !== undefined && stat.startTime === startTime && stat.state !== "Z" && stat.state !== "X";
}

/** The process is stopped (SIGSTOP, or held by a debugger): alive, but it runs nothing until continued. */
export function isStoppedProcess(pid: number): boolean {
  const state = processStat(pid)?.state;
  return state === "T" || state === "t";
}

function processStat(pid: number): { state: string; startTime: string | undefined } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may contain spaces and parentheses: split after its closing paren.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { state: fields[0] ?? "", startTime: fields[19] };
  } catch {
    return undefined;
  }
}

/** The keeper of this record is still the process we started (not a dead one, not a reused pid). */
export function isKeeperAlive(record: CloisterRecord): boolean {
  return record.keeperPid !== undefined && isRunningProcess(record.keeperPid, record.keeperStartTime);
}

/** The process that launched the record's cloister still runs (a record of an older build does not say). */
export function isLauncherAlive(record: CloisterRecord): boolean {
  return record.launcherPid !== undefined && isRunningProcess(record.launcherPid, record.launcherStartTime);
}

/** The record's cloister runs, or a live launcher is still launching it: its name is taken. */
export function holdsName(record: CloisterRecord): boolean {
  return record.keeperPid !== undefined ? isKeeperAlive(record) : isLauncherAlive(record);
}

/** A launch that never got its keeper running and whose launcher is gone (killed outright): nothing will finish it. */
export function isLaunchOrphaned(record: CloisterRecord): boolean {
  return record.keeperPid === undefined && record.launcherPid !== undefined && !isLauncherAlive(record);
}
