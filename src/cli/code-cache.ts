/**
 * Runs the bundled CLI (one CommonJS file) with V8's code cache, so a command does not compile the
 * same JavaScript again every time it starts: `cloister --version` measured ~35 ms faster, `run` ~30.
 * Node 22 does this itself (module.enableCompileCache); node 20, which cloister supports, does not,
 * and the libraries that do it for node 20 keep their caches in the shared /tmp, where another user
 * could plant bytecode that we would run. This one keeps them in the user's own cache directory.
 *
 * V8 checks a cache against its own version and flags and the length of the source, not its content,
 * so the file name carries a hash of the source and node's version; a hash of the payload guards
 * against a torn or damaged file (release builds of V8 do not verify it).
 */
import { createHash } from "node:crypto";
import { lstatSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import Module, { createRequire } from "node:module";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { Script } from "node:vm";

const DIGEST_BYTES = 32;

/** `$XDG_CACHE_HOME/cloister/compile` (default ~/.cache/...); undefined when switched off (NODE_DISABLE_COMPILE_CACHE, as for node's own cache). */
export function codeCacheDir(env: NodeJS.ProcessEnv): string | undefined {
  if (env.NODE_DISABLE_COMPILE_CACHE) return undefined;
  return join(env.XDG_CACHE_HOME || join(env.HOME || homedir(), ".cache"), "cloister", "compile");
}

/**
 * Each subcommand gets a cache of its own: V8 caches the functions a run has compiled when the cache
 * is written, so one written by `--version` would hold little of what `run` needs.
 */
export function cacheFlavour(argv: readonly string[]): string {
  const command = argv[2] ?? "";
  return /^[a-z][a-z0-9-]{0,31}$/.test(command) ? command : "other";
}

/**
 * Runs CommonJS `file` as node would, with its code cache from `cacheDir` (none when undefined or
 * unusable). A run that exits with `failedExitCode` (a usage error, an unknown command) writes none:
 * it compiled little of anything, and every mistyped command would get a file.
 */
export function runWithCodeCache(file: string, cacheDir: string | undefined, flavour: string, failedExitCode?: number): void {
  const source = readFileSync(file, "utf8");
  const key = createHash("sha256").update(`${process.version}\0${process.arch}\0`).update(source).digest("hex").slice(0, 32);
  const dir = cacheDir !== undefined && usableDir(cacheDir) ? cacheDir : undefined;
  const cacheFile = dir && join(dir, `${key}-${flavour}.v8`);
  const cached = cacheFile ? readVerified(cacheFile) : undefined;
  // A hashbang is not JavaScript; node strips it from a file it loads, so must we.
  const script = new Script(Module.wrap(source.replace(/^#!.*/, "")), { filename: file, cachedData: cached });
  if (dir && cacheFile && (cached === undefined || script.cachedDataRejected)) {
    // At exit, so the cache holds every function this run compiled (see cacheFlavour).
    process.once("exit", (code) => {
      if (code !== failedExitCode) save(dir, key, cacheFile, script.createCachedData());
    });
  }
  const moduleWrapper = script.runInThisContext() as (exports: object, require: NodeJS.Require, module: object, filename: string, dirname: string) => void;
  const module = { exports: {} };
  moduleWrapper.call(module.exports, module.exports, createRequire(file), module, file, dirname(file));
}

/** Creates the directory (0700) and uses it only when it is ours and nobody else can write to it. */
function usableDir(dir: string): boolean {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const info = lstatSync(dir);
    return info.isDirectory() && info.uid === process.getuid?.() && (info.mode & 0o022) === 0;
  } catch {
    return false; // read-only or missing HOME: run without a cache
  }
}

function readVerified(file: string): Buffer | undefined {
  let data: Buffer;
  try {
    data = readFileSync(file);
  } catch {
    return undefined;
  }
  const payload = data.subarray(DIGEST_BYTES);
  return data.length > DIGEST_BYTES && createHash("sha256").update(payload).digest().equals(data.subarray(0, DIGEST_BYTES)) ? payload : undefined;
}

/** Written whole under a temporary name and renamed, so a run starting meanwhile sees all or nothing. */
function save(dir: string, key: string, file: string, payload: Buffer): void {
  try {
    const temp = `${file}.${process.pid}.tmp`;
    writeFileSync(temp, Buffer.concat([createHash("sha256").update(payload).digest(), payload]), { mode: 0o600 });
    renameSync(temp, file);
    removeOtherBuilds(dir, key);
  } catch {
    // A cache that cannot be written only means the next run compiles again.
  }
}

/**
 * Keeps the caches of this build and of the one written most recently before it; older builds' go.
 * Two installs used in turn (a global one and a checkout, say) keep theirs, instead of each deleting
 * the other's and compiling again every time.
 */
function removeOtherBuilds(dir: string, key: string): void {
  const others = readdirSync(dir)
    .filter((name) => !name.startsWith(key))
    .map((name) => ({ name, build: name.slice(0, key.length), written: lstatSync(join(dir, name)).mtimeMs }));
  const previous = [...others].sort((a, b) => b.written - a.written)[0]?.build;
  for (const { name, build } of others) if (build !== previous) rmSync(join(dir, name), { force: true });
}
