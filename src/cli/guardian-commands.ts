import type { Command } from "commander";
import { resolvePaths } from "../config/paths.js";
import { problemLine, problemsIn } from "../config/config-error.js";
import { guardianCall, guardianStatus, startGuardian, STOP_DEADLINE_MS, type GuardianStatus } from "../guardian/control-client.js";
import { isKeeperAlive, listRecords } from "../sandbox/records.js";

export function registerGuardianCommands(program: Command): void {
  const guardian = program.command("guardian").description("the per-user host daemon that tracks cloisters and owns their network");

  guardian
    .command("start")
    .description("start the guardian (run and start do this automatically)")
    .action(async () => {
      const status = await startGuardian(resolvePaths());
      process.stderr.write(`Guardian running (pid ${status.pid}).\n`);
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
    .description("show whether the guardian runs, and what it tracks (exit 0: running, 1: running with an invalid policy, 3: not running; the same with --json)")
    .option("--json", "machine-readable output")
    .action(async (flags: { json?: boolean }) => {
      const status = await guardianStatus(resolvePaths());
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(status ? { running: true, ...status } : { running: false }, null, 2)}\n`);
        process.exitCode = !status ? 3 : status.policyError ? 1 : 0;
        return;
      }
      if (!status) {
        process.stdout.write("Guardian: not running\n");
        process.exitCode = 3;
        return;
      }
      process.stdout.write(
        [
          `Guardian: running (pid ${status.pid}, version ${status.version}, since ${status.startedAt})`,
          `Cloisters: ${status.cloisters}`,
          ...policyLines(status),
          `Open proxy connections: ${status.openConnections}`,
          `Proxy ports taken over: ${status.directListeners} (their connections skip the cloister's bridge)`,
          `Waiting for approval: ${status.pendingApprovals} (see \`cloister approvals\`)`,
          `Approval UI: ${status.ui ? `${status.ui} (log in with the link \`cloister ui\` prints)` : `not served: ${status.uiError ?? "unknown reason"}`}`,
          `Audit log: ${status.auditDir}`,
          `Control socket: ${status.controlSocket}`,
        ].join("\n") + "\n",
      );
      if (status.policyError) process.exitCode = 1;
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

/**
 * The "Egress policy" line; when the configuration does not load, one line for each of its problems
 * under it (QA: it named the first, so the others showed one reload at a time).
 */
function policyLines(status: GuardianStatus): string[] {
  const { policyError, policyProblems } = status;
  if (!policyError) return ["Egress policy: loaded"];
  const invalid = "Egress policy: INVALID, all egress refused:";
  const fix = "then `cloister guardian reload`";
  if (!policyProblems || policyProblems.length === 1) return [`${invalid} ${policyError} (fix it, ${fix})`];
  return [`${invalid} ${problemsIn(policyProblems)} (fix each, ${fix}):`, ...policyProblems.map((problem) => `  ${problemLine(problem)}`)];
}
