/**
 * What a cloister may be given of the host (host-exposure.ts): never HOME as a whole, a secret store,
 * cloister's own files or the host's sockets, whether as the project, a ref, a configured mount or an
 * agent's config dir; and a project found through a dotfiles repository in HOME is refused.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { homePathProblem } from "../../src/config/agents-schema.js";
import { resolvePaths } from "../../src/config/paths.js";
import { CloisterError } from "../../src/errors.js";
import { coveredInside, exposureProblem, guardedPaths, writableByRunningCloister, type GuardedPaths } from "../../src/sandbox/host-exposure.js";
import { locateGitProject, locateProject } from "../../src/sandbox/project.js";

const base = realpathSync(mkdtempSync(join(tmpdir(), "cexp-")));
after(() => rmSync(base, { recursive: true, force: true }));
const home = join(base, "home");
const instance = join(base, "instance");
mkdirSync(join(home, "scratch", "app"), { recursive: true });
mkdirSync(join(home, "code", "proj"), { recursive: true });
const guarded: GuardedPaths = guardedPaths(resolvePaths({ CLOISTER_HOME: instance }), home);

describe("exposureProblem", () => {
  const refused: [string, RegExp][] = [
    ["/", /root of the host's filesystem/],
    [home, /is your home directory/],
    [base, /contains your home directory/],
    [join(instance, "state"), /cloister's own files/],
    [join(instance, "state", "vault"), /cloister's own files/],
    [instance, /cloister's own files/],
    [join(home, ".ssh"), /where secrets are kept/],
    [join(home, ".aws", "sub"), /where secrets are kept/],
    [join(home, ".config"), /\.config\/gh, where secrets are kept/],
    ["/run", /host's sockets/],
    ["/run/user/1000", /host's sockets/],
    ["/proc", /kernel's view of the host/],
    ["/proc/1", /kernel's view of the host/],
    ["/sys/class", /kernel's view of the host/],
    ["/dev", /kernel's view of the host/],
  ];
  for (const [path, message] of refused) {
    it(`refuses ${path.replace(base, "BASE")}`, () => assert.match(exposureProblem(path, guarded) ?? "", message));
  }
  it("allows a project or docs directory below HOME, a directory in /tmp, a worktree under cloister's data dir", () => {
    for (const path of [join(home, "code", "proj"), join(home, ".claude"), "/tmp/docs", "/usr/share/doc", join(instance, "data", "worktrees", "p", "b")]) {
      assert.equal(exposureProblem(path, guarded), undefined, path);
    }
  });
  it("refuses /tmp as a whole (X11 and ssh-agent sockets)", () => {
    assert.match(exposureProblem("/tmp", { home: "/home/someone", cloisterDirs: [], worktreesDir: "/home/someone/w" }) ?? "", /other programs keep their sockets/);
  });
  it("tells a prefix from a parent: ~/.sshd is not ~/.ssh", () => {
    assert.equal(exposureProblem(join(home, ".sshd"), guarded), undefined);
    assert.equal(exposureProblem("/process-data", guarded), undefined);
  });
  it("finds what the system view covers inside a source, and only inside it", () => {
    const covered = ["/etc/shadow", "/etc/ssh/ssh_host_ed25519_key", "/etc/ssl/private"];
    assert.equal(coveredInside("/etc", covered), "/etc/shadow");
    assert.equal(coveredInside("/etc/ssh", covered), "/etc/ssh/ssh_host_ed25519_key");
    assert.equal(coveredInside("/etc/ssl/private/sub", covered), "/etc/ssl/private");
    assert.equal(coveredInside("/etc/ssl/certs", covered), undefined);
    assert.equal(coveredInside("/etc/sshd", covered), undefined);
  });
});

describe("locateProject and a repository in HOME (dotfiles)", () => {
  spawnSync("git", ["init", "-q", home]);
  it("refuses the repository when it is HOME, and says how to make a project of the directory", () => {
    assert.throws(
      () => locateProject(join(home, "scratch", "app"), false, guarded),
      (error: unknown) => error instanceof CloisterError && /a cloister must not get: it is your home directory/.test(error.message) && /git init|options\.allowNoGit/.test(error.hint ?? ""),
    );
  });
  it("with --allow-no-git, takes the directory alone", () => {
    assert.deepEqual(locateProject(join(home, "scratch", "app"), true, guarded), { root: join(home, "scratch", "app"), isGit: false });
  });
  it("refuses HOME itself even with --allow-no-git", () => {
    assert.throws(() => locateProject(home, true, guarded), /must not get: it is your home directory/);
  });
  it("a project with its own repository below HOME is found as before", () => {
    spawnSync("git", ["init", "-q", join(home, "code", "proj")]);
    assert.deepEqual(locateProject(join(home, "code", "proj"), false, guarded), { root: join(home, "code", "proj"), isGit: true });
  });
});

describe("locateProject outside any repository", () => {
  const plain = join(base, "plain");
  mkdirSync(plain, { recursive: true });
  const hintOf = (locate: () => unknown): string => {
    try {
      locate();
    } catch (error) {
      if (error instanceof CloisterError) return error.hint ?? "";
    }
    assert.fail("not refused");
  };
  it("suggests --allow-no-git to the commands that take it", () => {
    assert.match(hintOf(() => locateProject(plain, false, guarded)), /options\.allowNoGit/);
  });
  it("suggests no --allow-no-git to a command that needs git and has no such option (worktree)", () => {
    assert.equal(hintOf(() => locateGitProject(plain, guarded)), "run cloister from a git project, or pass the project's directory with options.project");
  });
});

describe("locateProject in a git dir that is not a work tree (QA: a bare repository's config and hooks were the cloister's with --allow-no-git)", () => {
  const git = (...args: string[]) => assert.equal(spawnSync("git", args, { encoding: "utf8" }).status, 0, args.join(" "));
  const bare = join(base, "served.git");
  git("init", "-q", "--bare", bare);
  for (const [what, dir] of [["the bare repository", bare], ["its hooks", join(bare, "hooks")]] as const) {
    it(`refuses ${what}, with or without --allow-no-git, and says to work on a checkout`, () => {
      for (const allowNoGit of [false, true]) {
        assert.throws(
          () => locateProject(dir, allowNoGit, guarded),
          (error: unknown) =>
            error instanceof CloisterError &&
            error.message.includes(`${JSON.stringify(bare)}`) &&
            /a git repository's own directory, not a work tree/.test(error.message) &&
            /git clone .*worktree add/.test(error.hint ?? "") &&
            !/allowNoGit/.test(error.hint ?? ""),
        );
      }
    });
  }
  it("refuses the .git of a repository refused as a whole (HOME's) with --allow-no-git, which took it as a plain directory", () => {
    // home is a repository since the dotfiles tests above; its .git is not a project of its own.
    assert.throws(() => locateProject(join(home, ".git", "hooks"), true, guarded), /is inside ".*\/home\/\.git", which is a git repository's own directory/);
  });
});

describe("locateProject in a submodule's checkout (QA: git failed in a cloister started there)", () => {
  const git = (cwd: string, ...args: string[]) => assert.equal(spawnSync("git", ["-c", "protocol.file.allow=always", "-c", "user.name=t", "-c", "user.email=t@t", ...args], { cwd, encoding: "utf8" }).status, 0, args.join(" "));
  const sources = join(base, "sources");
  const superproject = join(base, "super");
  for (const repo of ["lib", "deep"]) {
    git(base, "init", "-q", join(sources, repo));
    git(join(sources, repo), "commit", "-q", "--allow-empty", "-m", repo);
  }
  git(join(sources, "lib"), "submodule", "add", "-q", join(sources, "deep"), "deep");
  git(join(sources, "lib"), "commit", "-qm", "deep");
  git(base, "init", "-q", superproject);
  git(superproject, "submodule", "add", "-q", join(sources, "lib"), "vendor/lib");
  git(superproject, "commit", "-qm", "lib");
  git(superproject, "submodule", "update", "-q", "--init", "--recursive");

  it("is worked on from its superproject, nested submodules too: the submodules' git dirs are in the superproject's", () => {
    for (const dir of [join(superproject, "vendor", "lib"), join(superproject, "vendor", "lib", "deep")]) {
      assert.deepEqual(locateProject(dir, false, guarded), { root: superproject, isGit: true }, dir);
    }
  });
  it("a repository cloned inside another (its .git a directory of its own) stays a project of its own", () => {
    const inner = join(superproject, "scratch");
    git(superproject, "init", "-q", inner);
    assert.deepEqual(locateProject(inner, false, guarded), { root: inner, isGit: true });
  });
  it("a submodule of a repository a cloister must not get (HOME's) stays the project", () => {
    const dotfiles = join(home, "plugins", "tool");
    git(home, "submodule", "add", "-q", join(sources, "deep"), "plugins/tool");
    assert.deepEqual(locateProject(dotfiles, false, guarded), { root: dotfiles, isGit: true });
  });
});

describe("agents' config_dirs", () => {
  it("refuses secret stores, directories holding one, and cloister's own files", () => {
    assert.match(homePathProblem("~/.ssh") ?? "", /is in ~\/\.ssh, where secrets are kept/);
    assert.match(homePathProblem("~/.config") ?? "", /holds ~\/\.config\/gh/);
    assert.match(homePathProblem("~/.config/gh/") ?? "", /is in ~\/\.config\/gh/);
    assert.match(homePathProblem("~/.local/share/cloister") ?? "", /cloister's own files/);
    assert.match(homePathProblem("~//x") ?? "", /contains/);
  });
  it("takes an agent's own directory, with or without a trailing slash", () => {
    assert.equal(homePathProblem("~/.aider"), undefined);
    assert.equal(homePathProblem("~/.config/aider/"), undefined);
  });
});

describe("writableByRunningCloister", () => {
  const running = [{ name: "outer", projectRoot: "/p/outer" }, { name: "same", projectRoot: "/p/mine" }];
  it("names the running cloister of another project that holds the path", () => {
    assert.equal(writableByRunningCloister("/p/outer/.wt/x", "/p/outer/.wt/x", running)?.name, "outer");
    assert.equal(writableByRunningCloister("/p/outer/docs", "/p/mine", running)?.name, "outer");
  });
  it("not the project's own cloisters, nor a sibling whose name starts alike", () => {
    assert.equal(writableByRunningCloister("/p/mine", "/p/mine", running), undefined);
    assert.equal(writableByRunningCloister("/p/outer-2", "/p/outer-2", running), undefined);
  });
});
