/**
 * Shell completion from the source: `complete()` over the real command tree with a scratch
 * CLOISTER_HOME (config, a project, a record, a worktree) and a fake guardian on its socket; and the
 * scripts in real bash, zsh and fish, with a stand-in `cloister` that answers as `__complete` would.
 * test/integration/completion.test.ts runs the built CLI.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Command } from "commander";
import { COMMAND_GROUPS } from "../../src/cli/command-groups.js";
import { complete, completionScript } from "../../src/cli/completion.js";
import { spawnShell } from "../helpers/shells.js";

const BUILTIN_AGENTS = ["claude", "codex", "gemini"];

describe("completion: what __complete offers", () => {
  const scratch = mkdtempSync(join(tmpdir(), "cc-"));
  const home = join(scratch, "home");
  const repo = join(scratch, "repo");
  const program = new Command().name("cloister");
  for (const group of COMMAND_GROUPS) group.register(program);
  const savedHome = process.env.CLOISTER_HOME;
  let guardian: Server;
  const offered = (...words: string[]) => complete(program, words);

  before(async () => {
    process.env.CLOISTER_HOME = home;
    const file = (path: string, text: string) => {
      mkdirSync(join(home, path, ".."), { recursive: true });
      writeFileSync(join(home, path), text);
    };
    file("config/config.yaml", "agents:\n  aider:\n    command: aider\n");
    file("config/projects/proj1.yaml", `path: ${repo}\n`);
    // Every field a record must have to count as one (records.ts).
    const record = { name: "comp-one", id: "c0", project: "proj1", projectRoot: repo, initSocket: "", runtimeDir: "", homeDir: "", createdAt: "", cgroupDirs: [], placeholders: [] };
    file("state/cloisters/comp-one.json", JSON.stringify({ ...record, persistent: true }));
    // A fresh run's cloister, whose HOME goes with it, and a stopped persistent one: its HOME alone.
    file("state/cloisters/comp-run-abc123.json", JSON.stringify({ ...record, name: "comp-run-abc123", persistent: false }));
    for (const dir of ["data/homes/comp-one", "data/homes/stopped-one", "data/homes/.run-0123abcd", "data/homes/.owners"]) mkdirSync(join(home, dir), { recursive: true });
    // A worktree cloister that is stopped: its worktree, no record.
    mkdirSync(join(home, "data/worktrees/proj1/feat"), { recursive: true });
    mkdirSync(repo);
    const git = (...args: string[]) => assert.equal(spawnSync("git", ["-C", repo, "-c", "user.name=t", "-c", "user.email=t@example.com", ...args]).status, 0, args.join(" "));
    git("init", "-q");
    git("commit", "-q", "--allow-empty", "-m", "init");
    git("branch", "compl-only-here");
    git("worktree", "add", "-q", "-b", "tree-only", join(home, "data/worktrees/proj1/tree-only"));
    mkdirSync(join(home, "run"), { recursive: true });
    guardian = createServer((request, response) => {
      const answers: Record<string, unknown> = {
        "/v1/secrets": { secrets: [{ name: "anthropic", description: null }] },
        "/v1/approvals": { pending: [{ id: "req111" }], recent: [{ id: "dec222", undoable: true, undone: false }, { id: "dec333", undoable: true, undone: true }] },
      };
      response.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(answers[request.url ?? ""] ?? {}));
    });
    await new Promise<void>((resolve) => guardian.listen(join(home, "run/guardian.sock"), resolve));
  });
  after(async () => {
    await new Promise((resolve) => guardian.close(resolve));
    if (savedHome === undefined) delete process.env.CLOISTER_HOME;
    else process.env.CLOISTER_HOME = savedHome;
    rmSync(scratch, { recursive: true, force: true });
  });

  it("an argument called <name> completes what its command takes", async () => {
    for (const command of ["install", "uninstall"]) assert.deepEqual(await offered("agent", command, ""), ["aider", ...BUILTIN_AGENTS], command);
    for (const command of ["rm", "set"]) assert.deepEqual(await offered("secret", command, ""), ["anthropic"], command);
    for (const command of ["show", "edit", "remove"]) assert.deepEqual(await offered("project", command, ""), ["proj1"], command);
    assert.deepEqual(await offered("exec", ""), ["comp-one", "comp-run-abc123"]);
    assert.deepEqual(await offered("stop", "comp"), ["comp-one", "comp-run-abc123"]);
  });

  it("rm offers persistent cloisters, running or stopped, not a run's nor what else is kept beside the HOMEs", async () => {
    assert.deepEqual(await offered("rm", ""), ["comp-one", "stopped-one"]);
    assert.deepEqual(await offered("remove", "-f", "s"), ["stopped-one"]);
    assert.deepEqual(await offered("rm", "comp-one", ""), ["comp-one", "stopped-one"]);
  });

  it("setup offers the built-in agents only (a custom agent has no credential kinds)", async () => {
    assert.deepEqual(await offered("setup", ""), BUILTIN_AGENTS);
  });

  it("approve and deny offer waiting requests, undo the decisions that can be undone", async () => {
    assert.deepEqual(await offered("approve", ""), ["req111"]);
    assert.deepEqual(await offered("deny", ""), ["req111"]);
    assert.deepEqual(await offered("undo", ""), ["dec222"]);
  });

  it("--project of start and run is a directory, for the shell to complete; of the policy commands, a project", async () => {
    assert.equal(await offered("start", "--project", ""), ":directory");
    assert.equal(await offered("run", "--no-network", "--project", "pr"), ":directory");
    assert.deepEqual(await offered("allow", "example.com", "--project", ""), ["proj1"]);
  });

  it("--agent offers the custom agents of the config too", async () => {
    assert.deepEqual(await offered("run", "--agent", ""), ["aider", ...BUILTIN_AGENTS]);
    assert.deepEqual(await offered("start", "--agent", "a"), ["aider"]);
  });

  it("-b lists the branches of the --project given before it, not the current directory's", async () => {
    assert.deepEqual(await offered("start", "--project", repo, "-b", "compl-"), ["compl-only-here"]);
    assert.deepEqual(await offered("run", `--project=${repo}`, "--branch", "compl-"), ["compl-only-here"]);
  });

  it("worktree remove offers the branches of the project's worktrees under the data dir, not the others", async () => {
    assert.deepEqual(await offered("worktree", "remove", "--project", repo, ""), ["tree-only"]);
    assert.deepEqual(await offered("worktree", "rm", `--project=${repo}`, "t"), ["tree-only"]);
  });

  it("path offers stopped worktree cloisters as well as recorded ones", async () => {
    assert.deepEqual(await offered("path", ""), ["comp-one", "comp-run-abc123", "proj1-feat", "proj1-tree-only"]);
  });

  it("after --, the shell completes file names", async () => {
    assert.equal(await offered("run", "--", ""), ":file");
    assert.equal(await offered("exec", "comp-one", "--", "ls", "sr"), ":file");
    assert.equal(await offered("run", "--agent", "--", "-x"), ":file", "--agent's value is optional: -- is not it");
  });

  it("a typed -- being completed offers the long options, as - does", async () => {
    assert.deepEqual(await offered("exec", "comp-one", "--"), ["--env", "--secret", "--workdir"]);
    const options = await offered("run", "-");
    assert.ok(Array.isArray(options));
    assert.deepEqual(await offered("run", "--"), options.filter((option) => option.startsWith("--")));
  });

  it("a config that does not parse still completes the built-in agents", async () => {
    writeFileSync(join(home, "config/config.yaml"), "agents: [unclosed\n");
    assert.deepEqual(await offered("agent", "install", ""), BUILTIN_AGENTS);
  });
});

describe("completion: the scripts in real shells", () => {
  const scratch = mkdtempSync(join(tmpdir(), "cc-sh-"));
  const dirs = join(scratch, "files");
  // Stands in for `cloister`: prints ANSWER (what `__complete` would) and keeps the words it got.
  writeFileSync(join(scratch, "cloister"), `#!/bin/sh\nprintf '%s\\n' "$@" > "${scratch}/words"\nprintf '%s' "$ANSWER"\n`, { mode: 0o755 });
  mkdirSync(join(dirs, "subdir"), { recursive: true });
  writeFileSync(join(dirs, "file.txt"), "");
  after(() => rmSync(scratch, { recursive: true, force: true }));

  // HOME here, and no XDG or ZDOTDIR: fish makes its config directories, and compinit its .zcompdump.
  const { XDG_CONFIG_HOME, XDG_DATA_HOME, XDG_CACHE_HOME, ZDOTDIR, ...env } = process.env;
  const run = (shell: string, args: string[], answer: string) => {
    const r = spawnShell(shell, args, { env: { ...env, HOME: scratch, PATH: `${scratch}:${env.PATH ?? ""}`, ANSWER: answer }, cwd: scratch });
    return { ...r, lines: r.stdout.split("\n").filter(Boolean) };
  };
  // bash completes only in an interactive shell; compopt is stood in for to see what the script asks of readline.
  const bash = (answer: string) =>
    run("bash", ["-c", `${completionScript("bash")}\ncompopt() { echo compopt "$@"; }\nCOMP_WORDS=(cloister start --project ''); COMP_CWORD=3; _cloister; printf 'reply %s\\n' "\${COMPREPLY[@]}"; complete -p cloister`], answer);

  it("bash: candidates as they come; for a path, no candidates and readline's own completion", () => {
    assert.deepEqual(bash("one\ntwo\n").lines, ["reply one", "reply two", "complete -F _cloister cloister"]);
    assert.deepEqual(bash(":directory\n").lines, ["compopt -o dirnames", "reply ", "complete -F _cloister cloister"]);
    assert.deepEqual(bash(":file\n").lines, ["compopt -o default", "reply ", "complete -F _cloister cloister"]);
  });

  const wordsGot = () => readFileSync(join(scratch, "words"), "utf8").split("\n").slice(0, -1);

  it("each shell hands the words over after __complete's own --, so that a typed -- reaches it", () => {
    const line = ["__complete", "--", "run", "--"];
    run("bash", ["-c", `${completionScript("bash")}\nCOMP_WORDS=(cloister run --); COMP_CWORD=2; _cloister`], "");
    assert.deepEqual(wordsGot(), line, "bash");
    run("zsh", ["-fc", `${completionScript("zsh")}\ncompadd() { : }\nwords=(cloister run --); CURRENT=3; _cloister`], "");
    assert.deepEqual(wordsGot(), line, "zsh");
    run("fish", ["-c", `${completionScript("fish")}\ncomplete -C "cloister run --"`], "");
    assert.deepEqual(wordsGot(), line, "fish");
  });

  it("zsh: sources without compinit having run, and hands paths to _files", () => {
    writeFileSync(join(scratch, "cloister.zsh"), completionScript("zsh"));
    // zsh -f: no ~/.zshrc, so no compinit; compadd and _files are stood in for (they need a real completion widget).
    const zsh = (answer: string) =>
      run("zsh", ["-fc", `source ./cloister.zsh\nprint -r -- "comps $_comps[cloister]"\ncompadd() { print -r -- compadd "$@" }\n_files() { print -r -- _files "$@" }\nwords=(cloister start --project ''); CURRENT=4; _cloister`], answer);
    const listed = zsh("one\ntwo\n");
    assert.equal(listed.stderr, "");
    assert.deepEqual(listed.lines, ["comps _cloister", "compadd -a candidates"]);
    assert.deepEqual(zsh(":directory\n").lines, ["comps _cloister", "_files -/"]);
    assert.deepEqual(zsh(":file\n").lines, ["comps _cloister", "_files"]);
  });

  it("fish: candidates as they come, and the shell's own directories or files when asked", () => {
    const fish = (answer: string, line: string) =>
      run("fish", ["-c", `${completionScript("fish")}\ncomplete -C ${JSON.stringify(line)}`], answer).lines.map((candidate) => candidate.split("\t")[0]);
    assert.deepEqual(fish("one\ntwo\n", "cloister agent install "), ["one", "two"]);
    assert.deepEqual(fish(":directory\n", `cloister start --project ${dirs}/`), [`${dirs}/subdir/`]);
    assert.deepEqual(fish(":file\n", `cloister run -- ${dirs}/`).sort(), [`${dirs}/file.txt`, `${dirs}/subdir/`]);
  });
});
