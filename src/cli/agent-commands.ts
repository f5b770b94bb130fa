import type { Command } from "commander";
import { readAgentMarker } from "../agents/marker.js";
import { resolvePaths, type CloisterPaths } from "../config/paths.js";
import { CloisterError } from "../errors.js";
import { isKeeperAlive, listRecords } from "../sandbox/records.js";
import { printTable } from "./output.js";

const ABOUT = `
An agent runs in a cloister with \`cloister start --agent NAME\` (interactive; leaving it returns here,
the cloister keeps running) or \`cloister run --agent NAME -- ARGS\` (one task). Cloister uses the agent
installed on this host (your PATH, its own installer's directory, npm's global prefix), else a copy
installed with \`cloister agent install NAME\`.

Examples:
  cloister agent list
  cloister agent install claude
  cloister agent install codex@0.169.0`;

export function registerAgentCommands(program: Command): void {
  const agent = program.command("agent").description("the AI agents cloister can run: where they are, and managed copies").addHelpText("after", ABOUT);

  agent
    .command("list")
    .alias("ls")
    .description("list the agents: found or not, where, how it was found, version")
    .option("--json", "machine-readable output")
    .action(async (flags: { json?: boolean }) => {
      const rows = await agentRows();
      if (flags.json) return void process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      printTable(
        ["NAME", "STATUS", "HOW", "VERSION", "PATH"],
        rows.map((r) => [r.name, r.found ? "found" : r.problem ? "error" : "missing", r.how ?? "-", r.version ?? "-", r.path ?? r.problem ?? r.hint ?? "-"]),
      );
    });

  agent
    .command("install")
    .description("install a managed copy of an agent from the npm registry, into cloister's data dir")
    .argument("<name>", "the agent (claude, codex, gemini, or one from config with agents.NAME.npm), optionally NAME@VERSION")
    .action(async (spec: string) => {
      const { name, version } = agentSpec(spec);
      const { resolveAgent } = await import("../agents/registry.js");
      const { installManagedAgent } = await import("../agents/install.js");
      const paths = resolvePaths();
      const definition = resolveAgent(name, await agentsConfig());
      const result = await installManagedAgent(definition, await managedDir(paths.dataDir), version, process.env, () => runningWith(paths, definition.name));
      process.stderr.write(`Installed ${definition.name}${result.version ? ` ${result.version}` : ""} in ${result.dir}.\n`);
      const using = (await agentRows()).find((row) => row.name === definition.name);
      if (using?.how && using.how !== "managed") process.stderr.write(`Note: cloister uses the ${definition.name} it finds first, ${using.path} (${using.how}); the managed copy is used where there is none.\n`);
    });

  agent
    .command("uninstall")
    .description("remove cloister's managed copy of an agent (an agent you installed yourself is left alone)")
    .argument("<name>", "the agent")
    .action(async (name: string) => {
      const { resolveAgent } = await import("../agents/registry.js");
      const { removeManagedAgent } = await import("../agents/install.js");
      const definition = resolveAgent(name, await agentsConfig());
      const paths = resolvePaths();
      const running = runningWith(paths, definition.name);
      if (!removeManagedAgent(definition, await managedDir(paths.dataDir), () => running)) throw new CloisterError(`there is no managed copy of ${name}`, "see `cloister agent list`");
      process.stderr.write(`Removed the managed copy of ${name}${running ? "; cloisters running with it keep it until they stop" : ""}.\n`);
    });
}

/** Whether a running cloister of this instance is set up for the agent (see CopyInUse). */
function runningWith(paths: CloisterPaths, agent: string): boolean {
  return listRecords(paths).some((record) => isKeeperAlive(record) && readAgentMarker(record.runtimeDir)?.name === agent);
}

interface AgentRow {
  name: string;
  builtin: boolean;
  found: boolean;
  how?: string;
  path?: string;
  realPath?: string;
  version?: string;
  /** Host paths a cloister binds read-only for it. */
  mounts?: string[];
  npm?: string;
  problem?: string;
  /** For an agent not found: how to get it. */
  hint?: string;
}

/** `NAME[@VERSION]`; a leading @ is a scoped npm package's (which resolveAgent names as such), not a version's. */
function agentSpec(spec: string): { name: string; version?: string } {
  const at = spec.lastIndexOf("@");
  return at > 0 ? { name: spec.slice(0, at), version: spec.slice(at + 1) || undefined } : { name: spec };
}

async function agentRows(): Promise<AgentRow[]> {
  const [{ agentNames, resolveAgent }, { installHint, locateContext }, { locateAgent }] = await Promise.all([
    import("../agents/registry.js"),
    import("../agents/launch.js"),
    import("../agents/locate.js"),
  ]);
  const config = await agentsConfig();
  const ctx = locateContext(resolvePaths());
  return agentNames(config).map((name): AgentRow => {
    const definition = resolveAgent(name, config);
    const base = { name, builtin: definition.builtin, npm: definition.npmPackage };
    try {
      const location = locateAgent(definition, ctx);
      if (!location) return { ...base, found: false, hint: installHint(definition) };
      return { ...base, found: true, how: location.how, path: location.path, realPath: location.realPath, version: location.version, mounts: location.mounts };
    } catch (error) {
      return { ...base, found: false, problem: error instanceof CloisterError ? error.oneLine() : String(error) };
    }
  });
}

async function agentsConfig() {
  const { loadGlobalConfig } = await import("../config/load.js");
  return (await loadGlobalConfig(resolvePaths())).agents;
}

async function managedDir(dataDir: string): Promise<string> {
  return (await import("../agents/locate.js")).managedAgentsDir(dataDir);
}
