/**
 * npm's global prefix (where `npm install -g` puts commands: PREFIX/bin). Asking npm costs a Node
 * process (a few hundred ms), so the answer is cached, keyed by what could change it: which npm,
 * the user's .npmrc and the prefix variables.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, realpathSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, join } from "node:path";

export function npmGlobalPrefix(stateDir: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const npm = (env.PATH ?? "").split(":").filter((dir) => isAbsolute(dir)).map((dir) => join(dir, "npm")).find(exists);
  if (!npm) return undefined;
  const npmrc = env.NPM_CONFIG_USERCONFIG ?? env.npm_config_userconfig ?? join(env.HOME || homedir(), ".npmrc");
  const key = [identity(realpathSync(npm)), identity(npmrc), env.NPM_CONFIG_PREFIX ?? env.npm_config_prefix ?? ""].join("|");
  const cacheFile = join(stateDir, "npm-prefix.json");
  const cached = readCache(cacheFile);
  if (cached?.key === key) return cached.prefix;
  const result = spawnSync(npm, ["prefix", "-g"], { env, encoding: "utf8", timeout: 15_000 });
  const prefix = result.status === 0 ? result.stdout.trim().split("\n").pop()?.trim() : undefined;
  if (!prefix || !isAbsolute(prefix)) return undefined;
  try {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    writeFileSync(cacheFile, JSON.stringify({ key, prefix }), { mode: 0o600 });
  } catch {
    // A cache that cannot be written costs time next time, nothing else.
  }
  return prefix;
}

function exists(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function identity(path: string): string {
  try {
    const info = statSync(path);
    return `${path}:${info.ino}:${info.size}:${info.mtimeMs}`;
  } catch {
    return `${path}:-`;
  }
}

function readCache(file: string): { key: string; prefix: string } | undefined {
  try {
    const data = JSON.parse(readFileSync(file, "utf8")) as { key?: unknown; prefix?: unknown };
    return typeof data.key === "string" && typeof data.prefix === "string" ? { key: data.key, prefix: data.prefix } : undefined;
  } catch {
    return undefined;
  }
}
