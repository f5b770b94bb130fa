import type { AuditEvent, AuditLog } from "../audit/log.js";
import { ConfigError, type ConfigProblem } from "../config/config-error.js";
import type { CloisterPaths } from "../config/paths.js";
import { ProxySchema, type ProxySettings, type RuleEntry } from "../config/schema.js";
import { decide, type RuleSet } from "../policy/egress.js";
import { approvalRule, offeredWildcard } from "../policy/approval-rules.js";
import { canonicalHost, type Host } from "../policy/hosts.js";
import { parseRule, type EgressRule } from "../policy/rules.js";
import type { SessionRules } from "../sandbox/records.js";
import { currentBranch } from "./approvals/branch.js";
import type { Outcome } from "./approvals/queue.js";
import type { DecisionView, PendingDomain, Scope, Verdict } from "./approvals/types.js";
import { changeDecisions, PolicyStore, recordDecision, removeDecision, sessionRuleSet, type DecisionScope, type RuleList } from "./policy-store.js";
import { EgressContext, type CloisterCredentials } from "./proxy/context.js";
import type { Socket } from "node:net";
import { serveHostexec, type HostexecPort } from "./hostexec/session.js";
import type { SessionDecisionStore } from "./session-decisions.js";
import { SerialQueue } from "../serial-queue.js";
import { EgressEndpoint } from "./proxy/endpoint.js";
import { HttpProxyServers } from "./proxy/http.js";
import { overrideMap, type JudgeInput } from "./proxy/judge.js";
import { HostResolver } from "./proxy/host-resolver.js";

interface Session {
  id: string;
  project: string;
  projectRoot: string;
  /** `--allow`/`--deny` from the command line and the answers given "for this session". */
  rules: RuleSet;
  overrides: Record<string, string>;
  /** Its own memory of the host's DNS answers (not shared: one cloister cannot time another's lookups). */
  resolver: HostResolver;
  /** What `judge` needs, built once per policy generation rather than on every request. */
  cached?: { store: PolicyStore; input: JudgeInput };
}

/** A cloister whose egress endpoint is opened. */
export interface EgressCloister {
  name: string;
  /** Random per launch: keys the cloister's remembered answers. */
  id: string;
  project: string;
  projectRoot: string;
  token: string;
  socketDir: string;
  session: SessionRules | undefined;
}

/** Puts a question about an unlisted destination to a human (the approval queue). */
export type AskDomain = (question: Omit<PendingDomain, "id" | "kind" | "createdAt" | "expiresAt" | "waiting">, timeoutMs: number, signal: AbortSignal) => Promise<Outcome>;

export interface EgressDeps {
  audit: AuditLog;
  /** Answers given "for this session", kept across guardian restarts. */
  sessionDecisions: SessionDecisionStore;
  askDomain: AskDomain;
  /** Serves hostexec on each cloister's endpoint; without it hostexec connections are closed. */
  hostexecPort?: (cloister: EgressCloister) => HostexecPort;
  /** The credential broker's view of a cloister (by id); without it nothing is intercepted. */
  credentials?: (cloisterId: string) => CloisterCredentials;
}

export interface LoadedPolicy {
  store?: PolicyStore;
  error?: Error;
}

/** The policy at guardian start; an invalid config is kept as the reason to refuse all egress. */
export async function loadPolicy(paths: CloisterPaths): Promise<LoadedPolicy> {
  try {
    return { store: await PolicyStore.load(paths) };
  } catch (error) {
    return { error: error as Error };
  }
}

/** Proxy mechanics when the config cannot be read: the proxy still parses safely while refusing. */
const FALLBACK_SETTINGS: ProxySettings = ProxySchema.parse(undefined);

/**
 * The guardian's egress side: one endpoint per cloister with network, all deciding with the current
 * policy store. A reload builds a new store and swaps it in; endpoints, their tokens and live
 * tunnels are untouched, and the next request is judged by the new rules.
 */
export class Egress {
  private readonly endpoints = new Map<string, EgressEndpoint>();
  private readonly sessions = new Map<string, Session>();
  /** The HTTP parser settings (header limits) belong to a policy generation; new connections get the current one. */
  private readonly httpServers = new HttpProxyServers();
  private readonly reloads = new SerialQueue();

  private store: PolicyStore | undefined;
  /** When the store in force was loaded. */
  private loadedAt: string | undefined;
  /** Why there is no store (the config is invalid): every request is refused with its message. */
  private loadError: Error | undefined;
  /** Why the last reload failed while a store stays in force: the files no longer load (until a reload succeeds). */
  private reloadFailure: Error | undefined;

  private readonly audit: AuditLog;
  private readonly sessionDecisions: SessionDecisionStore;
  private readonly askDomain: AskDomain;
  private readonly hostexecPort: ((cloister: EgressCloister) => HostexecPort) | undefined;
  private readonly credentials: ((cloisterId: string) => CloisterCredentials) | undefined;

  constructor(
    private readonly paths: CloisterPaths,
    initial: LoadedPolicy,
    deps: EgressDeps,
  ) {
    this.audit = deps.audit;
    this.sessionDecisions = deps.sessionDecisions;
    this.askDomain = deps.askDomain;
    this.hostexecPort = deps.hostexecPort;
    this.credentials = deps.credentials;
    this.store = initial.store;
    this.loadedAt = initial.store && new Date().toISOString();
    this.loadError = initial.error;
  }

  /** The policy now in force (undefined while the config is invalid). */
  get currentStore(): PolicyStore | undefined {
    return this.store;
  }

  /** When the policy in force was loaded (undefined while there is none). */
  get policyLoadedAt(): string | undefined {
    return this.loadedAt;
  }

  /** Why the policy is not in force, every problem of it on one line. */
  get policyError(): string | undefined {
    return errorSummary(this.loadError);
  }

  /** Every problem of the configuration that does not load, when that is why (not, say, a file it may not read). */
  get policyProblems(): readonly ConfigProblem[] | undefined {
    return configProblems(this.loadError);
  }

  /** Why the files no longer load, while the policy loaded before stays in force (a reload failed since). */
  get reloadError(): string | undefined {
    return errorSummary(this.reloadFailure);
  }

  /** Every problem the failed reload found, as policyProblems gives them. */
  get reloadProblems(): readonly ConfigProblem[] | undefined {
    return configProblems(this.reloadFailure);
  }

  /** Connections open through every endpoint (tunnels and HTTP clients). */
  get openConnections(): number {
    let total = 0;
    for (const endpoint of this.endpoints.values()) total += endpoint.openConnections;
    return total;
  }

  /** Cloisters whose proxy port the guardian accepts on itself (listener-handover.ts). */
  get directListeners(): number {
    return [...this.endpoints.values()].filter((endpoint) => endpoint.listenerTaken).length;
  }

  has(name: string): boolean {
    return this.endpoints.has(name);
  }

  /**
   * Opens (or re-opens, after a guardian restart) a cloister's endpoint at `socketDir`. Session
   * rules are checked first: a bad `--allow` fails the launch instead of being ignored. Answers a
   * human gave for this cloister's session before a restart apply again.
   */
  async open(cloister: EgressCloister): Promise<void> {
    const { name, project } = cloister;
    const flags = sessionRuleSet(cloister.session);
    const remembered = this.sessionDecisions.load(cloister.id).egress;
    const rules: RuleSet = {
      allow: [...flags.allow, ...remembered.allow.map(answeredRule)],
      deny: [...flags.deny, ...remembered.deny.map(answeredRule)],
    };
    await this.store?.ensureProject(project);
    this.sessions.set(name, { id: cloister.id, project, projectRoot: cloister.projectRoot, rules, overrides: cloister.session?.resolve ?? {}, resolver: new HostResolver() });
    this.endpoints.get(name)?.close();
    const context = new EgressContext({
      cloister: name,
      project,
      token: cloister.token,
      settings: () => this.settings,
      policy: () => this.policyInput(name),
      audit: (event) => this.record(event),
      ask: (host, port, signal) => this.ask(name, host, port, signal),
      credentials: this.credentials?.(cloister.id),
    });
    const port = this.hostexecPort?.(cloister);
    const hostexec = port && ((socket: Socket) => serveHostexec(context, socket, port));
    this.endpoints.set(name, await EgressEndpoint.open(context, cloister.socketDir, () => this.httpServers.serverFor(this.settings), hostexec));
  }

  /** The cloister whose endpoint is open under id `id`, whatever its record says now. */
  cloisterWithId(id: string): { name: string; project: string } | undefined {
    for (const [name, session] of this.sessions) if (session.id === id) return { name, project: session.project };
    return undefined;
  }

  /** Closes a cloister's endpoint (guardian exit keeps its remembered answers; see forget). */
  close(name: string): void {
    this.endpoints.get(name)?.close();
    this.endpoints.delete(name);
    this.sessions.delete(name);
  }

  /** The cloister is gone for good: its session answers go with it. */
  forget(name: string, id: string): void {
    this.close(name);
    this.sessionDecisions.remove(id);
  }

  closeAll(): void {
    for (const name of [...this.endpoints.keys()]) this.close(name);
  }

  /**
   * Re-reads every config and decision file; on error the old policy stays and the error is thrown.
   * One at a time: a reload that began before another's decision was written must not finish last.
   */
  reload(): Promise<void> {
    return this.reloads.run(async () => {
      const projects = new Set([...(this.store?.loadedProjects ?? []), ...[...this.sessions.values()].map((s) => s.project)]);
      try {
        this.store = await PolicyStore.load(this.paths, projects);
        this.loadedAt = new Date().toISOString();
        this.loadError = undefined;
        this.reloadFailure = undefined;
      } catch (error) {
        // Without a policy, egress is refused for what is wrong now: `guardian status` named the
        // problems found at start after some were fixed, and missed those found since. With one,
        // it stays in force, and status says the files no longer load (it said only "loaded").
        if (!this.store) this.loadError = error as Error;
        else this.reloadFailure = error as Error;
        throw error;
      }
    });
  }

  /** Persists a rule to a decision file and applies it at once, audited (changeDecisions). */
  decide(scope: DecisionScope, project: string | undefined, list: RuleList, entry: RuleEntry): Promise<boolean> {
    return changeDecisions(
      () => this.reload(),
      () => recordDecision(this.paths, scope, project, list, entry),
      (changed) => this.record({ type: "policy.change", scope, project: project ?? null, list, rule: typeof entry === "string" ? entry : entry.rule, private: typeof entry !== "string" && entry.private, changed }),
    );
  }

  /** Removes a rule from a decision file and applies that at once, audited; false when it was not there. */
  undecide(scope: DecisionScope, project: string | undefined, list: RuleList, rule: string): Promise<boolean> {
    return changeDecisions(
      () => this.reload(),
      () => removeDecision(this.paths, scope, project, list, rule),
      (removed) => this.record({ type: "policy.change", scope, project: project ?? null, list, rule, removed }),
    );
  }

  record(event: AuditEvent): void {
    this.audit.append(event);
  }

  // -------------------------------------------------------------------------------------------------
  // Human answers for unlisted destinations (the approval queue calls these)

  /** Remembers or persists an answer; returns the rule it keeps (null for "once"). */
  async keepDomainAnswer(request: PendingDomain, verdict: Verdict, scope: Scope, wildcard: boolean): Promise<string | null> {
    if (scope === "once") return null;
    const rule = wildcard && request.wildcard ? request.wildcard : request.rule;
    if (scope === "project" || scope === "global") {
      await this.decide(scope, scope === "project" ? request.project : undefined, verdict, rule);
      return rule;
    }
    const session = this.sessions.get(request.cloister);
    if (!session) throw new Error(`cloister ${request.cloister} is gone`);
    await this.sessionDecisions.update(session.id, (remembered) => void remembered.egress[verdict].push(rule));
    session.rules = { ...session.rules, [verdict]: [...session.rules[verdict], answeredRule(rule)] };
    session.cached = undefined;
    return rule;
  }

  /** Undo of a persisted answer: the rule leaves its decision file and the policy reloads. */
  async revokeDomainAnswer(decision: DecisionView): Promise<void> {
    const { scope, rule, verdict } = decision;
    if (!rule || (scope !== "project" && scope !== "global")) return;
    await this.undecide(scope, scope === "project" ? decision.project : undefined, verdict, rule);
  }

  /** What the current policy says of a held request: an answer for another request may decide it. */
  recheck(request: PendingDomain): Verdict | undefined {
    try {
      const verdict = decide(this.policyInput(request.cloister).policy, canonicalHost(request.host), request.port).verdict;
      return verdict === "unlisted" ? undefined : verdict;
    } catch {
      return undefined;
    }
  }

  private ask(name: string, host: Host, port: number, signal: AbortSignal): Promise<Outcome> {
    const session = this.sessions.get(name);
    const question = {
      cloister: name,
      project: session?.project ?? "",
      branch: session ? currentBranch(session.projectRoot) : null,
      host: host.kind === "name" ? host.name : host.address,
      port,
      rule: approvalRule(host, port),
      wildcard: offeredWildcard(host, port),
    };
    return this.askDomain(question, this.settings.approval_timeout, signal);
  }

  /** The proxy settings in force (the fallback's while the config is invalid). */
  get settings(): ProxySettings {
    return this.store?.settings ?? FALLBACK_SETTINGS;
  }

  private policyInput(name: string): JudgeInput {
    const session = this.sessions.get(name);
    const store = this.store;
    if (!store) throw new Error(`the configuration is invalid: ${this.loadError?.message ?? "not loaded"}`);
    if (!session) throw new Error(`cloister ${name} is not registered`);
    if (session.cached?.store !== store) {
      const resolver = session.resolver;
      const input = { policy: store.policyFor(session.project, session.rules), overrides: overrideMap(store.resolve, session.overrides), project: session.project, cloister: name, lookup: (host: string) => resolver.lookup(host) };
      session.cached = { store, input };
    }
    return session.cached.input;
  }
}

/** A rule remembered from a human's answer for a cloister's session, marked so its refusal says so. */
function answeredRule(text: string): EgressRule {
  return { ...parseRule(text), answered: true };
}

/** An error that keeps a configuration from loading, every problem of it on one line. */
function errorSummary(error: Error | undefined): string | undefined {
  return error instanceof ConfigError ? error.summary() : error?.message;
}

/** Its problems, when problems are why (not, say, a file the guardian may not read). */
function configProblems(error: Error | undefined): readonly ConfigProblem[] | undefined {
  return error instanceof ConfigError ? error.problems : undefined;
}
