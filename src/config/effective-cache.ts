import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { writeFileAtomic } from "./atomic-write.js";
import type { CloisterPaths } from "./paths.js";
import type { EffectiveConfig } from "./schema.js";

export interface ResolvedProject {
  /** The project's name: the registered one, or the one registering it would write. */
  project: string;
  /** Whether a project file named this root when it was resolved (the cache's key covers that directory). */
  registered: boolean;
  config: EffectiveConfig;
}

interface CacheFile {
  key: string;
  projects: Record<string, ResolvedProject>;
}

/**
 * The project name and effective configuration for a project root, from a cache of what the last
 * full load validated. The cache is keyed by the identity (inode, size, mtime) of every config file,
 * of the projects directory and of cloister's own code, so any edit, new file, rename or upgrade is a miss. On a hit, `cloister run`
 * never loads the YAML parser and the schema library, which cost more start-up time than the sandbox.
 * It registers nothing: only a launch does (registerResolved), so that a command that reads, or
 * fails, leaves no project behind (QA).
 */
export async function resolveProject(paths: CloisterPaths, root: string): Promise<ResolvedProject> {
  const cache = await currentCache(paths);
  const hit = cache?.projects[root];
  if (hit) return hit;

  const [{ loadEffectiveConfig }, { projectNameForRoot }] = await Promise.all([import("./load.js"), import("./project-registry.js")]);
  const { name: project, registered } = await projectNameForRoot(root, paths);
  const resolved = { project, registered, config: await loadEffectiveConfig(paths, project) };
  // Keyed after loading: creating the default config changed the files.
  const key = await fingerprint(paths);
  const projects = cache?.key === key ? cache.projects : {};
  await writeFileAtomic(cacheFile(paths), JSON.stringify({ key, projects: { ...projects, [root]: resolved } }), 0o600, false).catch(() => undefined);
  return resolved;
}

/**
 * The project name resolveProject gives for a root, without its configuration: `stop` and `exec`
 * need only the name, and a config file with problems must not lock anyone out of their cloister (QA).
 * From the cache when it holds the root (no YAML loaded), else from the registry, which reads no more
 * of each project file than its `path:`.
 */
export async function resolveProjectName(paths: CloisterPaths, root: string): Promise<string> {
  const hit = (await currentCache(paths))?.projects[root];
  if (hit) return hit.project;
  const { projectNameForRoot } = await import("./project-registry.js");
  return (await projectNameForRoot(root, paths)).name;
}

/**
 * Records a resolved project in the registry (its file's `path:`), so that its name stays its own.
 * A launch calls it once its options are checked; one already registered costs nothing (no YAML).
 */
export async function registerResolved(paths: CloisterPaths, resolved: ResolvedProject & { root: string }): Promise<void> {
  if (resolved.registered) return;
  const { registerProject } = await import("./project-registry.js");
  await registerProject(paths, resolved.project, resolved.root);
}

async function fingerprint(paths: CloisterPaths): Promise<string> {
  // This very file stands for the code that wrote the cache: after an upgrade (or a rebuild) the
  // schema may have new sections, and an old entry would lack them.
  const files = [fileURLToPath(import.meta.url), paths.globalConfigFile, paths.projectConfigDir];
  try {
    files.push(...(await readdir(paths.projectConfigDir)).map((f) => join(paths.projectConfigDir, f)));
  } catch {
    // No project files yet.
  }
  const ids = await Promise.all(
    files.map(async (file) => {
      try {
        const s = await stat(file);
        return `${file}:${s.ino}:${s.size}:${s.mtimeMs}`;
      } catch {
        return `${file}:-`;
      }
    }),
  );
  return ids.join("|");
}

function cacheFile(paths: CloisterPaths): string {
  return join(paths.stateDir, "config-cache.json");
}

/** The cache, if it was written for the config files as they are now. */
async function currentCache(paths: CloisterPaths): Promise<CacheFile | undefined> {
  let cache: CacheFile;
  try {
    cache = JSON.parse(await readFile(cacheFile(paths), "utf8")) as CacheFile;
  } catch {
    return undefined;
  }
  return cache.key === (await fingerprint(paths)) ? cache : undefined;
}
