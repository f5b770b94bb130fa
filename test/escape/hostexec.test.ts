/**
 * Escape suite, "Host execution and approvals" of SECURITY.md: the agent uses `hostexec` (and raw
 * connections on its channel) to get something of its own choosing run on the host, to approve its
 * own requests, to bury the human under questions or to hide what it asks. Each case is the
 * attacker's step with the secure outcome asserted; host side effects aim at markers
 * (/tmp/ESCAPED-<case>-<run>), which must not exist afterwards, nor after the user's own `git status`
 * in the project; host files are hash-snapshotted; no canary may appear; a second cloister keeps working.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { createServer, type AddressInfo, type Server } from "node:net";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { PendingCommand } from "../../src/guardian/approvals/types.js";
import { HOSTEXEC_EXIT } from "../../src/guardian/hostexec/session.js";
import { asUserSkipReason, copyCli, createUserInstance, type UserInstance } from "../helpers/as-user.js";
import { createInstance, initGitProject, spawnCli, waitUntil, type CliResult, type TestInstance } from "../helpers/cloister.js";
import {
  assertLive,
  assertNoCanaryAnywhere,
  assertRefused,
  diffSnapshots,
  hostGit,
  hostSensitiveSnapshot,
  marker,
  mergeSnapshots,
  NO_PYTHON,
  parseSteps,
  presentMarkers,
  PY_PRELUDE,
  PYTHON,
  removeMarkers,
  SH_PRELUDE,
  snapshotTree,
  type Snapshot,
} from "../helpers/oracles.js";

const REFUSED = String(HOSTEXEC_EXIT.refused);

/** Where a case runs its attack: an instance and a way to run a shell script in one of its cloisters. */
interface Target {
  t: TestInstance;
  attack(script: string): Promise<CliResult>;
}

type Rule = Partial<Record<"allow" | "ask" | "deny", unknown>>;

/**
 * Gives the instance exactly these hostexec rules (and a rate limit high enough for a test suite),
 * then reloads its guardian. A function replacement: `$$` in a rule must stay `$$`.
 */
async function useRules(t: TestInstance, rules: Rule[], rateLimit = 10_000): Promise<void> {
  const file = join(t.home, "config", "config.yaml");
  const section = `hostexec:\n  rules:\n${rules.map((r) => `    - ${JSON.stringify(r)}\n`).join("")}  rate_limit: ${rateLimit}\n\n`;
  let found = false;
  const text = readFileSync(file, "utf8").replace(/^hostexec:\n[\s\S]*?(?=^\S)/m, () => ((found = true), section));
  assert.ok(found, "no hostexec section in the config");
  writeFileSync(file, text);
  const reload = await t.cli(["guardian", "reload"]);
  assert.equal(reload.code, 0, reload.stderr);
}

/**
 * Shell prelude (with oracles' `step`): `hx NAME ARGV...` runs `hostexec ARGV...`, keeps its output
 * in /tmp/hx/NAME.out and .err and prints `STEP NAME <exit code>`.
 */
const HX_PRELUDE = `${SH_PRELUDE}mkdir -p /tmp/hx
hx() { n=$1; shift; hostexec "$@" >/tmp/hx/$n.out 2>/tmp/hx/$n.err; echo "STEP $n $?"; }
`;

/** `STEP name value` lines for every step of `names` (each must have run), as name → value. */
function stepValues(r: CliResult, names: readonly string[]): Record<string, string> {
  const steps = parseSteps(r.stdout);
  const missing = names.filter((n) => !steps.has(n));
  assert.deepEqual(missing, [], `steps did not run:\n${r.stdout}\n${r.stderr}`);
  return Object.fromEntries(names.map((n) => [n, steps.get(n) ?? ""]));
}

/** Attempts as [step name, shell words]: each runs through `hx`, then says whether its refusal named a hazard. */
function hazardAttempts(attempts: readonly [string, string][]): string {
  const names = attempts.map(([name]) => name).join(" ");
  return `${attempts.map(([name, argv]) => `hx ${name} ${argv}`).join("\n")}
for n in ${names}; do grep -q 'an allow rule must name it literally' /tmp/hx/$n.err && echo "STEP why-$n named"; done\n`;
}

/** Every attempt was refused (126) because an allow rule that would match it leaves its hazard unnamed. */
function assertRefusedAsHazards(r: CliResult, attempts: readonly [string, string][]): void {
  const names = attempts.map(([name]) => name);
  const steps = stepValues(r, names);
  assert.deepEqual(names.filter((name) => steps[name] !== REFUSED).map((name) => `${name}: ${steps[name]}`), [], `not refused:\n${r.stdout}${r.stderr}`);
  const why = parseSteps(r.stdout);
  assert.deepEqual(names.filter((name) => why.get(`why-${name}`) !== "named"), [], `refused, but not for the hazard:\n${r.stdout}${r.stderr}`);
}

/** Python that speaks the hostexec wire protocol by hand on the cloister's port. */
const RAW_CLIENT = String.raw`
import json, struct
TOKEN = os.environ["CLOISTER_PROXY"].split("@")[0].rsplit(":", 1)[1]
def raw(payload):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=30)
    body = json.dumps(payload).encode()
    s.sendall(bytes([0xC7, 0x48, 0x58, 0x01]) + b"R" + struct.pack(">I", len(body)) + body)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    frames = []
    while len(data) >= 5:
        n = struct.unpack(">I", data[1:5])[0]
        frames.append((chr(data[0]), data[5:5 + n]))
        data = data[5 + n:]
    exits = [json.loads(p) for t, p in frames if t == "X"]
    out = b"".join(p for t, p in frames if t == "O").decode("utf-8", "replace")
    return json.dumps({"exit": exits[-1] if exits else None, "stdout": out})
def report(name, payload):
    try:
        print("STEP %s %s" % (name, raw(payload)), flush=True)
    except OSError as e:
        print("STEP %s %s" % (name, json.dumps({"error": type(e).__name__})), flush=True)
`;

function python(body: string): string {
  return `${PYTHON} - <<'PYEOF'\n${PY_PRELUDE}\n${RAW_CLIENT}\n${body}\nPYEOF\n`;
}

interface RawResult {
  exit: { status: string; exitCode: number; message?: string } | null;
  stdout: string;
}

async function pendingOf(t: TestInstance, cloister: string): Promise<PendingCommand[]> {
  const r = await t.cli(["approvals", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { pending: PendingCommand[] }).pending.filter((p) => p.kind === "command" && p.cloister === cloister);
}

/** Waits until `cloister` has a waiting request whose argv satisfies `match`. */
async function pendingWhere(t: TestInstance, cloister: string, match: (argv: string[]) => boolean): Promise<PendingCommand> {
  let found: PendingCommand | undefined;
  await waitUntil(`a waiting request from ${cloister}`, async () => (found = (await pendingOf(t, cloister)).find((p) => match(p.argv))) !== undefined, 30_000);
  return found as PendingCommand;
}

const argvIs = (expected: readonly string[]) => (argv: readonly string[]) => JSON.stringify(argv) === JSON.stringify(expected);

// ---------------------------------------------------------------------------------------------
// Cases that also run as an ordinary user

/** Shell syntax in arguments is text: `echo` on the host prints it, nothing else runs. */
async function metacharacterCase(target: Target, escaped: string): Promise<void> {
  await useRules(target.t, [{ allow: ["echo", "**"] }]);
  const payloads = [`$(touch ${escaped})`, `x; touch ${escaped}`, `x | touch ${escaped}`, `\`touch ${escaped}\``, `x\ntouch ${escaped}`, `x && touch ${escaped}`, `x > ${escaped}`, `$(touch\t${escaped})`];
  const script = payloads.map((p, i) => `hx p${i} echo '${p}'`).join("\n") + `\nhx split echo '>' ${escaped} ';' touch ${escaped}\n` + payloads.map((_, i) => `cat /tmp/hx/p${i}.out`).join("\n");
  const r = await target.attack(HX_PRELUDE + script);
  const steps = stepValues(r, [...payloads.map((_, i) => `p${i}`), "split"]);
  assert.ok(Object.values(steps).every((rc) => rc === "0"), `echo did not run: ${JSON.stringify(steps)}\n${r.stderr}`);
  const printed = r.stdout.split("\n").filter((l) => !l.startsWith("STEP ")).join("\n");
  assert.equal(printed, `${payloads.join("\n")}\n`, "echo on the host did not print its arguments as given");
  assert.deepEqual(presentMarkers([escaped]), []);
}

/** The host command's environment is built from nothing: no agent variable, no guardian secret. */
async function environmentCase(target: Target): Promise<void> {
  await useRules(target.t, [{ allow: ["printenv"] }, { allow: ["printenv", "*"] }]);
  const r = await target.attack(
    `FOO=bar GITHUB_TOKEN=agent LD_PRELOAD=/work/none.so NODE_OPTIONS=--inspect PATH=/tmp:$PATH hostexec printenv; echo STEP all $?
hostexec printenv GITHUB_TOKEN; echo STEP github $?
hostexec printenv ANTHROPIC_API_KEY; echo STEP anthropic $?`,
  );
  const steps = stepValues(r, ["all", "github", "anthropic"]);
  assert.deepEqual(steps, { all: "0", github: "1", anthropic: "1" }, r.stderr);
  const names = r.stdout.split("\n").filter((l) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(l)).map((l) => l.slice(0, l.indexOf("=")));
  assert.ok(names.includes("PATH") && names.includes("HOME"), `printenv printed no environment: ${r.stdout}`);
  const leaked = names.filter((n) => /^(FOO|GITHUB_TOKEN|ANTHROPIC_API_KEY|LD_PRELOAD|NODE_OPTIONS|SSH_AUTH_SOCK|CLOISTER.*|.*_PROXY|.*_proxy)$/.test(n));
  assert.deepEqual(leaked, [], `agent or guardian variables reached the host command:\n${r.stdout}`);
  assert.ok(!r.stdout.includes("/tmp:"), "the agent's PATH reached the host command");
  assert.ok(!r.stdout.includes(target.t.canaries.envToken ?? "missing canary"), "the guardian's token reached the host command");
}

/** Host files a git case aims at: a shell rc file to overwrite, a key to read, in a directory to fill. */
interface HostFiles {
  dir: string;
  victim: string;
  secret: string;
}

/** Runs `attempt` against fresh host files, then checks they are as they were and removes them. */
async function withHostFiles(attempt: (files: HostFiles) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "cloister-escape-hx-files-"));
  const files = { dir, victim: join(dir, "bashrc"), secret: join(dir, "id_ed25519") };
  writeFileSync(files.victim, "echo original\n");
  writeFileSync(files.secret, "HOST-KEY-CANARY\n");
  try {
    await attempt(files);
    assert.equal(readFileSync(files.victim, "utf8"), "echo original\n");
    assert.deepEqual(readdirSync(dir).sort(), ["bashrc", "id_ed25519"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------

describe("escape/hostexec", { skip: NO_PYTHON, timeout: 900_000 }, () => {
  let t: TestInstance;
  let hostBefore: Snapshot;
  let projectRoot = "";
  const markers: string[] = [];
  const escapeMarker = (name: string): string => {
    const m = marker(`hx-${name}`);
    markers.push(m);
    return m;
  };
  /** The attacker's shell in the project's persistent cloister. */
  const attack = (script: string): Promise<CliResult> => t.cli(["exec", "hxe", "--", "sh", "-c", script]);

  before(async () => {
    t = createInstance("hxe");
    projectRoot = realpathSync(t.project);
    // Before any cloister runs: the last case compares once they are all gone (with their placeholders).
    hostBefore = hostSensitiveSnapshot(t);
    for (const name of ["hxe", "hxe-2"]) {
      const r = await t.cli(["start", "-d", "--name", name]);
      assert.equal(r.code, 0, r.stderr);
    }
  });

  after(async () => {
    removeMarkers(markers);
    await t?.teardown();
  });

  it("shell metacharacters in argv are plain text, even under allow [echo, **]", async () => {
    await metacharacterCase({ t, attack }, escapeMarker("meta"));
  });

  it("wrappers, VAR=value and paths as the program do not pass allow rules that would match them; the plain commands run", async () => {
    const escaped = escapeMarker("wrapper");
    const script = join(projectRoot, "script.sh");
    await useRules(t, [
      { allow: { regex: "[a-z]+ .*" } },
      { allow: { regex: "[A-Z_]+=[^ ]* .*" } },
      { allow: { regex: "[./].*" } },
      { allow: ["find", "**"] },
      { allow: ["ls", "**"] },
    ]);
    const hazardous: [string, string][] = [
      ["env", `env touch ${escaped}`],
      ["env-ld-preload", `env LD_PRELOAD=/work/none.so touch ${escaped}`],
      ["sh-c", `sh -c 'touch ${escaped}'`],
      ["bash-c", `bash -c 'touch ${escaped}'`],
      ["xargs", `xargs touch ${escaped}`],
      ["nice", `nice touch ${escaped}`],
      ["timeout", `timeout 5 touch ${escaped}`],
      ["nohup", `nohup touch ${escaped}`],
      ["setsid", `setsid touch ${escaped}`],
      ["find-exec", `find . -maxdepth 0 -exec touch ${escaped} ';'`],
      ["find-execdir", `find . -maxdepth 0 -execdir touch ${escaped} ';'`],
      ["find-fprint", `find . -maxdepth 0 -fprint ${escaped}`],
      ["assignment", `LD_PRELOAD=/work/none.so ls`],
      ["path-assignment", `PATH=/work/bin ls`],
      ["relative-script", `./script.sh`],
      ["absolute-script", script],
    ];
    const r = await attack(
      `${HX_PRELUDE}printf '#!/bin/sh\\ntouch ${escaped}\\n' > /work/script.sh; chmod +x /work/script.sh
${hazardAttempts(hazardous)}hx plain-ls ls README.md
hx plain-find find . -maxdepth 1 -name README.md
cat /tmp/hx/plain-ls.out /tmp/hx/plain-find.out`,
    );
    assertRefusedAsHazards(r, hazardous);
    const steps = stepValues(r, ["plain-ls", "plain-find"]);
    assert.equal(steps["plain-ls"], "0");
    assert.equal(steps["plain-find"], "0");
    assert.match(r.stdout, /^README\.md\n\.\/README\.md$/m);
    assert.deepEqual(presentMarkers([escaped]), []);
  });

  it("the agent's environment does not reach a host program: PATH, LD_PRELOAD, PAGER, GIT_* are not forwarded", async () => {
    const escaped = escapeMarker("env-injection");
    await useRules(t, [{ allow: ["ls", "README.md"] }, { allow: ["git", "log", "-p", "-1"] }, { allow: ["git", "diff"] }]);
    const tool = `#!/bin/sh\\ntouch ${escaped}\\n`;
    // Host paths of what the agent writes into /work, as the variables would have to name them there.
    const planted = (rel: string): string => join(projectRoot, rel);
    const r = await attack(
      `${HX_PRELUDE}mkdir -p /work/bin && for f in ls pager differ; do printf '${tool}' > /work/bin/$f; chmod +x /work/bin/$f; done
printf '#include <fcntl.h>\\n#include <unistd.h>\\n__attribute__((constructor)) static void hit(void) { int fd = open("${escaped}", O_CREAT | O_WRONLY, 0644); if (fd >= 0) close(fd); }\\n' > /work/evil.c
cc -shared -fPIC -o /work/evil.so /work/evil.c && echo "STEP built OK"
printf '[core]\\n\\tpager = touch ${escaped}\\n[diff]\\n\\texternal = ${planted("bin/differ")}\\n' > /work/gitconfig
echo changed >> /work/README.md
export PATH="${planted("bin")}:$PATH" LD_PRELOAD=${planted("evil.so")} PAGER=${planted("bin/pager")} GIT_PAGER=${planted("bin/pager")}
export GIT_EXTERNAL_DIFF=${planted("bin/differ")} GIT_CONFIG_PARAMETERS="'core.pager=touch ${escaped}'" GIT_CONFIG_GLOBAL=${planted("gitconfig")} GIT_DIR=/tmp
hx ls ls README.md
hx log git log -p -1
hx diff git diff
cat /tmp/hx/ls.out /tmp/hx/diff.out /tmp/hx/log.err /tmp/hx/diff.err`,
    );
    assert.equal(parseSteps(r.stdout).get("built"), "OK", `the preload library was not built: ${r.stderr}`);
    assert.deepEqual(stepValues(r, ["ls", "log", "diff"]), { ls: "0", log: "0", diff: "0" }, r.stdout + r.stderr);
    assert.match(r.stdout, /^README\.md$/m);
    assert.match(r.stdout, /^\+changed$/m, "git diff ran with an external diff, or elsewhere");
    assert.deepEqual(presentMarkers([escaped]), []);
    spawnSync("git", ["-C", t.project, "checkout", "-q", "README.md"]);
  });

  it("git options that run programs or switch repository are refused under allow [git, **]; plain git runs", async () => {
    const escaped = escapeMarker("git-option");
    await useRules(t, [{ allow: ["git", "**"] }]);
    const attempts: [string, string][] = [
      ["c-pager", `git -c 'core.pager=touch ${escaped}' log`],
      ["c-alias", `git -c 'alias.x=!touch ${escaped}' x`],
      ["c-attached", `git '-ccore.pager=touch ${escaped}' log`],
      ["config-env", `git --config-env=core.pager=EVIL log`],
      ["C-root", `git -C / status`],
      ["git-dir", `git --git-dir=${projectRoot}/bin status`],
      ["work-tree", `git --work-tree=/ status`],
      ["exec-path", `git --exec-path=${projectRoot}/bin evil`],
      ["upload-pack", `git ls-remote --upload-pack='touch ${escaped}' ${projectRoot}`],
      ["upload-pack-abbrev", `git fetch --upload-p='touch ${escaped}' ${projectRoot}`],
      ["receive-pack", `git push --receive-pack='touch ${escaped}' ${projectRoot} HEAD:refs/heads/x`],
      ["ext-transport", `git ls-remote 'ext::sh -c touch% ${escaped}'`],
      ["config-command", `git config core.hooksPath /work/bin`],
    ];
    const r = await attack(
      `${HX_PRELUDE}mkdir -p /work/bin && printf '#!/bin/sh\\ntouch ${escaped}\\n' > /work/bin/git-evil && chmod +x /work/bin/git-evil
export EVIL="touch ${escaped}"
${hazardAttempts(attempts)}hx plain git log --oneline -1
cat /tmp/hx/plain.err`,
    );
    assertRefusedAsHazards(r, attempts);
    const steps = stepValues(r, ["plain"]);
    assert.equal(steps.plain, "0", r.stdout + r.stderr);
    assert.deepEqual(presentMarkers([escaped]), []);
  });

  it("git's ways of writing or reading host files are refused under allow rules with wildcards; the plain commands run", async () => {
    // A host file the agent would overwrite with a command of its own (a shell rc file), one it
    // would read (a key), and a directory it would fill (~/.local/bin).
    await withHostFiles(async ({ dir: hostDir, victim, secret }) => {
      await useRules(t, [
        { allow: ["git", { one_of: ["log", "diff", "show", "blame", "grep", "commit", "format-patch", "archive", "hash-object"] }, "**"] },
        { allow: ["git", { one_of: ["worktree", "clone", "bundle"] }, "**"] },
      ]);
      const attempts: [string, string][] = [
        ["log-output", `git log -1 '--format=format:touch /tmp/owned' --output=${victim}`],
        ["log-output-abbrev", `git log -1 --out=${victim}`],
        ["diff-no-index", `git diff --no-index /dev/null ${secret}`],
        ["blame-contents", `git blame --contents ${secret} README.md`],
        ["grep-patterns", `git grep -f ${secret} x`],
        ["commit-message", `git commit --allow-empty -F ${secret}`],
        ["format-patch-dir", `git format-patch -o ${hostDir}/bin -1`],
        ["archive-output", `git archive -o ${victim} HEAD`],
        ["hash-object", `git hash-object -w ${secret}`],
        ["worktree-add", `git worktree add ${hostDir}/local-bin`],
        ["clone-to", `git clone /work ${hostDir}/clone`],
        ["bundle-create", `git bundle create ${victim} HEAD`],
      ];
      const r = await attack(`${HX_PRELUDE}${hazardAttempts(attempts)}hx plain-log git log --oneline -1
grep -rl HOST-KEY-CANARY /tmp/hx /work/.git 2>/dev/null && echo "STEP canary seen"
echo "STEP done 0"`);
      assertRefusedAsHazards(r, attempts);
      const steps = stepValues(r, ["plain-log", "done"]);
      assert.equal(steps["plain-log"], "0", r.stdout + r.stderr);
      assert.equal(parseSteps(r.stdout).get("canary"), undefined, "the host key reached the cloister");
    });
  });

  it("under allow [git, **]: interpret-trailers --in-place, --signature-file, --pathspec-from-file and the other file options are refused; the host files are untouched", async () => {
    await withHostFiles(async ({ dir: hostDir, victim, secret }) => {
      await useRules(t, [{ allow: ["git", "**"] }]);
      const attempts: [string, string][] = [
        // Writes the host file: a trailer whose command substitution bash runs at the next login.
        ["trailers-in-place", `git interpret-trailers --in-place --trailer 'x: $(touch /tmp/owned)' ${victim}`],
        ["trailers-read", `git interpret-trailers ${secret}`],
        ["signature-file", `git format-patch --stdout -1 --signature-file=${secret}`],
        ["signature-file-apart", `git format-patch --stdout -1 --signature-file ${secret}`],
        ["pathspec-from-file", `git add --pathspec-from-file=${secret}`],
        ["pathspec-from-abbrev", `git reset --pathspec-from=${secret}`],
        ["pathspec-stash", `git stash push --pathspec-from-file ${secret}`],
        ["ignore-revs-file", `git blame --ignore-revs-file=${secret} README.md`],
        ["archive-add-file", `git archive --add-file=${secret} HEAD`],
        ["commit-tree-message", `git commit-tree -F ${secret} HEAD^{tree}`],
        ["ls-files-exclude-from", `git ls-files -o -i --exclude-from=${secret}`],
        ["diff-outside", `git diff /dev/null ${secret}`],
        ["format-patch-suffix", `git format-patch -1 --suffix=/../../../../../../..${victim}`],
        ["checkout-index-prefix", `git checkout-index -a --prefix=${hostDir}/co/`],
        ["merge-index", `git merge-index true -a`],
        ["for-each-repo", `git for-each-repo --config=user.name config x y`],
      ];
      const r = await attack(`${HX_PRELUDE}cd /work && mkdir -p 0001-x
${hazardAttempts(attempts)}hx plain-log git log --oneline -1
hx plain-status git status --short
hx plain-diff git diff --stat HEAD --
hx plain-blame git blame --ignore-rev HEAD -- README.md
grep -rl HOST-KEY-CANARY /tmp/hx /work 2>/dev/null && echo "STEP canary seen"
rmdir 0001-x
echo "STEP done 0"`);
      assertRefusedAsHazards(r, attempts);
      const steps = stepValues(r, ["plain-log", "plain-status", "plain-diff", "plain-blame", "done"]);
      assert.deepEqual(steps, { "plain-log": "0", "plain-status": "0", "plain-diff": "0", "plain-blame": "0", done: "0" }, r.stdout + r.stderr);
      assert.equal(parseSteps(r.stdout).get("canary"), undefined, "the host key reached the cloister");
      assert.ok(!r.stdout.includes("HOST-KEY-CANARY") && !r.stderr.includes("HOST-KEY-CANARY"), "the host key was printed");
    });
  });

  /**
   * A project of its own, so that what the agent plants there cannot touch the other cases. Without
   * .gitmodules (most projects: cloister holds the path with an empty directory) or with one.
   */
  const hardenedGitCase = (withGitmodules: boolean): void => {
    const name = withGitmodules ? "git-gitmodules" : "git";
    describe(`hardened host git on a repository the agent prepared (${withGitmodules ? "with" : "without"} a .gitmodules file)`, () => {
      let gitProject = "";
      let gitBefore: Snapshot;
      const planted = { fsmonitor: "", filter: "", hook: "" };
      // info/exclude is left out: while a cloister runs, cloister itself lists its file placeholders there.
      const gitSnapshot = (): Snapshot =>
        mergeSnapshots(...[".git/config", ".git/hooks", ".git/info"].map((rel) => snapshotTree(join(gitProject, rel), rel, (entry) => entry === "exclude")));

      before(async () => {
        gitProject = join(dirname(t.project), name);
        mkdirSync(gitProject);
        const git = (args: string[]) => spawnSync("git", ["-C", gitProject, ...args]);
        initGitProject(gitProject, git);
        if (withGitmodules) {
          writeFileSync(join(gitProject, ".gitmodules"), "# no submodules\n");
          git(["add", ".gitmodules"]);
          git(["commit", "-qm", "gitmodules"]);
        }
        gitProject = realpathSync(gitProject);
        gitBefore = gitSnapshot();
        planted.fsmonitor = escapeMarker(`${name}-fsmonitor`);
        planted.filter = escapeMarker(`${name}-filter`);
        planted.hook = escapeMarker(`${name}-hook`);
        const r = await t.cli(["start", "-d", "--name", `hxe-${name}`, "--project", gitProject]);
        assert.equal(r.code, 0, r.stderr);
      });
      after(async () => {
        await t.cli(["stop", `hxe-${name}`]);
      });

      it("the agent plants a nested repository (fsmonitor, filters) staged as a submodule, a .gitattributes filter, hooks and hooksPath: protected files refuse the writes, hostexec git status/diff/log/commit run none of it", async () => {
        await useRules(t, [{ allow: ["git", "status"] }, { allow: ["git", "diff"] }, { allow: ["git", "log", "-1"] }, { allow: ["git", "commit", "-m", "x"] }]);
        const { fsmonitor, filter, hook } = planted;
        const r = await t.cli([
          "exec",
          `hxe-${name}`,
          "--",
          "sh",
          "-c",
          `${HX_PRELUDE}set -u
mkdir -p /work/evil
printf '#!/bin/sh\\ntouch ${fsmonitor}\\nexit 1\\n' > /work/evil/fsmonitor
printf '#!/bin/sh\\ntouch ${hook}\\n' > /work/evil/hook
chmod +x /work/evil/fsmonitor /work/evil/hook
mkdir /work/sub && cd /work/sub && git init -q && echo n > n.txt && printf '* filter=evil\\n' > .gitattributes
git add . && git -c user.email=a@b -c user.name=a commit -qm n && cd /work && git add sub
cd /work/sub
git config core.fsmonitor ${gitProject}/evil/fsmonitor
git config filter.evil.clean 'touch ${filter}; cat'
git config filter.evil.smudge 'touch ${filter}; cat'
cp /work/evil/hook .git/hooks/pre-commit
echo dirty > n.txt
cd /work
git config -f /tmp/gitmodules submodule.sub.path sub && git config -f /tmp/gitmodules submodule.sub.url ./sub && git config -f /tmp/gitmodules submodule.sub.ignore none
blob=$(git hash-object -w /tmp/gitmodules)
git update-index --add --cacheinfo 100644,$blob,.gitmodules && echo "STEP staged-gitmodules OK"
printf '* filter=evil\\n' > .gitattributes
echo change >> README.md
git add README.md .gitattributes sub && echo "STEP staged OK"
step write-gitmodules cp /tmp/gitmodules /work/.gitmodules
step config-filter git config filter.evil.clean 'touch ${filter}; cat'
step config-fsmonitor git config core.fsmonitor ${gitProject}/evil/fsmonitor
step config-hookspath git config core.hooksPath ${gitProject}/evil
step append-config sh -c 'echo "[core]" >> /work/.git/config'
step hook-pre-commit cp /work/evil/hook /work/.git/hooks/pre-commit
step hook-post-commit cp /work/evil/hook /work/.git/hooks/post-commit
step info-attributes sh -c 'echo "* filter=evil" > /work/.git/info/attributes'
hx status git status
hx diff git diff
hx log git log -1
hx commit git commit -m x
cat /tmp/hx/commit.err`,
        ]);
        const steps = parseSteps(r.stdout);
        assert.equal(steps.get("staged-gitmodules"), "OK", `the attack's set-up failed:\n${r.stdout}${r.stderr}`);
        assert.equal(steps.get("staged"), "OK", r.stderr);
        assertRefused(steps, ["write-gitmodules", "config-filter", "config-fsmonitor", "config-hookspath", "append-config", "hook-pre-commit", "hook-post-commit", "info-attributes"], ["FAIL"]);
        assert.deepEqual(stepValues(r, ["status", "diff", "log", "commit"]), { status: "0", diff: "0", log: "0", commit: "0" }, r.stdout + r.stderr);
        assert.deepEqual(presentMarkers([fsmonitor, filter, hook]), []);
        assert.deepEqual(diffSnapshots(gitBefore, gitSnapshot()), []);
        // The commit happened on the host, with what the agent staged.
        const show = spawnSync("git", ["-C", gitProject, "-c", "core.fsmonitor=false", "log", "-1", "--format=%s", "--name-only"], { encoding: "utf8" });
        assert.equal(show.stdout, "x\n\n.gitattributes\n.gitmodules\nREADME.md\nsub\n");
      });

      it(
        "afterwards, the user's own `git status` and `git diff` in that project run none of what the agent planted",
        {
          todo: "BUG (known, see escape/filesystem.test.ts): the agent stages a gitlink (.git/index is writable) to a nested repository whose own config sets core.fsmonitor and a clean filter; the user's plain host git recurses into it. hostexec's hardened git is not affected.",
        },
        () => {
          const mine = [planted.fsmonitor, planted.filter, planted.hook];
          try {
            hostGit(gitProject, ["status"], { home: t.hostHome });
            hostGit(gitProject, ["diff"], { home: t.hostHome });
            assert.deepEqual(presentMarkers(mine), []);
          } finally {
            // Reported here: the final check of the suite looks for the others' markers.
            removeMarkers(mine);
          }
        },
      );
    });
  };
  hardenedGitCase(false);
  hardenedGitCase(true);

  it("the host command's environment carries no agent variable and no guardian secret", async () => {
    await environmentCase({ t, attack });
  });

  it("an approval binds the exact argv and cloister: other requests are separate questions, an id cannot be sent along, ids are single use", async () => {
    await useRules(t, [{ ask: ["ls", "**"] }]);
    const wanted = ["ls", "-d", "/tmp"];
    const other = ["ls", "-d", "/etc"];
    const live = spawnCli(t, [
      "exec",
      "hxe",
      "--",
      "sh",
      "-c",
      `cd /tmp; hostexec ${wanted.join(" ")} > /tmp/a.out 2>/tmp/a.err & a=$!; hostexec ${other.join(" ")} > /tmp/b.out 2>/tmp/b.err & b=$!
wait $a; echo "STEP a $?"; wait $b; echo "STEP b $?"; echo "== a"; cat /tmp/a.out; echo "== b"; cat /tmp/b.out`,
    ]);
    // The same argv from the project's other cloister.
    const elsewhere = spawnCli(t, ["exec", "hxe-2", "--", "sh", "-c", `hostexec ${wanted.join(" ")}; echo "STEP c $?"`]);
    const first = await pendingWhere(t, "hxe", argvIs(wanted));
    const second = await pendingWhere(t, "hxe", argvIs(other));
    const third = await pendingWhere(t, "hxe-2", argvIs(wanted));
    assert.equal(new Set([first.id, second.id, third.id]).size, 3);
    assert.match(first.id, /^[0-9a-f]{32}$/, "ids are 128 random bits");
    assert.equal(first.cwd, projectRoot, "the approval does not name the directory the command runs in");

    // The agent knows the id from its P frame: it tries to ride the request it wants on it.
    const ride = await attack(python(`report("ride", {"token": TOKEN, "argv": ${JSON.stringify(other)}, "cwd": "/work", "id": ${JSON.stringify(first.id)}})`));
    const rideResult = JSON.parse(parseSteps(ride.stdout).get("ride") ?? "null") as RawResult;
    assert.equal(rideResult.exit?.exitCode, HOSTEXEC_EXIT.failed, ride.stdout + ride.stderr);
    assert.match(rideResult.exit?.message ?? "", /unknown field 'id'/);

    assert.equal((await t.cli(["approve", first.id])).code, 0);
    const again = await t.cli(["approve", first.id]);
    assert.equal(again.code, 125, "the same id was approved twice");
    assert.match(again.stderr, /no waiting request matches/);
    assert.deepEqual((await pendingOf(t, "hxe")).map((p) => p.id), [second.id], "another argv was answered along");
    assert.deepEqual((await pendingOf(t, "hxe-2")).map((p) => p.id), [third.id], "another cloister's request was answered along");
    for (const id of [second.id, third.id]) assert.equal((await t.cli(["deny", id])).code, 0);
    const r = await live.done;
    assert.deepEqual(stepValues(r, ["a", "b"]), { a: "0", b: REFUSED });
    assert.deepEqual(stepValues(await elsewhere.done, ["c"]), { c: REFUSED });
    assert.match(r.stdout, /== a\n\/tmp\n== b\n$/);
  });

  it("the agent cannot answer its own request: no control socket, no UI, no host CLI reach the guardian from inside", async () => {
    await useRules(t, [{ ask: ["ls", "**"] }]);
    const argv = ["ls", "-d", `self-approve-${randomBytes(3).toString("hex")}`];
    const ui = await t.cli(["ui", "--json"]);
    const uiPort = ui.code === 0 ? Number(new URL((JSON.parse(ui.stdout) as { url: string }).url).port) : undefined;
    // A listener on the host's loopback stands in for the UI (and is the UI's address when it runs).
    const connections = { count: 0 };
    const standIn: Server = createServer((socket) => {
      connections.count++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => standIn.listen(0, "127.0.0.1", resolve));
    const ports = [(standIn.address() as AddressInfo).port, ...(uiPort ? [uiPort] : [])];
    copyCli(join(t.project, "cli"));
    const waiting = spawnCli(t, ["exec", "hxe", "--", "sh", "-c", `hostexec ${argv.join(" ")}; echo "STEP waited $?"`]);
    try {
      const request = await pendingWhere(t, "hxe", argvIs(argv));
      // Probes first: the copied CLI starts a guardian of its own inside, with a socket at the same path.
      const r = await t.cli([
        "run",
        "--",
        "sh",
        "-c",
        `${python(`
def reach(family, address):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(address)
step("control-socket", lambda: reach(socket.AF_UNIX, ${JSON.stringify(join(t.home, "run", "guardian.sock"))}))
for port in ${JSON.stringify(ports)}:
    step("ui-%d" % port, lambda port=port: reach(socket.AF_INET, ("127.0.0.1", port)))
`)}
${SH_PRELUDE}${ports.map((port) => `step proxy-ui-${port} curl -sSf -m 10 -x "$HTTP_PROXY" http://127.0.0.1:${port}/api/pending`).join("\n")}
if timeout 60 env CLOISTER_HOME=${t.home} node /work/cli/dist/bundle/main.cjs approve ${request.id} >/tmp/cli.out 2>&1; then echo "STEP cli-approve OK"; else echo "STEP cli-approve FAIL"; fi
sed 's/^/CLI: /' /tmp/cli.out`,
      ]);
      const steps = parseSteps(r.stdout);
      assertRefused(steps, ["cli-approve", ...ports.map((p) => `proxy-ui-${p}`)], ["FAIL"], r.stderr);
      // The CLI itself ran and failed with its own error (it finds no such request), not for want of node.
      assert.match(r.stdout, /^CLI: cloister: /m);
      assertRefused(steps, ["control-socket"], ["ENOENT"]);
      assertRefused(steps, ports.map((p) => `ui-${p}`), ["ECONNREFUSED"]);
      assert.equal(connections.count, 0, "the host's loopback listener was reached from inside");
      assert.deepEqual((await pendingOf(t, "hxe")).map((p) => p.id), [request.id], "the request was answered from inside");
      assert.equal((await t.cli(["deny", request.id])).code, 0);
      assert.deepEqual(stepValues(await waiting.done, ["waited"]), { waited: REFUSED });
    } finally {
      waiting.child.kill();
      await new Promise<void>((resolve) => standIn.close(() => resolve()));
    }
  });

  it("flooding: of 40 concurrent asked commands at most 32 wait, the rest are refused at once; another cloister still gets through", async () => {
    await useRules(t, [{ ask: ["ls", "**"] }]);
    const go = join(t.project, `.flood-go-${randomBytes(3).toString("hex")}`);
    const flood = spawnCli(t, [
      "exec",
      "hxe",
      "--",
      "sh",
      "-c",
      `mkdir -p /tmp/flood; : > /tmp/flood/pids
for i in $(seq 1 40); do hostexec ls flood-$i 2>/tmp/flood/$i.err & echo $! >> /tmp/flood/pids; done
while [ "$(grep -l 'waiting for approval already' /tmp/flood/*.err 2>/dev/null | wc -l)" -lt 8 ]; do sleep 0.1; done
echo FLOOD-REFUSED
while [ ! -e /work/${go.slice(t.project.length + 1)} ]; do sleep 0.1; done
kill -INT $(cat /tmp/flood/pids) 2>/dev/null
for pid in $(cat /tmp/flood/pids); do wait $pid; echo "RC $?"; done`,
    ]);
    try {
      await flood.waitFor("FLOOD-REFUSED", 60_000);
      assert.equal((await pendingOf(t, "hxe")).length, 32, "not exactly 32 requests of the flooding cloister wait");

      const other = spawnCli(t, ["exec", "hxe-2", "--", "sh", "-c", "hostexec ls README.md; echo STEP other $?"]);
      const request = await pendingWhere(t, "hxe-2", argvIs(["ls", "README.md"]));
      assert.equal((await t.cli(["approve", request.id])).code, 0);
      const r = await other.done;
      assert.equal(parseSteps(r.stdout).get("other"), "0", r.stderr);
      assert.match(r.stdout, /^README\.md$/m);
    } finally {
      writeFileSync(go, "");
    }
    const r = await flood.done;
    const codes = [...r.stdout.matchAll(/^RC (\d+)$/gm)].map((m) => m[1]).sort();
    assert.deepEqual(codes, [...Array(8).fill(REFUSED), ...Array(32).fill(String(HOSTEXEC_EXIT.cancelled))].sort(), r.stdout + r.stderr);
    await waitUntil("the flood's requests to leave the queue", async () => (await pendingOf(t, "hxe")).length === 0);
  });

  it("a raw connection with a wrong, empty or other cloister's token is refused and runs nothing", async () => {
    const escaped = escapeMarker("forged-token");
    await useRules(t, [{ allow: ["touch", escaped] }, { allow: ["true"] }]);
    const otherRecord = JSON.parse(readFileSync(join(t.home, "state", "cloisters", "hxe-2.json"), "utf8")) as { proxyToken: string };
    const r = await attack(
      python(`
touch = ${JSON.stringify(["touch", escaped])}
report("wrong", {"token": "0" * 64, "argv": touch, "cwd": "/work"})
report("other-cloister", {"token": ${JSON.stringify(otherRecord.proxyToken)}, "argv": touch, "cwd": "/work"})
report("prefix", {"token": TOKEN[:63], "argv": touch, "cwd": "/work"})
report("empty", {"token": "", "argv": touch, "cwd": "/work"})
report("own-control", {"token": TOKEN, "argv": ["true"], "cwd": "/work"})
`),
    );
    const steps = parseSteps(r.stdout);
    const result = (name: string): RawResult => JSON.parse(steps.get(name) ?? "null") as RawResult;
    for (const name of ["wrong", "other-cloister", "prefix"]) {
      assert.equal(result(name).exit?.exitCode, HOSTEXEC_EXIT.failed, `${name}: ${r.stdout}${r.stderr}`);
      assert.match(result(name).exit?.message ?? "", /authentication failed/, name);
    }
    assert.equal(result("empty").exit?.exitCode, HOSTEXEC_EXIT.failed);
    assert.equal(result("own-control").exit?.exitCode, 0, "the raw client does not work with the right token");
    assert.deepEqual(presentMarkers([escaped]), []);
  });

  it("requests left half-sent cannot make the guardian hold memory for them: past a few at once, a cloister's next ones are refused", async () => {
    const guardianPid = Number(readFileSync(join(t.home, "run", "guardian.pid"), "utf8"));
    const rss = (): number => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${guardianPid}/status`, "utf8"))?.[1] ?? NaN) * 1024;
    const before = rss();
    // Each connection announces a 1 MiB request and sends all of it but its last byte (red team:
    // 1000 of them held ~1 GiB of the guardian's memory, outside every cloister's cgroup).
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, rss())), 100);
    const r = await attack(
      python(`
import time
header = bytes([0xC7, 0x48, 0x58, 0x01]) + b"R" + struct.pack(">I", 1024 * 1024)
held, refused = [], 0
for i in range(120):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=30)
    try:
        s.sendall(header + b"A" * (1024 * 1024 - 1))
        held.append(s)
    except OSError:
        refused += 1
time.sleep(1)
for s in held:
    s.setblocking(False)
    try:
        data = s.recv(65536)
        if data[:1] == b"X" and b"arriving at once" in data:
            refused += 1
    except OSError:
        pass
print("STEP refused %d" % refused, flush=True)
time.sleep(2)
`),
    ).finally(() => clearInterval(sampler));
    const refused = Number(parseSteps(r.stdout).get("refused"));
    assert.ok(refused >= 100, `only ${refused} of 120 half-sent requests were refused:\n${r.stdout}${r.stderr}`);
    // Unbounded, 120 of them would hold 120 MiB while they are open.
    assert.ok(peak - before < 60 * 1024 * 1024, `the guardian grew by ${Math.round((peak - before) / 1048576)} MiB while they were open`);
    // A whole request still runs.
    await useRules(t, [{ allow: ["true"] }]);
    const ok = await attack("hostexec true; echo RC $?");
    assert.match(ok.stdout, /^RC 0$/m, ok.stderr);
  });

  it("`cloister approvals` shows the raw argv with control and bidi characters escaped, never raw", async () => {
    await useRules(t, [{ ask: ["ls", "**"] }]);
    const tag = `bidi-${randomBytes(3).toString("hex")}`;
    const tricky = ["\u202e", "\u2066", "\u200b", "\x1b[31m", "\x07", "\r", "\n", "\u0085"];
    const arg = `${tag}${tricky.join("")}txt.exe`;
    const waiting = spawnCli(t, ["exec", "hxe", "--", "sh", "-c", `hostexec ls '${arg}'; echo "STEP waited $?"`]);
    const request = await pendingWhere(t, "hxe", (argv) => argv[1]?.startsWith(tag) === true);
    assert.equal(request.argv[1], arg, "the argv arrived changed");
    const listed = await t.cli(["approvals"]);
    const denied = await t.cli(["deny", request.id]);
    assert.equal(denied.code, 0, denied.stderr);
    const line = listed.stdout.split("\n").find((l) => l.includes(tag)) ?? "";
    for (const text of [listed.stdout, denied.stderr]) {
      const raw = tricky.filter((c) => c !== "\n" && text.includes(c));
      assert.deepEqual(raw.map((c) => c.codePointAt(0)?.toString(16)), [], `raw control characters shown:\n${text}`);
    }
    for (const escape of ["\\u{202e}", "\\u{2066}", "\\u{200b}", "\\e[31m", "\\x07", "\\r", "\\n", "\\u{85}"]) assert.ok(line.includes(escape), `${escape} missing in ${line}`);
    assert.equal(parseSteps((await waiting.done).stdout).get("waited"), REFUSED);
  });

  it("afterwards: no marker, also after the user's git status and a guardian restart; host files unchanged; no canary; a second cloister runs", async () => {
    hostGit(t.project, ["status"], { home: t.hostHome });
    assert.equal((await t.cli(["guardian", "stop"])).code, 0);
    assert.equal((await t.cli(["guardian", "start"])).code, 0);
    assert.deepEqual(presentMarkers(markers), []);
    assert.deepEqual(diffSnapshots(hostBefore, hostSensitiveSnapshot(t)), []);
    assertNoCanaryAnywhere(t);
    await assertLive(t);
  });
});

// ---------------------------------------------------------------------------------------------

const USER_SKIP = asUserSkipReason();

describe("escape/hostexec as an ordinary user", { skip: NO_PYTHON || USER_SKIP, timeout: 300_000 }, () => {
  let u: UserInstance;
  const markers: string[] = [];
  const target = (): Target => ({ t: u, attack: (script) => u.cli(["run", "--", "sh", "-c", script]) });

  before(async () => {
    u = createUserInstance("hxu");
    const r = await u.cli(["guardian", "start"]);
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    removeMarkers(markers);
    await u?.teardown();
  });

  it("shell metacharacters in argv are plain text", async () => {
    const escaped = marker("hxu-meta");
    markers.push(escaped);
    await metacharacterCase(target(), escaped);
  });

  it("the host command's environment carries no agent variable and no guardian secret", async () => {
    await environmentCase(target());
    assertNoCanaryAnywhere(u);
  });
});
