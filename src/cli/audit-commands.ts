import type { Command } from "commander";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { formatRecordLine } from "../audit/format.js";
import { keyIdOf, parsePublicKey, PUBLIC_KEY_FILE } from "../audit/signing.js";
import { LogFollower } from "../audit/tail.js";
import { describeVerifyResult, verifyAuditLog } from "../audit/verify.js";
import { resolvePaths } from "../config/paths.js";
import { CloisterError } from "../errors.js";
import { foreignInstanceError, isPermissionDenied } from "../config/foreign-instance.js";

/** Exit code of `audit verify` when the log is not intact (125 stays "cloister itself failed"). */
const NOT_INTACT = 1;

export function registerAuditCommands(program: Command): void {
  const audit = program
    .command("audit")
    .description("the guardian's signed, hash-chained record of every network decision and cloister start/stop")
    .addHelpText(
      "after",
      `
Files (see docs/audit.md): audit.jsonl (current), audit.1.jsonl … (older), signing-key.pub.pem.
Keep a copy of signing-key.pub.pem elsewhere: verifying against that copy proves the log was not
rewritten together with the key next to it.`,
    );

  audit
    .command("verify")
    .description("check signatures and the hash chain of the audit log, offline; names the first bad record")
    .argument("[file]", "a log directory or one .jsonl file (default: this instance's audit directory)")
    .option("--pubkey <file>", "PEM public key to check against (default: signing-key.pub.pem next to the log)")
    .option("--json", "print the full result as JSON")
    .addHelpText(
      "after",
      `
Exit status: 0 intact, 1 not intact (the first bad record is named), 125 could not check.

Examples:
  cloister audit verify
  cloister audit verify --pubkey ~/safe/cloister-audit.pub.pem
  cloister audit verify /backup/audit/audit.3.jsonl --json`,
    )
    .action(async (file: string | undefined, flags: { pubkey?: string; json?: boolean }) => {
      const target = file ? resolve(file) : resolvePaths().auditDir;
      const pem = flags.pubkey === undefined ? undefined : await readPublicKeyFile(flags.pubkey);
      const verified = verifyAuditLog(target, pem, flags.pubkey && `--pubkey ${resolve(flags.pubkey)}`);
      const result = await (file === undefined ? readingInstanceLog(target, verified) : verified);
      if (flags.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      else if (result.ok) process.stdout.write(`Audit log ${describeVerifyResult(result)}\n`);
      else process.stdout.write(`Audit log NOT intact: ${describeVerifyResult(result)}\n`);
      if (!result.ok) process.exitCode = NOT_INTACT;
    });

  audit
    .command("tail")
    .description("show the newest audit records, one line each")
    .option("-n, --lines <n>", "how many records", "20")
    .option("-f, --follow", "keep printing new records as they are written (across rotations) until Ctrl-C")
    .option("--json", "print the records as stored (JSONL)")
    .addHelpText(
      "after",
      `
Each line: time #seq type cloister host:port decision rule=… ↑sent ↓received duration,
then the other fields as key=value.

Examples:
  cloister audit tail
  cloister audit tail -n 100 | grep deny
  cloister audit tail -f --json | jq 'select(.decision == "denied")'`,
    )
    .action(async (flags: { lines: string; follow?: boolean; json?: boolean }) => {
      const count = Number(flags.lines);
      if (!Number.isSafeInteger(count) || count < 0) throw new CloisterError(`-n takes a whole number, not ${JSON.stringify(flags.lines)}`);
      const dir = resolvePaths().auditDir;
      const print = (line: string) => process.stdout.write(`${flags.json ? line : formatRecordLine(line)}\n`);
      const follower = await readingInstanceLog(dir, LogFollower.open(dir));
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      // `tail -f | head`: a closed pipe ends the command quietly instead of with a stack trace.
      process.stdout.on("error", onSignal);
      process.once("SIGINT", onSignal);
      process.once("SIGTERM", onSignal);
      try {
        const lines = await follower.lastLines(count);
        // -n 0 asks for none: only an empty log is worth a word.
        if (lines.length === 0 && count > 0 && !flags.follow) process.stderr.write(`No audit records in ${dir} yet.\n`);
        lines.forEach(print);
        if (flags.follow) await follower.follow(print, stop.signal, { onMissed: reportMissed });
      } finally {
        await follower.close();
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
      }
    });

  audit
    .command("key")
    .description("print the public key that verifies this instance's audit log (keep a copy elsewhere)")
    .action(async () => {
      const dir = resolvePaths().auditDir;
      const file = join(dir, PUBLIC_KEY_FILE);
      const pem = await readingInstanceLog(dir, readPublicKeyFile(file, "the guardian creates the audit key when it first starts"));
      process.stderr.write(`Key id ${keyIdOf(parsePublicKey(pem, file))} (${file})\n`);
      process.stdout.write(pem);
    });

  audit
    .command("path")
    .description("print the audit log directory")
    .action(() => {
      process.stdout.write(`${resolvePaths().auditDir}\n`);
    });
}

/** Records that the log rotated out before `tail -f` read them: said, not skipped silently. */
function reportMissed(first: number, last: number): void {
  const count = last - first + 1;
  const which = count === 1 ? `record #${first} was` : `${count} records, #${first}–#${last}, were`;
  process.stderr.write(`cloister: ${which} rotated out of the log before they could be read (raise audit.max_size or audit.keep to keep more)\n`);
}

/** A missing key is said here; any other failure (permission denied) is thrown as it came, with its path. */
async function readPublicKeyFile(path: string, missingHint?: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") throw new CloisterError(`no public key at ${path}`, missingHint);
    throw error;
  }
}

/**
 * Reading this instance's audit log (`dir`): permission denied there means another user's instance,
 * and is said so (it read as "no audit log" and "No audit records yet").
 */
function readingInstanceLog<T>(dir: string, reading: Promise<T>): Promise<T> {
  return reading.catch((error: unknown) => {
    throw isPermissionDenied(error) ? foreignInstanceError("read the audit log", dir) : error;
  });
}
