/**
 * Shell completion through the built CLI: the scripts for each shell, and `cloister __complete`
 * walking the real command tree and filling in live names (cloisters, branches, agents, scopes).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CLI, createInstance, type TestInstance } from "../helpers/cloister.js";
import { spawnShell } from "../helpers/shells.js";

describe("shell completion", () => {
  let t: TestInstance;
  // As the scripts call it: the words after its own `--`, so that a typed `--` is a word too.
  const complete = async (...words: string[]) => (await t.cli(["__complete", "--", ...words])).stdout.split("\n").filter(Boolean);

  before(async () => {
    t = createInstance("cc");
    spawnSync("git", ["-C", t.project, "branch", "feature-x"]);
    assert.equal((await t.cli(["start", "-d", "--name", "comp-one"])).code, 0);
    assert.equal((await t.cli(["start", "-d", "-b", "with-tree"])).code, 0);
  });
  after(() => t.teardown());

  it("completes commands, subcommands and options from the command tree", async () => {
    assert.ok((await complete("")).includes("start"));
    assert.deepEqual(await complete("appr"), ["approvals", "approve"]);
    assert.ok((await complete("guardian", "")).includes("status"));
    assert.ok((await complete("run", "--no-")).includes("--no-network"));
    assert.ok(!(await complete("")).includes("__complete"), "the hidden command is not offered");
  });

  it("fills in cloister names, branches, agents and scopes", async () => {
    assert.deepEqual(await complete("exec", "comp"), ["comp-one"]);
    assert.deepEqual(await complete("stop", "comp-"), ["comp-one"]);
    assert.ok((await complete("setup", "")).includes("claude"));
    assert.deepEqual(await complete("agent", "install", ""), ["claude", "codex", "gemini"], "agents, not cloisters");
    assert.deepEqual(await complete("approve", "abc", "--scope", "p"), ["project"]);
    assert.deepEqual(await complete("completion", "z"), ["zsh"]);
  });

  it("a typed -- is a word: completing it offers the long options, and after it the command", async () => {
    const longOptions = (await complete("run", "-")).filter((option) => option.startsWith("--"));
    assert.ok(longOptions.includes("--timeout"));
    assert.deepEqual(await complete("run", "--"), longOptions);
    assert.deepEqual(await complete("exec", "comp-one", "--"), ["--env", "--secret", "--workdir"]);
    assert.deepEqual(await complete("exec", "comp-one", "--", ""), [":file"]);
  });

  it("worktree remove offers the branches that have a worktree, not every branch", async () => {
    assert.deepEqual(await complete("worktree", "remove", ""), ["with-tree"]);
    assert.deepEqual(await complete("worktree", "rm", "w"), ["with-tree"]);
    // --project takes a project's name there too: offered, and its worktrees found from anywhere.
    assert.deepEqual(await complete("worktree", "list", "--project", ""), ["proj"]);
    const byName = await t.cli(["__complete", "--", "worktree", "remove", "--project", "proj", ""], { cwd: t.home });
    assert.equal(byName.stdout, "with-tree\n");
  });

  it("prints a script for bash, zsh and fish, and refuses another shell", async () => {
    for (const shell of ["bash", "zsh", "fish"]) {
      const r = await t.cli(["completion", shell]);
      assert.equal(r.code, 0);
      assert.match(r.stdout, /cloister __complete/);
    }
    const bad = await t.cli(["completion", "tcsh"]);
    assert.equal(bad.code, 125);
    assert.match(bad.stderr, /choose one of bash, zsh, fish/);
  });

  /** Runs `shell ARGS` in the project with the real CLI on PATH as `cloister`, as after `npm link`. */
  const inShell = (shell: string, args: string[]) => {
    const bin = join(t.home, "bin");
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, "cloister"), `#!/bin/sh\nexec ${process.execPath} ${CLI} "$@"\n`, { mode: 0o755 });
    return spawnShell(shell, args, { env: { ...t.env, PATH: `${bin}:${t.env.PATH ?? ""}` }, cwd: t.project });
  };

  /** `run`'s long options, which a typed `--` completes to in every shell. */
  const runLongOptions = async () => (await complete("run", "-")).filter((option) => option.startsWith("--"));

  /** What the bash script offers for `words` (bash syntax: `cloister exec comp`, `cloister x ""`), one a line. */
  const bash = async (words: string) => {
    const script = (await t.cli(["completion", "bash"])).stdout;
    const r = inShell("bash", ["-c", `${script}\nCOMP_WORDS=(${words}); COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); _cloister; printf '%s\\n' "\${COMPREPLY[@]}"`]);
    assert.equal(r.stderr, "");
    return r.stdout.split("\n").filter(Boolean);
  };

  /** What the zsh script offers for `words` (zsh syntax), the last word being completed. */
  const zsh = (words: string) => {
    // compadd needs a real completion widget: stood in for by one that prints what it would offer.
    const r = inShell("zsh", ["-fc", `source <(cloister completion zsh)\ncompadd() { print -rl -- $candidates }\nwords=(${words}); CURRENT=\${#words}; _cloister`]);
    assert.equal(r.stderr, "");
    return r.stdout.split("\n").filter(Boolean);
  };

  /** What the fish script offers for the command line `line`. */
  const fish = (line: string) => {
    const r = inShell("fish", ["-c", `source (cloister completion fish | psub); complete -C ${JSON.stringify(line)}`]);
    return r.stdout.split("\n").filter(Boolean).map((candidate) => candidate.split("\t")[0]);
  };

  it("the bash script completes in a real bash, a typed -- too", async () => {
    assert.deepEqual(await bash("cloister exec comp"), ["comp-one"]);
    assert.deepEqual(await bash("cloister run --"), await runLongOptions());
  });

  it("the zsh script completes in a real zsh, a typed -- too", async () => {
    assert.deepEqual(zsh("cloister run --"), await runLongOptions());
  });

  it("the fish script completes in a real fish: names, directories for start --project, a typed --", async () => {
    mkdirSync(join(t.project, "sub", "dir"), { recursive: true });
    assert.deepEqual(fish("cloister agent install "), ["claude", "codex", "gemini"]);
    assert.deepEqual(fish("cloister start --project sub/"), ["sub/dir/"]);
    // fish orders candidates by its own collation.
    assert.deepEqual(fish("cloister run --").sort(), await runLongOptions());
  });

  it("offers the custom agents of config.yaml beside the built-in ones, in bash, zsh and fish (QA: the bundled CLI offered the built-in ones only)", async () => {
    const configFile = join(t.home, "config", "config.yaml");
    const original = readFileSync(configFile, "utf8");
    const withAider = original.replace(/^ {2}\{\}$/m, "  aider:\n    command: aider");
    assert.notEqual(withAider, original, "the config template changed: update this test");
    writeFileSync(configFile, withAider);
    try {
      const agents = ["aider", "claude", "codex", "gemini"];
      assert.deepEqual(await complete("agent", "install", ""), agents);
      assert.deepEqual(await bash('cloister start --agent ""'), agents);
      assert.deepEqual(zsh("cloister agent install ''"), agents);
      assert.deepEqual(fish("cloister start --agent ").sort(), agents);
    } finally {
      writeFileSync(configFile, original);
    }
  });

  it("the zsh script sources in a zsh that has not run compinit", () => {
    const r = inShell("zsh", ["-fc", "source <(cloister completion zsh) && print -r -- $_comps[cloister]"]);
    assert.equal(r.stderr, "");
    assert.equal(r.stdout.trim(), "_cloister");
  });
});
