import { accessSync, constants as fsConstants, existsSync, statSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { PACKAGE_ROOT } from "../package-root.js";
import { CloisterError } from "../errors.js";

/** The compiled keeper/init binary that ships with this package (see docs/internals/init-protocol.md). */
export function initBinaryPath(): string {
  return nativeBinary("cloister-init");
}

/** The `hostexec` client, mounted into every cloister with network (see docs/hostexec.md). */
export function hostexecBinaryPath(): string {
  return nativeBinary("hostexec");
}

function nativeBinary(name: string): string {
  const path = join(PACKAGE_ROOT, "native", "build", name);
  if (!existsSync(path)) {
    throw new CloisterError(`the ${name} helper is not built`, "run `npm run build` in the cloister package (needs gcc)");
  }
  return path;
}

/**
 * The bubblewrap a launch runs: CLOISTER_BWRAP when set (an absolute path: another build, or a stand-in
 * in tests), else the system's (findTool).
 */
export function bwrapPath(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const chosen = env.CLOISTER_BWRAP;
  if (chosen === undefined || chosen === "") return findTool("bwrap", env.PATH);
  if (!isAbsolute(chosen) || !isExecutableFile(chosen)) throw new CloisterError(`CLOISTER_BWRAP=${chosen} is not an executable file named by an absolute path`, "unset CLOISTER_BWRAP to use the system's bwrap, or set it to the absolute path of a bwrap executable");
  return chosen;
}

/** Where the system's package manager puts tools: only root writes there. */
const SYSTEM_TOOL_DIRS = ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"];

/**
 * The host's copy of a tool cloister runs (bwrap): the system's first, then absolute PATH entries;
 * an executable file, not merely a name that exists. PATH came first before, relative entries
 * included: with node_modules/.bin on it, a `bwrap` an agent wrote into the project ran on the host,
 * unconfined, at the next launch (found by QA).
 */
export function findTool(name: string, envPath = process.env.PATH ?? ""): string | undefined {
  const dirs = [...SYSTEM_TOOL_DIRS, ...envPath.split(":").filter((dir) => isAbsolute(dir))];
  return dirs.map((dir) => join(dir, name)).find(isExecutableFile);
}

/** A regular file this process may execute (not a directory, not a mere name). */
export function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
