/**
 * The project registry: one file per project, `projects/<name>.yaml`, whose `path:` key says which
 * directory the name stands for. Names, not paths, identify projects so that config, state and the
 * CLI can refer to them briefly; a name is derived from the git toplevel's basename and made unique
 * with a short hash of the path when two projects share a basename.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { realpath, rm, unlink } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { promisify } from "node:util";
import { Document, isNode, parseDocument } from "yaml";
import { CloisterError, fileSystemError } from "../errors.js";
import { projectFileNames, sanitizeProjectName, suffixedProjectName } from "./names.js";
import { createFileAtomic, ensurePrivateDir, writeFileAtomic } from "./atomic-write.js";
import { ConfigError, decisionsFile, parseConfigText, parseYaml, projectConfigFile, readIfExists } from "./load.js";
import { type CloisterPaths, resolvePaths } from "./paths.js";
import { absolutePathProblem, projectSections } from "./schema.js";
import { realPath } from "../sandbox/git-dirs.js";

export interface ProjectEntry {
  name: string;
  /** The registered project directory; null when the file has no (readable) `path:` yet. */
  path: string | null;
  configFile: string;
}

export interface ProjectIdentity {
  name: string;
  /** The project root the name stands for (git toplevel, symlinks resolved). */
  path: string;
  /** Whether a project file already names this root (else the name is the one registering would write). */
  registered: boolean;
}

// ---------------------------------------------------------------------------------------------------
// Names (the sanitizing itself is in names.ts, which the run path loads without the schema)

export { sanitizeProjectName, suffixedProjectName };

/**
 * The name for the project containing `dir`: the name already registered for its root if any, else
 * the sanitized basename of the root, suffixed with a path hash if that name belongs to another path.
 */
export async function projectNameFor(dir: string, paths: CloisterPaths = resolvePaths()): Promise<ProjectIdentity> {
  return projectNameForRoot(await projectRoot(dir), paths);
}

/** Like projectNameFor, for a caller that already knows the project root (no git process). */
export async function projectNameForRoot(root: string, paths: CloisterPaths = resolvePaths()): Promise<ProjectIdentity> {
  const projects = await listProjects(paths);
  const known = projects.find((project) => project.path === root);
  if (known) return { name: known.name, path: root, registered: true };
  const isFree = (name: string): boolean => !projects.some((p) => p.name === name && p.path !== null && p.path !== root);
  const base = sanitizeProjectName(basename(root));
  if (isFree(base)) return { name: base, path: root, registered: false };
  const suffixed = suffixedProjectName(base, root);
  if (isFree(suffixed)) return { name: suffixed, path: root, registered: false };
  throw new CloisterError(
    `cannot name the project at ${root}: both "${base}" and "${suffixed}" are registered for other paths`,
    `remove one with removeProject or edit ${join(paths.projectConfigDir, `${suffixed}.yaml`)}`,
  );
}

/**
 * The project `given` stands for, as a command's `--project` takes it: a registered project's name,
 * or a directory in a registered project or in a git repository (where a cloister would run).
 * Undefined for anything else: a name made up from any other directory (/tmp's "tmp", / itself)
 * would stand for a project no cloister has.
 */
export async function knownProject(paths: CloisterPaths, given: string): Promise<string | undefined> {
  const known = new Set((await listProjects(paths)).map((p) => p.name));
  if (known.has(given)) return given;
  const project = await projectNameFor(given, paths).catch(() => undefined);
  return project && (known.has(project.name) || existsSync(join(project.path, ".git"))) ? project.name : undefined;
}

/**
 * The git toplevel of `dir`, or `dir` itself (symlinks resolved) outside a git work tree, or when git
 * is missing or refuses the repository (e.g. "dubious ownership" as another user).
 */
export async function projectRoot(dir: string): Promise<string> {
  const env = { ...process.env };
  // An inherited GIT_DIR/GIT_WORK_TREE would answer for some other repository.
  delete env.GIT_DIR;
  delete env.GIT_WORK_TREE;
  try {
    const { stdout } = await promisify(execFile)("git", ["-C", dir, "rev-parse", "--show-toplevel"], { env });
    // Only the final newline: a directory name may itself end in spaces.
    const top = stdout.replace(/\n$/, "");
    if (top) return top;
  } catch {
    // not a git work tree: fall through
  }
  try {
    return await realpath(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw fileSystemError(error) ?? error;
    throw new CloisterError(`project directory ${JSON.stringify(dir)} does not exist`, "pass an existing directory with --project");
  }
}

// ---------------------------------------------------------------------------------------------------
// Registry files

/**
 * Record `path` in `projects/<name>.yaml` if the file has no `path:` yet. An existing file is edited
 * through the yaml Document, so the user's comments and layout survive; the key is appended rather
 * than put first so it cannot come between a comment and the key that comment describes.
 * Returns true if the file was written.
 */
export async function registerProject(paths: CloisterPaths, name: string, path: string): Promise<boolean> {
  const file = projectConfigFile(paths, name);
  const pathProblem = absolutePathProblem(path);
  if (pathProblem) throw new CloisterError(`cannot register project "${name}": ${pathProblem}`);
  ensurePrivateDir(paths.configDir);
  ensurePrivateDir(paths.projectConfigDir);
  const text = await readIfExists(file);
  if (text === undefined) {
    if (await createFileAtomic(file, newProjectFile(name, path))) return true;
    // Someone created it between our read and our create: edit theirs instead. Something there that
    // reads as absent (a symlink to a missing file) would have this loop forever (found by QA).
    if ((await readIfExists(file)) === undefined) {
      throw new CloisterError(`${file} is in the way: nothing can be read there, and no file made (a symlink to a missing file?)`, `remove it (rm ${JSON.stringify(file)}), or make it a project file`);
    }
    return registerProject(paths, name, path);
  }
  const updated = withPath(text, file, name, path);
  if (updated === undefined) return false;
  parseConfigText(updated, file, "project"); // never write a file that would not load
  await writeFileAtomic(file, updated);
  return true;
}

function newProjectFile(name: string, path: string): string {
  const doc = new Document({ path });
  const otherKeys = Object.keys(projectSections).filter((key) => key !== "path");
  doc.commentBefore = ` Cloister project "${name}". path: was written by cloister; other keys: ${otherKeys.join(", ")} (\`cloister project edit ${name}\` validates on save).`;
  return doc.toString();
}

/** The file text with `path:` added, or undefined if it already holds this path. */
function withPath(text: string, file: string, name: string, path: string): string | undefined {
  const { doc, lineCounter } = parseYaml(text, file);
  const current: unknown = doc.get("path");
  if (current === path) return undefined;
  if (typeof current === "string") {
    const node = doc.getIn(["path"], true);
    const { line, col } = lineCounter.linePos(isNode(node) && node.range ? node.range[0] : 0);
    throw new ConfigError([
      {
        file,
        line,
        column: col,
        key: "path",
        problem: `project "${name}" is already registered for ${current}, not ${path}`,
        hint: "remove the project or pick another name",
      },
    ]);
  }
  doc.set("path", path);
  return doc.toString();
}

/** All registered projects, sorted by name. Unreadable or invalid files are listed with path null. */
export async function listProjects(paths: CloisterPaths): Promise<ProjectEntry[]> {
  const names = await projectFileNames(paths.projectConfigDir);
  const entries = await Promise.all(
    names.map(async (name): Promise<ProjectEntry> => {
      const configFile = join(paths.projectConfigDir, `${name}.yaml`);
      return { name, path: await registeredPath(configFile), configFile };
    }),
  );
  return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Project files that claim a directory another file claims already (a file edited or copied by
 * hand): only the first by name is used for that directory, so the others' settings never apply.
 */
export function sharedPaths(projects: readonly ProjectEntry[]): { file: string; problem: string }[] {
  const byPath = new Map<string, ProjectEntry[]>();
  for (const project of projects) if (project.path !== null) byPath.set(project.path, [...(byPath.get(project.path) ?? []), project]);
  return [...byPath.values()]
    .filter((claims) => claims.length > 1)
    .map((claims) => {
      const [used, ...ignored] = claims as [ProjectEntry, ...ProjectEntry[]];
      const files = claims.map((p) => p.configFile).join(" and ");
      return { file: used.configFile, problem: `${files} claim the same directory ${used.path}: only ${used.name} is used there (remove the rest with ${ignored.map((p) => `\`cloister project remove ${p.name}\``).join(", ")})` };
    });
}

/**
 * Forgets a project: its config file, and the decisions persisted for it (`cloister allow`, approvals),
 * which a later project of the same name would otherwise inherit (found by QA). Resolves with whether
 * there were decisions.
 */
export async function removeProject(paths: CloisterPaths, name: string): Promise<boolean> {
  const file = projectConfigFile(paths, name);
  try {
    await unlink(file);
  } catch (error) {
    if (!(error instanceof Error && "code" in error && error.code === "ENOENT")) throw error;
    const known = (await projectFileNames(paths.projectConfigDir)).join(", ");
    throw new CloisterError(`no project named "${name}"`, known ? `known projects: ${known}` : "no projects are registered");
  }
  return rm(decisionsFile(paths, "project", name)).then(
    () => true,
    (error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return false;
      throw error;
    },
  );
}

/** The `path:` of a project file, without full validation (listing must not fail on one bad file). */
async function registeredPath(file: string): Promise<string | null> {
  try {
    const text = await readIfExists(file);
    if (text === undefined) return null;
    const doc = parseDocument(text);
    const path: unknown = doc.errors.length === 0 ? doc.get("path") : undefined;
    return typeof path === "string" && absolutePathProblem(path) === undefined ? canonicalPath(path) : null;
  } catch {
    return null;
  }
}

/**
 * A registered path as a project root is spelled (git's toplevel: real, no trailing slash), so that
 * a hand-written `/repo/` or a path through a symlink still names its project: compared as written,
 * it silently did not, and a second project without the first one's rules was made (found by QA).
 */
function canonicalPath(path: string): string {
  return realPath(path) ?? resolve(path); // gone: still without "./" and trailing slashes
}
