import type { Command } from "commander";
import { resolvePaths } from "../config/paths.js";
import { problemLine, problemsIn, type ConfigProblem } from "../config/config-error.js";
import { guardianCall, guardianStatus, startGuardian, STOP_DEADLINE_MS, type GuardianStatus } from "../guardian/control-client.js";
import { isKeeperAlive, listRecords } from "../sandbox/records.js";

export function registerGuardianCommands(program: Command): void {
  const guardian = program.command("guardian").description("the per-user host daemon that tracks cloisters and owns their network");

  guardian
    .command("start")
    .description(`start the guardian (run and start do this automatically); it says when its egress policy is not the configuration's (${EXIT_CODES})`)
    .action(async () => {
      const status = await startGuardian(resolvePaths());
      // A guardian running without the configuration's policy is not what the user asked for:
      // said here, not only by `guardian status` (QA: "Guardian running", exit 0, all egress refused).
      const policy = policyState(status);
      process.stderr.write(`Guardian running (pid ${status.pid}).\n${policy.exitCode === 0 ? "" : `${policy.lines.join("\n")}\n`}`);
      process.exitCode = policy.exitCode;
    });

  guardian
    .command("stop")
    .description("stop every cloister of this instance, then the guardian")
    .action(async () => {
      const paths = resolvePaths();
      if (!(await guardianStatus(paths))) {
        // Cloisters outlive a guardian that crashed: one is started to adopt them, and stops them with itself.
        if (!listRecords(paths).some(isKeeperAlive)) return void process.stderr.write("Guardian is not running.\n");
        await startGuardian(paths);
      }
      const { stopped } = await guardianCall<{ stopped: string[] }>(paths, "POST", "/v1/shutdown", undefined, { deadlineMs: STOP_DEADLINE_MS });
      for (let i = 0; i < 200 && (await guardianStatus(paths)); i++) await new Promise((r) => setTimeout(r, 25));
      process.stderr.write(`Stopped ${stopped.length} cloister(s) and the guardian.\n`);
    });

  guardian
    .command("status")
    .description(`show whether the guardian runs, and what it tracks (${EXIT_CODES}; 3: not running; the same with --json)`)
    .option("--json", "machine-readable output")
    .action(async (flags: { json?: boolean }) => {
      const paths = resolvePaths();
      const status = await guardianStatus(paths);
      if (!status) {
        process.exitCode = NOT_RUNNING;
        // Their keepers run on, but their proxy port leads nowhere until a guardian adopts them.
        const cutOff = listRecords(paths).filter((record) => record.network && isKeeperAlive(record)).map((record) => record.name);
        if (flags.json) return void process.stdout.write(`${JSON.stringify({ running: false, cloistersWithoutNetwork: cutOff }, null, 2)}\n`);
        const without = cutOff.length === 0 ? "" : `\n${cutOff.length} cloister(s) run without it, with no network until it runs again: ${cutOff.join(", ")} (start it: \`cloister guardian start\`)`;
        return void process.stdout.write(`Guardian: not running${without}\n`);
      }
      const policy = policyState(status);
      process.exitCode = policy.exitCode;
      if (flags.json) return void process.stdout.write(`${JSON.stringify({ running: true, ...status }, null, 2)}\n`);
      process.stdout.write(
        [
          `Guardian: running (pid ${status.pid}, version ${status.version}, since ${status.startedAt})`,
          `Cloisters: ${status.cloisters}`,
          ...policy.lines,
          `Open proxy connections: ${status.openConnections}`,
          `Proxy ports taken over: ${status.directListeners} (their connections skip the cloister's bridge)`,
          `Waiting for approval: ${status.pendingApprovals} (see \`cloister approvals\`)`,
          `Approval UI: ${status.ui ? `${status.ui} (log in with the link \`cloister ui\` prints)` : `not served: ${status.uiError ?? "unknown reason"}`}`,
          `Audit log: ${status.auditDir}`,
          `Control socket: ${status.controlSocket}`,
        ].join("\n") + "\n",
      );
    });

  guardian
    .command("reload")
    .description("re-read every config and decision file (also: SIGHUP); live tunnels are kept, a bad file keeps the old policy")
    .action(async () => {
      const paths = resolvePaths();
      // Nothing to reload (QA: it said connect ENOENT): a guardian reads everything when it starts.
      if (!(await guardianStatus(paths))) return void process.stderr.write("The guardian is not running; it reads the configuration when it starts (with the next cloister command).\n");
      const { uiWarning } = await guardianCall<{ uiWarning: string | null }>(paths, "POST", "/v1/reload");
      process.stderr.write(`Guardian configuration reloaded.${uiWarning ? `\nWarning: ${uiWarning}.` : ""}\n`);
    });
}

/** The exit codes of a running guardian's `status` and `start`, as their help gives them. */
const EXIT_CODES = "exit 0: running with the configuration's policy; 1: running with none, as the configuration does not load (all egress refused); 2: running with the last policy that loaded, as the files no longer load";
const NOT_RUNNING = 3;

/**
 * The "Egress policy" line and the exit code of a running guardian. When the configuration does
 * not load, a line for each of its problems (QA: it named the first, so the others showed one
 * reload at a time); when it no longer loads but the policy loaded before stays in force, the same
 * (QA: "loaded", exit 0, after a reload had failed).
 */
function policyState(status: GuardianStatus): { lines: string[]; exitCode: 0 | 1 | 2 } {
  if (status.policyError) return { lines: problemLines("Egress policy: INVALID, all egress refused:", status.policyError, status.policyProblems), exitCode: 1 };
  const loaded = `Egress policy: loaded${status.policyLoadedAt ? ` at ${status.policyLoadedAt}` : ""}`;
  if (!status.reloadError) return { lines: [loaded], exitCode: 0 };
  return { lines: problemLines(`${loaded}, still in force, but the configuration files no longer load (a reload failed):`, status.reloadError, status.reloadProblems), exitCode: 2 };
}

/** A heading with the problems of a configuration that does not load: on its line when one, else a line each. */
function problemLines(heading: string, summary: string, problems: ConfigProblem[] | null): string[] {
  const fix = "then `cloister guardian reload`";
  if (!problems || problems.length === 1) return [`${heading} ${summary} (fix it, ${fix})`];
  return [`${heading} ${problemsIn(problems)} (fix each, ${fix}):`, ...problems.map((problem) => `  ${problemLine(problem)}`)];
}
