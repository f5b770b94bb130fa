/**
 * The end of placeholders no cloister of this instance needs any more. They are removed at once,
 * unless a cloister of the project that another instance (or user) runs is marked (project-marks.ts):
 * its mounts may sit on them, and removing one would lift that mount inside it. Then they are
 * deferred: listed in this instance's state dir, and removed by its guardian once no other
 * instance's cloister of the project runs (reconcile, every 2 s), if no cloister of this instance
 * needs them by then.
 */
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { CloisterPaths } from "../config/paths.js";
import { ensurePrivateDir, replaceFileSync } from "../config/atomic-write.js";
import { markedCloisters, projectKey } from "./project-marks.js";
import { removePlaceholders } from "./protected-paths.js";
import { listRecords, type CloisterRecord } from "./records.js";
import { withRecordsLock } from "./records-lock.js";

interface Deferred {
  projectRoot: string;
  placeholders: string[];
}

/** The project's key, or undefined once the project (or its git dir) is gone: then so are its placeholders. */
export function projectKeyIfThere(projectRoot: string): string | undefined {
  try {
    return projectKey(projectRoot);
  } catch {
    return undefined;
  }
}

/** The placeholders of the project at `projectRoot` that `records` (this instance's) list. */
export function placeholdersListed(records: readonly CloisterRecord[], projectRoot: string): Set<string> {
  return new Set(records.flatMap((r) => (r.projectRoot === projectRoot ? r.placeholders : [])));
}

/**
 * Removes or defers `placeholders` of the project at `projectRoot`, which the cloister `id` listed and
 * none of `others` (this instance's other records) does. Call it holding the records lock with the
 * project's lock (`key`).
 */
export function releasePlaceholders(paths: CloisterPaths, key: string | undefined, projectRoot: string, placeholders: string[], id: string, others: readonly CloisterRecord[]): void {
  if (placeholders.length === 0) return;
  if (key !== undefined && markedElsewhere(key, [id, ...others.map((r) => r.id)])) {
    const dir = deferredDir(paths);
    ensurePrivateDir(dir);
    replaceFileSync(join(dir, `${id}.json`), JSON.stringify({ projectRoot, placeholders } satisfies Deferred));
    return;
  }
  removePlaceholders(projectRoot, placeholders);
}

/** Removes the deferred placeholders whose project no other instance's cloister uses any more. */
export async function removeDeferredPlaceholders(paths: CloisterPaths): Promise<void> {
  let files: string[];
  try {
    files = readdirSync(deferredDir(paths)).filter((name) => name.endsWith(".json"));
  } catch {
    return; // none deferred yet
  }
  for (const name of files) {
    const file = join(deferredDir(paths), name);
    const deferred = readDeferred(file);
    const key = deferred && projectKeyIfThere(deferred.projectRoot);
    if (!deferred || key === undefined) {
      rmSync(file, { force: true });
      continue;
    }
    await withRecordsLock(paths, () => {
      const records = listRecords(paths);
      if (markedElsewhere(key, records.map((r) => r.id))) return; // still in use: next time
      const needed = placeholdersListed(records, deferred.projectRoot);
      removePlaceholders(deferred.projectRoot, deferred.placeholders.filter((relPath) => !needed.has(relPath)));
      rmSync(file, { force: true });
    }, key);
  }
}

/** True when a cloister of the project is marked whose id is not among `own` (this instance's). */
function markedElsewhere(key: string, own: readonly string[]): boolean {
  return [...markedCloisters(key)].some((marked) => !own.includes(marked));
}

function deferredDir(paths: CloisterPaths): string {
  return join(paths.stateDir, "deferred-placeholders");
}

function readDeferred(file: string): Deferred | undefined {
  try {
    const value = JSON.parse(readFileSync(file, "utf8")) as Partial<Deferred>;
    if (typeof value.projectRoot === "string" && Array.isArray(value.placeholders) && value.placeholders.every((p) => typeof p === "string")) {
      return { projectRoot: value.projectRoot, placeholders: value.placeholders };
    }
  } catch {
    // Torn or gone: nothing to act on.
  }
  return undefined;
}
