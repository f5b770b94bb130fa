/**
 * Runs the built CLI as another (non-root) user, for the escape cases that must also hold when
 * cloister is not root. The user must exist (CI: `useradd --create-home cloister-test`) and the
 * test must run as root (runuser). The CLI is copied to a world-readable directory, since the
 * checkout may sit under a directory the user cannot enter; the project, CLOISTER_HOME and fake
 * HOME are owned by the user. Returns a TestInstance, so the other helpers work unchanged.
 */
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, chownSync, cpSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { initGitProject, plantCanaries, REPO_ROOT, testConfig, type CliResult, type TestInstance } from "./cloister.js";

export const TEST_USER = "cloister-test";

export interface UserInfo {
  name: string;
  uid: number;
  gid: number;
  /** The user's home directory on the host (from the passwd database). */
  home: string;
}

/** The passwd entry of `name`, or undefined when there is no such user. */
export function lookupUser(name: string): UserInfo | undefined {
  const r = spawnSync("getent", ["passwd", name], { encoding: "utf8" });
  const fields = r.status === 0 ? r.stdout.trim().split(":") : [];
  if (fields.length < 7) return undefined;
  return { name, uid: Number(fields[2]), gid: Number(fields[3]), home: fields[5] ?? "" };
}

/**
 * Why tests as `name` cannot run here (a message for `skip`), or false when they can.
 */
export function asUserSkipReason(name = TEST_USER): string | false {
  if (process.getuid?.() !== 0) return `not running as root: cannot switch to user ${name} (runuser needs root)`;
  if (!lookupUser(name)) return `user ${name} does not exist: create it with \`useradd --create-home ${name}\` to run the non-root cases`;
  if (spawnSync("runuser", ["--help"]).status !== 0) return "runuser is not available";
  return false;
}

/** Copies what the built CLI needs at run time into `dest` (world-readable): the bundle carries its dependencies. */
export function copyCli(dest: string): string {
  mkdirSync(join(dest, "native"), { recursive: true });
  cpSync(join(REPO_ROOT, "dist", "bundle"), join(dest, "dist", "bundle"), { recursive: true });
  cpSync(join(REPO_ROOT, "native", "build"), join(dest, "native", "build"), { recursive: true });
  cpSync(join(REPO_ROOT, "package.json"), join(dest, "package.json"));
  makeWorldReadable(dest);
  return join(dest, "dist", "bundle", "main.cjs");
}

function makeWorldReadable(path: string): void {
  const st = lstatSync(path);
  if (st.isSymbolicLink()) return;
  if (st.isDirectory()) {
    chmodSync(path, 0o755);
    for (const name of readdirSync(path)) makeWorldReadable(join(path, name));
  } else {
    chmodSync(path, st.mode & 0o111 ? 0o755 : 0o644);
  }
}

export function chownTree(path: string, uid: number, gid: number): void {
  const st = lstatSync(path);
  chownSync(path, uid, gid);
  if (st.isDirectory() && !st.isSymbolicLink()) for (const name of readdirSync(path)) chownTree(join(path, name), uid, gid);
}

/** If this instance's guardian still runs after `guardian stop`, ends it by its pid (it would recreate the instance's files). */
function stopLeftoverGuardian(pidFile: string): void {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, "utf8").trim());
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 1) return;
  try {
    if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("guardian")) process.kill(pid, "SIGTERM");
  } catch {
    // Already gone.
  }
}

/** Runs `argv` as `user` with exactly `env`, in `cwd`; never throws on a non-zero exit. */
export function runAsUser(
  user: string,
  argv: string[],
  env: NodeJS.ProcessEnv,
  options: { cwd?: string; input?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  const assignments = Object.entries(env)
    .filter((e): e is [string, string] => e[1] !== undefined)
    .map(([k, v]) => `${k}=${v}`);
  return new Promise((resolve) => {
    const child = spawn("runuser", ["-u", user, "--", "env", "-i", ...assignments, ...argv], { cwd: options.cwd, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 60_000);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? 128 + (signal ? 9 : 0), stdout, stderr });
    });
    child.stdin.end(options.input ?? "");
  });
}

export interface UserInstance extends TestInstance {
  user: UserInfo;
  /** The copied CLI entry point. */
  cliPath: string;
}

/**
 * Like createInstance, for `userName`: an own CLI copy, CLOISTER_HOME, fake host HOME with
 * canaries and a git project, all owned by the user. Call only when asUserSkipReason() is false.
 */
export function createUserInstance(prefix = "cu", userName = TEST_USER): UserInstance {
  const user = lookupUser(userName);
  if (!user) throw new Error(`no user ${userName}`);
  // Short paths: unix socket paths are limited to 108 bytes.
  const base = mkdtempSync(join("/tmp", `${prefix}-`));
  chmodSync(base, 0o755);
  const cliPath = copyCli(join(base, "app"));
  const owned = join(base, "u");
  const home = join(owned, "h");
  const hostHome = join(owned, "home");
  const project = join(owned, "proj");
  mkdirSync(join(home, "config"), { recursive: true });
  writeFileSync(join(home, "config", "config.yaml"), testConfig());
  const canaries = plantCanaries(hostHome);
  mkdirSync(project, { recursive: true });
  chmodSync(owned, 0o755);
  chmodSync(hostHome, 0o700);
  chownTree(owned, user.uid, user.gid);

  const env: NodeJS.ProcessEnv = {
    PATH: "/usr/local/bin:/usr/bin:/bin",
    LANG: "C.UTF-8",
    TERM: "xterm",
    HOME: hostHome,
    USER: user.name,
    LOGNAME: user.name,
    CLOISTER_HOME: home,
    // The CLI's code cache (src/cli/code-cache.ts) lives with the instance, not in the fake HOME,
    // whose snapshot must show only what a cloister could have changed.
    XDG_CACHE_HOME: join(home, "cache"),
    GITHUB_TOKEN: canaries.envToken,
    ANTHROPIC_API_KEY: canaries.envToken,
    SSH_AUTH_SOCK: join(hostHome, "agent.sock"),
  };
  initGitProject(
    project,
    (args) => spawnSync("runuser", ["-u", user.name, "--", "env", `HOME=${hostHome}`, "git", "-C", project, ...args]),
    (file) => chownSync(file, user.uid, user.gid),
  );

  const cli: TestInstance["cli"] = (args, options = {}) =>
    runAsUser(user.name, [process.execPath, cliPath, ...args], env, { cwd: options.cwd ?? project, input: options.input, timeoutMs: options.timeoutMs });

  return {
    user,
    cliPath,
    home,
    project,
    hostHome,
    canaries,
    env,
    cli,
    async teardown() {
      await cli(["guardian", "stop"]);
      stopLeftoverGuardian(join(home, "run", "guardian.pid"));
      rmSync(base, { recursive: true, force: true });
    },
  };
}
