#!/usr/bin/env node
// Compiles native/cloister-init.c into native/build/cloister-init (run by `npm run build`).
// Skips the compile when the binary is newer than both the source and this script.
// Usage: node scripts/build-native.mjs [--force]
import { spawnSync } from "node:child_process";
import { mkdirSync, renameSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
export const SOURCE = join(root, "native", "cloister-init.c");
export const BINARY = join(root, "native", "build", "cloister-init");
export const CFLAGS = ["-std=c11", "-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra", "-Werror"];

function mtime(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

/** Builds the binary if it is missing or stale; returns its path. Throws with a readable message. */
export function buildNative({ force = false } = {}) {
  const built = mtime(BINARY);
  if (!force && built > mtime(SOURCE) && built > mtime(fileURLToPath(import.meta.url))) return BINARY;

  mkdirSync(dirname(BINARY), { recursive: true });
  // Compile to a temporary name and rename: a concurrent run (or a test) never sees half a binary.
  const tmp = `${BINARY}.tmp-${process.pid}`;
  const result = spawnSync("cc", [...CFLAGS, "-o", tmp, SOURCE], { stdio: ["ignore", "inherit", "inherit"] });
  if (result.error) {
    rmSync(tmp, { force: true });
    if (result.error.code === "ENOENT") {
      throw new Error("cannot build cloister-init: no C compiler (`cc`) on PATH; install one with `apt-get install gcc libc6-dev`");
    }
    throw new Error(`cannot build cloister-init: running cc failed: ${result.error.message}`);
  }
  if (result.status !== 0) {
    rmSync(tmp, { force: true });
    throw new Error(`cannot build cloister-init: cc exited with ${result.status ?? result.signal} (see the messages above)`);
  }
  renameSync(tmp, BINARY);
  return BINARY;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    buildNative({ force: process.argv.includes("--force") });
  } catch (error) {
    console.error(error.message);
    process.exit(1);
  }
}
