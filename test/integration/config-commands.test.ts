/**
 * The commands that read and write the configuration (`config show|init|edit`, `project show`): what
 * they say, what they write (and what they must not), and their exit status: 0 done, 1 a file has
 * problems (each listed, as `config validate` lists them), 125 cloister could not do it.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CLI, createInstance, startCommand, type TestInstance } from "../helpers/cloister.js";

describe("config and project commands", () => {
  let t: TestInstance;
  let configFile: string;
  let testSettings: string;
  before(() => {
    t = createInstance("cfc");
    configFile = join(t.home, "config", "config.yaml");
    testSettings = readFileSync(configFile, "utf8");
  });
  after(() => t.teardown());

  /** Runs `body` with config.yaml holding `text`, or absent for undefined; the test settings come back after. */
  async function withGlobalConfig(text: string | undefined, body: () => Promise<void>): Promise<void> {
    if (text === undefined) rmSync(configFile);
    else writeFileSync(configFile, text);
    try {
      await body();
    } finally {
      writeFileSync(configFile, testSettings);
    }
  }

  it("config show without a config file shows the defaults and writes nothing (QA: it created the file)", async () => {
    await withGlobalConfig(undefined, async () => {
      const shown = await t.cli(["config", "show"], { cwd: t.home });
      assert.equal(shown.code, 0, shown.stderr);
      assert.ok(shown.stdout.startsWith(`# no ${configFile} yet: these are the defaults (\`cloister config init\` writes that file)\n`), shown.stdout);
      assert.match(shown.stdout, /^ {2}unlisted: ask$/m);
      const json = await t.cli(["config", "show", "--json"], { cwd: t.home });
      assert.equal((JSON.parse(json.stdout) as { proxy: { unlisted: string } }).proxy.unlisted, "ask");
      assert.equal(existsSync(configFile), false, "config show wrote the config file");
    });
  });

  it("only a launch past its option checks registers a project; commands that read, or fail, leave none (QA)", async () => {
    const dir = join(dirname(t.home), "unreg");
    mkdirSync(dir);
    spawnSync("git", ["init", "-q", dir]);
    const projectFile = join(t.home, "config", "projects", "unreg.yaml");
    for (const args of [["stop"], ["exec", "--", "true"], ["worktree", "remove", "nob"], ["worktree", "list", "--project", dir], ["run", "--memory", "bad", "--", "true"], ["start", "-d", "--cpu", "0"], ["config", "show"]]) {
      const r = await t.cli(args, { cwd: dir });
      assert.equal(existsSync(projectFile), false, `${args.join(" ")} (exit ${r.code}: ${r.stderr}) registered the project`);
    }
    const ran = await t.cli(["run", "--", "true"], { cwd: dir });
    assert.equal(ran.code, 0, ran.stderr);
    assert.match(readFileSync(projectFile, "utf8"), new RegExp(`^path: ${realpathSync(dir)}$`, "m"));
    assert.equal((await t.cli(["project", "remove", "unreg"])).code, 0);
  });

  it("config init writes the defaults where there is no file, and keeps a file that is there, saying so and how to edit or reset it (QA)", async () => {
    await withGlobalConfig(undefined, async () => {
      const wrote = await t.cli(["config", "init"]);
      assert.equal(wrote.code, 0, wrote.stderr);
      assert.equal(wrote.stderr, `Wrote the default config to ${configFile}: every setting is there, commented; \`cloister config edit\` edits it.\n`);
      assert.match(readFileSync(configFile, "utf8"), /^ {2}unlisted: ask$/m);
    });
    const kept = await t.cli(["config", "init"]);
    assert.equal(kept.code, 0, kept.stderr);
    assert.equal(kept.stderr, `Kept the config file already at ${configFile} (config init never overwrites it): \`cloister config edit\` edits it; to start again from the defaults, remove it and run \`cloister config init\`.\n`);
    assert.equal(readFileSync(configFile, "utf8"), testSettings);
    const help = await t.cli(["config", "init", "--help"]);
    assert.match(help.stdout, /Exit status: 0 when the file was written, or is there already and valid; 1 when the file already there has problems/);
  });

  it("config init on a file with problems keeps it and lists every problem, exiting 1 as config validate does", async () => {
    const broken = "limits:\n  memroy: 4GiB\nproxy:\n  connect_timout: 5s\n";
    await withGlobalConfig(broken, async () => {
      const r = await t.cli(["config", "init"]);
      assert.equal(r.code, 1, r.stderr);
      const lines = r.stderr.split("\n");
      assert.match(lines[0] ?? "", /^Kept the config file already at /);
      assert.deepEqual(lines.slice(1), [
        `${configFile}:2:3: limits.memroy: unknown key (did you mean "memory"?)`,
        `${configFile}:4:3: proxy.connect_timout: unknown key (did you mean "connect_timeout"?)`,
        "2 problems: fix them with `cloister config edit`.",
        "",
      ]);
      assert.equal(readFileSync(configFile, "utf8"), broken);
    });
  });

  it("config edit and project edit exit 1 when the edited file has problems, listing them all, as config validate does (QA: 125, cloister's own failure)", async () => {
    const editor = join(t.home, "breaking-editor");
    // Adds two mistakes to the file it is given.
    writeFileSync(editor, '#!/bin/sh\nprintf "limits:\\n  memroy: 4GiB\\n  pidz: 9\\n" >> "$1"\n', { mode: 0o755 });
    const edit = (args: string[]) => startCommand(process.execPath, [CLI, ...args], { env: { ...t.env, EDITOR: editor, VISUAL: "" }, cwd: t.project, timeoutMs: 30_000 }).done;
    await withGlobalConfig("# mine\n", async () => {
      const r = await edit(["config", "edit"]);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stderr, [
        `${configFile}:3:3: limits.memroy: unknown key (did you mean "memory"?)`,
        `${configFile}:4:3: limits.pidz: unknown key (did you mean "pids"?)`,
        `2 problems: ${configFile} keeps your edit; fix them with \`cloister config edit\`.`,
        "",
      ].join("\n"));
      assert.equal(readFileSync(configFile, "utf8"), "# mine\nlimits:\n  memroy: 4GiB\n  pidz: 9\n");
    });
    assert.equal((await t.cli(["run", "--", "true"])).code, 0, "registers the project");
    const projectFile = join(t.home, "config", "projects", "proj.yaml");
    const registered = readFileSync(projectFile, "utf8");
    try {
      const r = await edit(["project", "edit", "proj"]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^\S+proj\.yaml:\d+:3: limits\.memroy: unknown key .*\n\S+proj\.yaml:\d+:3: limits\.pidz: unknown key .*\n2 problems: \S+proj\.yaml keeps your edit; fix them with `cloister project edit proj`\.\n$/);
    } finally {
      writeFileSync(projectFile, registered);
    }
    for (const command of [["config", "edit"], ["project", "edit"]]) {
      const help = await t.cli([...command, "--help"]);
      assert.match(help.stdout, /Exit status: 0 when the edited file is valid; 1 when it has problems \(each is listed, and the file keeps your edit\); 125 when the editor could not start or failed\./);
    }
  });

  it("project show shows a file with problems, each listed after it with its line and key, and exits 1 (QA: it refused to show it)", async () => {
    assert.equal((await t.cli(["run", "--", "true"])).code, 0, "registers the project");
    const projectFile = join(t.home, "config", "projects", "proj.yaml");
    const registered = readFileSync(projectFile, "utf8");
    const broken = `${registered}limits:\n  memroy: 4GiB\nproxy:\n  deny: ['*']\n`;
    writeFileSync(projectFile, broken);
    try {
      const r = await t.cli(["project", "show", "proj"]);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stdout, `# ${projectFile}\n${broken}# cloisters: none\n`);
      const lines = registered.split("\n").length;
      assert.equal(r.stderr, [
        `${projectFile}:${lines + 1}:3: limits.memroy: unknown key (did you mean "memory"?)`,
        `${projectFile}:${lines + 3}:10: proxy.deny[0]: egress rule "*": a bare '*' would deny every host; name the hosts to deny, e.g. "tracker.example.com" or "*.example.com"; to refuse every host no rule allows, set proxy.unlisted: deny`,
        "2 problems: fix them with `cloister project edit proj`.",
        "",
      ].join("\n"));
    } finally {
      writeFileSync(projectFile, registered);
    }
    const valid = await t.cli(["project", "show", "proj"]);
    assert.equal(valid.code, 0, valid.stderr);
    assert.equal(valid.stderr, "");
    const missing = await t.cli(["project", "show", "nosuch"]);
    assert.equal(missing.code, 125);
    assert.match(missing.stderr, /^cloister: no project named "nosuch"/);
  });

  it("config show --project takes a project, by name or directory, and refuses what is none, / included (QA: / was merged as a project)", async () => {
    assert.equal((await t.cli(["run", "--", "true"])).code, 0, "registers the project");
    for (const given of ["proj", t.project]) {
      const r = await t.cli(["config", "show", "--project", given], { cwd: t.home });
      assert.equal(r.code, 0, `${given}: ${r.stderr}`);
      assert.match(r.stdout, /^# global config merged with project proj's\n/);
    }
    for (const given of ["/", t.home, "nosuch"]) {
      const r = await t.cli(["config", "show", "--project", given], { cwd: t.home });
      assert.equal(r.code, 125, `${given}: ${r.stdout}`);
      assert.equal(r.stdout, "");
      assert.equal(r.stderr, `cloister: no project named or at ${JSON.stringify(given)} (pass --project NAME (see \`cloister project list\`) or a directory in a git repository; without it, config show merges the project you are in)\n`);
    }
  });

  /** The 1-based line of `text` that starts with `start`. */
  function lineOf(text: string, start: string): number {
    const index = text.split("\n").findIndex((line) => line.startsWith(start));
    assert.ok(index >= 0, `no line starts with ${JSON.stringify(start)}`);
    return index + 1;
  }

  /** A command failed on an invalid configuration: exit 125, nothing on stdout, and on stderr a heading, then each of `problems` on a line, in order. */
  function assertEveryProblem(r: { code: number; stdout: string; stderr: string }, problems: string[]): void {
    assert.equal(r.code, 125, r.stderr);
    assert.equal(r.stdout, "");
    assert.deepEqual(r.stderr.split("\n"), [
      `cloister: ${problems.length} problems in 2 config files (fix each; \`cloister config validate\` checks them all again):`,
      ...problems.map((problem) => `  ${problem}`),
      "",
    ]);
  }

  /** The same command with --json: exit 125, and every problem in the error object on stdout. */
  function assertEveryProblemAsJson(r: { code: number; stdout: string; stderr: string }, problems: Array<[file: string, line: number, key: string]>): void {
    assert.equal(r.code, 125, r.stderr);
    const { error } = JSON.parse(r.stdout) as { error: { problems: { file: string; line: number; key: string }[] } };
    assert.deepEqual(error.problems.map((p) => [p.file, p.line, p.key]), problems);
  }

  /** Runs `body` with the registered project file proj.yaml given `extra` at its end, then puts it back. */
  async function withProjectConfig(extra: string, body: (projectFile: string, text: string) => Promise<void>): Promise<void> {
    assert.equal((await t.cli(["run", "--", "true"])).code, 0, "registers the project");
    const projectFile = join(t.home, "config", "projects", "proj.yaml");
    const registered = readFileSync(projectFile, "utf8");
    writeFileSync(projectFile, `${registered}${extra}`);
    try {
      await body(projectFile, `${registered}${extra}`);
    } finally {
      writeFileSync(projectFile, registered);
    }
  }

  it("config show, policy explain and policy command name every problem of the global and the project file, as a launch does, in text and JSON (QA: only the global file's)", async () => {
    const global = testSettings.replace(/^sandbox:\n/m, "sandbox:\n  envv: []\n");
    await withProjectConfig("limits:\n  pidz: 9\n", (projectFile, project) =>
      withGlobalConfig(global, async () => {
        const envv = lineOf(global, "  envv:");
        const pidz = lineOf(project, "  pidz:");
        const lines = [`${configFile}:${envv}:3: sandbox.envv: unknown key (did you mean "env"?)`, `${projectFile}:${pidz}:3: limits.pidz: unknown key (did you mean "pids"?)`];
        const json: Array<[string, number, string]> = [[configFile, envv, "sandbox.envv"], [projectFile, pidz, "limits.pidz"]];
        const inTextAndJson = [
          [["config", "show"], ["config", "show", "--json"]],
          [["config", "show", "--project", "proj"], ["config", "show", "--project", "proj", "--json"]],
          [["policy", "explain", "example.com"], ["policy", "explain", "example.com", "--json"]],
          [["policy", "command", "--", "true"], ["policy", "command", "--json", "--", "true"]],
        ];
        for (const [text = [], asJson = []] of inTextAndJson) {
          assertEveryProblem(await t.cli(text, { cwd: t.project }), lines);
          assertEveryProblemAsJson(await t.cli(asJson, { cwd: t.project }), json);
        }
        assertEveryProblem(await t.cli(["config", "show", "--project", "proj"], { cwd: t.home }), lines);
      }),
    );
  });

  it("a YAML syntax error in the project file does not hide the global file's problems: a launch and config show name both, file by file (QA: only the project file's)", async () => {
    const global = testSettings.replace(/^sandbox:\n/m, "sandbox:\n  protekt: []\n");
    await withProjectConfig("proxy:\n  deny: [a.example\n", (projectFile, project) =>
      withGlobalConfig(global, async () => {
        const protekt = lineOf(global, "  protekt:");
        const unclosed = project.split("\n").length;
        const lines = [
          `${configFile}:${protekt}:3: sandbox.protekt: unknown key (did you mean "protect"?)`,
          `${projectFile}:${unclosed}:1: invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]`,
        ];
        for (const command of [["run", "--", "echo", "ran"], ["config", "show"], ["policy", "explain", "example.com"]]) assertEveryProblem(await t.cli(command, { cwd: t.project }), lines);
        assertEveryProblemAsJson(await t.cli(["config", "show", "--json"], { cwd: t.project }), [[configFile, protekt, "sandbox.protekt"], [projectFile, unclosed, ""]]);
      }),
    );
  });

  it("a launch with an invalid configuration names every problem of the global and the project file, one a line (QA: only the first)", async () => {
    assert.equal((await t.cli(["run", "--", "true"])).code, 0, "registers the project");
    const projectFile = join(t.home, "config", "projects", "proj.yaml");
    const registered = readFileSync(projectFile, "utf8");
    writeFileSync(projectFile, `${registered}limits:\n  pidz: 9\n`);
    try {
      await withGlobalConfig(testSettings.replace(/^sandbox:\n/m, "sandbox:\n  envv: []\n  protekt: []\n"), async () => {
        const r = await t.cli(["run", "--", "echo", "ran"]);
        assert.equal(r.code, 125, r.stderr);
        assert.equal(r.stdout, "");
        const lines = r.stderr.split("\n");
        assert.equal(lines[0], "cloister: 3 problems in 2 config files (fix each; `cloister config validate` checks them all again):");
        assert.match(lines[1] ?? "", new RegExp(`^  ${configFile}:\\d+:3: sandbox\\.envv: unknown key \\(did you mean "env"\\?\\)$`));
        assert.match(lines[2] ?? "", new RegExp(`^  ${configFile}:\\d+:3: sandbox\\.protekt: unknown key \\(did you mean "protect"\\?\\)$`));
        assert.match(lines[3] ?? "", new RegExp(`^  ${projectFile}:\\d+:3: limits\\.pidz: unknown key \\(did you mean "pids"\\?\\)$`));
        assert.deepEqual(lines.slice(4), [""]);
        // A script asking for JSON gets every problem of the error too, as config validate --json gives them.
        const json = await t.cli(["config", "show", "--json"], { cwd: t.project });
        assert.equal(json.code, 125, json.stderr);
        const { error } = JSON.parse(json.stdout) as { error: { exitCode: number; problems: { file: string; key: string; problem: string }[] } };
        assert.equal(error.exitCode, 125);
        assert.deepEqual(error.problems.map((p) => [p.file, p.key, p.problem]), [
          [configFile, "sandbox.envv", "unknown key"],
          [configFile, "sandbox.protekt", "unknown key"],
          [projectFile, "limits.pidz", "unknown key"],
        ]);
      });
    } finally {
      writeFileSync(projectFile, registered);
    }
  });
});
