#!/usr/bin/env node
// Compiles the C helpers (run by `npm run build`): native/cloister-init.c into
// native/build/cloister-init and native/hostexec.c into native/build/hostexec.
// Skips a compile when its binary is newer than both its source and this script.
// Usage: node scripts/build-native.mjs [--force]
import { spawnSync } from "node:child_process";
import { mkdirSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
export const SOURCE = join(root, "native", "cloister-init.c");
export const BINARY = join(root, "native", "build", "cloister-init");
export const HOSTEXEC_SOURCE = join(root, "native", "hostexec.c");
export const HOSTEXEC_BINARY = join(root, "native", "build", "hostexec");
export const CFLAGS = ["-std=c11", "-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra", "-Werror"];

function mtime(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

/** Compiles source into binary unless it is up to date; returns binary. Throws with a readable message. */
function compile(source, binary, force) {
  const built = mtime(binary);
  if (!force && built > mtime(source) && built > mtime(fileURLToPath(import.meta.url))) return binary;

  const name = basename(binary);
  mkdirSync(dirname(binary), { recursive: true });
  // Compile to a temporary name and rename: a concurrent run (or a test) never sees half a binary.
  const tmp = `${binary}.tmp-${process.pid}`;
  const result = spawnSync("cc", [...CFLAGS, "-o", tmp, source], { stdio: ["ignore", "inherit", "inherit"] });
  if (result.error) {
    rmSync(tmp, { force: true });
    if (result.error.code === "ENOENT") {
      throw new Error(`cannot build ${name}: no C compiler (\`cc\`) on PATH; install one with \`apt-get install gcc libc6-dev\``);
    }
    throw new Error(`cannot build ${name}: running cc failed: ${result.error.message}`);
  }
  if (result.status !== 0) {
    rmSync(tmp, { force: true });
    throw new Error(`cannot build ${name}: cc exited with ${result.status ?? result.signal} (see the messages above)`);
  }
  renameSync(tmp, binary);
  return binary;
}

/** Builds every helper that is missing or stale; returns the path of cloister-init. Throws with a readable message. */
export function buildNative({ force = false } = {}) {
  compile(HOSTEXEC_SOURCE, HOSTEXEC_BINARY, force);
  return compile(SOURCE, BINARY, force);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    buildNative({ force: process.argv.includes("--force") });
  } catch (error) {
    console.error(error.message);
    process.exit(1);
  }
}
