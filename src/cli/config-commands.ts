import { spawnSync } from "node:child_process";
import type { Command } from "commander";
import type { FileProblem } from "../config/check-all.js";
import { resolvePaths, type CloisterPaths } from "../config/paths.js";
import { CloisterError } from "../errors.js";
import { guardianCall, guardianStatus } from "../guardian/control-client.js";
import { listRecords } from "../sandbox/records.js";
import { printTable } from "./output.js";
import { refuseWhileWorktrees } from "./worktree-commands.js";

/** The YAML and schema libraries load only for config commands: `run` and `start` never pay for them. */
async function configModules() {
  const [load, registry, checkAll] = await Promise.all([import("../config/load.js"), import("../config/project-registry.js"), import("../config/check-all.js")]);
  return { ...load, ...registry, ...checkAll };
}

/** "1 problem", "3 problems". */
function problemCount(count: number): string {
  return `${count} ${count === 1 ? "problem" : "problems"}`;
}

/** Each problem on a line of its own, as a compiler prints them (and `config validate`). */
async function printProblems(problems: readonly FileProblem[]): Promise<void> {
  const { formatFileProblem } = await configModules();
  for (const problem of problems) process.stderr.write(`${formatFileProblem(problem)}\n`);
}

/**
 * Runs `check` (a config file's validation); when the file has problems, lists them all, says `fix`,
 * and makes the exit status 1, as `config validate` does: the file is there to be fixed, and cloister
 * did its part (125 is for cloister failing). Resolves with whether the file is valid.
 */
async function reportProblems(check: () => Promise<unknown> | unknown, fix: string): Promise<boolean> {
  const { ConfigError } = await configModules();
  try {
    await check();
    return true;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    await printProblems(error.problems);
    process.stderr.write(`${problemCount(error.problems.length)}: ${fix}.\n`);
    process.exitCode = 1;
    return false;
  }
}

/**
 * Opens a file in $VISUAL/$EDITOR (vi by default), then validates it so mistakes show at once: each
 * problem listed, exit status 1, as `config validate` (QA: it was 125, cloister's own failure).
 * `again` is the command that opens it again. Resolves with whether the file is valid.
 */
async function editAndValidate(file: string, kind: "global" | "project", again: string): Promise<boolean> {
  const { validateConfigFile } = await configModules();
  const editor = process.env.VISUAL || process.env.EDITOR || "vi";
  // Through the shell, as git runs it: EDITOR often carries arguments ("code --wait", "emacsclient -t").
  // The file goes in as "$1", never into the command text.
  const result = spawnSync("/bin/sh", ["-c", `${editor} "$1"`, editor, file], { stdio: "inherit" });
  if (result.error) throw new CloisterError(`could not start the editor ${JSON.stringify(editor)}: ${result.error.message}`, "set EDITOR to your editor");
  if (result.status === 127) throw new CloisterError(`could not start the editor ${JSON.stringify(editor)}: command not found`, "set EDITOR (or VISUAL) to your editor, e.g. EDITOR='code --wait'");
  // As git does: an editor that failed (or was quit with :cq) is no edit to check.
  if (result.status !== 0) throw new CloisterError(`the editor ${JSON.stringify(editor)} exited with ${result.status === null ? `signal ${result.signal ?? "?"}` : `code ${result.status}`}`, `${file} is as the editor left it; run \`cloister config validate\` to check it`);
  return reportProblems(() => validateConfigFile(file, kind), `${file} keeps your edit; fix them with \`${again}\``);
}

/** What `config edit` and `project edit` exit with, for their --help. */
const EDIT_EXIT_STATUS = "\nExit status: 0 when the edited file is valid; 1 when it has problems (each is listed, and the file keeps your edit); 125 when the editor could not start or failed.";

export function registerConfigCommands(program: Command): void {
  const config = program.command("config").description("the global configuration (config.yaml)");

  config
    .command("show")
    .description("print the effective configuration (global, merged with the current project's if any)")
    .option("--project <name>", "merge this project's configuration: a name from `cloister project list`, or a directory in it or in a git repository (default: the project you are in, if cloister knows it)")
    .option("--json", "machine-readable output (sizes in bytes, durations in milliseconds, null for none)")
    .action(async (flags: { project?: string; json?: boolean }) => {
      const { configAsYaml, effectiveConfig, readGlobalConfig, loadProjectConfig, loadedTogether } = await configModules();
      const paths = resolvePaths();
      const name = await projectToShow(paths, flags.project);
      // A command that shows must not write: without a config file, the defaults are shown and it stays absent (QA).
      // Both files' problems are named at once, as a launch names them (QA: only the global file's).
      const [global, local] = await loadedTogether([readGlobalConfig(paths), name !== undefined ? loadProjectConfig(paths, name) : undefined]);
      const shown = local !== undefined ? effectiveConfig(global.config, local) : global.config;
      const defaults = global.exists ? "" : `# no ${paths.globalConfigFile} yet: these are the defaults (\`cloister config init\` writes that file)\n`;
      const merged = name !== undefined ? `# global config merged with project ${name}'s\n` : "";
      process.stdout.write(flags.json ? `${JSON.stringify(shown, null, 2)}\n` : `${defaults}${merged}${configAsYaml(shown)}`);
    });

  config
    .command("path")
    .description("print the path of the global config file")
    .action(() => void process.stdout.write(`${resolvePaths().globalConfigFile}\n`));

  config
    .command("init")
    .description("write the commented default config file if there is none (never overwrites)")
    .addHelpText("after", "\nExit status: 0 when the file was written, or is there already and valid; 1 when the file already there has problems (each is listed); 125 when it could not be written or read.")
    .action(async () => {
      const { createDefaultConfig, validateConfigFile } = await configModules();
      const paths = resolvePaths();
      const file = paths.globalConfigFile;
      if (await createDefaultConfig(paths)) return void process.stderr.write(`Wrote the default config to ${file}: every setting is there, commented; \`cloister config edit\` edits it.\n`);
      // QA: an init that found a file said only where it was, as if it had written it.
      process.stderr.write(`Kept the config file already at ${file} (config init never overwrites it): \`cloister config edit\` edits it; to start again from the defaults, remove it and run \`cloister config init\`.\n`);
      await reportProblems(() => validateConfigFile(file, "global"), "fix them with `cloister config edit`");
    });

  config
    .command("edit")
    .description("edit the global config in $EDITOR, then validate it")
    .addHelpText("after", EDIT_EXIT_STATUS)
    .action(async () => {
      const { createDefaultConfig } = await configModules();
      const paths = resolvePaths();
      await createDefaultConfig(paths);
      if (await editAndValidate(paths.globalConfigFile, "global", "cloister config edit")) process.stderr.write("Config is valid.\n");
    });

  config
    .command("validate")
    .description("check the global config, every project config and the decision files the guardian writes; every problem is listed with its file, line and key")
    .option("--json", "machine-readable output: {valid, files, problems: [{file, line, column, key, problem, hint}]}")
    .addHelpText("after", "\nExit status: 0 when every file is valid, 1 when any problem was found, 125 when the files could not be checked.")
    .action(async (flags: { json?: boolean }) => {
      const { checkAllConfig } = await configModules();
      const paths = resolvePaths();
      const report = await checkAllConfig(paths);
      const valid = report.problems.length === 0;
      if (flags.json) process.stdout.write(`${JSON.stringify({ valid, files: report.files, problems: report.problems }, null, 2)}\n`);
      else {
        await printProblems(report.problems);
        const checked = `${report.files.length} ${report.files.length === 1 ? "file" : "files"} checked`;
        const defaults = report.globalExists ? "" : ` (no ${paths.globalConfigFile} yet: the defaults apply; \`cloister config init\` writes it)`;
        process.stderr.write(valid ? `All config files are valid: ${checked}${defaults}.\n` : `${problemCount(report.problems.length)}, ${checked}.\n`);
      }
      if (!valid) process.exitCode = 1;
    });

  const project = program.command("project").description("projects cloister knows about (projects/<name>.yaml)");

  project
    .command("list")
    .alias("ls")
    .description("list known projects")
    .option("--json", "machine-readable output")
    .action(async (flags: { json?: boolean }) => {
      const { listProjects } = await configModules();
      const projects = await listProjects(resolvePaths());
      if (flags.json) return void process.stdout.write(`${JSON.stringify(projects, null, 2)}\n`);
      if (projects.length === 0) return void process.stdout.write("No projects yet: `cloister run` or `cloister start` in a git repository registers it.\n");
      printTable(["NAME", "PATH"], projects.map((p) => [p.name, p.path ?? "(unknown)"]));
    });

  project
    .command("show")
    .description("print a project's config file and its cloisters; a file with problems is printed too, each problem listed after it")
    .argument("<name>", "the project's name")
    .addHelpText("after", "\nExit status: 0 when the file is valid; 1 when it has problems (the file is shown, and each problem listed with its line and key); 125 when there is no such project or its file cannot be read.")
    .action(async (name: string) => {
      const { parseConfigText, projectConfigFile, readIfExists } = await configModules();
      const paths = resolvePaths();
      const file = projectConfigFile(paths, name);
      const text = await readIfExists(file);
      if (text === undefined) throw new CloisterError(`no project named ${JSON.stringify(name)}`, "see `cloister project list`");
      const cloisters = listRecords(paths).filter((r) => r.project === name).map((r) => r.name);
      // Shown whether or not it is valid: the file is what its problems are to be fixed in (QA: it was refused unseen).
      process.stdout.write(`# ${file}\n${text}${text.endsWith("\n") ? "" : "\n"}# cloisters: ${cloisters.join(", ") || "none"}\n`);
      await reportProblems(() => parseConfigText(text, file, "project"), `fix them with \`cloister project edit ${name}\``);
    });

  project
    .command("edit")
    .description("edit a project's config in $EDITOR, then validate it")
    .argument("<name>", "the project's name")
    .addHelpText("after", EDIT_EXIT_STATUS)
    .action(async (name: string) => {
      const { projectConfigFile, readIfExists } = await configModules();
      const file = projectConfigFile(resolvePaths(), name);
      // An editor opened on a new file would register a project of that name, bound to no directory.
      if ((await readIfExists(file)) === undefined) throw new CloisterError(`no project named ${JSON.stringify(name)}`, "see `cloister project list`; a project is registered by `cloister run` or `cloister start` in it");
      if (await editAndValidate(file, "project", `cloister project edit ${name}`)) process.stderr.write("Project config is valid.\n");
    });

  project
    .command("remove")
    .alias("rm")
    .description("forget a project (its config file); refuses while it has cloisters or worktrees")
    .argument("<name>", "the project's name")
    .action(async (name: string) => {
      const { removeProject } = await configModules();
      const paths = resolvePaths();
      const running = listRecords(paths).filter((r) => r.project === name);
      if (running.length > 0) throw new CloisterError(`project ${name} has cloisters: ${running.map((r) => r.name).join(", ")}`, "stop them first with `cloister stop NAME`");
      await refuseWhileWorktrees(paths, name);
      const decided = await removeProject(paths, name);
      // A running guardian holds the project's rules: it reads them again, without the removed ones.
      if (decided && (await guardianStatus(paths))) await guardianCall(paths, "POST", "/v1/reload");
      process.stderr.write(`Removed project ${name}${decided ? ", with the allow and deny decisions kept for it" : ""}.\n`);
    });
}

/**
 * The project whose config `config show` merges: the one `--project` names, else the current
 * directory's once registered, since its file is what would be merged (QA: the help promised the
 * merge, and only --project made it). A `--project` that is no project is refused, as `allow` and
 * `policy explain` refuse it (QA: `--project /` showed the config merged with a made-up project's).
 */
async function projectToShow(paths: CloisterPaths, given: string | undefined): Promise<string | undefined> {
  const { knownProject, projectConfigFile, projectNameFor, readIfExists } = await configModules();
  if (given !== undefined) {
    const project = await knownProject(paths, given);
    if (project === undefined) throw new CloisterError(`no project named or at ${JSON.stringify(given)}`, "pass --project NAME (see `cloister project list`) or a directory in a git repository; without it, config show merges the project you are in");
    return project;
  }
  const here = await projectNameFor(process.cwd(), paths).catch(() => undefined);
  return here && (await readIfExists(projectConfigFile(paths, here.name))) !== undefined ? here.name : undefined;
}
