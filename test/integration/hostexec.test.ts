/**
 * hostexec end to end: the real client inside a real cloister asks the real guardian, over the
 * cloister's own channel, to run commands on the host. Rules allow, ask (answered with `cloister
 * approve|deny`) or refuse; the command runs in the project directory with its output streamed back
 * and its exit status passed through; timeouts, Ctrl-C, the output cap, answer scopes, the rate limit
 * and the audit records behave as documented in SECURITY.md ("Host execution and approvals").
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { copyFileSync, existsSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parse as parseYaml } from "yaml";
import type { PendingCommand } from "../../src/guardian/approvals/types.js";
import { HOSTEXEC_EXIT, MAX_RUNNING } from "../../src/guardian/hostexec/session.js";
import { hostexecBinaryPath } from "../../src/sandbox/native.js";
import { createInstance, spawnCli, waitUntil, type CliResult, type LiveCli, type TestInstance } from "../helpers/cloister.js";
import { hostTree, readOr, type HostProc } from "../helpers/host-processes.js";
import { marker, presentMarkers, removeMarkers } from "../helpers/oracles.js";

type Rule = { allow: unknown } | { ask: unknown } | { deny: unknown };

interface HostexecSection {
  rules: Rule[];
  timeout?: string;
  approval_timeout?: string;
  max_output?: string;
  rate_limit?: number;
}

interface AuditRecord {
  type: string;
  [key: string]: unknown;
}

const CLOISTER = "hx";
const TAG = randomBytes(4).toString("hex");
const MiB = 1024 * 1024;

/** Writes the instance's `hostexec:` section (rules as JSON flow mappings, valid YAML) and reloads a running guardian. */
async function configure(t: TestInstance, section: HostexecSection, reload = true): Promise<void> {
  const file = join(t.home, "config", "config.yaml");
  const lines = ["hostexec:", "  rules:", ...section.rules.map((rule) => `    - ${JSON.stringify(rule)}`)];
  for (const key of ["timeout", "approval_timeout", "max_output", "rate_limit"] as const) {
    if (section[key] !== undefined) lines.push(`  ${key}: ${section[key]}`);
  }
  let replaced = false;
  const text = readFileSync(file, "utf8").replace(/^hostexec:\n[\s\S]*?(?=^\S)/m, () => ((replaced = true), `${lines.join("\n")}\n\n`));
  assert.ok(replaced, "the config has no hostexec section to replace");
  writeFileSync(file, text);
  if (!reload) return;
  const r = await t.cli(["guardian", "reload"]);
  assert.equal(r.code, 0, r.stderr);
}

async function pendingCommands(t: TestInstance): Promise<PendingCommand[]> {
  const r = await t.cli(["approvals", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { pending: { kind: string }[] }).pending.filter((p): p is PendingCommand => p.kind === "command");
}

/** The waiting request for exactly `argv` from `cloister`, once it is listed. */
async function waitForPending(t: TestInstance, argv: readonly string[], cloister: string): Promise<PendingCommand> {
  let found: PendingCommand | undefined;
  await waitUntil(`a pending request for ${JSON.stringify(argv)} from ${cloister}`, async () => {
    found = (await pendingCommands(t)).find((p) => p.cloister === cloister && JSON.stringify(p.argv) === JSON.stringify(argv));
    return found !== undefined;
  }, 30_000);
  assert.ok(found);
  return found;
}

async function answer(t: TestInstance, verdict: "approve" | "deny", id: string, scope = "once"): Promise<CliResult> {
  const r = await t.cli([verdict, id, "--scope", scope]);
  assert.equal(r.code, 0, r.stderr);
  return r;
}

async function auditRecords(t: TestInstance): Promise<AuditRecord[]> {
  const r = await t.cli(["audit", "tail", "-n", "200", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split("\n").filter((line) => line !== "").map((line) => JSON.parse(line) as AuditRecord);
}

/** Host processes whose whole command line is `cmd`. */
function hostProcesses(cmd: string): HostProc[] {
  return hostTree(1).filter((p) => p.cmd === cmd);
}

function parentOf(pid: number): number {
  const stat = readOr(`/proc/${pid}/stat`);
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
}

function sha256(data: Buffer | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/** argv as POSIX shell words, each single-quoted. */
function shellWords(argv: readonly string[]): string {
  return argv.map((arg) => `'${arg.replaceAll("'", `'\\''`)}'`).join(" ");
}

/** The `rc=N` a script printed for one step. */
function rcOf(stdout: string, label = "rc"): number | undefined {
  const m = new RegExp(`^${label}=(\\d+)$`, "m").exec(stdout);
  return m ? Number(m[1]) : undefined;
}

describe("hostexec end to end", { timeout: 600_000 }, () => {
  let t: TestInstance;
  let projectRoot = "";
  let guardianPid = 0;
  const sleepFor = `31.${TAG.replace(/\D/g, "1")}`;
  const cancelSleep = `32.${TAG.replace(/\D/g, "2")}`;
  const bigFile = "big.bin";
  const hostMarkers = [marker("hx-no-network"), marker("hx-no-network-forged")];
  const sessionArgv = ["ls", "-d", ".", `session-${TAG}`];

  const baseRules = (): Rule[] => [
    { allow: ["pwd"] },
    { allow: ["true"] },
    { allow: ["echo", `audit-padding-${TAG}`, "**"] },
    { allow: ["false"] },
    { allow: ["sh", "-c", "exit 42"] },
    { allow: ["sh", "-c", "kill -TERM $$"] },
    { allow: [`no-such-program-${TAG}`] },
    { allow: ["touch", `made-on-host-${TAG}`] },
    { allow: ["sleep", sleepFor] },
    { allow: ["sleep", cancelSleep] },
    { allow: ["head", "-c", "*", bigFile] },
    { allow: [join(projectRoot, "stream.sh")] },
    { allow: ["touch", ...hostMarkers] },
    { allow: ["git", "status", "--short"] },
    { allow: ["git", "log", "--format=%s"] },
    { ask: ["ls", "**"] },
    { ask: ["git", "diff", "**"] },
  ];
  const base = (overrides: Omit<HostexecSection, "rules"> = {}): HostexecSection => ({ rules: baseRules(), rate_limit: 10_000, ...overrides });

  const inside = (script: string, name = CLOISTER): Promise<CliResult> => t.cli(["exec", name, "--", "sh", "-c", script]);
  const insideLive = (script: string, name = CLOISTER): LiveCli => spawnCli(t, ["exec", name, "--", "sh", "-c", script]);

  /** Runs `hostexec ARGV` in the background, answers the request it makes, returns both. */
  async function askAndAnswer(argv: string[], verdict: "approve" | "deny", scope = "once", name = CLOISTER): Promise<{ result: CliResult; request: PendingCommand }> {
    const live = insideLive(`hostexec ${shellWords(argv)}; echo rc=$?`, name);
    const request = await waitForPending(t, argv, name);
    await answer(t, verdict, request.id.slice(0, 8), scope);
    return { result: await live.done, request };
  }

  before(async () => {
    t = createInstance("hx");
    projectRoot = realpathSync(t.project);
    await configure(t, base(), false);
    const r = await t.cli(["start", "-d", "--name", CLOISTER]);
    assert.equal(r.code, 0, r.stderr);
    const status = JSON.parse((await t.cli(["guardian", "status", "--json"])).stdout) as { pid: number };
    guardianPid = status.pid;
  });

  after(async () => {
    removeMarkers(hostMarkers);
    await t?.teardown();
  });

  it("an allowed command runs on the host in the project directory, whatever the directory inside", async () => {
    const r = await inside(`mkdir -p /work/sub && cd /work/sub && hostexec pwd && hostexec touch made-on-host-${TAG}; echo rc=$?`);
    assert.equal(r.stdout, `${projectRoot}\nrc=0\n`, r.stderr);
    assert.ok(existsSync(join(t.project, `made-on-host-${TAG}`)), "the file the host command made is not in the project");
    assert.ok(!existsSync(join(t.project, "sub", `made-on-host-${TAG}`)));
  });

  it("host git runs (hardened) in the project while the project's cloister runs", async () => {
    writeFileSync(join(t.project, `untracked-${TAG}`), "");
    try {
      const r = await inside("hostexec git status --short; echo status=$?; hostexec git log --format=%s; echo log=$?");
      assert.equal(rcOf(r.stdout, "status"), 0, r.stderr);
      assert.equal(rcOf(r.stdout, "log"), 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^\\?\\? untracked-${TAG}$`, "m"));
      assert.match(r.stdout, /^init$/m);
    } finally {
      rmSync(join(t.project, `untracked-${TAG}`), { force: true });
    }
  });

  it("an asked command waits for `cloister approve`; hostexec says so on stderr with the id to answer", async () => {
    const { result, request } = await askAndAnswer(["ls", "README.md"], "approve");
    assert.equal(result.stdout, "README.md\nrc=0\n", result.stderr);
    assert.equal(request.cwd, projectRoot);
    assert.equal(request.rule, "ask [ls, **]");
    assert.deepEqual(request.hazards, []);
    assert.match(result.stderr, /^hostexec: waiting up to \d+ (s|min) for a human to approve this command/m);
    assert.ok(result.stderr.includes(`cloister approve ${request.id.slice(0, 8)}`), result.stderr);
    assert.deepEqual(await pendingCommands(t), [], "the answered request is still listed");
  });

  it("an asked command's hazards are shown to the human who answers (QA H9), in `approvals` and its JSON", async () => {
    const argv = ["git", "diff", "--no-index", "/dev/null", "/etc/hostname"];
    const live = insideLive(`hostexec ${shellWords(argv)}; echo rc=$?`);
    const request = await waitForPending(t, argv, CLOISTER);
    // The option, and each path outside the repository (which alone would make git diff --no-index).
    assert.equal(request.hazards.length, 3, JSON.stringify(request.hazards));
    assert.match(request.hazards[0] ?? "", /^argument 2 \(--no-index\) makes git write or read a file it names, anywhere on the host/);
    assert.match(request.hazards[2] ?? "", /^argument 4 \(\/etc\/hostname\) is a path outside the repository/);
    const listed = await t.cli(["approvals"]);
    assert.match(listed.stdout, new RegExp(`${request.id}  command .*git diff --no-index /dev/null /etc/hostname .*\\n    hazard: argument 2 \\(--no-index\\) makes git write or read a file`));
    await answer(t, "deny", request.id.slice(0, 8));
    assert.equal(rcOf((await live.done).stdout), HOSTEXEC_EXIT.refused);
  });

  it("an exact-argv rule with a terminal escape and a bidi control is shown escaped by deny, approvals, policy command and undo (QA: the rule was raw)", async () => {
    const argv = ["ls", `escape-${TAG}\u202eb\x1b[31m`];
    const shown = `[ls, 'escape-${TAG}\\u{202e}b\\e[31m']`;
    const live = insideLive(`hostexec ${shellWords(argv)}; echo rc=$?`);
    const request = await waitForPending(t, argv, CLOISTER);
    const denied = await answer(t, "deny", request.id, "project");
    assert.equal(rcOf((await live.done).stdout), HOSTEXEC_EXIT.refused);
    assert.ok(denied.stderr.includes(`(rule deny ${shown})`), denied.stderr);
    const lines = {
      deny: denied.stderr,
      approvals: (await t.cli(["approvals"])).stdout,
      policy: (await t.cli(["policy", "command", "--", ...argv])).stdout,
    };
    const decision = lines.approvals.split("\n").find((line) => line.includes(`escape-${TAG}`)) ?? "";
    assert.ok(decision.includes(`rule deny ${shown}`), lines.approvals);
    assert.ok(lines.policy.includes(`denied by project rule deny ${shown}`), lines.policy);
    const undo = await t.cli(["undo", decision.split(" ")[0] ?? ""]);
    assert.equal(undo.code, 0, undo.stderr);
    for (const text of [...Object.values(lines), undo.stderr]) assert.doesNotMatch(text, /[\x1b\u202e]/u, JSON.stringify(text));
  });

  it("a human's denial gives 126 and says so; a command no rule matches gives 126 and suggests an ask rule", async () => {
    const { result } = await askAndAnswer(["ls", "denied-file"], "deny");
    assert.equal(rcOf(result.stdout), HOSTEXEC_EXIT.refused, result.stderr);
    assert.match(result.stderr, /hostexec: denied by a human \(cli, scope once\)/);

    const unmatched = await inside("hostexec uname -a; echo rc=$?");
    assert.equal(rcOf(unmatched.stdout), HOSTEXEC_EXIT.refused);
    assert.match(unmatched.stderr, /hostexec: no hostexec rule matches it/);
    assert.ok(unmatched.stderr.includes(`- ask: ["uname", "-a"]`), unmatched.stderr);
  });

  it("nobody answering within approval_timeout is a denial (126), never an allow", async () => {
    await configure(t, base({ approval_timeout: "2s" }));
    try {
      const r = await inside("hostexec ls README.md; echo rc=$?");
      assert.equal(rcOf(r.stdout), HOSTEXEC_EXIT.refused, r.stderr);
      assert.doesNotMatch(r.stdout, /README\.md/, "the command ran");
      assert.match(r.stderr, /nobody approved the command within 2 s, which counts as a denial/);
    } finally {
      await configure(t, base());
    }
  });

  it("a command running past hostexec.timeout is killed with its process group: 124, nothing left on the host", async () => {
    await configure(t, base({ timeout: "2s" }));
    try {
      const r = await inside(`hostexec sleep ${sleepFor}; echo rc=$?`);
      assert.equal(rcOf(r.stdout), HOSTEXEC_EXIT.timeout, r.stderr);
      assert.match(r.stderr, /did not finish within 2 s and was stopped/);
      await waitUntil("the host sleep to be gone", () => hostProcesses(`sleep ${sleepFor}`).length === 0);
      const exec = (await auditRecords(t)).find((a) => a.type === "hostexec.exec" && a.argv === JSON.stringify(["sleep", sleepFor]));
      assert.equal(exec?.end, "timeout", "the sleep did not run");
    } finally {
      await configure(t, base());
    }
  });

  it("Ctrl-C while the command runs: 130, and the host process is killed", async () => {
    const trigger = join(t.project, `.interrupt-${TAG}`);
    const live = insideLive(`hostexec sleep ${cancelSleep} & pid=$!; while [ ! -e /work/.interrupt-${TAG} ]; do sleep 0.1; done; kill -INT $pid; wait $pid; echo rc=$?`);
    let running: HostProc[] = [];
    await waitUntil("the host sleep to start", () => (running = hostProcesses(`sleep ${cancelSleep}`)).length === 1);
    assert.equal(parentOf(running[0]?.pid ?? 0), guardianPid, "the command is not the guardian's child on the host");
    writeFileSync(trigger, "");
    try {
      const r = await live.done;
      assert.equal(rcOf(r.stdout), HOSTEXEC_EXIT.cancelled, r.stdout + r.stderr);
      assert.match(r.stderr, /cancelled; the command was killed/);
      await waitUntil("the host sleep to be gone", () => hostProcesses(`sleep ${cancelSleep}`).length === 0);
    } finally {
      rmSync(trigger, { force: true });
    }
  });

  it(`at most ${MAX_RUNNING} host commands of a cloister run at once: the next is refused with 125 and "retry" (red team: ~150 host processes outside its limits)`, async () => {
    const trigger = join(t.project, `.interrupt-many-${TAG}`);
    const live = insideLive(
      `for i in $(seq ${MAX_RUNNING}); do hostexec sleep ${cancelSleep} & done; while [ ! -e /work/.interrupt-many-${TAG} ]; do sleep 0.1; done; kill -INT $(jobs -p); wait; echo done`,
    );
    try {
      await waitUntil(`${MAX_RUNNING} host sleeps to start`, () => hostProcesses(`sleep ${cancelSleep}`).length === MAX_RUNNING);
      const next = await inside("hostexec true; echo rc=$?");
      assert.equal(rcOf(next.stdout), HOSTEXEC_EXIT.failed, next.stderr);
      assert.match(next.stderr, new RegExp(`${MAX_RUNNING} host commands of this cloister are running already; retry when one has ended`));
    } finally {
      writeFileSync(trigger, "");
    }
    try {
      await live.done;
      await waitUntil("the host sleeps to be gone", () => hostProcesses(`sleep ${cancelSleep}`).length === 0);
      // Their places are given back: a command runs again.
      assert.equal(rcOf((await inside("hostexec true; echo rc=$?")).stdout), 0);
    } finally {
      rmSync(trigger, { force: true });
    }
  });

  it("Ctrl-C while the request waits: 130, and the request leaves `cloister approvals`", async () => {
    const argv = ["ls", `pending-${TAG}`];
    const trigger = join(t.project, `.interrupt-pending-${TAG}`);
    const live = insideLive(`hostexec ${argv.join(" ")} & pid=$!; while [ ! -e /work/.interrupt-pending-${TAG} ]; do sleep 0.1; done; kill -INT $pid; wait $pid; echo rc=$?`);
    const request = await waitForPending(t, argv, CLOISTER);
    writeFileSync(trigger, "");
    try {
      const r = await live.done;
      assert.equal(rcOf(r.stdout), HOSTEXEC_EXIT.cancelled, r.stdout + r.stderr);
      assert.match(r.stderr, /cancelled before anyone answered/);
      await waitUntil("the request to leave the queue", async () => !(await pendingCommands(t)).some((p) => p.id === request.id));
      const late = await t.cli(["approve", request.id]);
      assert.equal(late.code, 125, "a withdrawn request could still be approved");
    } finally {
      rmSync(trigger, { force: true });
    }
  });

  it("exit statuses pass through: 0, 1, 42; a signal gives 128+n; a missing program 127", async () => {
    const r = await inside(
      `hostexec true; echo a=$?; hostexec false; echo b=$?; hostexec sh -c 'exit 42'; echo c=$?; hostexec sh -c 'kill -TERM $$'; echo d=$?; hostexec no-such-program-${TAG}; echo e=$?`,
    );
    assert.deepEqual(["a", "b", "c", "d", "e"].map((label) => rcOf(r.stdout, label)), [0, 1, 42, 128 + 15, HOSTEXEC_EXIT.notFound], r.stderr);
    assert.match(r.stderr, /killed by SIGTERM/);
    assert.match(r.stderr, new RegExp(`"no-such-program-${TAG}" is not installed on the host`));
  });

  it("output is streamed: the first line arrives while the command still runs", async () => {
    const script = join(t.project, "stream.sh");
    const go = join(t.project, "stream.go");
    writeFileSync(script, "#!/bin/sh\necho first\nwhile [ ! -e stream.go ]; do sleep 0.1; done\necho second\n", { mode: 0o755 });
    try {
      const live = insideLive(`hostexec ${script}; echo rc=$?`);
      await live.waitFor("first\n");
      assert.equal(live.child.exitCode, null, "hostexec ended before the command did");
      assert.ok(!live.output().includes("second"));
      writeFileSync(go, "");
      const r = await live.done;
      assert.equal(r.stdout, "first\nsecond\nrc=0\n", r.stderr);
    } finally {
      rmSync(script, { force: true });
      rmSync(go, { force: true });
    }
  });

  describe("large output", () => {
    const size = 50 * MiB;
    let data: Buffer;

    before(() => {
      data = randomBytes(size);
      writeFileSync(join(t.project, bigFile), data);
    });
    after(() => rmSync(join(t.project, bigFile), { force: true }));

    /** Runs `head -c SIZE big.bin` on the host into a file inside; returns exit code, byte count and hash as seen inside. */
    async function headInside(): Promise<{ rc: number | undefined; bytes: number; hash: string; stderr: string }> {
      const r = await inside(`hostexec head -c ${size} ${bigFile} > /tmp/out; echo rc=$?; wc -c < /tmp/out; sha256sum < /tmp/out; rm -f /tmp/out`);
      const [, bytes = "", hash = ""] = r.stdout.trim().split("\n");
      return { rc: rcOf(r.stdout), bytes: Number(bytes.trim()), hash: hash.split(" ")[0] ?? "", stderr: r.stderr };
    }

    it("50 MiB arrive intact when max_output allows them", async () => {
      await configure(t, base({ max_output: "64MiB" }));
      const got = await headInside();
      assert.equal(got.rc, 0, got.stderr);
      assert.equal(got.bytes, size);
      assert.equal(got.hash, sha256(data));
    });

    it("with max_output: 1MiB the output is cut at exactly 1 MiB, exit 125 with a message", async () => {
      await configure(t, base({ max_output: "1MiB" }));
      try {
        const got = await headInside();
        assert.equal(got.rc, HOSTEXEC_EXIT.failed, got.stderr);
        assert.equal(got.bytes, MiB);
        assert.equal(got.hash, sha256(data.subarray(0, MiB)));
        assert.match(got.stderr, /wrote more than 1048576 bytes of output and was stopped/);
      } finally {
        await configure(t, base());
      }
    });
  });

  it("--scope session: the cloister is not asked again; another cloister is", async () => {
    const argv = sessionArgv;
    const first = await askAndAnswer(argv, "approve", "session");
    assert.equal(first.result.stdout, ".\nrc=2\n", first.result.stderr);
    const again = await inside(`hostexec ${shellWords(argv)}; echo rc=$?`);
    assert.doesNotMatch(again.stderr, /waiting up to/, "asked again within the session");
    assert.equal(again.stdout, ".\nrc=2\n", again.stderr);

    const started = await t.cli(["start", "-d", "--name", "hx-other"]);
    assert.equal(started.code, 0, started.stderr);
    try {
      const other = await askAndAnswer(argv, "deny", "once", "hx-other");
      assert.equal(rcOf(other.result.stdout), HOSTEXEC_EXIT.refused, other.result.stderr);
    } finally {
      await t.cli(["stop", "hx-other"]);
    }
  });

  it("--scope project writes an exact-argv rule to decisions/projects/<name>.yaml that survives a guardian restart", async () => {
    // "**" as an argument must be kept as a literal, so the rule matches this argv and no other.
    const argv = ["ls", "-d", `project-${TAG}`, "**"];
    const first = await askAndAnswer(argv, "approve", "project");
    assert.equal(rcOf(first.result.stdout), 2, first.result.stderr);
    const dir = join(t.home, "config", "decisions", "projects");
    assert.deepEqual(readdirSync(dir), ["proj.yaml"]);
    const decisions = parseYaml(readFileSync(join(dir, "proj.yaml"), "utf8")) as { hostexec?: { rules?: unknown[] } };
    assert.deepEqual(decisions.hostexec?.rules, [{ allow: ["ls", "-d", `project-${TAG}`, { one_of: ["**"] }] }]);

    // `guardian stop` stops the cloisters too: a new one of the same project is not asked.
    assert.equal((await t.cli(["guardian", "stop"])).code, 0);
    const restarted = await t.cli(["start", "-d", "--name", CLOISTER]);
    assert.equal(restarted.code, 0, restarted.stderr);
    const again = await inside(`hostexec ${shellWords(argv)}; echo rc=$?`);
    assert.doesNotMatch(again.stderr, /waiting up to/, "asked again after the restart");
    assert.equal(rcOf(again.stdout), 2, again.stderr);
    // Only that exact argv: another last argument is still asked (and denied here).
    const other = await askAndAnswer(["ls", "-d", `project-${TAG}`, "x"], "deny");
    assert.equal(rcOf(other.result.stdout), HOSTEXEC_EXIT.refused);
    // The earlier session answer ended with its cloister: the new one is asked.
    const session = await askAndAnswer(sessionArgv, "deny");
    assert.equal(rcOf(session.result.stdout), HOSTEXEC_EXIT.refused);
  });

  it("rate_limit: 3 refuses the 4th request within a minute with 126", async () => {
    await configure(t, base({ rate_limit: 3 }));
    try {
      const r = await t.cli(["run", "--", "sh", "-c", "for i in 1 2 3 4; do hostexec true; echo rc$i=$?; done"]);
      assert.deepEqual([1, 2, 3, 4].map((i) => rcOf(r.stdout, `rc${i}`)), [0, 0, 0, HOSTEXEC_EXIT.refused], r.stderr);
      assert.match(r.stderr, /too many host command requests from this cloister in the last minute \(hostexec\.rate_limit\)/);
    } finally {
      await configure(t, base());
    }
  });

  it("a --no-network cloister has no hostexec and no channel: a copied client fails with 125, nothing runs", async () => {
    const copy = join(t.project, `hostexec-copy-${TAG}`);
    copyFileSync(hostexecBinaryPath(), copy);
    try {
      const [m1, m2] = hostMarkers as [string, string];
      const forged = `http://cloister:${"ab".repeat(32)}@127.0.0.1:3128`;
      const r = await t.cli([
        "run",
        "--no-network",
        "--",
        "sh",
        "-c",
        `command -v hostexec; echo path=$?; /work/hostexec-copy-${TAG} touch ${m1} ${m2}; echo rc=$?; CLOISTER_PROXY=${forged} /work/hostexec-copy-${TAG} touch ${m1} ${m2}; echo forged=$?`,
      ]);
      assert.notEqual(rcOf(r.stdout, "path"), 0, `hostexec is on the PATH: ${r.stdout}`);
      assert.equal(rcOf(r.stdout), HOSTEXEC_EXIT.failed, r.stderr);
      assert.match(r.stderr, /hostexec: not inside a cloister with network access/);
      assert.equal(rcOf(r.stdout, "forged"), HOSTEXEC_EXIT.failed, r.stderr);
      assert.match(r.stderr, /hostexec: cannot reach the guardian at 127\.0\.0\.1:3128/);
      assert.deepEqual(presentMarkers(hostMarkers), []);
    } finally {
      rmSync(copy, { force: true });
    }
  });

  it("the audit log records the request, the human's decision and the execution with exit code, duration and byte counts", async () => {
    const argv = ["ls", "-d", "README.md", `audit-${TAG}`];
    const { result, request } = await askAndAnswer(argv, "approve");
    assert.equal(rcOf(result.stdout), 2, result.stderr);
    const records = await auditRecords(t);
    const argvText = JSON.stringify(argv);
    const asked = records.find((a) => a.type === "hostexec.request" && a.argv === argvText);
    assert.equal(asked?.verdict, "ask");
    assert.equal(asked.rule, "ask [ls, **]");
    assert.equal(asked.cwd, projectRoot, "the audit says where it ran on the host (QA H12)");
    assert.equal(asked.cloister, CLOISTER);
    const decision = records.find((a) => a.type === "approval.decision" && a.request === request.id);
    assert.equal(decision?.verdict, "allow");
    assert.equal(decision.scope, "once");
    assert.equal(decision.by, "cli");
    assert.equal(decision.subject, argvText);
    const exec = records.find((a) => a.type === "hostexec.exec" && a.approvalRequest === request.id);
    assert.ok(exec, "no hostexec.exec record for the approved request");
    assert.equal(exec.argv, argvText);
    assert.equal(exec.end, "exited");
    assert.equal(exec.exitCode, 2);
    assert.equal(typeof exec.durationMs, "number");
    // ls printed "README.md\n" and one complaint about the missing file.
    assert.equal(exec.stdoutBytes, "README.md\n".length);
    assert.equal(exec.stderrBytes, Buffer.byteLength(result.stderr.split("\n").filter((l) => l.startsWith("ls:")).join("\n")) + 1);
    assert.equal(exec.approvedBy, "cli");
  });

  it("a long argument does not push the next ones out of the audit record; too many arguments to audit are refused (red team)", async () => {
    const padded = ["echo", `audit-padding-${TAG}`, `--subject-prefix=${"A".repeat(4200)}`, `--signature-file=/tmp/key-${TAG}`];
    const ran = await inside(`hostexec ${shellWords(padded)} >/dev/null; echo rc=$?`);
    assert.equal(rcOf(ran.stdout), 0, ran.stderr);
    const many = ["echo", `audit-padding-${TAG}`, ...Array.from({ length: 200 }, (_, i) => `${"x".repeat(60)}-${i}`)];
    const refused = await inside(`hostexec ${shellWords(many)}; echo rc=$?`);
    assert.equal(rcOf(refused.stdout), HOSTEXEC_EXIT.refused);
    assert.match(refused.stderr, /too many arguments \(202\) for its audit record to hold each one; run it on the host yourself/);
    const records = await auditRecords(t);
    const exec = records.find((a) => a.type === "hostexec.exec" && typeof a.argv === "string" && a.argv.includes(`audit-padding-${TAG}`));
    const kept = JSON.parse(String(exec?.argv)) as string[];
    assert.equal(kept.length, padded.length);
    assert.equal(kept[3], `--signature-file=/tmp/key-${TAG}`);
    assert.equal(exec?.truncated, undefined);
    assert.ok(records.some((a) => a.type === "hostexec.refused" && a.reason === "too many arguments to audit"));
  });

  it("the audit log never holds the credentials of a URL in a host command: the user part is masked (QA H13)", async () => {
    const secret = `SECRET-${TAG}`;
    const { result, request } = await askAndAnswer(["ls", "-d", `https://bob:${secret}@example.test/repo`, `--url=https://${secret}@example.test`], "approve");
    assert.equal(rcOf(result.stdout), 2, result.stderr);
    const records = await auditRecords(t);
    const masked = JSON.stringify(["ls", "-d", "https://***@example.test/repo", "--url=https://***@example.test"]);
    assert.equal(records.find((a) => a.type === "hostexec.request" && a.argv === masked)?.verdict, "ask");
    assert.equal(records.find((a) => a.type === "approval.decision" && a.request === request.id)?.subject, masked);
    assert.equal(records.find((a) => a.type === "hostexec.exec" && a.approvalRequest === request.id)?.argv, masked);
    assert.deepEqual(records.filter((a) => JSON.stringify(a).includes(secret)), []);
  });
});
