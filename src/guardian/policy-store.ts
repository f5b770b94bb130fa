import { join } from "node:path";
import { writeFileAtomic, ensurePrivateDir } from "../config/atomic-write.js";
import { loadGlobalConfig, loadProjectConfig, parseConfigText, readIfExists, toYaml } from "../config/load.js";
import type { CloisterPaths } from "../config/paths.js";
import { isIP } from "node:net";
import { ProjectNameSchema, resolveNameProblem, type Decisions, type ProxySettings, type RuleEntry } from "../config/schema.js";
import { CloisterError } from "../errors.js";
import { emptyPolicy, type Policy, type RuleSet } from "../policy/egress.js";
import { parseRule, type EgressRule } from "../policy/rules.js";
import type { SessionRules } from "../sandbox/records.js";

export type DecisionScope = "global" | "project";
export type RuleList = "allow" | "deny";

/**
 * Everything the proxy decides with, loaded from the config files and the guardian-written decision
 * files: the global tier (config.yaml + decisions/global.yaml) and each project's tier (its
 * projects/<name>.yaml + decisions/projects/<name>.yaml). A store is immutable once loaded; a reload
 * builds a new one and swaps it in, so a bad edit never leaves the proxy half-configured.
 */
export class PolicyStore {
  private constructor(
    private readonly paths: CloisterPaths,
    readonly settings: ProxySettings,
    readonly audit: { maxBytes: number; keep: number },
    private readonly globalRules: RuleSet,
    private readonly projects: Map<string, RuleSet>,
  ) {}

  /** Loads the global tier and the tiers of `projects`; throws ConfigError naming the bad file and line. */
  static async load(paths: CloisterPaths, projects: Iterable<string> = []): Promise<PolicyStore> {
    const global = await loadGlobalConfig(paths);
    const decisions = await loadDecisions(decisionsFile(paths, "global"));
    const store = new PolicyStore(
      paths,
      global.proxy,
      { maxBytes: global.audit.max_size, keep: global.audit.keep },
      ruleSet(global.proxy, decisions.proxy),
      new Map(),
    );
    for (const project of projects) await store.ensureProject(project);
    return store;
  }

  /** The project names whose tiers are loaded (a reload loads the same ones). */
  get loadedProjects(): string[] {
    return [...this.projects.keys()];
  }

  /** Loads a project's tier unless it is loaded already; call before `policyFor` on that project. */
  async ensureProject(project: string): Promise<void> {
    if (this.projects.has(project)) return;
    const config = await loadProjectConfig(this.paths, project);
    const decisions = await loadDecisions(decisionsFile(this.paths, "project", project));
    this.projects.set(project, ruleSet(config.proxy, decisions.proxy));
  }

  /**
   * The three tiers for one cloister. Throws if the project's tier was never loaded: deciding without
   * the project's deny list could let through what the project forbids.
   */
  policyFor(project: string, session: RuleSet): Policy {
    const projectRules = this.projects.get(project);
    if (!projectRules) throw new Error(`the policy of project ${project} is not loaded`);
    return { global: this.globalRules, project: projectRules, session };
  }

  /** Name overrides from config (`proxy.resolve`), canonical lower-case names. */
  get resolve(): Record<string, string> {
    return this.settings.resolve;
  }
}

/** A cloister's own rules from `--allow`, `--deny`, `--allow-private`; throws CloisterError on a bad one. */
export function sessionRuleSet(session: SessionRules | undefined): RuleSet {
  if (!session) return emptyPolicy().session;
  const parse = (text: string, isPrivate: boolean, flag: string): EgressRule => {
    try {
      return parseRule(text, { private: isPrivate });
    } catch (error) {
      throw new CloisterError(`${flag} ${text}: ${(error as Error).message}`);
    }
  };
  for (const [name, address] of Object.entries(session.resolve)) {
    const problem = resolveNameProblem(name) ?? (isIP(address) === 0 ? `${JSON.stringify(address)} is not an IP address` : undefined);
    if (problem) throw new CloisterError(`--resolve ${name}=${address}: ${problem}`, "write --resolve NAME=IP, e.g. --resolve api.test=127.0.0.1");
  }
  return {
    allow: [...session.allow.map((r) => parse(r, false, "--allow")), ...session.allowPrivate.map((r) => parse(r, true, "--allow-private"))],
    deny: session.deny.map((r) => parse(r, false, "--deny")),
  };
}

function ruleSet(configured: { allow: readonly RuleEntry[]; deny: readonly RuleEntry[] }, decided: { allow: readonly RuleEntry[]; deny: readonly RuleEntry[] }): RuleSet {
  return {
    allow: [...configured.allow, ...decided.allow].map(entryRule),
    deny: [...configured.deny, ...decided.deny].map(entryRule),
  };
}

export function entryRule(entry: RuleEntry): EgressRule {
  return typeof entry === "string" ? parseRule(entry) : parseRule(entry.rule, { private: entry.private });
}

// ---------------------------------------------------------------------------------------------------
// Decision files: written only by the guardian (the single writer), atomically.

export function decisionsFile(paths: CloisterPaths, scope: DecisionScope, project?: string): string {
  const dir = join(paths.configDir, "decisions");
  if (scope === "global") return join(dir, "global.yaml");
  const name = ProjectNameSchema.safeParse(project);
  if (!name.success) throw new CloisterError(`invalid project name ${JSON.stringify(project)}`, "see `cloister project list`");
  return join(dir, "projects", `${name.data}.yaml`);
}

async function loadDecisions(file: string): Promise<Decisions> {
  return parseConfigText((await readIfExists(file)) ?? "", file, "decisions");
}

const DECISIONS_HEADER = `# Written by the cloister guardian (\`cloister allow\`, \`cloister deny\`, approvals).
# Safe to edit by hand; run \`cloister guardian reload\` afterwards. Same rule syntax as config.yaml.
`;

/**
 * Adds a rule to a decision file (no-op if it is there already) and returns whether it changed.
 * The rule is parsed first, so nothing unparseable is ever persisted.
 */
export async function recordDecision(paths: CloisterPaths, scope: DecisionScope, project: string | undefined, list: RuleList, entry: RuleEntry): Promise<boolean> {
  const rule = entryRule(entry);
  const file = decisionsFile(paths, scope, project);
  const current = await loadDecisions(file);
  const entries = current.proxy[list];
  if (entries.some((existing) => sameRule(entryRule(existing), rule))) return false;
  const stored: RuleEntry = rule.private ? { rule: rule.text, private: true } : rule.text;
  const next: Decisions = { proxy: { ...current.proxy, [list]: [...entries, stored] } };
  await ensurePrivateDir(join(file, ".."));
  await writeFileAtomic(file, DECISIONS_HEADER + toYaml(next), 0o600);
  return true;
}

function sameRule(a: EgressRule, b: EgressRule): boolean {
  return a.text === b.text && a.private === b.private;
}
