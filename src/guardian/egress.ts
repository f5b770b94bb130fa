import type { Server as HttpServer } from "node:http";
import type { AuditEvent, AuditLog } from "../audit/log.js";
import type { CloisterPaths } from "../config/paths.js";
import { ProxySchema, type ProxySettings, type RuleEntry } from "../config/schema.js";
import type { RuleSet } from "../policy/egress.js";
import type { SessionRules } from "../sandbox/records.js";
import { PolicyStore, recordDecision, sessionRuleSet, type DecisionScope, type RuleList } from "./policy-store.js";
import { EgressContext } from "./proxy/context.js";
import { EgressEndpoint } from "./proxy/endpoint.js";
import { createHttpProxy } from "./proxy/http.js";
import { overrideMap, type JudgeInput } from "./proxy/judge.js";

interface Session {
  project: string;
  rules: RuleSet;
  overrides: Record<string, string>;
  /** What `judge` needs, built once per policy generation rather than on every request. */
  cached?: { store: PolicyStore; input: JudgeInput };
}

export interface LoadedPolicy {
  store?: PolicyStore;
  error?: string;
}

/** The policy at guardian start; an invalid config is kept as the reason to refuse all egress. */
export async function loadPolicy(paths: CloisterPaths): Promise<LoadedPolicy> {
  try {
    return { store: await PolicyStore.load(paths) };
  } catch (error) {
    return { error: (error as Error).message };
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
  private httpServer?: { settings: ProxySettings; server: HttpServer };

  private store: PolicyStore | undefined;
  /** Why there is no store (the config is invalid): every request is refused with this. */
  private loadError: string | undefined;

  constructor(
    private readonly paths: CloisterPaths,
    initial: LoadedPolicy,
    private readonly audit: AuditLog,
  ) {
    this.store = initial.store;
    this.loadError = initial.error;
  }

  get policyError(): string | undefined {
    return this.loadError;
  }

  /** Connections open through every endpoint (tunnels and HTTP clients). */
  get openConnections(): number {
    let total = 0;
    for (const endpoint of this.endpoints.values()) total += endpoint.openConnections;
    return total;
  }

  has(name: string): boolean {
    return this.endpoints.has(name);
  }

  /**
   * Opens (or re-opens, after a guardian restart) a cloister's endpoint at `socketDir`. Session
   * rules are checked first: a bad `--allow` fails the launch instead of being ignored.
   */
  async open(name: string, project: string, token: string, socketDir: string, session: SessionRules | undefined): Promise<void> {
    const rules = sessionRuleSet(session);
    await this.store?.ensureProject(project);
    this.sessions.set(name, { project, rules, overrides: session?.resolve ?? {} });
    this.endpoints.get(name)?.close();
    const context = new EgressContext(name, project, token, () => this.settings, () => this.policyInput(name), (event) => this.record(event));
    this.endpoints.set(name, await EgressEndpoint.open(context, socketDir, () => this.httpProxy()));
  }

  close(name: string): void {
    this.endpoints.get(name)?.close();
    this.endpoints.delete(name);
    this.sessions.delete(name);
  }

  closeAll(): void {
    for (const name of [...this.endpoints.keys()]) this.close(name);
  }

  /** Re-reads every config and decision file; on error the old policy stays and the error is thrown. */
  async reload(): Promise<void> {
    const projects = new Set([...(this.store?.loadedProjects ?? []), ...[...this.sessions.values()].map((s) => s.project)]);
    this.store = await PolicyStore.load(this.paths, projects);
    this.loadError = undefined;
  }

  /** Persists a rule to a decision file and applies it at once. */
  async decide(scope: DecisionScope, project: string | undefined, list: RuleList, entry: RuleEntry): Promise<boolean> {
    const changed = await recordDecision(this.paths, scope, project, list, entry);
    if (changed) await this.reload();
    this.record({ type: "policy.change", scope, project: project ?? null, list, rule: typeof entry === "string" ? entry : entry.rule, private: typeof entry !== "string" && entry.private, changed });
    return changed;
  }

  record(event: AuditEvent): void {
    this.audit.append(event);
  }

  private get settings(): ProxySettings {
    return this.store?.settings ?? FALLBACK_SETTINGS;
  }

  private policyInput(name: string): JudgeInput {
    const session = this.sessions.get(name);
    const store = this.store;
    if (!store) throw new Error(`the configuration is invalid: ${this.loadError ?? "not loaded"}`);
    if (!session) throw new Error(`cloister ${name} is not registered`);
    if (session.cached?.store !== store) {
      const input = { policy: store.policyFor(session.project, session.rules), overrides: overrideMap(store.resolve, session.overrides), project: session.project };
      session.cached = { store, input };
    }
    return session.cached.input;
  }

  /** The HTTP parser settings (header limits) belong to a policy generation; new connections get the current one. */
  private httpProxy(): HttpServer {
    const settings = this.settings;
    if (this.httpServer?.settings !== settings) {
      // The old server keeps serving the connections it has; closing it stops its timers (header
      // timeouts) once they are gone, instead of leaking one server per reload.
      this.httpServer?.server.close(() => undefined);
      this.httpServer = { settings, server: createHttpProxy(settings) };
    }
    return this.httpServer.server;
  }
}
