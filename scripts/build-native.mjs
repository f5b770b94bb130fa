#!/usr/bin/env node
// Compiles the C helpers (run by `npm run build`): native/cloister-init.c into
// native/build/cloister-init, native/hostexec.c into native/build/hostexec, and the guardian's
// tunnel relay, a Node-API addon (native/tunnel-relay.c with native/listener-handover.c), into
// native/build/tunnel-relay.node.
// Skips a compile when its output is newer than its sources and this script.
// Usage: node scripts/build-native.mjs [--force]
import { spawnSync } from "node:child_process";
import { mkdirSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
export const SOURCE = join(root, "native", "cloister-init.c");
export const BINARY = join(root, "native", "build", "cloister-init");
export const HOSTEXEC_SOURCE = join(root, "native", "hostexec.c");
export const HOSTEXEC_BINARY = join(root, "native", "build", "hostexec");
export const TUNNEL_RELAY_SOURCE = join(root, "native", "tunnel-relay.c");
/** The hand-over's wire constants, shared by cloister-init's relay (which offers) and the addon (which takes). */
const HANDOVER_WIRE = join(root, "native", "handover-wire.h");
/** The guardian's side of the listener hand-over, part of the same addon. */
const LISTENER_HANDOVER = [join(root, "native", "listener-handover.c"), join(root, "native", "listener-handover.h"), HANDOVER_WIRE];
export const TUNNEL_RELAY_ADDON = join(root, "native", "build", "tunnel-relay.node");
/** The byte pump that cloister-init's relay and the tunnel relay share. */
const RELAY_PUMP = [join(root, "native", "relay-pump.c"), join(root, "native", "relay-pump.h")];
export const CFLAGS = ["-std=c11", "-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra", "-Werror"];
/** Node-API's headers, from the node-api-headers package (the addon links against no library). */
const ADDON_FLAGS = ["-shared", "-fPIC", "-pthread", "-I", createRequire(import.meta.url)("node-api-headers").include_dir];

function mtime(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

/**
 * Compiles sources (the first is the program's, the others its shared parts; headers are only
 * looked at for their age) into binary unless it is up to date; returns binary. Throws with a
 * readable message.
 */
function compile(sources, binary, force, flags = []) {
  const built = mtime(binary);
  const inputs = [...sources, fileURLToPath(import.meta.url)];
  if (!force && inputs.every((input) => built > mtime(input))) return binary;

  const name = basename(binary);
  mkdirSync(dirname(binary), { recursive: true });
  // Compile to a temporary name and rename: a concurrent run (or a test) never sees half a binary.
  const tmp = `${binary}.tmp-${process.pid}`;
  const units = sources.filter((source) => source.endsWith(".c"));
  const result = spawnSync("cc", [...CFLAGS, ...flags, "-o", tmp, ...units], { stdio: ["ignore", "inherit", "inherit"] });
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
  compile([HOSTEXEC_SOURCE], HOSTEXEC_BINARY, force);
  compile([TUNNEL_RELAY_SOURCE, ...LISTENER_HANDOVER, ...RELAY_PUMP], TUNNEL_RELAY_ADDON, force, ADDON_FLAGS);
  return compile([SOURCE, HANDOVER_WIRE, ...RELAY_PUMP], BINARY, force);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    buildNative({ force: process.argv.includes("--force") });
  } catch (error) {
    console.error(error.message);
    process.exit(1);
  }
}
