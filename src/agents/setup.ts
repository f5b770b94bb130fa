/**
 * Setting an agent up in a cloister's private HOME, before the cloister starts (so nothing inside
 * can race it): the host's agent config, filtered and with host paths rewritten, the agent-specific
 * answers (onboarding, trust), cloister's instructions and the credential files. Everything is built
 * in a staging directory beside the HOME, then moved in with rename. The host's files are only read.
 *
 * A persistent cloister's HOME survives restarts and is writable from inside, so it is distrusted:
 * what was there is moved aside (rename moves a link, never what it points to), sessions the agent
 * kept there are moved into the new copy, and the rest is deleted without following links.
 */
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { WORK_DIR } from "../sandbox/bwrap/mounts.js";
import type { PathMap } from "./config-transform.js";
import { copyConfigPath } from "./copy.js";
import type { Delivery } from "./credentials.js";
import { FINISHERS } from "./finish.js";
import { cloisterInstructions, withInstructions } from "./instructions.js";
import { isUnder } from "../path-under.js";
import { ALWAYS_EXCLUDED, type AgentDefinition } from "./registry.js";
import { writeStagedFile } from "./staged-files.js";

export interface SetupInput {
  agent: AgentDefinition;
  hostHome: string;
  /** The cloister's HOME on the host (data/homes/<name>). */
  homeDir: string;
  /** The cloister's HOME as the cloister sees it. */
  cloisterHome: string;
  projectRoot: string;
  network: boolean;
  delivery: Delivery;
  /** Collects what was left out, for the user. */
  notes: string[];
}

export function setUpAgentHome(input: SetupInput): void {
  const { agent } = input;
  const stage = mkdtempSync(join(dirname(input.homeDir), ".agent-setup-"));
  try {
    const fresh = join(stage, "new");
    mkdirSync(fresh, { mode: 0o700 });
    const paths: PathMap = [
      [input.projectRoot, WORK_DIR],
      [input.hostHome, input.cloisterHome],
    ];
    const display = (hostPath: string) => (isUnder(hostPath, input.hostHome) ? `~${hostPath.slice(input.hostHome.length)}` : hostPath);
    for (const rel of agent.configPaths) {
      mkdirSync(dirname(join(fresh, rel)), { recursive: true, mode: 0o700 });
      copyConfigPath(join(input.hostHome, rel), join(fresh, rel), { exclude: [...ALWAYS_EXCLUDED, ...agent.exclude], paths, hostHome: input.hostHome, notes: input.notes, display });
    }
    if (agent.builtin) FINISHERS[agent.name]?.({ stage: fresh, hostHome: input.hostHome, agent, env: input.delivery.env, notes: input.notes });
    const written = input.delivery.files.map((file) => file.path);
    if (agent.instructionsFile) {
      const file = join(fresh, agent.instructionsFile);
      writeStagedFile(file, withInstructions(readText(file), cloisterInstructions(agent.name, input.network)));
      written.push(agent.instructionsFile);
    }
    for (const file of input.delivery.files) writeStagedFile(join(fresh, file.path), file.content);
    // A unit is replaced as a whole: each config path, and each file written outside them (.claude.json).
    const units = [...agent.configPaths, ...written.filter((rel) => !agent.configPaths.some((dir) => isUnder(rel, dir)))];
    for (const extra of topLevelExtras(fresh, units)) units.push(extra);
    const aside = join(stage, "old");
    mkdirSync(aside, { mode: 0o700 });
    units.forEach((rel, index) => replaceUnit(input.homeDir, fresh, rel, join(aside, String(index)), agent.configPaths.includes(rel) ? agent.keep : []));
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/** Files a finisher wrote at the top of the staging HOME (.claude.json) that no unit covers yet. */
function topLevelExtras(fresh: string, units: readonly string[]): string[] {
  return readdirSync(fresh).filter((name) => !units.some((unit) => isUnder(unit, name) || isUnder(name, unit)));
}

/**
 * Puts `fresh/rel` at `home/rel`. Every directory on the way must be a real directory (a link left
 * there from inside would lead the rename onto the host); what is in the way is moved aside.
 */
function replaceUnit(home: string, fresh: string, rel: string, aside: string, keep: readonly string[]): void {
  const source = join(fresh, rel);
  // Nothing to put there (no such config on the host): what the cloister has is its own, left alone.
  if (!lstatOrUndefined(source)) return;
  mkdirSync(aside, { mode: 0o700 });
  const parts = rel.split("/");
  let dir = home;
  parts.slice(0, -1).forEach((part, i) => {
    dir = join(dir, part);
    const info = lstatOrUndefined(dir);
    if (info && !info.isDirectory()) renameSync(dir, join(aside, `parent-${i}`));
    if (!info || !info.isDirectory()) mkdirSync(dir, { mode: 0o700 });
  });
  const target = join(home, rel);
  const old = join(aside, "unit");
  const previous = lstatOrUndefined(target);
  if (previous) renameSync(target, old);
  if (previous?.isDirectory() && lstatOrUndefined(source)?.isDirectory()) {
    for (const name of keep) {
      const from = join(old, name);
      const to = join(source, name);
      if (lstatOrUndefined(from) && !lstatOrUndefined(to)) {
        mkdirSync(dirname(to), { recursive: true, mode: 0o700 });
        renameSync(from, to);
      }
    }
  }
  renameSync(source, target);
}

function lstatOrUndefined(path: string): ReturnType<typeof lstatSync> | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}
