import { homedir, userInfo } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { CloisterError } from "../errors.js";

/**
 * Where one Cloister instance keeps its files. Everything derives from XDG base directories, or from
 * CLOISTER_HOME when set: then config, state, data and runtime files all live under that one
 * directory, which makes it a separate instance with its own guardian (tests run several side by side).
 */
export interface CloisterPaths {
  /** ~/.config/cloister: config.yaml, projects/, decisions/ */
  configDir: string;
  /** ~/.local/state/cloister: cloister records, guardian log, audit log */
  stateDir: string;
  /** ~/.local/share/cloister: per-cloister HOME directories, worktrees */
  dataDir: string;
  /** $XDG_RUNTIME_DIR/cloister: sockets (guardian control, per-cloister init and proxy sockets) */
  runtimeDir: string;
  globalConfigFile: string;
  projectConfigDir: string;
  /** One JSON record per live cloister; the source of truth when the guardian restarts. */
  cloisterRecordDir: string;
  homesDir: string;
  guardianSocket: string;
  guardianPidFile: string;
  /** Written by a guardian once it serves: its pid, start time, build and socket (see ensureGuardian). */
  guardianInfoFile: string;
  guardianLog: string;
  /** Signed, hash-chained audit log (audit.jsonl, rotated audit.N.jsonl) and its signing key. */
  auditDir: string;
}

export function resolvePaths(env: NodeJS.ProcessEnv = process.env): CloisterPaths {
  const base = baseDirs(env);
  return {
    ...base,
    globalConfigFile: join(base.configDir, "config.yaml"),
    projectConfigDir: join(base.configDir, "projects"),
    cloisterRecordDir: join(base.stateDir, "cloisters"),
    homesDir: join(base.dataDir, "homes"),
    guardianSocket: join(base.runtimeDir, "guardian.sock"),
    guardianPidFile: join(base.runtimeDir, "guardian.pid"),
    guardianInfoFile: join(base.runtimeDir, "guardian.json"),
    guardianLog: join(base.stateDir, "guardian.log"),
    auditDir: join(base.stateDir, "audit"),
  };
}

/**
 * The environment under which resolvePaths gives `paths` again: `env` itself when it does, else `env`
 * with CLOISTER_HOME, or else the XDG variables, set to match. The guardian resolves its paths from
 * its environment, and the library may be handed paths (options.paths) that the calling process's
 * environment does not name.
 */
export function instanceEnv(paths: CloisterPaths, env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const { CLOISTER_HOME: _ignored, ...rest } = env;
  const candidates: NodeJS.ProcessEnv[] = [
    env,
    { ...rest, CLOISTER_HOME: dirname(paths.configDir) },
    { ...rest, XDG_CONFIG_HOME: dirname(paths.configDir), XDG_STATE_HOME: dirname(paths.stateDir), XDG_DATA_HOME: dirname(paths.dataDir), XDG_RUNTIME_DIR: dirname(paths.runtimeDir) },
  ];
  const match = candidates.find((candidate) => isDeepStrictEqual(pathsOrUndefined(candidate), paths));
  if (!match) throw new CloisterError(`no environment gives these cloister paths (config in ${paths.configDir})`, "build them with resolvePaths({ CLOISTER_HOME: DIR }) or resolvePaths(env)");
  return match;
}

/** The paths `env` gives, or undefined when it gives none (a relative CLOISTER_HOME): it then gives no paths asked for. */
function pathsOrUndefined(env: NodeJS.ProcessEnv): CloisterPaths | undefined {
  try {
    return resolvePaths(env);
  } catch {
    return undefined;
  }
}

/**
 * The deepest unix socket cloister makes under the runtime dir: a cloister's proxy hand-over socket
 * (guardian/proxy/endpoint.ts; its id is 8 hex digits). The kernel takes socket paths of at most 107
 * bytes (sun_path), and past that every launch failed deep inside with raw errors.
 */
const DEEPEST_SOCKET = join("c", "01234567", "guardian", "handover.sock");
const MAX_SOCKET_PATH = 107;

/** Refuses an instance whose runtime dir leaves no room for the sockets cloister puts in it. */
export function checkSocketRoom(paths: CloisterPaths): void {
  const deepest = join(paths.runtimeDir, DEEPEST_SOCKET);
  const over = Buffer.byteLength(deepest) - MAX_SOCKET_PATH;
  if (over > 0) {
    throw new CloisterError(
      `the runtime directory ${paths.runtimeDir} is ${over} bytes too long for the unix sockets cloister makes in it (at most ${MAX_SOCKET_PATH} bytes each)`,
      "use a shorter CLOISTER_HOME (or XDG_RUNTIME_DIR)",
    );
  }
}

/** Per-cloister runtime directory: its init socket and its guardian (proxy) socket directory. */
export function cloisterRuntimeDir(paths: CloisterPaths, name: string): string {
  return join(paths.runtimeDir, "c", name);
}

function baseDirs(env: NodeJS.ProcessEnv): Pick<CloisterPaths, "configDir" | "stateDir" | "dataDir" | "runtimeDir"> {
  const instanceHome = absoluteInstanceHome(env.CLOISTER_HOME);
  if (instanceHome) {
    return {
      configDir: join(instanceHome, "config"),
      stateDir: join(instanceHome, "state"),
      dataDir: join(instanceHome, "data"),
      runtimeDir: join(instanceHome, "run"),
    };
  }
  const home = env.HOME || homedir();
  return {
    configDir: join(xdgDir(env.XDG_CONFIG_HOME) ?? join(home, ".config"), "cloister"),
    stateDir: join(xdgDir(env.XDG_STATE_HOME) ?? join(home, ".local", "state"), "cloister"),
    dataDir: join(xdgDir(env.XDG_DATA_HOME) ?? join(home, ".local", "share"), "cloister"),
    runtimeDir: join(xdgDir(env.XDG_RUNTIME_DIR) ?? fallbackRuntimeBase(), "cloister"),
  };
}

/**
 * CLOISTER_HOME, refused when relative: it then named another instance from each directory (QA), and
 * one inside the project escaped the check that keeps cloister's own files out of a cloister. Every
 * entry point (CLI, library, guardian) resolves its paths here, so each refuses it alike.
 */
function absoluteInstanceHome(value: string | undefined): string | undefined {
  if (!value) return undefined;
  if (!isAbsolute(value)) {
    throw new CloisterError(`CLOISTER_HOME=${JSON.stringify(value)} is a relative path, which would name another instance in each directory`, `give an absolute path, e.g. CLOISTER_HOME=${resolve(value)}`);
  }
  return resolve(value);
}

/** An XDG base directory variable's value; a relative one is invalid and ignored, as the XDG spec says. */
function xdgDir(value: string | undefined): string | undefined {
  return value && isAbsolute(value) ? value : undefined;
}

/**
 * Without XDG_RUNTIME_DIR (root shells, CI, cron), fall back to a per-user directory in /tmp. It is
 * created 0700 and checked for ownership before use, because /tmp is shared.
 */
function fallbackRuntimeBase(): string {
  return join("/tmp", `cloister-${userInfo().uid}`);
}
