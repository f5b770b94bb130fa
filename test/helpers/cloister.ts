/**
 * Shared set-up for integration and escape tests: an isolated Cloister instance (its own
 * CLOISTER_HOME and guardian), a throwaway git project, a fake host HOME full of canaries, and a
 * runner for the built CLI. Every instance stops its guardian (and so its cloisters) in teardown.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { GLOBAL_CONFIG_TEMPLATE } from "../../src/config/template.js";

export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** What the `cloister` bin runs: the bundle built by `npm run build`. */
export const CLI = join(REPO_ROOT, "dist/bundle/main.cjs");

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

function canary(label: string): string {
  return `CANARY-${label}-${randomBytes(8).toString("hex")}`;
}

/** Secrets in the places an attacker looks first in a (fake) host HOME; returns them by name. */
export function plantCanaries(hostHome: string): Record<string, string> {
  const canaries: Record<string, string> = {
    ssh: canary("ssh"),
    aws: canary("aws"),
    gnupg: canary("gnupg"),
    netrc: canary("netrc"),
    envToken: canary("env"),
  };
  mkdirSync(join(hostHome, ".ssh"), { recursive: true });
  writeFileSync(join(hostHome, ".ssh", "id_canary"), canaries.ssh ?? "", { mode: 0o600 });
  mkdirSync(join(hostHome, ".aws"), { recursive: true });
  writeFileSync(join(hostHome, ".aws", "credentials"), `[default]\naws_secret_access_key=${canaries.aws}\n`, { mode: 0o600 });
  mkdirSync(join(hostHome, ".gnupg"), { recursive: true, mode: 0o700 });
  writeFileSync(join(hostHome, ".gnupg", "secring"), canaries.gnupg ?? "", { mode: 0o600 });
  writeFileSync(join(hostHome, ".netrc"), `machine example.com password ${canaries.netrc}\n`, { mode: 0o600 });
  return canaries;
}

/** A one-commit repository in `project`; `git` runs git there (as whichever user owns it). */
export function initGitProject(project: string, git: (args: string[]) => unknown, afterWrite: (file: string) => void = () => undefined): void {
  git(["init", "-q"]);
  git(["config", "user.email", "test@example.com"]);
  git(["config", "user.name", "Test"]);
  writeFileSync(join(project, "README.md"), "hello\n");
  afterWrite(join(project, "README.md"));
  git(["add", "."]);
  git(["commit", "-qm", "init"]);
}

/**
 * The default config with two changes for tests: unlisted hosts are refused at once (a test that
 * wants approvals says so), and the approval UI takes any free port, since instances run side by side.
 */
export function testConfig(unlisted: "ask" | "deny" = "deny"): string {
  const config = GLOBAL_CONFIG_TEMPLATE.replace(/^  unlisted: ask$/m, `  unlisted: ${unlisted}`).replace(/^  port: 9999$/m, "  port: 0");
  assert.ok(config.includes(`unlisted: ${unlisted}`) && config.includes("port: 0"), "the config template changed: update testConfig");
  return config;
}

/**
 * Makes the instance's guardian verify origins against `caFile` too (config `proxy.upstream_ca`), as
 * tests' HTTPS servers carry certificates of a test CA. Fails if the template's line has changed.
 */
export function trustUpstreamCa(home: string, caFile: string): void {
  const config = join(home, "config", "config.yaml");
  const text = readFileSync(config, "utf8");
  const changed = text.replace(/^  upstream_ca: null$/m, `  upstream_ca: ${caFile}`);
  assert.notEqual(changed, text, "the config template changed: proxy.upstream_ca not found");
  writeFileSync(config, changed);
}

export function createInstance(prefix = "ct", options: { unlisted?: "ask" | "deny" } = {}): TestInstance {
  // Short paths: unix socket paths are limited to 108 bytes.
  const base = mkdtempSync(join(tmpdir(), `${prefix}-`));
  const home = join(base, "h");
  const project = join(base, "proj");
  const hostHome = join(base, "home");
  const canaries = plantCanaries(hostHome);
  mkdirSync(project, { recursive: true });
  mkdirSync(join(home, "config"), { recursive: true, mode: 0o700 });
  writeFileSync(join(home, "config", "config.yaml"), testConfig(options.unlisted), { mode: 0o600 });
  initGitProject(project, (args) => spawnSync("git", ["-C", project, ...args]));

  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    LANG: "C.UTF-8",
    TERM: "xterm",
    HOME: hostHome,
    CLOISTER_HOME: home,
    // The CLI's code cache (src/cli/code-cache.ts) lives with the instance, not in the fake HOME,
    // whose snapshot must show only what a cloister could have changed.
    XDG_CACHE_HOME: join(home, "cache"),
    GITHUB_TOKEN: canaries.envToken,
    ANTHROPIC_API_KEY: canaries.envToken,
    SSH_AUTH_SOCK: join(hostHome, "agent.sock"),
  };

  const cli: TestInstance["cli"] = (args, options = {}) => {
    const live = startCli(env, options.cwd ?? project, args, options.timeoutMs ?? 60_000);
    live.child.stdin?.end(options.input ?? "");
    return live.done;
  };

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

/** A CLI process still running: its output so far, a way to wait for a line, and its result. */
export interface LiveCli {
  child: ChildProcess;
  output(): string;
  waitFor(text: string, ms?: number): Promise<void>;
  endInput(): void;
  done: Promise<CliResult>;
}

/** Starts `cloister ARGS` in the instance's project without waiting for it (killed after 90 s). */
export function spawnCli(t: TestInstance, args: string[]): LiveCli {
  return startCli(t.env, t.project, args, 90_000);
}

function startCli(env: NodeJS.ProcessEnv, cwd: string, args: string[], timeoutMs: number): LiveCli {
  return startCommand(process.execPath, [CLI, ...args], { env, cwd, timeoutMs });
}

/**
 * Starts any command the way the CLI is started (its output collected, killed after `timeoutMs`),
 * e.g. the installed bin/cloister rather than node with the bundle.
 */
export function startCommand(command: string, args: string[], options: { env: NodeJS.ProcessEnv; cwd: string; timeoutMs: number }): LiveCli {
  const { env, cwd, timeoutMs } = options;
  const child = spawn(command, args, { cwd, env, stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const done = new Promise<CliResult>((resolve) => {
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 + 9 : 128), stdout, stderr });
    });
  });
  return {
    child,
    output: () => stdout,
    async waitFor(text, ms = 30_000) {
      await waitUntil(`${JSON.stringify(text)} from \`${[command, ...args].join(" ")}\` (stdout so far: ${stdout}, stderr: ${stderr})`, () => stdout.includes(text) || child.exitCode !== null, ms);
      assert.ok(stdout.includes(text), `the command ended before printing ${text}: ${stdout}${stderr}`);
    },
    endInput: () => child.stdin?.end(),
    done,
  };
}

/** Polls `check` every 50 ms; fails the test when it is still false after `ms`. */
export async function waitUntil(what: string, check: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  for (const deadline = Date.now() + ms; Date.now() < deadline; ) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
}

/**
 * Runs `body` with the instance's config.yaml changed by `edit` (and the guardian reloaded), then
 * puts the file back and reloads again, also when `body` fails.
 */
export async function withConfig<T>(t: TestInstance, edit: (config: string) => string, body: () => Promise<T>): Promise<T> {
  const file = join(t.home, "config", "config.yaml");
  const original = readFileSync(file, "utf8");
  const changed = edit(original);
  assert.notEqual(changed, original, "the config edit changed nothing: the template changed?");
  writeFileSync(file, changed);
  try {
    const reload = await t.cli(["guardian", "reload"]);
    assert.equal(reload.code, 0, reload.stderr);
    return await body();
  } finally {
    writeFileSync(file, original);
    await t.cli(["guardian", "reload"]);
  }
}

/** Asserts helper: no canary of the instance appears in `text`. */
export function leakedCanaries(instance: TestInstance, text: string): string[] {
  return Object.entries(instance.canaries)
    .filter(([, value]) => text.includes(value))
    .map(([name]) => name);
}
