import type { Command } from "commander";
import { runDoctor } from "../doctor/checks.js";
import { formatDoctorReport } from "../doctor/report.js";

export function registerDoctorCommand(program: Command): void {
  program
    .command("doctor")
    .description("check that this machine can run cloisters, with the exact fix for anything missing")
    .option("--json", "machine-readable output")
    .action(async (flags: { json?: boolean }) => {
      const report = await runDoctor();
      process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatDoctorReport(report, { color: Boolean(process.stdout.isTTY) }));
      if (!report.ok) process.exitCode = 1;
    });
}
