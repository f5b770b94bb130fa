/**
 * Cloister's managed copies of agents: `npm install --prefix <dataDir>/agents/<name> <package>`,
 * on the host (the registry is reached directly, not through any cloister), with npm's progress on
 * stderr. A managed copy is used when the agent is found nowhere else (see locate.ts).
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, renameSync, rmSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { ensurePrivateDir } from "../config/atomic-write.js";
import { CloisterError } from "../errors.js";
import { managedCommand, managedPrefix, prefixCommand, readPackageVersion } from "./locate.js";
import type { AgentDefinition } from "./registry.js";

export interface InstallResult {
  dir: string;
  version?: string;
}

/**
 * A version or dist-tag as npm reads one after `@`: `2.1.197`, `^2.1`, `1.0.0-beta.1`, `latest`.
 * Nothing else: npm would take `file:/etc`, `git+https://…` or a URL there as where to install from,
 * and the text reaches npm as one argument of its command line.
 */
const NPM_VERSION = /^[~^]?[0-9A-Za-z][0-9A-Za-z.+_-]{0,99}$/;

/**
 * Whether a running cloister is set up for the agent: it binds the managed copy it started with, so
 * that copy is moved aside rather than deleted (QA: a re-install or uninstall took a running
 * cloister's agent away under it), and removed once no such cloister runs.
 */
export type CopyInUse = () => boolean;

export async function installManagedAgent(agent: AgentDefinition, managedDir: string, version: string | undefined, env: NodeJS.ProcessEnv = process.env, inUse: CopyInUse = () => false): Promise<InstallResult> {
  if (!agent.npmPackage) {
    throw new CloisterError(`${agent.name} has no npm package to install`, `set agents.${agent.name}.npm in \`cloister config edit\`, or install it yourself and put it on your PATH`);
  }
  if (version !== undefined && !NPM_VERSION.test(version)) {
    throw new CloisterError(`${JSON.stringify(version)} is not a version or tag of ${agent.npmPackage}`, `give a version (${agent.name}@2.1.0), a range (${agent.name}@^2) or a tag (${agent.name}@latest), or none for the latest`);
  }
  const npm = (env.PATH ?? "").split(":").filter((dir) => isAbsolute(dir)).map((dir) => join(dir, "npm")).find((path) => existsSync(path));
  if (!npm) throw new CloisterError("npm is not installed", "install Node.js and npm (e.g. `sudo apt-get install -y nodejs npm`), or install the agent yourself");
  ensurePrivateDir(managedDir);
  const dir = managedPrefix(managedDir, agent.name);
  const spec = version ? `${agent.npmPackage}@${version}` : agent.npmPackage;
  // Into a directory of its own, which replaces the managed copy only once it holds the command: a
  // failed install (a version that does not exist, no registry) leaves the copy there as it was.
  const staging = managedPrefix(managedDir, `.${agent.name}.installing-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  process.stderr.write(`Installing ${spec} into ${dir} ...\n`);
  try {
    const code = await new Promise<number>((resolve, reject) => {
      // npm's summary goes to stdout; here everything it says is progress, so it all goes to stderr.
      const child = spawn(npm, ["install", "--prefix", staging, "--no-audit", "--no-fund", spec], { env, stdio: ["ignore", 2, 2] });
      child.on("error", reject);
      child.on("close", (status) => resolve(status ?? 1));
    });
    if (code !== 0) throw new CloisterError(`npm install ${spec} failed (exit code ${code})`, "see npm's messages above");
    if (!existsSync(prefixCommand(staging, agent))) {
      throw new CloisterError(`${spec} installed no ${agent.command} command`, agent.builtin ? "report it: the package may have changed how it installs" : `check agents.${agent.name}.command and agents.${agent.name}.npm`);
    }
    retire(managedDir, agent.name);
    renameSync(staging, dir);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  sweepRetired(managedDir, agent.name, inUse);
  return { dir, version: readPackageVersion(join(dir, "node_modules", ...agent.npmPackage.split("/")), dir) };
}

/**
 * Removes the managed copy; false when there was none (what a failed install of an older cloister
 * left, a prefix without the agent's command, is removed all the same).
 */
export function removeManagedAgent(agent: AgentDefinition, managedDir: string, inUse: CopyInUse = () => false): boolean {
  const installed = existsSync(managedCommand(managedDir, agent));
  retire(managedDir, agent.name);
  sweepRetired(managedDir, agent.name, inUse);
  return installed;
}

/**
 * Moves the managed copy (if any) aside, out of every lookup, to a name sweepRetired knows; random,
 * since two retires can come within one millisecond (an install, then an uninstall while in use).
 */
function retire(managedDir: string, name: string): void {
  try {
    renameSync(managedPrefix(managedDir, name), managedPrefix(managedDir, `${retiredPrefix(name)}${randomBytes(6).toString("hex")}`));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
}

/** Removes the agent's retired copies, unless a running cloister may still use one of them. */
function sweepRetired(managedDir: string, name: string, inUse: CopyInUse): void {
  const retired = readdirSync(managedDir).filter((entry) => entry.startsWith(retiredPrefix(name)));
  if (retired.length === 0 || inUse()) return;
  for (const entry of retired) rmSync(join(managedDir, entry), { recursive: true, force: true });
}

function retiredPrefix(name: string): string {
  return `.${name}.retired-`;
}
