/**
 * Oracles of the escape suite (docs: SECURITY.md, "Oracles every case uses"): canaries, markers, hash
 * snapshots of host-sensitive files, liveness; plus small helpers to run attacker steps and read
 * their outcome. Attacker scripts print one line per step, `STEP <name> <result>`, where the result
 * is `OK` when the step worked (an escape) or the reason it did not (an errno name, or `FAIL`).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { TestInstance } from "./cloister.js";

/** The interpreter attacker scripts use; /usr inside is the host's /usr. */
export const PYTHON = "/usr/bin/python3";
export const HAS_PYTHON = existsSync(PYTHON);
export const NO_PYTHON = HAS_PYTHON ? false : `${PYTHON} is not installed on this host`;

// ---------------------------------------------------------------------------------------------
// Canaries

/**
 * Plants the remaining secrets SECURITY.md lists (the base instance plants ~/.ssh, ~/.aws, ~/.gnupg
 * and ~/.netrc) in the fake host HOME, and registers their canaries with the instance.
 */
export function plantMoreSecrets(t: Pick<TestInstance, "hostHome" | "canaries">): void {
  const files: Record<string, string> = {
    gh: ".config/gh/hosts.yml",
    docker: ".docker/config.json",
    kube: ".kube/config",
    gitCredentials: ".git-credentials",
    npmrc: ".npmrc",
    pypirc: ".pypirc",
    gcloud: ".config/gcloud/credentials.db",
    azure: ".azure/accessTokens.json",
    gpgAgent: ".gnupg/private-keys-v1.d/key.key",
  };
  for (const [name, rel] of Object.entries(files)) {
    const value = `CANARY-${name}-${randomBytes(8).toString("hex")}`;
    t.canaries[name] = value;
    const full = join(t.hostHome, rel);
    mkdirSync(dirname(full), { recursive: true });
    writeFileSync(full, `secret=${value}\n`, { mode: 0o600 });
  }
}

/** Every regular file under `root` whose bytes contain one of the canaries, as `name: path`. */
export function canariesInTree(root: string, canaries: Record<string, string>): string[] {
  const found: string[] = [];
  const walk = (dir: string): void => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const full = join(dir, name);
      let st;
      try {
        st = lstatSync(full);
      } catch {
        continue;
      }
      if (st.isDirectory()) walk(full);
      else if (st.isFile() && st.size < 64 * 1024 * 1024) {
        const text = readFileSync(full).toString("latin1");
        for (const [label, value] of Object.entries(canaries)) if (text.includes(value)) found.push(`${label}: ${full}`);
      }
    }
  };
  walk(root);
  return found;
}

/**
 * The canary oracle: no canary in the given outputs, in the project (every file, .git included) nor
 * in the instance's logs and state (everything under CLOISTER_HOME).
 */
export function assertNoCanaryAnywhere(t: Pick<TestInstance, "project" | "home" | "canaries">, ...outputs: string[]): void {
  const text = outputs.join("\n");
  const inOutput = Object.entries(t.canaries)
    .filter(([, value]) => text.includes(value))
    .map(([name]) => `${name}: output`);
  assert.deepEqual([...inOutput, ...canariesInTree(t.project, t.canaries), ...canariesInTree(t.home, t.canaries)], []);
}

// ---------------------------------------------------------------------------------------------
// Markers

/** A per-process suffix: concurrent suite runs on one host do not see each other's markers. */
const RUN_ID = randomBytes(3).toString("hex");

/** The host path an attack's side effect targets: `/tmp/ESCAPED-<case>`. */
export function marker(caseName: string): string {
  return `/tmp/ESCAPED-${caseName}-${RUN_ID}`;
}

/** Markers that exist on the host now (each one is an escape). */
export function presentMarkers(markers: readonly string[]): string[] {
  return markers.filter((m) => {
    try {
      lstatSync(m);
      return true;
    } catch {
      return false;
    }
  });
}

export function removeMarkers(markers: readonly string[]): void {
  for (const m of markers) rmSync(m, { recursive: true, force: true });
}

/**
 * Runs host git in the project the way a user would after the session (hooks, fsmonitor and the
 * repository's config all in effect), returning its exit code. `runAs` wraps it for another user.
 */
export function hostGit(project: string, args: string[], options: { home?: string; runAs?: string } = {}): number {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    LANG: "C.UTF-8",
    HOME: options.home ?? process.env.HOME,
    GIT_AUTHOR_NAME: "Host",
    GIT_AUTHOR_EMAIL: "host@example.com",
    GIT_COMMITTER_NAME: "Host",
    GIT_COMMITTER_EMAIL: "host@example.com",
  };
  const argv = ["git", "-C", project, ...args];
  const r = options.runAs
    ? spawnSync("runuser", ["-u", options.runAs, "--", "env", ...Object.entries(env).map(([k, v]) => `${k}=${v ?? ""}`), ...argv], { encoding: "utf8" })
    : spawnSync(argv[0] ?? "git", argv.slice(1), { encoding: "utf8", env });
  return r.status ?? 128;
}

// ---------------------------------------------------------------------------------------------
// Hash snapshots

/**
 * path -> description (type, mode, owner, size and sha256 for files; target for links). What the
 * host acts on is content, mode and owner; an mtime alone changes nothing (cloister rewrites the
 * repository's info/exclude with the same content when its placeholders come and go).
 */
export type Snapshot = Map<string, string>;

function describeEntry(full: string): string | undefined {
  let st;
  try {
    st = lstatSync(full);
  } catch {
    return undefined;
  }
  const mode = (st.mode & 0o7777).toString(8);
  if (st.isSymbolicLink()) return `link -> ${readlinkSync(full)}`;
  if (st.isDirectory()) return `dir ${mode} uid=${st.uid}`;
  if (st.isFile()) {
    const hash = createHash("sha256").update(readFileSync(full)).digest("hex");
    return `file ${mode} uid=${st.uid} size=${st.size} sha256=${hash}`;
  }
  return `special ${mode} uid=${st.uid}`;
}

/** Every entry under `root` (root included, as ""), keyed `label/rel`. Symlinks are recorded, never followed. */
export function snapshotTree(root: string, label = root, skip: (rel: string) => boolean = () => false): Snapshot {
  const snap: Snapshot = new Map();
  const walk = (rel: string): void => {
    const full = rel === "" ? root : join(root, rel);
    const desc = describeEntry(full);
    snap.set(rel === "" ? label : `${label}/${rel}`, desc ?? "missing");
    if (desc?.startsWith("dir ")) {
      for (const name of readdirSync(full).sort()) {
        const child = rel === "" ? name : `${rel}/${name}`;
        if (!skip(child)) walk(child);
      }
    }
  };
  walk("");
  return snap;
}

export function mergeSnapshots(...snaps: Snapshot[]): Snapshot {
  const all: Snapshot = new Map();
  for (const s of snaps) for (const [k, v] of s) all.set(k, v);
  return all;
}

/** Differences as readable lines; empty when the snapshots are equal. */
export function diffSnapshots(before: Snapshot, after: Snapshot): string[] {
  const lines: string[] = [];
  for (const [k, v] of before) {
    const now = after.get(k);
    if (now === undefined) lines.push(`removed ${k} (was ${v})`);
    else if (now !== v) lines.push(`changed ${k}: ${v} => ${now}`);
  }
  for (const [k, v] of after) if (!before.has(k)) lines.push(`added ${k}: ${v}`);
  return lines;
}

/** Host paths in the project that host programs act on later (git, editors, agents). */
export const PROJECT_SENSITIVE = [
  ".git/config",
  ".git/hooks",
  ".git/info",
  ".git/commondir",
  ".git/config.worktree",
  ".gitmodules",
  ".vscode",
  ".idea",
  ".claude",
  ".mcp.json",
  ".codex",
  ".gemini",
  ".envrc",
  ".npmrc",
  ".bashrc",
  ".profile",
  ".zshrc",
];

/**
 * The hash snapshot oracle: the fake host HOME (all of it), the project's `.git/config`,
 * `.git/hooks/*` and the other editor/agent/rc paths the host acts on.
 */
export function hostSensitiveSnapshot(t: Pick<TestInstance, "hostHome" | "project">): Snapshot {
  return mergeSnapshots(
    snapshotTree(t.hostHome, "~"),
    ...PROJECT_SENSITIVE.map((rel) => snapshotTree(join(t.project, rel), `project/${rel}`)),
  );
}

// ---------------------------------------------------------------------------------------------
// Attacker steps

/** Parses `STEP <name> <result>` lines. */
export function parseSteps(stdout: string): Map<string, string> {
  const steps = new Map<string, string>();
  for (const line of stdout.split("\n")) {
    const m = /^STEP (\S+) ?(.*)$/.exec(line);
    if (m?.[1] !== undefined) steps.set(m[1], m[2] ?? "");
  }
  return steps;
}

/**
 * Asserts that every named step ran and was refused; with `allowed`, that it was refused for one
 * of those reasons (so a typo in the attack cannot pass as a refusal). All violations in one message.
 */
export function assertRefused(steps: Map<string, string>, names: readonly string[], allowed?: readonly string[], context = ""): void {
  const violations: string[] = [];
  for (const name of names) {
    const result = steps.get(name);
    if (result === undefined) violations.push(`${name}: did not run`);
    else if (result === "OK" || result.startsWith("OK ")) violations.push(`${name}: ${result} (the attack worked)`);
    else if (allowed && !allowed.includes(result.split(" ")[0] ?? "")) violations.push(`${name}: refused with unexpected ${result}`);
  }
  assert.deepEqual(violations, [], context);
}

/** Step names of `steps` starting with `prefix`. */
export function stepsWithPrefix(steps: Map<string, string>, prefix: string): string[] {
  return [...steps.keys()].filter((k) => k.startsWith(prefix));
}

/**
 * Python prelude for attacker scripts: `step(name, fn)` prints `STEP name OK [value]`, or the errno
 * name of the OSError it raised; `libc` is ctypes' libc with errno, `sys_errno(rc)` turns a -1 from
 * a raw call into an errno name.
 */
export const PY_PRELUDE = String.raw`
import ctypes, errno, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
def _name(e):
    return errno.errorcode.get(e, "E%d" % e)
def step(name, fn):
    try:
        v = fn()
        print("STEP %s OK%s" % (name, "" if v is None else " " + str(v)), flush=True)
    except OSError as e:
        print("STEP %s %s" % (name, _name(e.errno) if e.errno else type(e).__name__), flush=True)
    except Exception as e:
        print("STEP %s %s" % (name, type(e).__name__), flush=True)
def check(rc):
    if rc == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return None
`;

/** Shell prelude: `step NAME CMD...` prints `STEP NAME OK` when CMD succeeds, else `STEP NAME FAIL`. */
export const SH_PRELUDE = `step() { n=$1; shift; if "$@" >/dev/null 2>&1; then echo "STEP $n OK"; else echo "STEP $n FAIL"; fi; }\n`;

// ---------------------------------------------------------------------------------------------
// Liveness

/** The liveness oracle: after the attacks a fresh `cloister run -- true` still works. */
export async function assertLive(t: Pick<TestInstance, "cli">): Promise<void> {
  const r = await t.cli(["run", "--", "true"]);
  assert.equal(r.code, 0, `a second cloister did not run: ${r.stderr}`);
}
