import { homedir } from "node:os";
import type { AuditEvent } from "../audit/log.js";
import type { CloisterPaths } from "../config/paths.js";
import { HostexecSchema, type HostexecConfig } from "../config/hostexec-schema.js";
import {
  canonicalQuote,
  CommandRequestError,
  evaluateCommand,
  exactCommandRule,
  hazardText,
  ruleText,
  type CommandDecision,
} from "../policy/commands.js";
import { currentBranch } from "./approvals/branch.js";
import type { CommandQuestion, Outcome } from "./approvals/queue.js";
import type { DecisionView, PendingCommand, Scope, Verdict } from "./approvals/types.js";
import type { EgressCloister } from "./egress.js";
import { MAX_ARRIVING, MAX_RUNNING, type CommandRuling, type HostexecPort } from "./hostexec/session.js";
import { changeDecisions, recordCommandDecision, removeCommandDecision, type PolicyStore } from "./policy-store.js";
import type { SessionDecisionStore } from "./session-decisions.js";

const RATE_WINDOW_MS = 60_000;
const FALLBACK_SETTINGS: HostexecConfig = HostexecSchema.parse(undefined);

interface CommandSession {
  id: string;
  allow: string[][];
  deny: string[][];
  /** Request times in the last minute (the rate limit). */
  recent: number[];
  /** Its hostexec connections whose request is still arriving (see MAX_ARRIVING). */
  arriving: number;
  /** Its host commands running now (see MAX_RUNNING). */
  running: number;
}

/**
 * A place among a cloister's arriving requests or running commands, or undefined when all `max` are
 * taken; the release is idempotent (a request, then its close).
 */
function admit(session: CommandSession, counter: "arriving" | "running", max: number): (() => void) | undefined {
  if (session[counter] >= max) return undefined;
  session[counter]++;
  let held = true;
  return () => {
    if (held) session[counter]--;
    held = false;
  };
}

export type AskCommand = (question: CommandQuestion, timeoutMs: number, signal: AbortSignal) => { request: PendingCommand | null; outcome: Promise<Outcome> };

/**
 * The guardian's host command side for every cloister: rules on an argv (answers remembered for the
 * session, then answers persisted in decision files, then the config's rules; no match = deny), a
 * per-cloister rate limit, and keeping or revoking a human's answer. The protocol itself is
 * hostexec/session.ts; this decides, it never runs anything.
 */
export class HostCommands {
  private readonly sessions = new Map<string, CommandSession>();

  constructor(
    private readonly paths: CloisterPaths,
    private readonly store: () => PolicyStore | undefined,
    private readonly reload: () => Promise<void>,
    private readonly sessionDecisions: SessionDecisionStore,
    private readonly askHuman: AskCommand,
    private readonly audit: (event: AuditEvent) => void,
  ) {}

  /** What a cloister's hostexec connections talk to; loads its remembered answers. */
  port(cloister: EgressCloister): HostexecPort {
    const remembered = this.sessionDecisions.load(cloister.id).commands;
    const session: CommandSession = { id: cloister.id, allow: remembered.allow, deny: remembered.deny, recent: [], arriving: 0, running: 0 };
    this.sessions.set(cloister.name, session);
    const settings = () => {
      const hostexec = this.hostexecSettings;
      return { timeoutMs: hostexec.timeout, approvalTimeoutMs: hostexec.approval_timeout, maxOutputBytes: hostexec.max_output };
    };
    return {
      cloister: cloister.name,
      project: cloister.project,
      projectRoot: cloister.projectRoot,
      home: homedir(),
      branch: () => currentBranch(cloister.projectRoot),
      settings,
      takeRateToken: () => this.takeRateToken(session),
      admitArrival: () => admit(session, "arriving", MAX_ARRIVING),
      admitRunning: () => admit(session, "running", MAX_RUNNING),
      rule: (argv) => this.rule(cloister.project, session, argv),
      ask: (question, timeoutMs, signal) => this.askHuman(question, timeoutMs, signal),
      audit: (event) => this.audit({ ...event, cloister: cloister.name, project: cloister.project }),
    };
  }

  /** The cloister stopped (or the guardian is exiting): drop its in-memory state. */
  close(name: string): void {
    this.sessions.delete(name);
  }

  async keepAnswer(request: PendingCommand, verdict: Verdict, scope: Scope): Promise<string | null> {
    if (scope === "once") return null;
    if (scope === "session") {
      const session = this.sessions.get(request.cloister);
      if (!session) throw new Error(`cloister ${request.cloister} is gone`);
      await this.sessionDecisions.update(session.id, (remembered) => void remembered.commands[verdict].push([...request.argv]));
      session[verdict].push([...request.argv]);
      return canonicalQuote(request.argv);
    }
    const entry = exactCommandRule(verdict, request.argv);
    await changeDecisions(this.reload, () => recordCommandDecision(this.paths, scope, scope === "project" ? request.project : undefined, entry));
    return ruleText(entry);
  }

  /** What the rules now say of a held command (a rule added while it waited): a verdict, or undefined while they still ask. */
  recheck(request: PendingCommand): Verdict | undefined {
    const session = this.sessions.get(request.cloister);
    if (!session) return undefined;
    const { verdict } = this.rule(request.project, session, request.argv);
    return verdict === "ask" ? undefined : verdict;
  }

  async revokeAnswer(decision: DecisionView): Promise<void> {
    const { scope, rule } = decision;
    if (!rule || (scope !== "project" && scope !== "global")) return;
    await changeDecisions(this.reload, () => removeCommandDecision(this.paths, scope, scope === "project" ? decision.project : undefined, rule));
  }

  /** The config's limits, or the defaults while the config is invalid (every command is refused then anyway). */
  private get hostexecSettings(): HostexecConfig {
    return this.store()?.hostexec ?? FALLBACK_SETTINGS;
  }

  private takeRateToken(session: CommandSession): boolean {
    const now = Date.now();
    session.recent = session.recent.filter((at) => now - at < RATE_WINDOW_MS);
    if (session.recent.length >= this.hostexecSettings.rate_limit) return false;
    session.recent.push(now);
    return true;
  }

  private rule(project: string, session: CommandSession, argv: readonly string[]): CommandRuling {
    const same = (remembered: string[]) => remembered.length === argv.length && remembered.every((arg, i) => arg === argv[i]);
    if (session.deny.some(same)) return { verdict: "deny", rule: canonicalQuote(argv), reason: "a human denied this exact command for this session" };
    if (session.allow.some(same)) return { verdict: "allow", rule: canonicalQuote(argv), reason: "a human allowed this exact command for this session" };
    const store = this.store();
    if (!store) return { verdict: "deny", rule: null, reason: "the guardian's configuration is invalid, so every host command is refused; see `cloister guardian status`" };
    try {
      const rules = store.commandRules(project);
      const decided = evaluateCommand(rules.decided, argv);
      const decision = decided.rule ? decided : evaluateCommand(rules.configured, argv);
      return { verdict: decision.verdict, rule: decision.rule?.text ?? null, reason: refusalReason(decision, argv) };
    } catch (error) {
      if (error instanceof CommandRequestError) return { verdict: "deny", rule: null, reason: error.message };
      return { verdict: "deny", rule: null, reason: `the guardian cannot apply this project's rules (${(error as Error).message})` };
    }
  }
}

/** Why a command is refused, and the rule that would allow it, for the agent to relay to its user. */
function refusalReason(decision: CommandDecision, argv: readonly string[]): string {
  if (decision.verdict !== "deny") return "";
  if (decision.rule) return `the ${decision.rule.tier} hostexec rule ${decision.rule.text} refuses it`;
  const suggestion = `- ask: ${flowList(argv)}`;
  if (decision.skipped) {
    return `the allow rule ${decision.skipped.rule.text} would match, but ${hazardText(decision.skipped.hazard)}; an allow rule must name it literally. To let a human decide instead, add to hostexec.rules in the config: ${suggestion}`;
  }
  return `no hostexec rule matches it, and what no rule matches is refused. To have a human decide each time, add to hostexec.rules in the cloister config (\`cloister config edit\`): ${suggestion}`;
}

/** A YAML flow list of the argv, each argument quoted as JSON (valid YAML), "*"/"**" spelled literally. */
function flowList(argv: readonly string[]): string {
  return `[${argv.map((arg) => (arg === "*" || arg === "**" ? `{one_of: [${JSON.stringify(arg)}]}` : JSON.stringify(arg))).join(", ")}]`;
}
