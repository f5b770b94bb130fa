import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createCloister, findCloister, stopCloister } from "../../src/cloister.js";
import { removeCloister } from "../../src/stopped.js";
import { resolvePaths } from "../../src/config/paths.js";
import { CloisterError } from "../../src/errors.js";
import { CLI, createInstance, leakedCanaries, type CliResult, type TestInstance } from "../helpers/cloister.js";
import { asUserSkipReason, chownTree, createUserInstance, runAsUser, type UserInstance } from "../helpers/as-user.js";

describe("cloister run", () => {
  let t: TestInstance;
  before(() => {
    t = createInstance("run");
  });
  after(async () => t.teardown());

  it("runs a command at /work and passes its exit code through", async () => {
    const r = await t.cli(["run", "--", "sh", "-c", "pwd; exit 7"]);
    assert.equal(r.code, 7, r.stderr);
    assert.equal(r.stdout.trim(), "/work");
  });

  it("from a subdirectory of the project, runs the command there (by real path: a symlinked way in counts); --project from outside runs at /work", async () => {
    const sub = join(t.project, "packages", "api");
    mkdirSync(sub, { recursive: true });
    writeFileSync(join(sub, "package.json"), "{}\n");
    const link = join(dirname(t.project), "project-link");
    symlinkSync(t.project, link);
    try {
      assert.equal((await t.cli(["run", "--", "pwd"], { cwd: sub })).stdout, "/work/packages/api\n");
      assert.equal((await t.cli(["run", "--", "pwd"], { cwd: join(link, "packages") })).stdout, "/work/packages\n");
      assert.equal((await t.cli(["run", "--project", t.project, "--", "pwd"], { cwd: dirname(t.project) })).stdout, "/work\n");
    } finally {
      rmSync(link);
      rmSync(join(t.project, "packages"), { recursive: true });
    }
  });

  it("commits inside with the user's git identity from the host, and carries nothing else of the user's git config", async () => {
    const gitconfig = join(t.hostHome, ".gitconfig");
    writeFileSync(gitconfig, '[user]\n\tname = Ada \\"the\\" Lovelace\\\\1\n\temail = ada@example.com\n[credential]\n\thelper = store\n[alias]\n\tst = !touch /tmp/alias-ran\n[github]\n\ttoken = gitconfig-canary-7f3a\n');
    // A repository without an identity of its own (the instance's project has one).
    const bare = join(dirname(t.project), "no-identity");
    mkdirSync(bare);
    spawnSync("git", ["init", "-q", bare]);
    try {
      const r = await t.cli(["run", "--project", bare, "--", "sh", "-c", "git commit -q --allow-empty -m inside && git log -1 --format='%an <%ae>' && git config --global --list"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'Ada "the" Lovelace\\1 <ada@example.com>\nuser.name=Ada "the" Lovelace\\1\nuser.email=ada@example.com\n');
      assert.doesNotMatch(r.stdout + r.stderr, /canary|credential|alias/);
      const own = await t.cli(["run", "--", "git", "log", "-1", "--format=%an"]);
      assert.equal(own.stdout, `${spawnSync("git", ["-C", t.project, "config", "user.name"], { encoding: "utf8" }).stdout.trim()}\n`, "a repository's own identity wins, as on the host");
    } finally {
      rmSync(gitconfig);
      rmSync(bare, { recursive: true, force: true });
    }
  });

  it("streams stdin to the command", async () => {
    const r = await t.cli(["run", "--", "cat"], { input: "piped text\n" });
    assert.equal(r.stdout, "piped text\n");
  });

  it("in a terminal, gives the command a terminal, and its stderr follows the user's redirection (`2>build.log`)", () => {
    // script(1) gives the CLI a terminal for stdin and stdout; the shell it runs redirects fd 2.
    const log = join(t.home, "stderr.log");
    const command = `${process.execPath} ${CLI} run -- sh -c 'tty; echo to-stderr >&2; [ -t 2 ] || echo fd2-is-no-tty; exit 3' 2>${log}`;
    const r = spawnSync("script", ["-qec", command, "/dev/null"], { cwd: t.project, env: t.env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    assert.equal(r.status, 3, r.stderr);
    assert.match(r.stdout, /\/dev\/pts\/\d+\r\n/);
    assert.match(r.stdout, /fd2-is-no-tty/);
    assert.doesNotMatch(r.stdout, /to-stderr/);
    assert.equal(readFileSync(log, "utf8"), "to-stderr\n");
  });

  it("in a terminal, output arrives as the cloister's terminal made it: one \\r per line, and a raw-mode program's bare \\n (cursor down) stays one; the terminal is as it was after", () => {
    // Node's raw mode left the user's terminal adding a \r of its own to each \n (\r\r\n; full-screen programs drew askew).
    const program = "import sys, tty; print('line'); sys.stdout.flush(); tty.setraw(0); sys.stdout.write('ab\\ncd\\r\\n'); sys.stdout.flush()";
    const command = `stty -a | grep -o -- '-*opost'; ${process.execPath} ${CLI} run -- python3 -c "${program}"; stty -a | grep -o -- '-*opost'`;
    const r = spawnSync("script", ["-qec", command, "/dev/null"], { cwd: t.project, env: t.env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^opost\r\n[^]*line\r\nab\ncd\r\nopost\r\n$/);
  });

  it("takes a fractional or tiny --cpu (the kernel wants whole microseconds, at least 1 ms per period)", async () => {
    for (const cpu of ["33.3333%", "0.5%"]) {
      const r = await t.cli(["run", "--cpu", cpu, "--", "true"]);
      assert.equal(r.code, 0, `--cpu ${cpu}: ${r.stderr}`);
    }
  });

  it("refuses, before anything starts, limits too small to start a cloister and session rules without a network, saying what to give", async () => {
    const cases: [string[], RegExp][] = [
      [["--memory", "1k"], /a memory limit of 1KiB is too small to start a cloister.*at least 8MiB/s],
      [["--pids", "2"], /a process limit of 2 is too small to start a cloister.*at least 8/s],
      // pids.max takes no more than the kernel's pid space: the write failed with a bare EINVAL and left the cgroups made so far.
      [["--pids", "99999999999"], /"99999999999" is more processes than the kernel can have \(4194304\)/],
      [["--timeout", "0"], /"0" is no time at all: write a duration like 90s/],
      [["--no-network", "--allow", "example.com"], /--allow, --deny, --allow-private and --resolve have no effect without a network/],
    ];
    for (const [flags, message] of cases) {
      const r = await t.cli(["run", ...flags, "--", "true"]);
      assert.equal(r.code, 125, `${flags.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    }
    const smallest = await t.cli(["run", "--memory", "8MiB", "--pids", "8", "--", "sh", "-c", "(true) && echo ok"]);
    assert.equal(smallest.stdout, "ok\n", smallest.stderr);
  });

  it("exits 125 with one line when cloister itself fails (unknown flag)", async () => {
    const r = await t.cli(["run", "--bogus", "--", "true"]);
    assert.equal(r.code, 125);
  });

  it("exits 125 with a plain sentence when the current directory was removed", () => {
    const gone = join(dirname(t.project), "removed-dir");
    mkdirSync(gone);
    const r = spawnSync("sh", ["-c", 'cd "$1" && rmdir "$1" && exec "$2" "$3" run -- true', "sh", gone, process.execPath, CLI], { env: t.env, encoding: "utf8" });
    assert.equal(r.status, 125, r.stderr);
    assert.equal(r.stderr, "cloister: the current directory no longer exists (cd to one that exists, such as your project's, and run the command again)\n");
  });

  it("exits 125 outside a git repository unless --allow-no-git", async () => {
    const r = await t.cli(["run", "--project", "/", "--", "true"]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /not inside a git repository.*--allow-no-git/);
  });

  it("exec and stop without a NAME outside a repository ask for the NAME, not for --allow-no-git which they lack", async () => {
    for (const command of [["exec", "--", "true"], ["stop"]]) {
      const r = await t.cli(command, { cwd: t.home });
      assert.equal(r.code, 125, r.stderr);
      assert.match(r.stderr, new RegExp(`no cloister name given, and .* is not inside a git repository \\(name the cloister \\(cloister ${command[0]} NAME;`));
      assert.doesNotMatch(r.stderr, /--allow-no-git/);
    }
  });

  it("reports a missing command with 127", async () => {
    const r = await t.cli(["run", "--", "no-such-command-xyz"]);
    assert.equal(r.code, 127);
    assert.match(r.stderr + r.stdout, /no-such-command-xyz/);
  });

  it("kills the cloister on --timeout with exit 124", async () => {
    const r = await t.cli(["run", "--timeout", "1s", "--", "sleep", "30"]);
    assert.equal(r.code, 124);
    assert.match(r.stderr, /timed out/);
  });

  it("gives the workload no capabilities, no_new_privs and a seccomp filter", async () => {
    const r = await t.cli(["run", "--", "grep", "-E", "^(CapEff|CapPrm|CapAmb|NoNewPrivs|Seccomp):", "/proc/self/status"]);
    assert.match(r.stdout, /CapEff:\s+0000000000000000/);
    assert.match(r.stdout, /CapPrm:\s+0000000000000000/);
    assert.match(r.stdout, /CapAmb:\s+0000000000000000/);
    assert.match(r.stdout, /NoNewPrivs:\s+1/);
    assert.match(r.stdout, /Seccomp:\s+2/);
  });

  it("passes no host secret through the environment", async () => {
    const r = await t.cli(["run", "--", "env"]);
    assert.deepEqual(leakedCanaries(t, r.stdout), []);
    assert.doesNotMatch(r.stdout, /SSH_AUTH_SOCK|GITHUB_TOKEN|ANTHROPIC_API_KEY/);
    assert.match(r.stdout, /HTTP_PROXY=http:\/\/cloister:[0-9a-f]{64}@127\.0\.0\.1:3128/);
  });

  it("--no-network leaves no proxy and nothing listening", async () => {
    const r = await t.cli(["run", "--no-network", "--", "sh", "-c", "env | grep -i proxy; cat /proc/net/tcp | wc -l"]);
    assert.equal(r.stdout.trim(), "1");
  });

  it("a launch that fails after the guardian granted it hands the grant back (its egress socket closes, the audit log records the end)", async () => {
    // The guardian's grant and the host-side preparation run side by side; here the preparation
    // refuses (a protected path that is a symbolic link) while or after the grant is given.
    const link = join(t.project, ".gitmodules");
    symlinkSync("/etc/hostname", link);
    try {
      const r = await t.cli(["run", "--", "true"]);
      assert.equal(r.code, 125, r.stderr);
      assert.match(r.stderr, /cannot protect \.gitmodules in the project: it is a symbolic link/);
    } finally {
      rmSync(link);
    }
    const audit = await t.cli(["audit", "tail", "--json", "-n", "1000"]);
    const events = audit.stdout.trim().split("\n").map((line) => JSON.parse(line) as { type: string; cloister?: string });
    const started = events.filter((e) => e.type === "cloister.start").map((e) => e.cloister);
    const stopped = new Set(events.filter((e) => e.type === "cloister.stop").map((e) => e.cloister));
    assert.ok(started.length > 0, audit.stdout);
    assert.deepEqual(started.filter((name) => !stopped.has(name)), [], "every granted cloister has its end recorded");
    const status = JSON.parse((await t.cli(["guardian", "status", "--json"])).stdout) as { cloisters: number };
    assert.equal(status.cloisters, 0);
  });

  describe("when bwrap fails after it was started (here: a host without user namespaces)", () => {
    const message = "bwrap: No permissions to create new namespace, likely because the kernel does not allow non-privileged user namespaces.";
    /** While `body` runs, the CLI's launches take a bwrap that fails so (CLOISTER_BWRAP); `body` gets its path. */
    const withFailingBwrap = async (body: (bwrap: string) => Promise<void>) => {
      const fakeBin = join(t.home, "fake-bin");
      mkdirSync(fakeBin, { recursive: true });
      const bwrap = join(fakeBin, "bwrap");
      writeFileSync(bwrap, `#!/bin/sh\necho '${message}' >&2\nexit 1\n`, { mode: 0o755 });
      t.env.CLOISTER_BWRAP = bwrap;
      try {
        await body(bwrap);
      } finally {
        delete t.env.CLOISTER_BWRAP;
      }
      assert.equal((await t.cli(["list", "--json"])).stdout.trim(), "[]", "nothing is left");
    };
    const assertBwrapsWords = (r: CliResult) => {
      assert.equal(r.code, 125, r.stderr);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.ok(r.stderr.includes(`its log ends with: ${message}`), r.stderr);
      assert.match(r.stderr, /cloister doctor/);
    };

    it("run exits 125 with bwrap's own words and leaves nothing", () => withFailingBwrap(async () => assertBwrapsWords(await t.cli(["run", "--", "true"]))));

    it("start -d exits 125 with bwrap's own words, not 'Started', and leaves nothing, not even the HOME it made (QA: listed as stopped)", () =>
      withFailingBwrap(async () => {
        assertBwrapsWords(await t.cli(["start", "-d", "--name", "dead-start"]));
        const homes = join(t.home, "data", "homes");
        assert.equal(existsSync(join(homes, "dead-start")), false, "the HOME this launch made is left");
        assert.equal(existsSync(join(homes, ".owners", "dead-start")), false, "the HOME's owner is left");
        assert.doesNotMatch((await t.cli(["list", "--all"])).stdout, /dead-start/);
      }));

    it("a failed start keeps the HOME an earlier session left (history, logins), with its owner", async () => {
      const started = await t.cli(["start", "-d", "--name", "kept-home"]);
      assert.equal(started.code, 0, started.stderr);
      assert.equal((await t.cli(["exec", "kept-home", "--", "sh", "-c", "echo earlier > ~/.bash_history"])).code, 0);
      assert.equal((await t.cli(["stop", "kept-home"])).code, 0);
      await withFailingBwrap(async () => assertBwrapsWords(await t.cli(["start", "-d", "--name", "kept-home"])));
      const homes = join(t.home, "data", "homes");
      assert.equal(readFileSync(join(homes, "kept-home", ".bash_history"), "utf8"), "earlier\n");
      assert.equal(readFileSync(join(homes, ".owners", "kept-home"), "utf8"), `${realpathSync(t.project)}\n`);
      assert.match((await t.cli(["list", "--all"])).stdout, /^kept-home +proj +stopped/m);
      const removed = await t.cli(["rm", "kept-home"]);
      assert.equal(removed.code, 0, removed.stderr);
    });

    it("the library's createCloister of a persistent cloister rejects with bwrap's own words", () =>
      withFailingBwrap(async (bwrap) => {
        // The library's launch reads this process's environment.
        const saved = process.env.CLOISTER_BWRAP;
        process.env.CLOISTER_BWRAP = bwrap;
        try {
          const launch = createCloister({ project: t.project, paths: resolvePaths({ CLOISTER_HOME: t.home }), name: "dead-lib" }, true);
          await assert.rejects(launch, (error: unknown) => error instanceof CloisterError && error.message.endsWith(`its log ends with: ${message}`));
        } finally {
          if (saved === undefined) delete process.env.CLOISTER_BWRAP;
          else process.env.CLOISTER_BWRAP = saved;
        }
      }));
  });

  it("a configured mount whose host path is missing is named before anything starts", async () => {
    const projectFile = join(t.home, "config", "projects", "proj.yaml");
    mkdirSync(dirname(projectFile), { recursive: true });
    writeFileSync(projectFile, "refs:\n  docs: /nonexistent/docs\n");
    try {
      const r = await t.cli(["run", "--", "true"]);
      assert.equal(r.code, 125, r.stderr);
      assert.match(r.stderr, /refs\.docs in project proj's config names \/nonexistent\/docs, which does not exist/);
    } finally {
      rmSync(projectFile);
    }
  });

  it("leaves no placeholder in the project afterwards", async () => {
    await t.cli(["run", "--", "true"]);
    const r = await t.cli(["run", "--project", t.project, "--allow-no-git", "--", "true"]);
    assert.equal(r.code, 0);
    const { readdirSync } = await import("node:fs");
    assert.deepEqual(readdirSync(t.project).sort(), [".git", "README.md"]);
  });
});

describe("cloister run as an ordinary user, in a project that user cannot write", { skip: asUserSkipReason() }, () => {
  let t: UserInstance;
  before(() => {
    t = createUserInstance("cw");
    chownTree(t.project, 0, 0);
  });
  after(async () => {
    await t.teardown();
  });

  /** What every command says, before it reads or writes anything, in an instance of `owner`'s at `home`. */
  const othersInstance = (home: string, owner: string) =>
    `^cloister: cannot use the cloister instance at ${home}, as it belongs to ${owner}; nothing was written there \\(each user has an instance of their own: run this as ${owner}, or set CLOISTER_HOME to a directory of your own\\)\n$`;

  it("pointed at another user's instance or one it cannot create, says so instead of \"No cloisters.\" or a raw EACCES", async () => {
    const rootsHome = mkdtempSync(join(tmpdir(), "cloister-roots-"));
    try {
      mkdirSync(join(rootsHome, "state", "cloisters"), { recursive: true, mode: 0o700 });
      chmodSync(rootsHome, 0o700);
      const foreign = await runAsUser(t.user.name, [process.execPath, t.cliPath, "list"], { ...t.env, CLOISTER_HOME: rootsHome }, { cwd: t.project });
      assert.equal(foreign.code, 125);
      assert.match(foreign.stderr, new RegExp(othersInstance(rootsHome, "root")));
      const uncreatable = await runAsUser(t.user.name, [process.execPath, t.cliPath, "config", "init"], { ...t.env, CLOISTER_HOME: join(rootsHome, "sub") }, { cwd: t.project });
      assert.equal(uncreatable.code, 125);
      assert.match(uncreatable.stderr, /^cloister: cannot [\w ]+ \S+\/sub\S*: permission denied \(check the owners and permissions of the directories on that path; CLOISTER_HOME must be a directory you can write\)\n$/);
    } finally {
      rmSync(rootsHome, { recursive: true, force: true });
    }
  });

  it("pointed at another user's running instance behind a directory it may not enter, guardian status and the audit commands say permission denied, naming whose it is (QA: \"not running\", \"no audit log\")", async () => {
    const roots = createInstance("rootguard");
    try {
      const started = await roots.cli(["guardian", "start"]);
      assert.equal(started.code, 0, started.stderr);
      const asUser = (args: string[]) => runAsUser(t.user.name, [process.execPath, t.cliPath, ...args], { ...t.env, CLOISTER_HOME: roots.home }, { cwd: t.project });
      const whose = "as \\S+ belongs to root \\(each user has an instance of their own: run this as root, or set CLOISTER_HOME to a directory of your own\\)\n$";
      const status = await asUser(["guardian", "status"]);
      assert.equal(status.code, 125, status.stdout);
      assert.equal(status.stdout, "");
      assert.match(status.stderr, new RegExp(`^cloister: cannot reach the guardian at ${roots.home}/run/guardian\\.sock: permission denied, ${whose}`));
      for (const audit of [["audit", "verify"], ["audit", "tail"]]) {
        const r = await asUser(audit);
        assert.equal(r.code, 125, `${audit.join(" ")}: ${r.stdout}`);
        assert.match(r.stderr, new RegExp(`^cloister: cannot read the audit log at ${roots.home}/state/audit: permission denied, ${whose}`), audit.join(" "));
      }
      assert.equal((await roots.cli(["guardian", "status"])).code, 0, "its own user still reaches it");
    } finally {
      await roots.teardown();
    }
  });

  it("says that a cloister needs write access to its project, instead of a raw EACCES", async () => {
    const r = await t.cli(["run", "--", "true"]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /cannot make \S+ in the project to protect it \(permission denied\).*needs write access to the project/);
    assert.doesNotMatch(r.stderr, /EACCES/);
  });
});

describe("root pointed at an ordinary user's instance", { skip: asUserSkipReason() }, () => {
  let t: UserInstance;
  let rootHome: string;
  before(async () => {
    t = createUserInstance("ro");
    const run = await t.cli(["run", "--", "true"]);
    assert.equal(run.code, 0, run.stderr);
    await t.cli(["guardian", "stop"]);
    rootHome = mkdtempSync(join(tmpdir(), "cloister-roothome-"));
  });
  after(async () => {
    await t.teardown();
    rmSync(rootHome, { recursive: true, force: true });
  });

  /** Every entry under `dir` with its owner, size and change time: what a command could have written. */
  function snapshot(dir: string): string[] {
    const entries: string[] = [];
    const walk = (path: string): void => {
      const st = lstatSync(path);
      entries.push(`${path} uid=${st.uid} size=${st.size} ctime=${st.ctimeMs}`);
      if (st.isDirectory()) for (const name of readdirSync(path)) walk(join(path, name));
    };
    walk(dir);
    return entries.sort();
  }

  it("refuses every command before it writes, saying whose the instance is (QA: root-owned files, then \"permission denied\")", async () => {
    // Root's own HOME and code cache: only what the CLI does with the instance is under test.
    const env = { ...t.env, HOME: rootHome, USER: "root", LOGNAME: "root", XDG_CACHE_HOME: join(rootHome, "cache") };
    const asRoot = (args: string[]) => runAsUser("root", [process.execPath, CLI, ...args], env, { cwd: t.project });
    const before = [...snapshot(t.home), ...snapshot(t.project)];
    const refusal = `cannot use the cloister instance at ${t.home}, as it belongs to ${t.user.name}; nothing was written there`;
    const hint = `each user has an instance of their own: run this as ${t.user.name}, or set CLOISTER_HOME to a directory of your own`;
    const commands = [["run", "--", "true"], ["start", "-d"], ["stop"], ["exec", "--", "true"], ["list"], ["config", "init"], ["config", "show"], ["project", "list"], ["guardian", "start"], ["allow", "example.com"], ["worktree", "list"], ["audit", "tail"]];
    for (const command of commands) {
      const r = await asRoot(command);
      assert.equal(r.code, 125, `${command.join(" ")}: ${r.stdout}${r.stderr}`);
      assert.equal(r.stderr, `cloister: ${refusal} (${hint})\n`, command.join(" "));
    }
    const json = await asRoot(["list", "--json"]);
    assert.deepEqual(JSON.parse(json.stdout), { error: { message: refusal, hint, exitCode: 125 } });
    const doctor = await asRoot(["doctor", "--json"]);
    assert.equal(doctor.code, 1, doctor.stderr);
    const config = (JSON.parse(doctor.stdout) as { checks: { id: string; status: string; detail: string; fix?: string }[] }).checks.find((c) => c.id === "config");
    assert.deepEqual(config, { id: "config", title: "Configuration", status: "fail", detail: refusal, fix: hint });
    // The library's calls that may write (find starts a guardian; stop, remove) refuse alike.
    const paths = resolvePaths({ CLOISTER_HOME: t.home });
    const refused = (error: unknown) => error instanceof CloisterError && error.message === refusal && error.hint === hint;
    await assert.rejects(findCloister("proj", { paths }), refused, "findCloister");
    await assert.rejects(stopCloister("proj", paths), refused, "stopCloister");
    await assert.rejects(removeCloister("proj", { paths, force: true }), refused, "removeCloister");
    assert.deepEqual([...snapshot(t.home), ...snapshot(t.project)], before, "nothing in the user's instance or project changed");
    assert.equal((await t.cli(["run", "--", "true"])).code, 0, "its own user still uses it");
  });
});
