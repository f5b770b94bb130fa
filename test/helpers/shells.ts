import { spawnSync, type SpawnSyncOptionsWithStringEncoding, type SpawnSyncReturns } from "node:child_process";

/**
 * Runs a real shell for the completion tests. A shell that is not installed fails the test with what
 * to install (.ci/run and scripts/quickstart.sh install zsh and fish), not with a TypeError later on.
 */
export function spawnShell(shell: string, args: string[], options: Omit<SpawnSyncOptionsWithStringEncoding, "encoding">): SpawnSyncReturns<string> {
  const result = spawnSync(shell, args, { ...options, encoding: "utf8" });
  if ((result.error as NodeJS.ErrnoException | undefined)?.code === "ENOENT") throw new Error(`${shell} is not installed: sudo apt-get install -y ${shell} (as .ci/run does)`);
  if (result.error) throw result.error;
  return result;
}
