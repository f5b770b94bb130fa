import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The installed package's root (where package.json and native/ are), found by walking up from this
 * module. It holds wherever the code runs from: src/ under tsx, dist/ from tsc, or the CLI bundle,
 * each at a different depth.
 */
export const PACKAGE_ROOT: string = findPackageRoot(dirname(fileURLToPath(import.meta.url)));

function findPackageRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, "utf8")) as { name?: string }).name === "cloister") return dir;
    if (dirname(dir) === dir) throw new Error(`cannot find cloister's package.json above ${start}`);
  }
}
