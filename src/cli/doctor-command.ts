import type { Command } from "commander";

export function registerDoctorCommand(program: Command): void {
  program
    .command("doctor")
    .description("check that this machine can run cloisters, with the exact fix for anything missing")
    .option("--json", "machine-readable output")
    .addHelpText("after", "\nExit status: 0 when every check passed (warnings allowed), 1 when any check failed, 125 when doctor itself could not run.")
    .action(async (flags: { json?: boolean }) => {
      const [{ runDoctor }, { formatDoctorReport }] = await Promise.all([import("../doctor/checks.js"), import("../doctor/report.js")]);
      const report = await runDoctor();
      process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatDoctorReport(report, { color: Boolean(process.stdout.isTTY) }));
      if (!report.ok) process.exitCode = 1;
    });
}
