/**
 * Hardened host git against a hostile repository, with real git and real repositories. Each attack
 * targets a marker /tmp/ESCAPED-<case>-<random>; where it helps, a control run with plain git shows
 * that the attack is real before the hardened run shows that it fails.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import { executeOnHost, hostEnvironment, type ExecuteResult } from "../../src/guardian/hostexec/execute.js";
import { hardenGit } from "../../src/guardian/hostexec/git.js";

let scratch = "";
/** The host user's HOME for every command: its .gitconfig is the user's own, trusted config. */
let home = "";
const markers: string[] = [];

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), "cloister-hostgit-test-"));
  home = join(scratch, "home");
  await mkdir(home);
  await writeFile(join(home, ".gitconfig"), "[user]\n\tname = Cloister Tester\n\temail = tester@example.com\n[init]\n\tdefaultBranch = main\n");
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});
afterEach(async () => {
  for (const path of markers.splice(0)) await rm(path, { force: true });
});

/** Where an attack tries to leave its trace on the host; removed after each test. */
function marker(name: string): string {
  const path = join(tmpdir(), `ESCAPED-${name}-${randomBytes(6).toString("hex")}`);
  markers.push(path);
  return path;
}

/** The environment of the test's own (unhardened) git: the temp home's config, not the machine's. */
function setupEnv(): NodeJS.ProcessEnv {
  return { ...process.env, HOME: home, GIT_CONFIG_GLOBAL: join(home, ".gitconfig"), GIT_CONFIG_NOSYSTEM: "1" };
}

/** Plain git, as the agent (or the user) would run it: for setting up and for control runs. */
function plainGit(cwd: string, ...args: string[]): { status: number | null; stdout: string } {
  const ran = spawnSync("git", args, { cwd, env: setupEnv(), encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  return { status: ran.status, stdout: ran.stdout };
}

function git(cwd: string, ...args: string[]): string {
  const ran = spawnSync("git", args, { cwd, env: setupEnv(), encoding: "utf8" });
  assert.equal(ran.status, 0, `git ${args.join(" ")}: ${ran.stderr}`);
  return ran.stdout;
}

let repos = 0;
async function newRepo(): Promise<string> {
  const repo = join(scratch, `repo-${++repos}`);
  await mkdir(repo);
  git(repo, "init", "-q");
  await writeFile(join(repo, "file.txt"), "one\n");
  git(repo, "add", "file.txt");
  git(repo, "commit", "-qm", "first");
  return repo;
}

/** An executable script at `path` that creates `touched`. */
async function script(path: string, touched: string): Promise<void> {
  await writeFile(path, `#!/bin/sh\ntouch ${touched}\ncat\n`);
  await chmod(path, 0o755);
}

interface HostRun {
  result: ExecuteResult;
  stdout: string;
  stderr: string;
}

async function runHardened(argv: string[], cwd: string): Promise<HostRun> {
  let stdout = "";
  let stderr = "";
  const result = await executeOnHost({
    argv,
    cwd,
    timeoutMs: 20_000,
    maxOutputBytes: 1 << 20,
    signal: new AbortController().signal,
    onStdout: (chunk) => void (stdout += chunk.toString()),
    onStderr: (chunk) => void (stderr += chunk.toString()),
    home,
  });
  return { result, stdout, stderr };
}

/** git on the host, hardened: the run, or the refusal. */
async function hostGit(cwd: string, ...args: string[]): Promise<HostRun | { refused: string }> {
  const hardened = await hardenGit(["git", ...args], cwd);
  return "refused" in hardened ? hardened : runHardened(hardened.argv, cwd);
}

/** Asserts that hardened git ran the command successfully and returns its stdout. */
async function hostGitOk(cwd: string, ...args: string[]): Promise<string> {
  const ran = await hostGit(cwd, ...args);
  assert.ok(!("refused" in ran), `refused: ${"refused" in ran ? ran.refused : ""}`);
  assert.equal(ran.result.exitCode, 0, `git ${args.join(" ")}: ${ran.stderr}`);
  return ran.stdout;
}

/** Asserts that hardened git ran (was not refused) but failed, and returns its stderr. */
async function hostGitFails(cwd: string, ...args: string[]): Promise<string> {
  const ran = await hostGit(cwd, ...args);
  assert.ok(!("refused" in ran), `refused: ${"refused" in ran ? ran.refused : ""}`);
  assert.notEqual(ran.result.exitCode, 0);
  return ran.stderr;
}

/** The hardened runs left no marker, and the same attack with plain git does: the case is real. */
function assertOnlyPlainGitFalls(escaped: string, cwd: string, ...plainArgs: string[]): void {
  assert.equal(existsSync(escaped), false, "hardened git fell for the attack");
  plainGit(cwd, ...plainArgs);
  assert.equal(existsSync(escaped), true, `control: plain git ${plainArgs.join(" ")} does not fall for the attack`);
}

async function assertRefused(cwd: string, args: string[], mention: RegExp): Promise<void> {
  const ran = await hostGit(cwd, ...args);
  assert.ok("refused" in ran, `git ${args.join(" ")} was not refused`);
  assert.match(ran.refused, mention);
}

async function assertEachRefused(cwd: string, commands: string[][], mention: RegExp): Promise<void> {
  for (const args of commands) await assertRefused(cwd, args, mention);
}

/** Runs `argv` on a terminal (pagers only start there), with no pager variable to help. */
function onTerminal(argv: string[], cwd: string): void {
  const command = argv.map((arg) => `'${arg.replace(/'/g, `'\\''`)}'`).join(" ");
  const { GIT_PAGER: _git, PAGER: _pager, ...env } = hostEnvironment(home);
  spawnSync("script", ["-qec", command, "/dev/null"], { cwd, env: { ...env, TERM: "xterm" }, stdio: "ignore" });
}

describe("the user's own config", () => {
  test("the global config still applies (identity for commits)", async () => {
    const repo = await newRepo();
    await writeFile(join(repo, "file.txt"), "two\n");
    await hostGitOk(repo, "commit", "-qam", "second");
    assert.equal(await hostGitOk(repo, "log", "-1", "--format=%an <%ae>"), "Cloister Tester <tester@example.com>\n");
    assert.equal(await hostGitOk(repo, "config", "user.name"), "Cloister Tester\n");
  });

  test("non-git programs are left alone; dashed git programs are refused", async () => {
    assert.deepEqual(await hardenGit(["gh", "pr", "list"], scratch), { argv: ["gh", "pr", "list"] });
    const refused = await hardenGit(["/usr/bin/git-receive-pack", "."], scratch);
    assert.ok("refused" in refused && /git-receive-pack/.test(refused.refused));
  });

  test("outside any work tree git diff, which is git diff --no-index there, is refused; in a repository it runs", async () => {
    const plain = join(scratch, "not-a-repo");
    await mkdir(plain, { recursive: true });
    await writeFile(join(plain, "empty"), "");
    await symlink(scratch, join(plain, "link"));
    await writeFile(join(scratch, "secret"), "HOST-KEY-CANARY\n");
    assert.match(plainGit(plain, "diff", "empty", "link/secret").stdout, /HOST-KEY-CANARY/, "control: plain git diff shows the file");
    await assertEachRefused(plain, [["diff", "empty", "link/secret"], ["--no-pager", "diff", "--stat", "empty", "link/secret"]], /git diff outside a git work tree/);
    const repo = await newRepo();
    await symlink(scratch, join(repo, "link"));
    assert.doesNotMatch(await hostGitOk(repo, "diff", "--", "link/secret"), /HOST-KEY-CANARY/);
  });

  test("outside any repository git still runs", async () => {
    const ran = await hostGit(scratch, "status");
    assert.ok(!("refused" in ran));
    assert.match(ran.stderr, /not a git repository/);
    assert.match(await hostGitOk(scratch, "--version"), /^git version/);
  });
});

describe("neutralized repository settings", () => {
  test("a planted .git/hooks/pre-commit does not run; commit works", async () => {
    const repo = await newRepo();
    const escaped = marker("pre-commit");
    await script(join(repo, ".git/hooks/pre-commit"), escaped);
    await writeFile(join(repo, "file.txt"), "two\n");
    await hostGitOk(repo, "commit", "-qam", "second");
    assert.equal(await hostGitOk(repo, "log", "-1", "--format=%s"), "second\n");
    assertOnlyPlainGitFalls(escaped, repo, "commit", "-q", "--allow-empty", "-m", "control");
  });

  test("core.hooksPath pointing into the work tree is overridden", async () => {
    const repo = await newRepo();
    const escaped = marker("hookspath");
    await mkdir(join(repo, "hooks"));
    await script(join(repo, "hooks/pre-commit"), escaped);
    git(repo, "config", "core.hooksPath", "hooks");
    await hostGitOk(repo, "commit", "-q", "--allow-empty", "-m", "second");
    assert.equal(existsSync(escaped), false);
  });

  test("core.fsmonitor in the repository config does not run; status works", async () => {
    const repo = await newRepo();
    const escaped = marker("fsmonitor");
    await script(join(repo, "fsmonitor"), escaped);
    git(repo, "config", "core.fsmonitor", join(repo, "fsmonitor"));
    assert.match(await hostGitOk(repo, "status", "--short"), /\?\? fsmonitor/);
    assertOnlyPlainGitFalls(escaped, repo, "status");
  });

  test("core.pager and pager.log do not run, even on a terminal", async () => {
    const repo = await newRepo();
    const escaped = marker("pager");
    const pagedLog = marker("pager-log");
    git(repo, "config", "core.pager", `touch ${escaped}; cat`);
    git(repo, "config", "pager.show", `touch ${pagedLog}; cat`);
    const hardened = await hardenGit(["git", "log"], repo);
    assert.ok("argv" in hardened);
    onTerminal(hardened.argv, repo);
    const show = await hardenGit(["git", "show"], repo);
    assert.ok("argv" in show);
    onTerminal(show.argv, repo);
    assert.equal(existsSync(escaped), false);
    assert.equal(existsSync(pagedLog), false);
    assert.match(await hostGitOk(repo, "log", "--oneline"), /first/);
    onTerminal(["git", "log"], repo);
    assert.equal(existsSync(escaped), true, "control: plain git on a terminal runs the pager");
  });

  test("core.editor and sequence.editor do not run: the command fails instead", async () => {
    const repo = await newRepo();
    const escaped = marker("editor");
    git(repo, "config", "core.editor", `touch ${escaped}`);
    git(repo, "config", "sequence.editor", `touch ${escaped}`);
    await hostGitFails(repo, "commit", "--allow-empty");
    await hostGitFails(repo, "rebase", "-i", "--root");
    assertOnlyPlainGitFalls(escaped, repo, "commit", "--allow-empty");
  });

  test("ext:: transports stay off even when the repository allows every protocol", async () => {
    const repo = await newRepo();
    const escaped = marker("ext");
    git(repo, "config", "protocol.allow", "always");
    git(repo, "config", "protocol.ext.allow", "always");
    assert.match(await hostGitFails(repo, "ls-remote", `ext::sh -c touch% ${escaped}`), /transport 'ext' not allowed/);
    assertOnlyPlainGitFalls(escaped, repo, "ls-remote", `ext::sh -c touch% ${escaped}`);
  });
});

describe("nested repositories and submodules", () => {
  /** An agent-made repository at repo/nested whose config runs a clean filter and an fsmonitor. */
  async function plantNested(repo: string, escaped: string): Promise<void> {
    const nested = join(repo, "nested");
    await mkdir(nested);
    git(nested, "init", "-q");
    await writeFile(join(nested, ".gitattributes"), "* filter=evil\n");
    await writeFile(join(nested, "n.txt"), "n\n");
    git(nested, "add", ".");
    git(nested, "commit", "-qm", "n");
    await script(join(repo, "nested-fsmonitor"), escaped);
    git(nested, "config", "core.fsmonitor", join(repo, "nested-fsmonitor"));
    git(nested, "config", "filter.evil.clean", `touch ${escaped}; cat`);
  }

  test("an untracked nested repository is not entered by status", async () => {
    const repo = await newRepo();
    const escaped = marker("nested-untracked");
    await plantNested(repo, escaped);
    assert.match(await hostGitOk(repo, "status", "--short"), /\?\? nested\//);
    assert.equal(existsSync(escaped), false);
  });

  test("a nested repository staged as a submodule, with .gitmodules only in the index, is not entered", async () => {
    const repo = await newRepo();
    const escaped = marker("nested-gitlink");
    await plantNested(repo, escaped);
    git(repo, "add", "nested");
    // `ignore = none` in .gitmodules outranks diff.ignoreSubmodules=all on the command line.
    const gitmodules = spawnSync("git", ["hash-object", "-w", "--stdin"], {
      cwd: repo,
      env: setupEnv(),
      input: '[submodule "Nested.Sub"]\n\tpath = nested\n\turl = ./nested\n\tignore = none\n\tfetchRecurseSubmodules = true\n',
      encoding: "utf8",
    }).stdout.trim();
    git(repo, "update-index", "--add", "--cacheinfo", `100644,${gitmodules},.gitmodules`);
    await writeFile(join(repo, "nested/n.txt"), "changed\n");
    await hostGitOk(repo, "status");
    await hostGitOk(repo, "diff");
    await hostGitOk(repo, "commit", "-qm", "with submodule");
    // The .gitmodules entry makes plain git enter the repository despite diff.ignoreSubmodules=all.
    assertOnlyPlainGitFalls(escaped, repo, "-c", "diff.ignoreSubmodules=all", "status");
  });

  test("options and commands that enter submodules are refused", async () => {
    const repo = await newRepo();
    const entering = [
      ["submodule", "update", "--init"],
      ["submodule--helper", "foreach", "touch x"],
      ["status", "--ignore-submodules=none"],
      ["status", "--ignore-sub=dirty"],
      ["pull", "--recurse-submodules"],
      ["checkout", "--recurse-sub", "main"],
      ["diff", "--submodule=diff"],
    ];
    await assertEachRefused(repo, entering, /submodules/);
    await hostGitOk(repo, "diff", "--ignore-submodules", "--submodule=log");
    await hostGitOk(repo, "fetch", "--recurse-submodules=no", "--dry-run", "--all");
  });

  test("a submodule name that -c cannot express is refused", async () => {
    const repo = await newRepo();
    await writeFile(join(repo, ".gitmodules"), '[submodule "a=b"]\n\tpath = a\n\turl = ./a\n');
    await assertRefused(repo, ["status"], /"a=b"/);
  });

  test("pushing to a local repository, which would run its hooks, is blocked", async () => {
    const repo = await newRepo();
    const escaped = marker("receive-hook");
    const bare = join(scratch, `bare-${repos}.git`);
    git(scratch, "init", "-q", "--bare", bare);
    await script(join(bare, "hooks/pre-receive"), escaped);
    for (const url of [`file://${bare}`, bare]) {
      assert.match(await hostGitFails(repo, "push", url, "HEAD:refs/heads/pushed"), /transport 'file' not allowed/);
    }
    // Settings given with -c do not reach a local receive-pack.
    assertOnlyPlainGitFalls(escaped, repo, "-c", "core.hooksPath=/dev/null", "push", "-q", `file://${bare}`, "HEAD:refs/heads/control");
  });
});

describe("refused repository settings", () => {
  test("a clean filter with .gitattributes", async () => {
    const repo = await newRepo();
    const escaped = marker("clean-filter");
    git(repo, "config", "filter.Evil.clean", `touch ${escaped}; cat`);
    await writeFile(join(repo, ".gitattributes"), "*.txt filter=Evil\n");
    await writeFile(join(repo, "file.txt"), "two\n");
    await assertRefused(repo, ["status"], /"filter\.Evil\.clean".*~\/\.gitconfig/);
    await assertRefused(repo, ["add", "file.txt"], /filter/);
    assertOnlyPlainGitFalls(escaped, repo, "add", "file.txt");
  });

  test("diff.external, which an empty -c value cannot disable", async () => {
    const repo = await newRepo();
    const escaped = marker("diff-external");
    await script(join(repo, "differ"), escaped);
    git(repo, "config", "diff.external", join(repo, "differ"));
    await writeFile(join(repo, "file.txt"), "two\n");
    await assertRefused(repo, ["diff"], /diff\.external/);
    assertOnlyPlainGitFalls(escaped, repo, "diff");
    git(repo, "config", "--unset", "diff.external");
    assert.notEqual(plainGit(repo, "-c", "diff.external=", "diff").status, 0, "an empty diff.external breaks every diff");
  });

  test("textconv with git diff", async () => {
    const repo = await newRepo();
    const escaped = marker("textconv");
    git(repo, "config", "diff.evil.textconv", `touch ${escaped}; cat`);
    await writeFile(join(repo, ".gitattributes"), "*.txt diff=evil\n");
    await writeFile(join(repo, "file.txt"), "two\n");
    await assertRefused(repo, ["diff"], /diff\.evil\.textconv/);
    assertOnlyPlainGitFalls(escaped, repo, "diff");
  });

  test("settings that name a file git reads or writes outside the project (format.suffix, blame.ignoreRevsFile, ...)", async () => {
    const repo = await newRepo();
    for (const [key, value] of [
      ["format.suffix", "/../../../home/u/.bashrc"],
      ["format.signatureFile", "/home/u/.ssh/id_ed25519"],
      ["format.outputDirectory", "/home/u"],
      ["blame.ignoreRevsFile", "/home/u/.git-credentials"],
      ["core.excludesFile", "/home/u/.ssh/id_ed25519"],
      ["mailmap.file", "/home/u/.netrc"],
      ["http.cookieFile", "/home/u/.bashrc"],
    ] as const) {
      git(repo, "config", key, value);
      await assertRefused(repo, ["log"], new RegExp(`"${key.toLowerCase()}"`.replace(".", "\\.")));
      git(repo, "config", "--unset", key);
    }
  });

  test("include.path to a work-tree file, and includeIf", async () => {
    const repo = await newRepo();
    const escaped = marker("include");
    await mkdir(join(repo, "hooks"));
    await script(join(repo, "hooks/pre-commit"), escaped);
    await writeFile(join(repo, "included"), `[core]\n\thooksPath = ${join(repo, "hooks")}\n[alias]\n\tci = !touch ${escaped}\n`);
    git(repo, "config", "include.path", join(repo, "included"));
    await assertRefused(repo, ["commit", "--allow-empty", "-m", "x"], /"include\.path"/);
    git(repo, "config", "--unset", "include.path");
    git(repo, "config", `includeIf.gitdir:${repo}/.path`, join(repo, "included"));
    await assertRefused(repo, ["ci"], /includeif/);
    assertOnlyPlainGitFalls(escaped, repo, "ci");
  });

  test("a credential helper in the repository, with a push over file://", async () => {
    const repo = await newRepo();
    const escaped = marker("credential");
    git(repo, "config", "credential.helper", `!touch ${escaped}; true`);
    git(repo, "config", "credential.https://example.com.helper", `!touch ${escaped}; true`);
    const bare = join(scratch, `bare-${repos}.git`);
    git(scratch, "init", "-q", "--bare", bare);
    await assertRefused(repo, ["push", `file://${bare}`, "HEAD"], /"credential\.helper", "credential\.https:\/\/example\.com\.helper"/);
    assert.equal(existsSync(escaped), false);
  });

  test("programs, aliases and redirections of the work tree", async () => {
    const repo = await newRepo();
    const settings: [string, string][] = [
      ["core.sshCommand", "evil"],
      ["core.askPass", "evil"],
      ["merge.evil.driver", "evil"],
      ["gpg.ssh.program", "evil"],
      ["remote.origin.uploadpack", "evil"],
      ["alias.st", "!evil"],
      ["core.worktree", home],
      ["submodule.x.update", "!evil"],
      ["trailer.sign.command", "evil"],
    ];
    for (const [key, value] of settings) {
      git(repo, "config", key, value);
      await assertRefused(repo, ["status"], new RegExp(`"${key.replace(/\./g, "\\.")}"`, "i"));
      git(repo, "config", "--unset", key);
    }
    git(repo, "config", "submodule.x.update", "rebase");
    await hostGitOk(repo, "status");
  });

  test("settings in config.worktree count as the repository's", async () => {
    const repo = await newRepo();
    git(repo, "config", "extensions.worktreeConfig", "true");
    git(repo, "config", "--worktree", "include.path", join(repo, "anything"));
    await assertRefused(repo, ["status"], /include\.path/);
  });

  test("an unreadable config fails closed", async () => {
    const repo = await newRepo();
    await writeFile(join(repo, ".git/config"), "[core\n");
    await assertRefused(repo, ["status"], /could not be checked/);
  });
});

describe("a project disguised as a bare repository", () => {
  test("is not used, so its config is never read", async () => {
    const escaped = marker("bare-alias");
    const bare = join(scratch, `disguised-${++repos}`);
    git(scratch, "init", "-q", "--bare", bare);
    git(bare, "config", "alias.lg", `!touch ${escaped}`);
    await hostGitFails(bare, "lg");
    assert.match(await hostGitFails(bare, "log"), /cannot use bare repository/);
    assertOnlyPlainGitFalls(escaped, bare, "lg");
  });
});

describe("the agent's own global options", () => {
  test("options that change config, repository or pager are refused", async () => {
    const repo = await newRepo();
    const options = [
      ["-c", "core.hooksPath=hooks", "commit"],
      ["-ccore.pager=evil", "log"],
      ["--config-env=core.pager=PAGER", "log"],
      ["-C", "nested", "status"],
      ["--git-dir=elsewhere", "status"],
      ["--work-tree", home, "status"],
      ["-p", "log"],
      ["--exec-path=.", "status"],
      ["--bare", "log"],
    ];
    await assertEachRefused(repo, options, /not allowed before the command/);
    assert.match(await hostGitOk(repo, "--no-pager", "--literal-pathspecs", "log", "--oneline"), /first/);
  });
});
