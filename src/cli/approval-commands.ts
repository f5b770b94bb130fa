import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import type { Command } from "commander";
import { resolvePaths, type CloisterPaths } from "../config/paths.js";
import { CloisterError } from "../errors.js";
import { ANSWER_DEADLINE_MS, ensureGuardian, guardianCall, guardianUnanswered } from "../guardian/control-client.js";
import { SCOPES, type ApprovalEvent, type DecisionView, type Pending, type Scope, type Verdict } from "../guardian/approvals/types.js";
import { visible } from "../policy/visible.js";
import { answeredLine, describeDecision, describeEvent, describePending, undoneLine } from "./approval-text.js";

/**
 * Approvals without a browser: list what waits, answer it, watch it arrive. Everything goes through
 * the guardian's control socket (0600), the same authority the UI's login link comes from.
 */

interface AnswerFlags {
  scope?: string;
  wildcard?: boolean;
  json?: boolean;
}

export function registerApprovalCommands(program: Command): void {
  program
    .command("approvals")
    .description("list domain and host-command requests waiting for a human decision")
    .option("--json", "machine-readable output (with --watch: one JSON event per line)")
    .option("--watch", "keep running and print requests as they arrive and leave")
    .action(async (flags: { json?: boolean; watch?: boolean }) => {
      const paths = resolvePaths();
      await ensureGuardian(paths);
      if (flags.watch) return watch(paths, flags.json === true);
      const { pending, recent } = await guardianCall<{ pending: Pending[]; recent: DecisionView[] }>(paths, "GET", "/v1/approvals");
      if (flags.json) return void process.stdout.write(`${JSON.stringify({ pending, recent }, null, 2)}\n`);
      const waiting =
        pending.length === 0
          ? "No requests are waiting.\n"
          : `${pending.map(describePending).join("\n")}\n\nAnswer with \`cloister approve ID [--scope S]\` or \`cloister deny ID [--scope S]\` (an unambiguous start of the ID is enough).\n`;
      const undoable = recent.filter((decision) => decision.undoable && !decision.undone);
      const decided = undoable.length === 0 ? "" : `\nRecent decisions that can be undone (\`cloister undo ID\`):\n${undoable.map(describeDecision).join("\n")}\n`;
      process.stdout.write(waiting + decided);
    });

  program
    .command("undo")
    .description("undo a persisted (project or global) approval decision: its rule leaves the decision file")
    .argument("<id>", "the decision id from `cloister approvals` (or an unambiguous start of it)")
    .option("--json", "print the decision as JSON")
    .action(async (id: string, flags: { json?: boolean }) => {
      const paths = resolvePaths();
      await ensureGuardian(paths);
      const { recent } = await guardianCall<{ recent: DecisionView[] }>(paths, "GET", "/v1/approvals");
      const decisionId = uniquePrefixMatch(recent.map((decision) => decision.id), id, "decision");
      if (!decisionId) throw new CloisterError(`no recent decision matches ${JSON.stringify(id)}`, "see `cloister approvals` (decisions are kept until the guardian restarts; remove older rules from the decision files under decisions/)");
      const decision = await guardianCall<DecisionView>(paths, "POST", `/v1/decisions/${decisionId}/undo`);
      if (flags.json) return void process.stdout.write(`${JSON.stringify(decision, null, 2)}\n`);
      process.stderr.write(`${undoneLine(decision)}\n`);
    });

  program
    .command("approve")
    .description("allow a waiting request (see `cloister approvals`)")
    .argument("<id>", `the request id, or an unambiguous start of it (at least ${MIN_ID_PREFIX} characters)`)
    .option("--scope <scope>", `how long the answer lasts: ${SCOPES.join(", ")}`, "once")
    .option("--wildcard", "allow the offered wildcard (e.g. *.cdn.example.com) instead of the exact host")
    .option("--json", "print the decision as JSON")
    .action(async (id: string, flags: AnswerFlags) => {
      const paths = resolvePaths();
      await ensureGuardian(paths);
      const requestId = await resolveRequestId(paths, id);
      if (!requestId) throw new CloisterError(`no waiting request matches ${JSON.stringify(id)}`, "see `cloister approvals`");
      await answer(paths, requestId, "allow", flags);
    });

  program
    .command("ui")
    .description("print a login link to the approval UI (valid once, for 2 minutes)")
    .option("--open", "open the link in the desktop's browser (xdg-open)")
    .option("--token", "print the UI's API token for scripts instead (Authorization: Bearer TOKEN)")
    .option("--json", "print {url, loginUrl, token} as JSON")
    .action(async (flags: { open?: boolean; token?: boolean; json?: boolean }) => {
      const paths = resolvePaths();
      await ensureGuardian(paths);
      const ui = await guardianCall<{ url: string; loginUrl: string; token: string }>(paths, "GET", "/v1/ui");
      if (flags.json) return void process.stdout.write(`${JSON.stringify(ui, null, 2)}\n`);
      if (flags.token) return void process.stdout.write(`${ui.token}\n`);
      process.stdout.write(`${ui.loginUrl}\n`);
      if (flags.open) spawn("xdg-open", [ui.loginUrl], { stdio: "ignore", detached: true }).on("error", () => process.stderr.write("cloister: xdg-open is not available; open the link above yourself\n")).unref();
    });
}

/**
 * `cloister deny ID`: when the argument names a waiting request, it is answered; otherwise the
 * caller treats it as a rule (`cloister deny example.com`). Returns whether it was a request.
 */
export async function denyIfRequest(idOrRule: string, flags: AnswerFlags): Promise<boolean> {
  const paths = resolvePaths();
  await ensureGuardian(paths);
  const requestId = await resolveRequestId(paths, idOrRule);
  if (!requestId) {
    // A request's id that is no longer waiting (answered, timed out) would otherwise be written as a
    // deny rule for a host of that name.
    if (flags.scope !== undefined || flags.wildcard || looksLikeRequestId(idOrRule)) throw await noLongerWaiting(paths, idOrRule, flags);
    return false;
  }
  await answer(paths, requestId, "deny", flags);
  return true;
}

/**
 * Why `cloister deny WORD` denies no request, and what to do instead. A request answered already
 * is named with its decision; a full id is nothing but an id; a shorter word may be a host (`facade`),
 * written with a trailing dot to say so, which still means every port (QA: the hint gave
 * `facade:443`, a rule for port 443 only, and offered it for a full id too).
 */
async function noLongerWaiting(paths: CloisterPaths, given: string, flags: AnswerFlags): Promise<CloisterError> {
  const { recent } = await guardianCall<{ recent: DecisionView[] }>(paths, "GET", "/v1/approvals");
  const decided = looksLikeRequestId(given) ? recent.find((decision) => decision.requestId.startsWith(given)) : undefined;
  if (decided) {
    const undo = decided.undoable && !decided.undone ? `; \`cloister undo ${decided.id}\` takes its rule back` : "";
    return new CloisterError(`the request ${decided.requestId} was answered already: ${decided.verdict === "allow" ? "allowed" : "denied"} (scope ${decided.scope}) by ${visible(decided.by)} at ${decided.at}`, `see \`cloister approvals\`${undo}`);
  }
  const problem = `no waiting request matches ${JSON.stringify(given)} (answered, timed out or withdrawn already)`;
  if (given.length === FULL_ID_LENGTH) return new CloisterError(problem, "see `cloister approvals` for what waits and the recent decisions (`cloister undo ID` takes a project or global one back)");
  const withoutScope = "without --scope (--project or --global say where)";
  if (!ID_START.test(given)) return new CloisterError(problem, `--scope answers a request; to deny the host ${given} instead, give it ${withoutScope}`);
  const without = flags.scope === undefined ? "" : ` and ${withoutScope}`;
  return new CloisterError(problem, `see \`cloister approvals\`; to deny the host ${given} on every port instead, write it with a trailing dot${without}: \`cloister deny ${given}.\``);
}

async function answer(paths: CloisterPaths, requestId: string, verdict: Verdict, flags: AnswerFlags): Promise<void> {
  const scope = (flags.scope ?? "once") as Scope;
  if (!SCOPES.includes(scope)) throw new CloisterError(`--scope must be one of ${SCOPES.join(", ")}`);
  const decision = await guardianCall<DecisionView>(paths, "POST", `/v1/approvals/${requestId}/answer`, { verdict, scope, wildcard: flags.wildcard === true });
  if (flags.json) return void process.stdout.write(`${JSON.stringify(decision, null, 2)}\n`);
  process.stderr.write(`${answeredLine(decision)}\n`);
}

/** The fewest characters of an id that name it: fewer would too often fit more than one by chance. */
const MIN_ID_PREFIX = 6;

/** Request and decision ids: 128 random bits in hex. */
const FULL_ID_LENGTH = 32;

/** Spelled like an id (32 hex characters) or a start of one, however short. */
const ID_START = /^[0-9a-f]{1,32}$/;

/** Spelled like a request's id or a start of one long enough to name it. */
function looksLikeRequestId(text: string): boolean {
  return ID_START.test(text) && text.length >= MIN_ID_PREFIX;
}

/**
 * A full id, or the one waiting request whose id starts with `given` (at least 6 hex characters).
 * Fewer hex characters are looked up too, only to say they are too few when they start an id.
 */
async function resolveRequestId(paths: CloisterPaths, given: string): Promise<string | undefined> {
  if (!ID_START.test(given)) return undefined;
  const { pending } = await guardianCall<{ pending: Pending[] }>(paths, "GET", "/v1/approvals");
  return uniquePrefixMatch(pending.map((request) => request.id), given, "request");
}

function uniquePrefixMatch(ids: readonly string[], given: string, what: string): string | undefined {
  if (!ID_START.test(given)) return undefined;
  const matches = ids.filter((id) => id.startsWith(given));
  if (given.length < MIN_ID_PREFIX) {
    if (matches.length === 0) return undefined;
    const [only] = matches;
    const which = matches.length === 1 ? `the ${what} ${only}` : `${matches.length} ${what} ids`;
    const example = only && matches.length === 1 ? `, e.g. ${only.slice(0, MIN_ID_PREFIX)}` : " (see `cloister approvals`)";
    throw new CloisterError(`${JSON.stringify(given)} is too short to name a ${what}: it starts ${which}, but an id needs at least ${MIN_ID_PREFIX} characters`, `give ${MIN_ID_PREFIX} or more characters of the id${example}`);
  }
  if (matches.length > 1) throw new CloisterError(`${JSON.stringify(given)} starts ${matches.length} ${what} ids`, "give more characters of the id");
  return matches[0];
}

/**
 * Streams the guardian's approval events until interrupted (or the guardian stops). node:http is
 * loaded here, for this one command, rather than by every CLI start (see control-wire.ts); through
 * require because the bundled CLI runs as a script, which has no loader for import().
 */
function watch(paths: CloisterPaths, json: boolean): Promise<void> {
  const { request: httpRequest } = createRequire(import.meta.url)("node:http") as typeof import("node:http");
  return new Promise((resolve, reject) => {
    // The stream has no deadline: requests come whenever a cloister asks. Its start does: the guardian
    // answers with its snapshot at once, unless it is stopped or hung.
    const deadline = setTimeout(() => req.destroy(guardianUnanswered(paths, ANSWER_DEADLINE_MS)), ANSWER_DEADLINE_MS);
    const req = httpRequest({ socketPath: paths.guardianSocket, method: "GET", path: "/v1/approvals/events" }, (res) => {
      clearTimeout(deadline);
      let buffered = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        buffered += chunk;
        let newline: number;
        while ((newline = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          if (json) process.stdout.write(`${line}\n`);
          else {
            const text = describeEvent(JSON.parse(line) as ApprovalEvent);
            if (text) process.stdout.write(`${text}\n`);
          }
        }
      });
      res.on("end", () => reject(new CloisterError("the guardian stopped")));
    });
    req.on("error", (error) => {
      clearTimeout(deadline);
      reject(error);
    });
    process.once("SIGINT", () => {
      clearTimeout(deadline);
      req.destroy();
      resolve();
    });
    req.end();
  });
}
