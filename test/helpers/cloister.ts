/**
 * Shared set-up for integration and escape tests: an isolated Cloister instance (its own
 * CLOISTER_HOME and guardian), a throwaway git project, a fake host HOME full of canaries, and a
 * runner for the built CLI. Every instance stops its guardian (and so its cloisters) in teardown.
 */
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const CLI = join(REPO_ROOT, "dist/cli/main.js");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface TestInstance {
  /** CLOISTER_HOME of this instance. */
  home: string;
  /** A git repository to use as the project. */
  project: string;
  /** A fake host HOME holding canaries (~/.ssh, ~/.aws, ...). */
  hostHome: string;
  /** Random strings planted in host-only places: must never show up in a cloister. */
  canaries: Record<string, string>;
  env: NodeJS.ProcessEnv;
  /** Runs `cloister ARGS` with this instance's environment; never throws on a non-zero exit. */
  cli(args: string[], options?: { input?: string; cwd?: string; timeoutMs?: number }): Promise<CliResult>;
  teardown(): Promise<void>;
}

export function canary(label: string): string {
  return `CANARY-${label}-${randomBytes(8).toString("hex")}`;
}

export function createInstance(prefix = "ct"): TestInstance {
  // Short paths: unix socket paths are limited to 108 bytes.
  const base = mkdtempSync(join(tmpdir(), `${prefix}-`));
  const home = join(base, "h");
  const project = join(base, "proj");
  const hostHome = join(base, "home");
  const canaries: Record<string, string> = {
    ssh: canary("ssh"),
    aws: canary("aws"),
    gnupg: canary("gnupg"),
    netrc: canary("netrc"),
    envToken: canary("env"),
  };
  mkdirSync(join(hostHome, ".ssh"), { recursive: true });
  writeFileSync(join(hostHome, ".ssh", "id_canary"), canaries.ssh ?? "");
  mkdirSync(join(hostHome, ".aws"), { recursive: true });
  writeFileSync(join(hostHome, ".aws", "credentials"), `[default]\naws_secret_access_key=${canaries.aws}\n`);
  mkdirSync(join(hostHome, ".gnupg"), { recursive: true });
  writeFileSync(join(hostHome, ".gnupg", "secring"), canaries.gnupg ?? "");
  writeFileSync(join(hostHome, ".netrc"), `machine example.com password ${canaries.netrc}\n`);
  mkdirSync(project, { recursive: true });
  const git = (...args: string[]) => spawnSync("git", ["-C", project, ...args], { encoding: "utf8" });
  git("init", "-q");
  git("config", "user.email", "test@example.com");
  git("config", "user.name", "Test");
  writeFileSync(join(project, "README.md"), "hello\n");
  git("add", ".");
  git("commit", "-qm", "init");

  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    LANG: "C.UTF-8",
    TERM: "xterm",
    HOME: hostHome,
    CLOISTER_HOME: home,
    GITHUB_TOKEN: canaries.envToken,
    ANTHROPIC_API_KEY: canaries.envToken,
    SSH_AUTH_SOCK: join(hostHome, "agent.sock"),
  };

  const cli: TestInstance["cli"] = (args, options = {}) =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [CLI, ...args], { cwd: options.cwd ?? project, env, stdio: ["pipe", "pipe", "pipe"] });
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

  return {
    home,
    project,
    hostHome,
    canaries,
    env,
    cli,
    async teardown() {
      await cli(["guardian", "stop"]);
      rmSync(base, { recursive: true, force: true });
    },
  };
}

/** Asserts helper: no canary of the instance appears in `text`. */
export function leakedCanaries(instance: TestInstance, text: string): string[] {
  return Object.entries(instance.canaries)
    .filter(([, value]) => text.includes(value))
    .map(([name]) => name);
}
