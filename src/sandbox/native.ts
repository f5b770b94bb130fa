import { existsSync } from "node:fs";
import { join } from "node:path";
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

/** First match on the host PATH of a tool cloister needs (bwrap, socat). */
export function findTool(name: string, envPath = process.env.PATH ?? ""): string | undefined {
  for (const dir of [...envPath.split(":"), "/usr/bin", "/usr/sbin"]) {
    const candidate = `${dir}/${name}`;
    if (dir && existsSync(candidate)) return candidate;
  }
  return undefined;
}
