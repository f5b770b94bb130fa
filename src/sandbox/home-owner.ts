/**
 * A persistent cloister's HOME (data/homes/NAME) outlives it and serves the next cloister of that
 * name. What an agent left there (~/.bashrc that `start` runs, tool configs, the git identity
 * written at its first start) must reach no other project, so a HOME belongs to the project that
 * first used it. The owner is written beside the HOMEs (in .owners/, a name no cloister can have:
 * names start with a letter or digit), where no cloister can change it.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { CloisterError } from "../errors.js";

/** Where the owner of `homeDir` is written. */
export function ownerFileOf(homeDir: string): string {
  return join(dirname(homeDir), ".owners", basename(homeDir));
}

/** The project root that owns `homeDir`, or undefined when none is written (no start claimed it yet). */
export function homeOwner(homeDir: string): string | undefined {
  try {
    return readFileSync(ownerFileOf(homeDir), "utf8").trim();
  } catch {
    return undefined;
  }
}

/**
 * Claims `homeDir` for `projectRoot`, or refuses when another project's cloister used it first.
 * Returns the owner file when this call wrote it (the first claim), for a failed launch to take back.
 */
export function claimHome(homeDir: string, cloisterName: string, projectRoot: string): string | undefined {
  const ownerFile = ownerFileOf(homeDir);
  mkdirSync(dirname(ownerFile), { recursive: true, mode: 0o700 });
  try {
    writeFileSync(ownerFile, `${projectRoot}\n`, { flag: "wx", mode: 0o600 });
    return ownerFile;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
  const owner = readFileSync(ownerFile, "utf8").trim();
  if (owner === projectRoot) return undefined;
  throw new CloisterError(
    `cloister ${cloisterName}'s HOME (${homeDir}) holds what a cloister of another project left there (${owner})`,
    `give this one another name (options.name), or, if that project moved here or its HOME is no longer needed, remove it: cloister rm ${cloisterName}`,
  );
}
