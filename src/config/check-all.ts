import { CloisterError } from "../errors.js";
import { ConfigError, type ConfigProblem, existingDecisionFiles, formatProblem, parseConfigText, readIfExists } from "./load.js";
import type { CloisterPaths } from "./paths.js";
import { listProjects, sharedPaths } from "./project-registry.js";
import type { ConfigKind } from "./schema.js";

/**
 * Every configuration file of an instance checked whole, for `config validate` and `doctor`: a
 * command stops at the first problem of the first file, a check should show them all at once.
 */

/** A problem found in a file: located (line, column, key) when the file could be parsed that far. */
export type FileProblem = ConfigProblem | { file: string; problem: string; hint?: string };

export interface ConfigReport {
  /** Whether config.yaml exists; without it every default applies (the first command writes it). */
  globalExists: boolean;
  /** Every file checked: config.yaml if present, each project file, each decision file. */
  files: string[];
  problems: FileProblem[];
}

export async function checkAllConfig(paths: CloisterPaths): Promise<ConfigReport> {
  const report: ConfigReport = { globalExists: false, files: [], problems: [] };
  const check = async (file: string, kind: ConfigKind | "decisions"): Promise<void> => {
    try {
      const text = await readIfExists(file);
      if (text === undefined) return;
      report.files.push(file);
      parseConfigText(text, file, kind);
    } catch (error) {
      if (error instanceof ConfigError) report.problems.push(...error.problems);
      else if (error instanceof CloisterError) {
        if (!report.files.includes(file)) report.files.push(file);
        report.problems.push({ file, problem: error.message, ...(error.hint ? { hint: error.hint } : {}) });
      } else throw error;
    }
  };
  await check(paths.globalConfigFile, "global");
  report.globalExists = report.files.includes(paths.globalConfigFile);
  const projects = await listProjects(paths);
  for (const project of projects) await check(project.configFile, "project");
  for (const file of await existingDecisionFiles(paths)) await check(file, "decisions");
  for (const shared of sharedPaths(projects)) report.problems.push({ file: shared.file, problem: shared.problem });
  return report;
}

/** One line per problem, as a compiler prints them: `FILE:LINE:COL: KEY: PROBLEM (HINT)`. */
export function formatFileProblem(problem: FileProblem): string {
  const text = "line" in problem ? formatProblem(problem) : problem.problem.startsWith(problem.file) ? problem.problem : `${problem.file}: ${problem.problem}`;
  return problem.hint ? `${text} (${problem.hint})` : text;
}
