/**
 * The library's messages name its options as a caller writes them (`options.memory`, `options.allowPrivate`);
 * the CLI reaches the same code through its flags, so before it prints a message it says each option
 * as the flag the user typed (`--memory`, `--allow-private`).
 */
import type { RunOptions } from "../cloister.js";

/** The flag of each option the CLI sets from one; the others (paths, signal, ...) it sets itself. */
const FLAGS: Partial<Record<keyof RunOptions | "name", string>> = {
  project: "--project",
  allowNoGit: "--allow-no-git",
  branch: "--branch",
  name: "--name",
  // The only way the CLI sets it: the messages that name it are about the network being off.
  network: "--no-network",
  memory: "--memory",
  pids: "--pids",
  cpu: "--cpu",
  env: "--env",
  secretEnv: "--secret",
  allow: "--allow",
  deny: "--deny",
  allowPrivate: "--allow-private",
  resolve: "--resolve",
  agent: "--agent",
  passEnvCredential: "--pass-env-credential",
  timeout: "--timeout",
};

/** `message` with `options.NAME` said as NAME's flag; options without one are left as they are. */
export function inFlagWords(message: string): string {
  return message.replace(/\boptions\.([A-Za-z]+)\b/g, (words, name: string) => (Object.hasOwn(FLAGS, name) ? FLAGS[name as keyof typeof FLAGS] : undefined) ?? words);
}
