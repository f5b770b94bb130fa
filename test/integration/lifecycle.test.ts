/**
 * The CLI contract of persistent cloisters and the guardian: start -d / re-enter / exec / path /
 * stop / stop --all / guardian stop (never orphans), name validation, awkward project paths,
 * separate instances side by side, the JSON shapes of `list`, `guardian status` and `doctor`, and
 * config errors that name file, line and key.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createCloister, runInCloister } from "../../src/cloister.js";
import { resolvePaths } from "../../src/config/paths.js";
import { cloisterBuild, guardianCall } from "../../src/guardian/control-client.js";
import { markedCloisters, projectKey } from "../../src/sandbox/project-marks.js";
import { processStartTime, writeRecord, type CloisterRecord } from "../../src/sandbox/records.js";
import { CLI, createInstance, spawnCli, startCommand, waitUntil, withConfig, type LiveCli, type TestInstance } from "../helpers/cloister.js";
import { hostProcessesNaming, hostProcessTable, hostTree, readOr, survivors, waitGone, type HostProc } from "../helpers/host-processes.js";

interface ListEntry {
  name: string;
  project: string;
  projectRoot: string;
  persistent: boolean;
  network: boolean;
  running: boolean;
  createdAt: string;
  limits: string;
}

interface RecordFile {
  name: string;
  keeperPid?: number;
}

function recordDir(t: TestInstance): string {
  return join(t.home, "state", "cloisters");
}

function recordOf(t: TestInstance, name: string): RecordFile | undefined {
  const text = readOr(join(recordDir(t), `${name}.json`));
  return text ? (JSON.parse(text) as RecordFile) : undefined;
}

function recordNames(t: TestInstance): string[] {
  return existsSync(recordDir(t)) ? readdirSync(recordDir(t)).filter((f) => f.endsWith(".json")) : [];
}

/** Per-cloister runtime dirs (run/c/<id>): one per cloister, removed with it. */
function runtimeDirs(t: TestInstance): string[] {
  return entriesOf(join(t.home, "run", "c"));
}

/** Cloister HOMEs (data/homes/NAME, .run-ID): an ephemeral one's goes with its cloister. */
function cloisterHomes(t: TestInstance): string[] {
  return entriesOf(join(t.home, "data", "homes"));
}

function entriesOf(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : [];
}

/** Connections queued at a listening unix socket, not yet accepted (ss shows them as its Recv-Q). */
function pendingConnections(socket: string): number {
  const ss = spawnSync("ss", ["-xlH", "src", socket], { encoding: "utf8" });
  if (ss.error) throw new Error(`ss could not run (${ss.error.message}): install iproute2 (apt-get install iproute2)`);
  const listening = ss.stdout.trim().split(/\s+/);
  return Number(listening[2] ?? 0);
}

/**
 * The keeper and every descendant of a cloister, from its record. `start -d` returns once bwrap
 * runs, and bwrap forks init just after: init is waited for, not assumed there yet.
 */
async function cloisterProcs(t: TestInstance, name: string): Promise<HostProc[]> {
  const keeper = recordOf(t, name)?.keeperPid;
  assert.ok(keeper, `no keeper recorded for ${name}`);
  let procs = hostTree(keeper);
  await waitUntil(`keeper, bwrap and init for ${name}`, () => (procs = hostTree(keeper)).length >= 3).catch(() => undefined);
  assert.ok(procs.length >= 3, `expected keeper, bwrap and init for ${name}, found ${procs.length}`);
  return procs;
}

describe("cloister lifecycle (start, exec, path, stop, guardian)", () => {
  let t: TestInstance;
  let projectRoot = "";

  before(() => {
    t = createInstance("life");
    projectRoot = realpathSync(t.project);
  });
  after(async () => t.teardown());

  async function list(instance: TestInstance = t): Promise<ListEntry[]> {
    const r = await instance.cli(["list", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as ListEntry[];
  }

  async function startDetached(args: string[] = []): Promise<void> {
    const r = await t.cli(["start", "-d", ...args]);
    assert.equal(r.code, 0, r.stderr);
  }

  it("start -d starts the project's cloister in the background; list --json shows it running", async () => {
    await startDetached();
    const entries = await list();
    assert.equal(entries.length, 1);
    const [entry] = entries;
    assert.ok(entry);
    assert.equal(entry.name, "proj", "the default name is the project's");
    assert.equal(entry.project, "proj");
    assert.equal(entry.projectRoot, projectRoot);
    assert.equal(entry.persistent, true);
    assert.equal(entry.network, true);
    assert.equal(entry.running, true);
    assert.ok(!Number.isNaN(Date.parse(entry.createdAt)));
    assert.equal(typeof entry.limits, "string");
  });

  it("start -d again re-enters the same cloister: same processes, same /tmp", async () => {
    const keeper = recordOf(t, "proj")?.keeperPid;
    const first = await t.cli(["exec", "proj", "--", "sh", "-c", "echo kept > /tmp/mark; setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!"]);
    assert.equal(first.code, 0, first.stderr);
    const sleeper = first.stdout.trim();
    assert.match(sleeper, /^\d+$/);

    const again = await t.cli(["start", "-d"]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /Cloister proj is already running/);
    assert.deepEqual((await list()).map((e) => e.name), ["proj"]);
    assert.equal(recordOf(t, "proj")?.keeperPid, keeper, "a second cloister was started");

    const later = await t.cli(["exec", "proj", "--", "sh", "-c", `cat /tmp/mark; tr '\\0' ' ' < /proc/${sleeper}/cmdline`]);
    assert.equal(later.code, 0, later.stderr);
    assert.equal(later.stdout, "kept\nsleep 1000 ");
  });

  it("exec runs a command in the named cloister, with CLOISTER_NAME set", async () => {
    const r = await t.cli(["exec", "proj", "--", "sh", "-c", "echo $CLOISTER_NAME; pwd"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "proj\n/work\n");
  });

  it("exec runs where the caller is in the project (else at /work); -w chooses, and one that is not there is named", async () => {
    const sub = join(t.project, "docs");
    mkdirSync(sub, { recursive: true });
    try {
      assert.equal((await t.cli(["exec", "--", "pwd"], { cwd: sub })).stdout, "/work/docs\n");
      assert.equal((await t.cli(["exec", "proj", "--", "pwd"], { cwd: dirname(t.project) })).stdout, "/work\n");
      assert.equal((await t.cli(["exec", "-w", "/tmp", "--", "pwd"], { cwd: sub })).stdout, "/tmp\n");
      // A relative -w is taken from where exec would run otherwise, as cd would.
      assert.equal((await t.cli(["exec", "-w", "docs", "--", "pwd"])).stdout, "/work/docs\n");
      assert.equal((await t.cli(["exec", "-w", "..", "--", "pwd"], { cwd: sub })).stdout, "/work\n");
      assert.equal((await t.cli(["exec", "proj", "-w", "docs", "--", "pwd"], { cwd: dirname(t.project) })).stdout, "/work/docs\n");
      const missing = await t.cli(["exec", "-w", "/no/such/dir", "--", "pwd"]);
      assert.equal(missing.code, 125, "the caller's mistake, not the command's");
      assert.equal(missing.stderr, "cloister: cannot enter the working directory '/no/such/dir': No such file or directory\n");
    } finally {
      rmSync(sub, { recursive: true });
    }
  });

  it("exec without -- before a command's options, or with no command or an unknown name, says what to type", async () => {
    const options = await t.cli(["exec", "proj", "ls", "-la", "/work/README.md"]);
    assert.equal(options.code, 125);
    assert.equal(options.stderr, "cloister: options after the command must follow -- (cloister exec proj -- ls -la /work/README.md)\n");
    assert.equal((await t.cli(["exec", "proj", "ls", "/work/README.md"])).stdout, "/work/README.md\n", "a command without options needs no --");
    assert.equal((await t.cli(["exec", "ls"])).stderr, "cloister: no command given (ls is taken as the cloister's name; usage: cloister exec [NAME] -- CMD [ARGS...])\n");
    const unknown = await t.cli(["exec", "nope", "--", "true"]);
    assert.equal(unknown.code, 125);
    assert.equal(unknown.stderr, 'cloister: no running cloister named "nope" (start it with `cloister start -d --name nope`, or see `cloister list`)\n');
  });

  it("git works as usual around the protected paths' placeholders: status clean, stash -u, clean -d and fetch succeed quietly", async () => {
    const script = [
      "git status --porcelain",
      "echo work > untracked.txt",
      "git stash -u -q && git stash pop -q >/dev/null && echo stash-ok",
      "git clean -fdq && echo clean-ok",
      "test ! -e untracked.txt && echo removed",
      "git fetch -q . HEAD && echo fetch-ok",
    ].join(" && ");
    const r = await t.cli(["exec", "proj", "--", "sh", "-c", script]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "stash-ok\nclean-ok\nremoved\nfetch-ok\n");
    assert.equal(r.stderr, "", "no warning from git about a placeholder");
  });

  it("the environment given to start -d reaches every later command (exec, start again), under the command's own; no listing shows its values", async () => {
    await startDetached(["--name", "env-kept", "--env", "KEPT=from-start", "--env", "BOTH=start"]);
    const show = "echo \"[$KEPT] [$BOTH]\"";
    const plain = await t.cli(["exec", "env-kept", "--", "sh", "-c", show]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(plain.stdout, "[from-start] [start]\n");
    const overridden = await t.cli(["exec", "env-kept", "--env", "BOTH=exec", "--", "sh", "-c", show]);
    assert.equal(overridden.code, 0, overridden.stderr);
    assert.equal(overridden.stdout, "[from-start] [exec]\n", "the command's own --env wins");
    // `start` again opens the shell with it too (its stdin is not a terminal: the shell reads the command from it).
    const reentered = await t.cli(["start", "--name", "env-kept"], { input: `${show}\nexit\n` });
    assert.equal(reentered.code, 0, reentered.stderr);
    assert.match(reentered.stdout, /\[from-start\] \[start\]/);
    // start -d opens nothing in a running cloister: its --env would be dropped, so it is refused (QA).
    const detached = await t.cli(["start", "-d", "--name", "env-kept", "--env", "BOTH=again"]);
    assert.deepEqual([detached.code, detached.stdout], [125, ""]);
    assert.equal(detached.stderr, "cloister: cloister env-kept is already running, and -d opens nothing in it: --env would go unused (it reaches a cloister when it starts, or what start opens in it) (stop it first (cloister stop env-kept) and start it again with it, or give it to a command in it: cloister exec env-kept --env ... -- CMD)\n");
    assert.equal((await t.cli(["exec", "env-kept", "--", "sh", "-c", show])).stdout, "[from-start] [start]\n");

    const listed = await t.cli(["list", "--json"]);
    assert.doesNotMatch(listed.stdout, /from-start/);
    const fromGuardian = await guardianCall<unknown[]>(resolvePaths({ CLOISTER_HOME: t.home }), "GET", "/v1/cloisters");
    assert.ok(fromGuardian.length > 0);
    assert.doesNotMatch(JSON.stringify(fromGuardian), /from-start/, "the guardian's list shows the start's environment");
    assert.equal((await t.cli(["stop", "env-kept"])).code, 0);
  });

  it("start opens /bin/sh, with a notice, when the configured shell is missing in the cloister, looked for inside, not on the host (QA: exit 127)", async () => {
    // Only inside is there a /work/inside-sh (the project's), and only on the host a shell in the host's /tmp.
    assert.equal(existsSync("/work/inside-sh"), false, "the host has a /work/inside-sh");
    writeFileSync(join(t.project, "inside-sh"), "#!/bin/sh\necho inside-sh ran\nexec /bin/sh \"$@\"\n", { mode: 0o755 });
    const hostOnly = join(t.hostHome, "..", "host-only-sh");
    writeFileSync(hostOnly, "#!/bin/sh\nexec /bin/sh \"$@\"\n", { mode: 0o755 });
    const startWith = (shell: string) => withConfig(t, (config) => config.replace(/^  shell: \/bin\/bash$/m, `  shell: ${shell}`), () => t.cli(["start", "--name", "shells"], { input: "echo \"[$SHELL]\"\nexit 3\n" }));
    try {
      const inside = await startWith("/work/inside-sh");
      assert.equal(inside.code, 3, inside.stderr);
      assert.match(inside.stdout, /^inside-sh ran$/m);
      assert.match(inside.stdout, /^\[\/work\/inside-sh\]$/m);
      assert.doesNotMatch(inside.stderr, /missing/);

      for (const missing of ["/bin/nosuchsh", hostOnly]) {
        const r = await startWith(missing);
        assert.equal(r.code, 3, r.stderr);
        assert.match(r.stdout, /^\[\/bin\/sh\]$/m, `${missing}: SHELL names the shell that runs`);
        assert.ok(r.stderr.includes(`\ncloister: the shell ${missing} (config defaults.shell) is missing in the cloister; opening /bin/sh instead (change it with: cloister config edit)\n`), r.stderr);
      }
    } finally {
      rmSync(join(t.project, "inside-sh"));
      rmSync(hostOnly);
      await t.cli(["stop", "shells"]);
    }
  });

  it("path prints the project directory on the host", async () => {
    const r = await t.cli(["path", "proj"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${projectRoot}\n`);
  });

  it("a project directory named with a newline and a terminal escape: tables show it escaped on one line, path prints it as it is for scripts", async () => {
    const odd = join(t.home, "odd\nname\x1b[31mred");
    mkdirSync(odd);
    spawnSync("git", ["init", "-q", odd]);
    const ran = await t.cli(["run", "--project", odd, "--", "true"]);
    assert.equal(ran.code, 0, ran.stderr);
    const table = (await t.cli(["project", "list"])).stdout;
    assert.ok(table.includes("odd\\nname\\e[31mred"), table);
    assert.doesNotMatch(table, /\x1b/);
    assert.equal(table.trimEnd().split("\n").length, 1 + (JSON.parse((await t.cli(["project", "list", "--json"])).stdout) as unknown[]).length);
    const name = (JSON.parse((await t.cli(["project", "list", "--json"])).stdout) as { name: string; path?: string }[]).find((p) => p.path?.endsWith("red"))?.name;
    assert.ok(name);
    assert.equal((await t.cli(["path", name])).stdout, `${realpathSync(odd)}\n`);
    await t.cli(["project", "remove", name]);
  });

  it("stop ends the cloister: list is empty and the keeper is gone", async () => {
    const procs = await cloisterProcs(t, "proj");
    const r = await t.cli(["stop", "proj"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await list(), []);
    await waitGone(procs, "stop");
    assert.deepEqual(recordNames(t), []);
    assert.deepEqual(runtimeDirs(t), []);
    const again = await t.cli(["exec", "proj", "--", "true"]);
    assert.equal(again.code, 125);
    assert.equal(again.stderr, "cloister: cloister proj is already stopped; its HOME is kept for its next start (start it with `cloister start -d --name proj`; `cloister rm proj` removes it)\n");
  });

  it("stop of a stopped persistent cloister says it is stopped already and how to remove its HOME, and still exits 125 (QA: \"no cloister named\", though list --all shows it)", async () => {
    await startDetached(["--name", "a.b"]);
    assert.equal((await t.cli(["stop", "a.b"])).code, 0);
    const again = await t.cli(["stop", "a.b"]);
    assert.equal(again.code, 125);
    assert.equal(again.stderr, "cloister: cloister a.b is already stopped; its HOME is kept for its next start (`cloister rm a.b` removes it)\n");
    assert.equal((await t.cli(["rm", "a.b"])).code, 0);
    const gone = await t.cli(["stop", "a.b"]);
    assert.equal(gone.code, 125);
    assert.equal(gone.stderr, 'cloister: no cloister named "a.b" (see `cloister list`)\n');
  });

  it("exec and stop without a name, where the project's cloisters run under other names, name those (QA: only \"no running cloister named\" the default)", async () => {
    await startDetached(["--name", "custom1"]);
    try {
      const exec = await t.cli(["exec", "--", "true"]);
      assert.equal(exec.code, 125);
      assert.equal(exec.stderr, 'cloister: no running cloister named "proj" (this project\'s default); this project\'s running cloister is custom1 (name it: cloister exec custom1 -- COMMAND)\n');
      await startDetached(["--name", "custom2"]);
      const stop = await t.cli(["stop"]);
      assert.equal(stop.code, 125);
      assert.equal(stop.stderr, 'cloister: no running cloister named "proj" (this project\'s default); this project\'s running cloisters are custom1, custom2 (name it: cloister stop custom1, or cloister stop custom2)\n');
      assert.deepEqual((await list()).map((e) => e.name).sort(), ["custom1", "custom2"], "nothing was stopped");
    } finally {
      await t.cli(["stop", "--all"]);
    }
  });

  it("stop --all ends every cloister", async () => {
    await Promise.all([startDetached(["--name", "all-a"]), startDetached(["--name", "all-b"])]);
    const procs = [...(await cloisterProcs(t, "all-a")), ...(await cloisterProcs(t, "all-b"))];
    assert.deepEqual((await list()).map((e) => e.name).sort(), ["all-a", "all-b"]);
    const r = await t.cli(["stop", "--all"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await list(), []);
    await waitGone(procs, "stop --all");
  });

  /** Keepers of this instance's cloisters, found by their command line: also those no record lists. */
  const keepers = (): number[] =>
    [...hostProcessTable().keys()].filter((pid) => readOr(`/proc/${pid}/cmdline`).split("\0").join(" ").includes(`keep --listen ${t.home}/`));

  it("start -d of one name from several commands at once makes one cloister, which the others join; stop --all leaves no process", async () => {
    const starts = await Promise.all([1, 2, 3, 4].map(() => t.cli(["start", "-d", "--name", "race"])));
    for (const r of starts) assert.equal(r.code, 0, r.stderr);
    assert.equal(starts.filter((r) => /Started cloister race/.test(r.stderr)).length, 1, starts.map((r) => r.stderr).join(""));
    assert.equal(starts.filter((r) => /Cloister race is already running/.test(r.stderr)).length, 3, starts.map((r) => r.stderr).join(""));
    assert.deepEqual((await list()).map((e) => e.name), ["race"]);
    const procs = await cloisterProcs(t, "race");
    assert.equal(keepers().length, 1, "more than one cloister was made");
    const stop = await t.cli(["stop", "--all"]);
    assert.equal(stop.code, 0, stop.stderr);
    await waitGone(procs, "stop --all");
    assert.deepEqual(keepers(), [], "a cloister no record lists outlived stop --all");
    assert.deepEqual(runtimeDirs(t), []);
  });

  it("start --name of another project's cloister is refused, naming that project and its directory", async () => {
    await startDetached(["--name", "elsewhere"]);
    const other = join(dirname(t.project), "other-project");
    mkdirSync(other, { recursive: true });
    spawnSync("git", ["init", "-q", other]);
    const r = await t.cli(["start", "--name", "elsewhere"], { cwd: other, input: "ls /work\nexit\n" });
    assert.equal(r.code, 125, r.stdout);
    assert.match(r.stderr, new RegExp(`cloister elsewhere belongs to project proj \\(${projectRoot}\\)`));
    assert.equal((await t.cli(["stop", "elsewhere"])).code, 0);
  });

  it("run and exec whose output's reader goes away (| head -1) end quietly with the command's SIGPIPE status", async () => {
    await startDetached(["--name", "piped"]);
    for (const args of [["run", "--"], ["exec", "piped", "--"]]) {
      const script = `"$0" "$1" ${args.join(" ")} yes | head -1; echo "status=\${PIPESTATUS[0]}" >&2`;
      const r = await startCommand("bash", ["-c", script, process.execPath, CLI], { env: t.env, cwd: t.project, timeoutMs: 60_000 }).done;
      assert.equal(r.stdout, "y\n");
      assert.equal(r.stderr, "status=141\n", `${args[0]}: not the command's SIGPIPE status, or more was said`);
    }
    assert.equal((await t.cli(["stop", "piped"])).code, 0);
  });

  describe("placeholders of cloisters of one project", () => {
    const exclude = () => readOr(join(t.project, ".git", "info", "exclude"));

    it("are all removed when the cloisters end at the same time", async () => {
      const before = { entries: readdirSync(t.project).sort(), exclude: exclude() };
      for (let round = 0; round < 4; round++) {
        const codes = await Promise.all([1, 2].map(async () => (await t.cli(["run", "--", "true"])).code));
        assert.deepEqual(codes, [0, 0]);
        assert.deepEqual({ entries: readdirSync(t.project).sort(), exclude: exclude() }, before, `left behind in round ${round + 1}`);
      }
    });

    it("made by a launch that protects more than the project's running cloister go with that launch, and the rest with the last", async () => {
      const before = { entries: readdirSync(t.project).sort(), exclude: exclude() };
      await startDetached(["--name", "fewer"]);
      await withConfig(t, (config) => config.replace(/^  protect: \[\]$/m, "  protect: [Makefile, newdir/x]"), async () => {
        const r = await t.cli(["run", "--", "sh", "-c", "test -d /work/Makefile && test -d /work/newdir/x"]);
        assert.equal(r.code, 0, `the run did not protect Makefile and newdir/x: ${r.stderr}`);
      });
      assert.ok(!existsSync(join(t.project, "Makefile")) && !existsSync(join(t.project, "newdir")), "the run's own placeholders outlived it");
      assert.doesNotMatch(exclude(), /Makefile|newdir/);
      assert.equal((await t.cli(["stop", "fewer"])).code, 0);
      assert.deepEqual({ entries: readdirSync(t.project).sort(), exclude: exclude() }, before);
    });
  });

  it("a command whose cloister is stopped from outside says by whom; only a persistent cloister's says to start it again (QA: run was told to)", async () => {
    const running = async (args: string[]) => {
      const live = spawnCli(t, [...args, "--", "sh", "-c", "echo ready; sleep 60"]);
      await live.waitFor("ready");
      return live;
    };
    const run = await running(["run"]);
    const name = recordNames(t).find((n) => n.startsWith("proj-run-"))?.replace(/\.json$/, "") ?? "";
    assert.equal((await t.cli(["stop", name])).code, 0);
    const stopped = await run.done;
    assert.equal(stopped.code, 125);
    assert.match(stopped.stderr, /^cloister: the cloister was stopped from outside by a stop request \(`cloister stop`, .*\) while the command ran \([^)]*\)\n$/);

    await startDetached(["--name", "stopped-under"]);
    const exec = await running(["exec", "stopped-under"]);
    const run2 = await running(["run"]);
    assert.equal((await t.cli(["guardian", "stop"])).code, 0);
    const [execEnd, runEnd] = await Promise.all([exec.done, run2.done]);
    assert.equal(runEnd.code, 125);
    assert.match(runEnd.stderr, /^cloister: the cloister was stopped from outside by `cloister guardian stop` while the command ran \([^)]*\)\n$/);
    assert.equal(execEnd.code, 125);
    assert.match(execEnd.stderr, /^cloister: the cloister was stopped by `cloister guardian stop` \(.*\) \(start it again if it is still needed\)\n$/);
  });

  it("guardian status --json reports the guardian; guardian stop takes every cloister with it (no orphans)", async () => {
    await startDetached(["--name", "orphan-check"]);
    const status = await t.cli(["guardian", "status", "--json"]);
    assert.equal(status.code, 0, status.stderr);
    const s = JSON.parse(status.stdout) as Record<string, unknown>;
    assert.equal(s.running, true);
    assert.equal(typeof s.pid, "number");
    assert.equal(typeof s.version, "string");
    assert.ok(typeof s.startedAt === "string" && !Number.isNaN(Date.parse(s.startedAt)));
    assert.equal(s.cloisters, 1);
    assert.equal(s.controlSocket, join(t.home, "run", "guardian.sock"));
    const token = (JSON.parse(readOr(join(recordDir(t), "orphan-check.json"), "{}")) as { proxyToken?: string }).proxyToken;
    assert.ok(token, "the record holds the cloister's proxy token");
    assert.ok(!status.stdout.includes(token) && !(await t.cli(["list", "--json"])).stdout.includes(token), "the proxy token is shown");

    const procs = [...(await cloisterProcs(t, "orphan-check")), { pid: s.pid as number, start: hostProcessTable().get(s.pid as number)?.start ?? "" }];
    const stop = await t.cli(["guardian", "stop"]);
    assert.equal(stop.code, 0, stop.stderr);
    await waitGone(procs, "guardian stop");
    assert.deepEqual(recordNames(t), []);
    assert.deepEqual(runtimeDirs(t), []);
    const after = await t.cli(["guardian", "status", "--json"]);
    assert.deepEqual(JSON.parse(after.stdout), { running: false, cloistersWithoutNetwork: [] });
    assert.equal(after.code, 3, "not running: exit 3, with --json as without");
    assert.equal(existsSync(join(t.home, "run", "guardian.json")), false, "a stopped guardian leaves its info file");

    // Stopping a name nothing is recorded under says so without starting a guardian to ask.
    const unknown = await t.cli(["stop", "never-started"]);
    assert.equal(unknown.code, 125);
    assert.match(unknown.stderr, /no cloister named "never-started".*cloister list/);
    assert.deepEqual(JSON.parse((await t.cli(["guardian", "status", "--json"])).stdout), { running: false, cloistersWithoutNetwork: [] }, "stop started a guardian");
  });

  it("guardian stop after the guardian crashed still stops the cloisters it left running (no orphans)", async () => {
    await startDetached(["--name", "after-crash"]);
    const guardianPid = (JSON.parse((await t.cli(["guardian", "status", "--json"])).stdout) as { pid: number }).pid;
    const procs = await cloisterProcs(t, "after-crash");
    process.kill(guardianPid, "SIGKILL");
    await waitUntil("the guardian to die", () => !hostProcessTable().has(guardianPid));
    const stop = await t.cli(["guardian", "stop"]);
    assert.equal(stop.code, 0, stop.stderr);
    assert.match(stop.stderr, /Stopped 1 cloister\(s\) and the guardian/);
    await waitGone(procs, "guardian stop after a crash");
    assert.deepEqual(recordNames(t), []);
    assert.match((await t.cli(["guardian", "stop"])).stderr, /Guardian is not running/);
  });

  it("a guardian ended by SIGTERM first finishes the clean-up it has under way (no half-removed cloister)", async () => {
    const started = await t.cli(["guardian", "start"]);
    assert.equal(started.code, 0, started.stderr);
    const guardianPid = (JSON.parse((await t.cli(["guardian", "status", "--json"])).stdout) as { pid: number }).pid;
    const guardian = { pid: guardianPid, start: hostProcessTable().get(guardianPid)?.start ?? "" };
    // The record of a cloister whose keeper is dead, as a crashed `run` leaves it. Its "cgroup" is a
    // directory that will not empty, so the guardian's clean-up keeps trying it for a while (as for
    // processes slow to die) and the SIGTERM below lands in the middle of it.
    const ghostDir = join(t.home, "ghost");
    const busyCgroup = join(ghostDir, "cgroup");
    const runtimeDir = join(t.home, "run", "c", "0badc0de");
    mkdirSync(busyCgroup, { recursive: true });
    writeFileSync(join(busyCgroup, "member"), "");
    mkdirSync(runtimeDir, { recursive: true });
    const dead = spawnSync("true");
    const record = {
      name: "ghost", id: "0badc0de", project: "ghost", projectRoot: ghostDir, persistent: true, network: false,
      createdAt: new Date().toISOString(), keeperPid: dead.pid, keeperStartTime: "0", initSocket: join(runtimeDir, "init.sock"),
      runtimeDir, homeDir: join(ghostDir, "home"), ephemeralHome: false, cgroupDirs: [busyCgroup], placeholders: [], limitMechanism: "cgroup1",
    };
    writeFileSync(join(recordDir(t), "ghost.json"), JSON.stringify(record), { mode: 0o600 });
    const log = join(t.home, "state", "guardian.log");
    await waitUntil("the guardian to start cleaning up the dead cloister", () => readOr(log).includes("cloister ghost is gone"), 15_000);
    process.kill(guardianPid, "SIGTERM");
    await waitGone([guardian], "the guardian after SIGTERM");
    assert.equal(recordOf(t, "ghost"), undefined, "the clean-up was cut off: the dead cloister's record is left");
    assert.equal(existsSync(runtimeDir), false, "the clean-up was cut off: the runtime dir is left");
  });

  it("answers while it removes a `run`'s HOME of many files: guardian status comes while the HOME is still there, and a second stop of it waits for the same removal (QA: status hit its 10 s deadline)", async () => {
    const run = spawnCli(t, ["run", "--", "sh", "-c", "mkdir ~/cache && cd ~/cache && seq 30000 | xargs touch && echo MADE && cat >/dev/null"]);
    await run.waitFor("MADE", 90_000);
    const files = recordNames(t).map((file) => JSON.parse(readOr(join(recordDir(t), file), "{}")) as CloisterRecord);
    const record = files.find((r) => r.ephemeralHome);
    assert.ok(record, `no record of the run among ${JSON.stringify(files)}`);
    const paths = resolvePaths({ CLOISTER_HOME: t.home });

    run.endInput();
    // Its runtime dir goes first, then the HOME: the removal of the HOME is under way.
    await waitUntil("the guardian to remove the run's runtime dir", () => !existsSync(record.runtimeDir));
    const status = await guardianCall<{ cloisters: number }>(paths, "GET", "/v1/status");
    assert.ok(existsSync(record.homeDir), "guardian status answered only once the HOME was removed: the removal held the guardian up");
    assert.equal(status.cloisters, 1, "the cloister being removed keeps its record, and its name, until its HOME is gone");
    const secondStop = await guardianCall<{ stopped: string }>(paths, "POST", `/v1/cloisters/${record.name}/stop`, { id: record.id }, { deadlineMs: 60_000 });
    assert.equal(secondStop.stopped, record.name);
    assert.equal(existsSync(record.homeDir), false, "the second stop answered before the HOME was gone");

    const end = await run.done;
    assert.equal(end.code, 0, end.stderr);
    assert.equal(recordOf(t, record.name), undefined);
    assert.deepEqual(runtimeDirs(t), []);
    const audit = await t.cli(["audit", "tail", "--json", "-n", "1000"]);
    const stops = audit.stdout.trim().split("\n").map((line) => JSON.parse(line) as { type: string; cloister?: string }).filter((e) => e.type === "cloister.stop" && e.cloister === record.name);
    assert.equal(stops.length, 1, "the cloister's end was recorded once, by the one removal");
  });

  it("leaves a launch that is failing to its live launcher, which still reads the keeper's log, and cleans it up once that launch is old", async () => {
    // Two dead cloisters, as bwrap failing right after the keeper started it leaves them: one whose
    // launcher (this process) still runs, and one whose launcher is gone. One reconcile looks at both.
    const dead = spawnSync("true");
    const deadCloister = (name: string, id: string, launcher: { pid?: number; start?: string }): { runtimeDir: string; file: string; record: Record<string, unknown> } => {
      const runtimeDir = join(t.home, "run", "c", id);
      mkdirSync(runtimeDir, { recursive: true });
      writeFileSync(join(runtimeDir, "cloister.log"), "bwrap: Can't mount proc on /newroot/proc: Operation not permitted\n");
      const record = {
        name, id, project: name, projectRoot: t.project, persistent: true, network: false,
        createdAt: new Date().toISOString(), keeperPid: dead.pid, keeperStartTime: "0", initSocket: join(runtimeDir, "init.sock"),
        runtimeDir, homeDir: join(t.home, name), ephemeralHome: false, cgroupDirs: [], placeholders: [], limitMechanism: "rlimit",
        launcherPid: launcher.pid, launcherStartTime: launcher.start,
      };
      const file = join(recordDir(t), `${name}.json`);
      mkdirSync(recordDir(t), { recursive: true });
      writeFileSync(file, JSON.stringify(record), { mode: 0o600 });
      return { runtimeDir, file, record };
    };
    const failing = deadCloister("failing", "0badfa11", { pid: process.pid, start: processStartTime(process.pid) });
    deadCloister("abandoned", "0badfa12", { pid: dead.pid, start: "0" });
    const log = join(t.home, "state", "guardian.log");
    assert.equal((await t.cli(["guardian", "start"])).code, 0);
    await waitUntil("the guardian to clean up the cloister whose launcher is gone", () => readOr(log).includes("cloister abandoned is gone") && recordOf(t, "abandoned") === undefined, 15_000);
    assert.ok(existsSync(join(failing.runtimeDir, "cloister.log")), "the failing launch's log was removed under its launcher");
    assert.notEqual(recordOf(t, "failing"), undefined);

    writeFileSync(failing.file, JSON.stringify({ ...failing.record, createdAt: new Date(Date.now() - 60_000).toISOString() }), { mode: 0o600 });
    await waitUntil("the guardian to clean up the old dead cloister", () => recordOf(t, "failing") === undefined && !existsSync(failing.runtimeDir), 15_000);
  });

  it("trusts guardian.json only for a live guardian of this build on its own socket: a stale or forged one starts a real guardian", async () => {
    // The CLI skips asking the guardian when its info file says it runs. Here the file names a
    // live process that is not a guardian (this test), with this build, while none runs.
    await t.cli(["guardian", "stop"]);
    const infoFile = join(t.home, "run", "guardian.json");
    const startTime = processStartTime(process.pid);
    const build = cloisterBuild();
    mkdirSync(dirname(infoFile), { recursive: true, mode: 0o700 });
    writeFileSync(infoFile, JSON.stringify({ pid: process.pid, startTime, build, socketInode: 1 }), { mode: 0o600 });
    const r = await t.cli(["approvals", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const status = JSON.parse((await t.cli(["guardian", "status", "--json"])).stdout) as { running: boolean; pid?: number };
    assert.equal(status.running, true);
    assert.notEqual(status.pid, process.pid);
    assert.equal((JSON.parse(readOr(infoFile, "{}")) as { pid?: number }).pid, status.pid, "the real guardian wrote its own info file");
  });

  it("launches made at once through the library, with no guardian running, start exactly one and all run", async () => {
    await t.cli(["guardian", "stop"]);
    const log = join(t.home, "state", "guardian.log");
    const starts = () => (readOr(log, "").match(/guardian \S+ started \(pid \d+\)/g) ?? []).length;
    const before = starts();
    const paths = resolvePaths({ CLOISTER_HOME: t.home });
    const codes = await Promise.all([1, 2, 3].map(() => runInCloister(["true"], { project: t.project, paths, network: true })));
    assert.deepEqual(codes, [0, 0, 0]);
    assert.equal(starts(), before + 1, readOr(log, ""));
    assert.doesNotMatch(readOr(log, ""), /already running for this instance/, "a second guardian was started and gave way");
  });

  /** What a launch leaves on the host: project entries, runtime dirs, HOMEs, records, cloister cgroups. */
  const homesDir = () => join(t.home, "data", "homes");
  const leftovers = () => ({
    project: readdirSync(t.project).sort(),
    runtime: runtimeDirs(t),
    homes: (existsSync(homesDir()) ? readdirSync(homesDir()) : []).filter((n) => n.startsWith(".run-")),
    records: recordNames(t),
    // A mark left held (project-marks.ts) would keep the project's placeholders for good.
    marks: [...markedCloisters(projectKey(t.project))].sort(),
    // Every hierarchy, v1 and v2: a delegated v2 subtree (user@UID.service/...) lies a few levels down.
    cgroups: spawnSync("find", ["/sys/fs/cgroup", "-maxdepth", "8", "-type", "d", "-name", "cloister-*"], { encoding: "utf8" }).stdout.split("\n").filter(Boolean).sort(),
  });

  /** Waits up to `ms` for the host to be as `before` again, then says what is left if it is not. */
  async function assertNothingLeft(before: ReturnType<typeof leftovers>, what: string, ms: number): Promise<void> {
    await waitUntil(what, () => JSON.stringify(leftovers()) === JSON.stringify(before), ms).catch(() => undefined);
    assert.deepEqual(leftovers(), before, `left behind by ${what}`);
  }

  /**
   * Starts `run -- sleep 30` and returns once `reached()` says its launch got there (polled every
   * millisecond: a launch takes some tens of them), or it exited, or 15 s passed.
   */
  async function runUntil(reached: () => boolean): Promise<LiveCli> {
    const run = spawnCli(t, ["run", "--", "sleep", "30"]);
    for (const deadline = Date.now() + 15_000; Date.now() < deadline && run.child.exitCode === null && !reached(); ) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    return run;
  }

  it("a launch aborted through the library at any moment leaves nothing behind (or, done first, stops cleanly)", async () => {
    const paths = resolvePaths({ CLOISTER_HOME: t.home });
    await runInCloister(["true"], { project: t.project, paths, network: true });
    const before = leftovers();
    let aborted = 0;
    for (const delayMs of [0, 1, 2, 4, 6, 8, 10, 13, 16, 20, 25, 30, 40, 60]) {
      const controller = new AbortController();
      setTimeout(() => controller.abort(new Error(`aborted after ${delayMs} ms`)), delayMs);
      try {
        const cloister = await createCloister({ project: t.project, paths, network: true, signal: controller.signal }, false);
        await cloister.stop();
      } catch (error) {
        assert.match(String(error), new RegExp(`aborted after ${delayMs} ms`));
        aborted++;
      }
      // The guardian closes an abandoned grant on its own schedule (the launcher's release call): give it a moment.
      await assertNothingLeft(before, `an abort at ${delayMs} ms`, 5_000);
    }
    assert.ok(aborted >= 3, `only ${aborted} launches were caught mid-way`);
  });

  it("Ctrl-C while `run` starts its cloister exits 130 and leaves nothing behind", async () => {
    const before = leftovers();
    for (let attempt = 0; attempt < 3; attempt++) {
      // The launch has begun once its runtime dir exists; interrupt it there.
      const run = await runUntil(() => runtimeDirs(t).length > before.runtime.length);
      run.child.kill("SIGINT");
      const r = await run.done;
      assert.equal(r.code, 130, r.stderr);
      await assertNothingLeft(before, "Ctrl-C", 5_000);
      if (/interrupted \(SIGINT\) while starting/.test(r.stderr)) return;
    }
    assert.fail("Ctrl-C never reached a launch in progress (it always came after the command started)");
  });

  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    it(`${signal} to run's whole process group (a terminal's Ctrl-C, timeout(1), a CI runner) stops the cloister in order: ${code}, nothing left`, async () => {
      const before = leftovers();
      // Its own group, as a shell's job is: the signal goes to every process in it.
      const child = spawn(process.execPath, [CLI, "run", "--", "sh", "-c", "echo started; exec sleep 30"], { cwd: t.project, env: t.env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.on("close", (exitCode) => resolve(exitCode)));
      try {
        await waitUntil("the command to start", () => stdout.includes("started"), 30_000);
        process.kill(-(child.pid ?? 0), signal);
        // Before: the keeper and bwrap died of it too, and run said "the cloister is gone or not ready" (125).
        assert.equal(await exited, code, stderr);
        assert.equal(stderr, "");
        await assertNothingLeft(before, `${signal} to the group`, 5_000);
      } finally {
        if (child.exitCode === null) process.kill(-(child.pid ?? 0), "SIGKILL");
      }
    });
  }

  describe("a launcher killed outright (SIGKILL)", () => {
    /** Starts `run`, kills it `delayMs` after its record appears; true when its keeper had not run yet. */
    async function killLaunch(known: string[], delayMs: number): Promise<boolean> {
      const newRecord = () => recordNames(t).find((name) => !known.includes(name));
      const run = await runUntil(() => newRecord() !== undefined);
      const record = newRecord();
      assert.ok(record, "the launch never wrote its record");
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
      run.child.kill("SIGKILL");
      const midway = recordOf(t, record.replace(/\.json$/, ""))?.keeperPid === undefined;
      await run.done;
      return midway;
    }

    /** The guardian's sweep runs every 2 s (and when it starts): it finds the record of a launcher that is gone. */
    const assertSwept = (before: ReturnType<typeof leftovers>, what: string) => assertNothingLeft(before, what, 10_000);

    it("at any moment of its launch leaves nothing the guardian does not sweep away", async () => {
      assert.equal((await t.cli(["run", "--", "true"])).code, 0); // a guardian serving
      const before = leftovers();
      let midway = 0;
      // Measured from the launch's first write (its record, made before anything else), through the
      // keeper, the placeholders and bwrap, to the command running.
      for (const delayMs of [0, 0, 1, 2, 4, 7, 10, 15, 20, 30, 45, 70]) {
        if (await killLaunch(before.records, delayMs)) midway++;
        await assertSwept(before, `a launcher killed ${delayMs} ms into its launch`);
      }
      assert.ok(midway >= 2, `only ${midway} launchers were killed before their keeper ran`);
    });

    it("after handing its keeper bwrap's argv leaves no keeper running, also where no cgroup would catch it", async () => {
      // The state such a launch leaves (its record's second write, a keeper already running bwrap),
      // made by hand: as root here cgroups would end the keeper anyway, without them only its pid
      // does. A sleeping process stands in for the keeper, a finished one for the launcher.
      assert.equal((await t.cli(["run", "--", "true"])).code, 0); // a guardian serving
      const keeper = spawn("sleep", ["60"], { detached: true, stdio: "ignore" });
      const launcher = spawnSync("true");
      const runtimeDir = join(t.home, "run", "c", "0000dead");
      mkdirSync(runtimeDir, { recursive: true });
      const record: CloisterRecord = {
        name: "killed-midway",
        id: "0000dead",
        project: "proj",
        projectRoot: t.project,
        persistent: true,
        network: false,
        createdAt: new Date().toISOString(),
        launcherPid: launcher.pid,
        spawnedKeeperPid: keeper.pid,
        spawnedKeeperStartTime: processStartTime(keeper.pid ?? 0),
        initSocket: join(runtimeDir, "init.sock"),
        runtimeDir,
        homeDir: join(t.home, "data", "homes", "killed-midway"),
        ephemeralHome: false,
        cgroupDirs: [],
        placeholders: [],
        limitMechanism: "rlimit",
      };
      writeRecord(resolvePaths({ CLOISTER_HOME: t.home }), record);
      await waitUntil("the guardian's sweep to end the keeper", () => keeper.signalCode !== null, 10_000);
      assert.equal(keeper.signalCode, "SIGKILL");
      await waitUntil("the record to go", () => recordOf(t, "killed-midway") === undefined, 5_000);
      assert.ok(!existsSync(runtimeDir));
    });

    it("while no guardian runs leaves a record the next guardian sweeps away", async () => {
      await t.cli(["guardian", "stop"]);
      const before = leftovers();
      await killLaunch(before.records, 0);
      assert.equal((await t.cli(["run", "--", "true"])).code, 0);
      await assertSwept(before, "a launcher killed while the guardian was starting");
    });
  });

  describe("a cloister whose record is unreadable (torn, empty: QA F7)", () => {
    /** Backdates a runtime dir past the guardian's launch grace (a minute), as if its cloister had run that long. */
    const age = (dir: string) => utimesSync(dir, new Date(Date.now() - 120_000), new Date(Date.now() - 120_000));
    const log = () => readOr(join(t.home, "state", "guardian.log"));

    it("is ended by guardian stop once its runtime dir is past the launch grace, and not before: keeper, bwrap, cgroups and runtime dir go, the record is set aside", async () => {
      await startDetached(["--name", "torn"]);
      const procs = await cloisterProcs(t, "torn");
      const recordFile = join(recordDir(t), "torn.json");
      const id = (JSON.parse(readOr(recordFile)) as { id: string }).id;
      const runtimeDir = join(t.home, "run", "c", id);
      writeFileSync(recordFile, "");
      try {
        // A fresh guardian reconciles at once: a runtime dir this young may be a launch's, and stays.
        assert.equal((await t.cli(["guardian", "stop"])).code, 0);
        assert.equal((await t.cli(["guardian", "start"])).code, 0);
        // The keeper, bwrap and init (what init forks may come and go).
        assert.equal(survivors(procs.slice(0, 3)).length, 3, "a young runtime dir without a record was swept");
        assert.ok(existsSync(runtimeDir));
        assert.ok(existsSync(recordFile), "the record was set aside while its cloister ran");
      } finally {
        age(runtimeDir); // else nothing would end the cloister, the teardown's guardian stop included
      }
      const stop = await t.cli(["guardian", "stop"]);
      assert.equal(stop.code, 0, stop.stderr);
      await waitGone(procs, "guardian stop of a cloister with an unreadable record");
      assert.ok(!existsSync(runtimeDir), "its runtime dir is left");
      assert.deepEqual(leftovers().cgroups.filter((dir) => dir.endsWith(`/cloister-${id}`)), [], "its cgroups are left");
      assert.ok(!existsSync(recordFile) && existsSync(`${recordFile}.unreadable`), "the unreadable record was not set aside");
      assert.match(log(), new RegExp(`cloister #${id} is gone: no readable record names it`));
      assert.match(log(), /cloisters\/torn\.json is unreadable: moved to/);
      rmSync(`${recordFile}.unreadable`);
    });

    it("has its keeper found by its command line where no cgroup would catch it", async () => {
      // As root cgroups would end the keeper anyway: a stand-in with a keeper's command line
      // (`... keep --listen SOCKET`), a shell waiting on its stdin, takes its place, and its record is torn.
      assert.equal((await t.cli(["guardian", "start"])).code, 0);
      const id = "0000f007";
      const runtimeDir = join(t.home, "run", "c", id);
      mkdirSync(runtimeDir, { recursive: true });
      writeFileSync(join(t.home, "keep"), "read line\n");
      const keeper = spawn("sh", ["keep", "--listen", join(runtimeDir, "init.sock")], { cwd: t.home, stdio: ["pipe", "ignore", "ignore"] });
      writeFileSync(join(recordDir(t), "stand-in.json"), `{"name": "stand-in", "id": "${id}", "proj`);
      age(runtimeDir);
      await waitUntil("the guardian's sweep to end the keeper", () => keeper.signalCode !== null, 10_000);
      assert.equal(keeper.signalCode, "SIGKILL");
      await waitUntil("the runtime dir and the record to go", () => !existsSync(runtimeDir) && !existsSync(join(recordDir(t), "stand-in.json")), 5_000);
      rmSync(join(recordDir(t), "stand-in.json.unreadable"));
    });
  });

  it("refuses invalid names with exit 125 and a clear message, creating nothing", async () => {
    for (const bad of ["Bad Name", "../x", "a".repeat(64)]) {
      const r = await t.cli(["start", "-d", "--name", bad]);
      assert.equal(r.code, 125, `${bad}: ${r.stderr}`);
      assert.match(r.stderr, /invalid cloister name/);
      assert.equal(r.stderr.trim().split("\n").length, 1, "one line");
    }
    assert.deepEqual(recordNames(t), []);
    assert.deepEqual(runtimeDirs(t), []);
  });

  it("handles a project path with spaces and a newline, or refuses it cleanly", async () => {
    const odd = join(dirname(t.project), "x y\nz");
    mkdirSync(odd);
    const git = (...args: string[]) => spawnSync("git", ["-C", odd, ...args], { encoding: "utf8" });
    git("init", "-q");
    writeFileSync(join(odd, "file.txt"), "odd project\n");
    git("add", ".");
    git("-c", "user.email=t@example.com", "-c", "user.name=T", "commit", "-qm", "init");

    const run = await t.cli(["run", "--project", odd, "--", "cat", "/work/file.txt"]);
    if (run.code === 0) {
      assert.equal(run.stdout, "odd project\n");
      const start = await t.cli(["start", "-d", "--project", odd]);
      assert.equal(start.code, 0, start.stderr);
      const entry = (await list()).find((e) => e.projectRoot === realpathSync(odd));
      assert.ok(entry?.running, "the cloister of the odd project is not listed");
      const path = await t.cli(["path", entry.name]);
      assert.equal(path.stdout, `${realpathSync(odd)}\n`);
      const stop = await t.cli(["stop", entry.name]);
      assert.equal(stop.code, 0, stop.stderr);
    } else {
      assert.equal(run.code, 125, run.stderr);
      assert.equal(run.stderr.trim().split("\n").length, 1, `not one clear line: ${run.stderr}`);
    }
    assert.deepEqual(recordNames(t), []);
    assert.deepEqual(runtimeDirs(t), []);
    assert.deepEqual(readdirSync(odd).sort(), [".git", "file.txt"], "placeholders left in the project");
  });

  it("runs two instances side by side, each with its own guardian", async () => {
    const other = createInstance("life2");
    try {
      const [a, b] = await Promise.all([t.cli(["run", "--", "sh", "-c", "echo $CLOISTER_NAME"]), other.cli(["run", "--", "sh", "-c", "echo $CLOISTER_NAME"])]);
      assert.equal(a.code, 0, a.stderr);
      assert.equal(b.code, 0, b.stderr);
      const status = async (instance: TestInstance) => JSON.parse((await instance.cli(["guardian", "status", "--json"])).stdout) as { running: boolean; pid: number; controlSocket: string };
      const [sa, sb] = await Promise.all([status(t), status(other)]);
      assert.equal(sa.running, true);
      assert.equal(sb.running, true);
      assert.notEqual(sa.pid, sb.pid);
      assert.ok(sa.controlSocket.startsWith(t.home) && sb.controlSocket.startsWith(other.home));
      // Stopping one instance leaves the other alone.
      await other.cli(["guardian", "stop"]);
      const again = await status(t);
      assert.equal(again.pid, sa.pid);
    } finally {
      await other.teardown();
    }
  });

  it("doctor --json passes here and reports bubblewrap ok", async () => {
    const r = await t.cli(["doctor", "--json"]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const report = JSON.parse(r.stdout) as { ok: boolean; checks: { id: string; title: string; status: string }[] };
    const bwrap = report.checks.find((c) => c.id === "bwrap" || /bubblewrap/i.test(c.title));
    assert.ok(bwrap, `no bubblewrap check in ${report.checks.map((c) => c.id).join(", ")}`);
    assert.equal(bwrap.status, "ok");
  });

  it("config edit runs an EDITOR that carries arguments (code --wait), as git does, and validates the result", async () => {
    const editor = join(t.home, "fake-editor");
    writeFileSync(editor, '#!/bin/sh\n[ "$1" = --wait ] || exit 3\nprintf "# edited\\n" >> "$2"\n', { mode: 0o755 });
    const file = join(t.home, "config", "config.yaml");
    const before = readOr(file);
    const r = await startCommand(process.execPath, [CLI, "config", "edit"], { env: { ...t.env, EDITOR: `${editor} --wait`, VISUAL: "" }, cwd: t.project, timeoutMs: 30_000 }).done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readOr(file), `${before}# edited\n`);
    const missing = await startCommand(process.execPath, [CLI, "config", "edit"], { env: { ...t.env, EDITOR: "no-such-editor --wait", VISUAL: "" }, cwd: t.project, timeoutMs: 30_000 }).done;
    assert.equal(missing.code, 125);
    assert.match(missing.stderr, /could not start the editor "no-such-editor --wait": command not found/);
    // An editor that failed is no edit to approve (QA: "Config is valid.", exit 0).
    const failed = await startCommand(process.execPath, [CLI, "config", "edit"], { env: { ...t.env, EDITOR: "false", VISUAL: "" }, cwd: t.project, timeoutMs: 30_000 }).done;
    assert.equal(failed.code, 125);
    assert.match(failed.stderr, /^cloister: the editor "false" exited with code 1 \(.*config\.yaml is as the editor left it/);
    // A project that does not exist is not made by editing it (QA: it registered "nosuch").
    const nosuch = await startCommand(process.execPath, [CLI, "project", "edit", "nosuch"], { env: { ...t.env, EDITOR: "touch", VISUAL: "" }, cwd: t.project, timeoutMs: 30_000 }).done;
    assert.equal(nosuch.code, 125);
    assert.match(nosuch.stderr, /no project named "nosuch"/);
    assert.ok(!existsSync(join(t.home, "config", "projects", "nosuch.yaml")));
    writeFileSync(file, before);
  });

  it("a guardian that cannot start says why, on the CLI's one line (QA: only 'see the log'); reload without a guardian says so", async () => {
    assert.equal((await t.cli(["guardian", "start"])).code, 0, "the signing key is made at the first start");
    assert.equal((await t.cli(["guardian", "stop"])).code, 0);
    const noGuardian = await t.cli(["guardian", "reload"]);
    assert.equal(noGuardian.code, 0, noGuardian.stderr);
    assert.equal(noGuardian.stderr, "The guardian is not running; it reads the configuration when it starts (with the next cloister command).\n");
    const key = join(t.home, "state", "audit", "signing-key.pem");
    const aside = `${key}.aside`;
    renameSync(key, aside);
    try {
      const r = await t.cli(["guardian", "start"]);
      assert.equal(r.code, 125);
      assert.match(r.stderr, /^cloister: the guardian did not start: .*audit.* \(see .*guardian\.log\)\n$/);
    } finally {
      rmSync(key, { force: true });
      renameSync(aside, key);
    }
    assert.equal((await t.cli(["guardian", "start"])).code, 0);
  });

  it("a guardian that does not answer (SIGSTOPped): run and guardian status give up naming its pid and `kill -CONT`; SIGTERM ends a launch waiting on it at once (QA)", async () => {
    // An instance of its own: the grant the stopped guardian gives once continued leaves a runtime
    // dir until its sweep, which would count as a leftover in the other tests' instance.
    const stalled = createInstance("stall");
    // Torn down whatever fails: a failed assertion left its guardian running.
    try {
      const started = await stalled.cli(["guardian", "start"]);
      assert.equal(started.code, 0, started.stderr);
      const pid = Number(readFileSync(join(stalled.home, "run", "guardian.pid"), "utf8"));
      process.kill(pid, "SIGSTOP");
      try {
        // Started first, so that it ends at the deadline: a launch still waiting for the grant then ends after it.
        const status = stalled.cli(["guardian", "status"]);
        const run = stalled.cli(["run", "--", "true"]);
        const interrupted = spawnCli(stalled, ["run", "--", "true"]);
        // By then it waits for the grant, which the stopped guardian cannot give.
        await waitUntil("the launch to make its runtime dir", () => runtimeDirs(stalled).length > 0 || interrupted.child.exitCode !== null);
        await new Promise((resolve) => setTimeout(resolve, 500));
        interrupted.child.kill("SIGTERM");
        const first = await Promise.race([interrupted.done.then(() => "interrupted run"), status.then(() => "status")]);
        assert.equal(first, "interrupted run", "the SIGTERMed launch waited for the guardian's deadline");
        const cut = await interrupted.done;
        assert.equal(cut.code, 128 + 15, cut.stderr);
        assert.equal(cut.stderr, "cloister: interrupted (SIGTERM) while starting; nothing of the launch was left behind\n");

        const unanswered = `cloister: the guardian (pid ${pid}) is stopped and did not answer within 10s (resume it with \`kill -CONT ${pid}\`)\n`;
        const [statusResult, runResult] = await Promise.all([status, run]);
        assert.deepEqual([statusResult.code, statusResult.stdout, statusResult.stderr], [125, "", unanswered], "not \"Guardian: not running\"");
        assert.deepEqual([runResult.code, runResult.stderr], [125, unanswered]);
        assert.deepEqual(recordNames(stalled), []);
        assert.deepEqual(runtimeDirs(stalled), []);
      } finally {
        process.kill(pid, "SIGCONT");
      }
      const resumed = await stalled.cli(["guardian", "status", "--json"]);
      assert.equal(resumed.code, 0, resumed.stderr);
      assert.equal((JSON.parse(resumed.stdout) as { pid: number }).pid, pid);
    } finally {
      await stalled.teardown();
    }
  });

  it("SIGTERM ends an agent launch waiting on a SIGSTOPped guardian for its credential at once (not at the vault's 1m deadline), leaving nothing behind (QA)", async () => {
    // An instance of its own: its guardian stays stopped for a while.
    const stalled = createInstance("cred");
    try {
      const bin = join(dirname(stalled.home), "bin");
      mkdirSync(bin);
      writeFileSync(join(bin, "claude"), "#!/bin/sh\nexit 0\n", { mode: 0o755 });
      stalled.env.PATH = `${bin}:${stalled.env.PATH ?? ""}`;
      const started = await stalled.cli(["guardian", "start"]);
      assert.equal(started.code, 0, started.stderr);
      const pid = Number(readFileSync(join(stalled.home, "run", "guardian.pid"), "utf8"));
      const socket = join(stalled.home, "run", "guardian.sock");
      process.kill(pid, "SIGSTOP");
      try {
        const launch = spawnCli(stalled, ["run", "--agent", "claude", "--", "-p", "x"]);
        // The credential's is the first request an agent launch makes (the grant comes after it): once
        // a connection waits in the stopped guardian's queue, the launch waits in the lookup.
        await waitUntil("the credential request to wait at the stopped guardian", () => pendingConnections(socket) > 0 || launch.child.exitCode !== null);
        assert.deepEqual(runtimeDirs(stalled), [], "the launch is still before the cloister's making");
        launch.child.kill("SIGTERM");
        const cut = await launch.done;
        assert.equal(cut.code, 128 + 15, cut.stderr);
        assert.equal(cut.stderr, "cloister: interrupted (SIGTERM) while starting; nothing of the launch was left behind\n");
        assert.deepEqual(recordNames(stalled), []);
        assert.deepEqual(runtimeDirs(stalled), []);
        assert.deepEqual(cloisterHomes(stalled), []);
        assert.deepEqual(hostProcessesNaming(join(stalled.home, "run", "c")), [], "no keeper");
      } finally {
        process.kill(pid, "SIGCONT");
      }
    } finally {
      await stalled.teardown();
    }
  });

  it("config show in a registered project merges its config, as its help says (QA: only --project did)", async () => {
    assert.equal((await t.cli(["run", "--", "true"])).code, 0, "registers the project");
    const projects = JSON.parse((await t.cli(["project", "list", "--json"])).stdout) as { name: string; path: string }[];
    const name = projects.find((p) => p.path === realpathSync(t.project))?.name ?? "";
    const file = join(t.home, "config", "projects", `${name}.yaml`);
    const before = readOr(file);
    writeFileSync(file, `${before}\nlimits:\n  memory: 3GiB\n`);
    try {
      const here = await t.cli(["config", "show"], { cwd: t.project });
      assert.equal(here.code, 0, here.stderr);
      assert.match(here.stdout, new RegExp(`^# global config merged with project ${name}'s\\n`));
      assert.match(here.stdout, /^ {2}memory: 3GiB$/m);
      const elsewhere = await t.cli(["config", "show"], { cwd: t.home });
      assert.doesNotMatch(elsewhere.stdout, /memory: 3GiB|merged with/);
    } finally {
      writeFileSync(file, before);
    }
  });

  it("project remove takes the project's persisted decisions with it: a new project of that name starts without them (QA)", async () => {
    const repo = join(dirname(t.project), "again", "samename");
    mkdirSync(repo, { recursive: true });
    spawnSync("git", ["init", "-q", repo]);
    assert.equal((await t.cli(["run", "--", "true"], { cwd: repo })).code, 0);
    assert.equal((await t.cli(["allow", "decided-for-old.example.com"], { cwd: repo })).code, 0);
    const removed = await t.cli(["project", "remove", "samename"]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.match(removed.stderr, /^Removed project samename, with the allow and deny decisions kept for it\.\n$/);
    rmSync(repo, { recursive: true, force: true });
    const other = join(dirname(t.project), "elsewhere", "samename");
    mkdirSync(other, { recursive: true });
    spawnSync("git", ["init", "-q", other]);
    assert.equal((await t.cli(["run", "--", "true"], { cwd: other })).code, 0);
    const explained = await t.cli(["policy", "explain", "decided-for-old.example.com"], { cwd: other });
    assert.match(explained.stdout, /unlisted/, explained.stdout);
    await t.cli(["project", "remove", "samename"]);
  });

  it("a config file broken while a cloister runs does not lock the user out of it: exec runs with the defaults and says what is wrong", async () => {
    assert.equal((await t.cli(["start", "-d", "--name", "cfgbroken"])).code, 0);
    const file = join(t.home, "config", "config.yaml");
    const original = readOr(file);
    // A typo in a key of the limits section the file has.
    const typo = original.replace(/^limits:\n/m, "limits:\n  memroy: 4GiB\n");
    assert.notEqual(typo, original, "the config template has no limits section");
    writeFileSync(file, typo);
    try {
      const r = await t.cli(["exec", "cfgbroken", "--", "echo", "inside"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "inside\n");
      const line = typo.split("\n").indexOf("  memroy: 4GiB") + 1;
      assert.ok(r.stderr.split("\n").includes(`cloister: ${file}:${line}:3: limits.memroy: unknown key; until it is fixed, commands in cfgbroken run with the default settings`), r.stderr);
      // Two problems: both named, as a launch names them.
      writeFileSync(file, `${original}\nlimitz: 1\nproxi: 2\n`);
      const both = await t.cli(["exec", "cfgbroken", "--", "true"]);
      assert.equal(both.code, 0, both.stderr);
      assert.match(both.stderr, /2 problems in [^:]+: .*limitz.*; .*proxi.*; until they are fixed, commands in cfgbroken run with the default settings/);
    } finally {
      writeFileSync(file, original);
      await t.cli(["stop", "cfgbroken"]);
    }
  });

  it("a section given twice in config.yaml while a cloister runs (a YAML error, not a schema one) does not lock the user out either: exec names the key given twice and its line", async () => {
    assert.equal((await t.cli(["start", "-d", "--name", "cfgtwice"])).code, 0);
    const file = join(t.home, "config", "config.yaml");
    const original = readOr(file);
    assert.match(original, /^limits:$/m, "the config template has no limits section");
    // What a hand edit appending a section the file already has makes.
    writeFileSync(file, `${original}\nlimits:\n  memory: 4GiB\n`);
    try {
      const r = await t.cli(["exec", "cfgtwice", "--", "echo", "inside"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "inside\n");
      const line = `${original}\n`.split("\n").length;
      assert.match(r.stderr, new RegExp(`^cloister: ${file}:${line}:1: invalid YAML: .*\\("limits" is given twice\\); until it is fixed, commands in cfgtwice run with the default settings$`, "m"));
    } finally {
      writeFileSync(file, original);
      await t.cli(["stop", "cfgtwice"]);
    }
  });

  it("a project file with problems does not keep exec or stop without a name from the project's cloister (QA: \"no cloister name given\")", async () => {
    await startDetached();
    const file = join(t.home, "config", "projects", "proj.yaml");
    const original = readOr(file);
    writeFileSync(file, `${original}limits:\n  cpus: 2\n`);
    try {
      const exec = await t.cli(["exec", "--", "echo", "inside"]);
      assert.equal(exec.code, 0, exec.stderr);
      assert.equal(exec.stdout, "inside\n");
      assert.match(exec.stderr, /limits\.cpus: unknown key; until it is fixed, commands in proj run with the default settings/);
      const stop = await t.cli(["stop"]);
      assert.equal(stop.code, 0, stop.stderr);
      assert.equal(stop.stderr, "Stopped cloister proj\n");
      assert.deepEqual(await list(), []);
    } finally {
      writeFileSync(file, original);
      await t.cli(["stop", "proj"]);
    }
  });

  it("config validate names file, line and key of every problem, suggests the right key, and exits 1", async () => {
    const file = join(t.home, "config", "config.yaml");
    const original = readOr(file);
    writeFileSync(file, "# limits with a typo\nlimits:\n  memroy: 4GiB\nproxy:\n  connect_timout: 5s\n");
    try {
      const r = await t.cli(["config", "validate"]);
      assert.equal(r.code, 1, r.stderr);
      assert.ok(r.stderr.includes(`${file}:3:3: limits.memroy: unknown key (did you mean "memory"?)`), r.stderr);
      assert.ok(r.stderr.includes(`${file}:5:3: proxy.connect_timout: unknown key (did you mean "connect_timeout"?)`), r.stderr);
      assert.match(r.stderr, /2 problems, \d+ files? checked\.\n$/);
      const json = await t.cli(["config", "validate", "--json"]);
      assert.equal(json.code, 1);
      const report = JSON.parse(json.stdout) as { valid: boolean; problems: { file: string; line: number; key: string }[] };
      assert.equal(report.valid, false);
      assert.deepEqual(report.problems.map((p) => [p.file, p.line, p.key]), [[file, 3, "limits.memroy"], [file, 5, "proxy.connect_timout"]]);
      const doctor = await t.cli(["doctor", "--json"]);
      assert.equal(doctor.code, 1, "a failed check fails doctor, for scripts");
      const config = (JSON.parse(doctor.stdout) as { checks: { id: string; status: string; detail: string }[] }).checks.find((c) => c.id === "config");
      assert.equal(config?.status, "fail");
      assert.match(config?.detail ?? "", /limits\.memroy: unknown key .*\(and 1 more\)$/);
    } finally {
      if (original) writeFileSync(file, original);
      else rmSync(file, { force: true });
    }
  });
});
