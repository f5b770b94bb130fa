import { dirname } from "node:path";
import { type Document, isCollection, isSeq } from "yaml";
import { writeFileAtomic, ensurePrivateDir } from "../config/atomic-write.js";
import { ConfigError, decisionsFile, loadGlobalConfig, loadProjectConfig, loadedTogether, parseConfigText, parseYaml, projectConfigFile, readIfExists } from "../config/load.js";
export { decisionsFile };
import type { CloisterPaths } from "../config/paths.js";
import { isIP } from "node:net";
import { resolveNameProblem, type Decisions, type ProxySettings, type RuleEntry } from "../config/schema.js";
import { CloisterError } from "../errors.js";
import { SerialQueue } from "../serial-queue.js";
import { emptyPolicy, type Policy, type RuleSet } from "../policy/egress.js";
import { parseRule, type EgressRule, type RuleList } from "../policy/rules.js";
import { compileCommandRules, ruleText, type CommandRule, type CommandRuleEntry, type CommandRules } from "../policy/commands.js";
import type { HostexecConfig } from "../config/hostexec-schema.js";
import type { SessionRules } from "../sandbox/records.js";

export type { DecisionScope } from "../config/load.js";
import type { DecisionScope } from "../config/load.js";
export type { RuleList } from "../policy/rules.js";

/** One project's tier: its egress rules and its host command rules (config, and answers persisted). */
interface ProjectTier {
  egress: RuleSet;
  commands: CommandRule[];
  commandDecisions: CommandRule[];
}

/** Host command rules for one project, in the order they are consulted. */
export interface ProjectCommandRules {
  /** Answers a human persisted (decision files): the most specific statements, checked first. */
  decided: CommandRules;
  /** Config rules: global, then the project's. */
  configured: CommandRules;
}

/**
 * Everything the proxy and hostexec decide with, loaded from the config files and the
 * guardian-written decision files: the global tier (config.yaml + decisions/global.yaml) and each project's tier (its
 * projects/<name>.yaml + decisions/projects/<name>.yaml). A store is immutable once loaded; a reload
 * builds a new one and swaps it in, so a bad edit never leaves the proxy half-configured.
 */
export class PolicyStore {
  private constructor(
    private readonly paths: CloisterPaths,
    readonly settings: ProxySettings,
    readonly audit: { maxBytes: number; keep: number },
    /** The approval UI's port (a reload that changes it moves the UI: Daemon.startUi). */
    readonly uiPort: number,
    /** hostexec limits and rate (its rules are in commandRules). */
    readonly hostexec: HostexecConfig,
    private readonly globalRules: RuleSet,
    private readonly globalCommands: CommandRule[],
    private readonly globalCommandDecisions: CommandRule[],
    private readonly projects: Map<string, ProjectTier>,
  ) {}

  /**
   * Loads the global tier and the tiers of `projects`; throws one ConfigError naming every problem
   * of every file, as a launch does (QA: `policy explain` named only the global file's).
   */
  static async load(paths: CloisterPaths, projects: Iterable<string> = []): Promise<PolicyStore> {
    const names = [...new Set(projects)];
    const [global, decisions, ...projectTiers] = await loadedTogether([
      loadGlobalConfig(paths),
      loadDecisions(decisionsFile(paths, "global")),
      ...names.map(async (project) => [project, await loadProjectTier(paths, project)] as const),
    ]);
    return new PolicyStore(
      paths,
      global.proxy,
      { maxBytes: global.audit.max_size, keep: global.audit.keep },
      global.ui.port,
      global.hostexec,
      ruleSet(global.proxy, decisions.proxy),
      compileCommandRules(global.hostexec.rules),
      compileCommandRules(decisions.hostexec.rules),
      new Map(projectTiers),
    );
  }

  /** The global tier's egress rules (config.yaml and decisions/global.yaml). */
  get globalEgress(): RuleSet {
    return this.globalRules;
  }

  /** The project names whose tiers are loaded (a reload loads the same ones). */
  get loadedProjects(): string[] {
    return [...this.projects.keys()];
  }

  /** Loads a project's tier unless it is loaded already; call before `policyFor` on that project. */
  async ensureProject(project: string): Promise<void> {
    if (this.projects.has(project)) return;
    this.projects.set(project, await loadProjectTier(this.paths, project));
  }

  /**
   * The three tiers for one cloister. Throws if the project's tier was never loaded: deciding without
   * the project's deny list could let through what the project forbids.
   */
  policyFor(project: string, session: RuleSet): Policy {
    return { global: this.globalRules, project: this.tier(project).egress, session };
  }

  /** The host command rules for a project's cloisters (throws like policyFor if it is not loaded). */
  commandRules(project: string): ProjectCommandRules {
    const tier = this.tier(project);
    return {
      decided: { global: this.globalCommandDecisions, project: tier.commandDecisions },
      configured: { global: this.globalCommands, project: tier.commands },
    };
  }

  private tier(project: string): ProjectTier {
    const tier = this.projects.get(project);
    if (!tier) throw new Error(`the policy of project ${project} is not loaded`);
    return tier;
  }

  /** Name overrides from config (`proxy.resolve`), canonical lower-case names. */
  get resolve(): Record<string, string> {
    return this.settings.resolve;
  }
}

/**
 * A cloister's own rules from `--allow`, `--deny`, `--allow-private`; throws CloisterError on a bad one.
 * Its messages name them as the library's options (`options.allow`), which the CLI says as its flags.
 */
export function sessionRuleSet(session: SessionRules | undefined): RuleSet {
  if (!session) return emptyPolicy().session;
  const parse = (text: string, isPrivate: boolean, flag: string, list: RuleList = "allow"): EgressRule => {
    try {
      return parseRule(text, { private: isPrivate, list });
    } catch (error) {
      throw new CloisterError(`${flag} ${text}: ${(error as Error).message}`);
    }
  };
  for (const [name, address] of Object.entries(session.resolve)) {
    const problem = resolveNameProblem(name) ?? (isIP(address) === 0 ? `${JSON.stringify(address)} is not an IP address` : undefined);
    if (problem) throw new CloisterError(`options.resolve ${name}=${address}: ${problem}`, "map a host name to an IP address, such as api.test to 127.0.0.1");
  }
  return {
    allow: [...session.allow.map((r) => parse(r, false, "options.allow")), ...session.allowPrivate.map((r) => parse(r, true, "options.allowPrivate"))],
    deny: session.deny.map((r) => parse(r, false, "options.deny", "deny")),
  };
}

/** A project's tier from its config file and its decision file, every problem of both named at once. */
async function loadProjectTier(paths: CloisterPaths, project: string): Promise<ProjectTier> {
  // Before either load starts: a name it refuses must not leave the other load's failure unhandled.
  const decided = decisionsFile(paths, "project", project);
  const [config, decisions] = await loadedTogether([loadProjectConfig(paths, project), loadDecisions(decided)]);
  return {
    egress: ruleSet(config.proxy, decisions.proxy),
    commands: compileCommandRules(config.hostexec.rules),
    commandDecisions: compileCommandRules(decisions.hostexec.rules),
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


/**
 * The file a tier's rule comes from, for messages: its decision file when that lists the rule,
 * else the tier's config file (config.yaml, or projects/<name>.yaml).
 */
export async function ruleSource(paths: CloisterPaths, scope: DecisionScope, project: string | undefined, list: RuleList, ruleText: string): Promise<string> {
  const file = decisionsFile(paths, scope, project);
  const decided = (await loadDecisions(file)).proxy[list].some((entry) => entryRule(entry).text === ruleText);
  if (decided) return file;
  return scope === "global" || project === undefined ? paths.globalConfigFile : projectConfigFile(paths, project);
}

async function loadDecisions(file: string): Promise<Decisions> {
  return parseConfigText((await readIfExists(file)) ?? "", file, "decisions");
}

const DECISIONS_HEADER = `# Written by the cloister guardian (\`cloister allow\`, \`cloister deny\`, approvals).
# Safe to edit by hand (comments are kept); run \`cloister guardian reload\` afterwards. Same rule syntax as config.yaml.
`;

/**
 * Changes the decision files (`edit` says whether it changed anything) and applies the change at
 * once: `allow`, `deny`, approvals and their undos all go through here. The policy is reloaded first,
 * and if that fails nothing is changed: a rule written into a configuration that does not load would
 * wait unseen until the fix, and never be audited as a change (found by QA). `written` (the audit)
 * runs once the edit is made, even when applying it fails.
 */
export async function changeDecisions(reload: () => Promise<void>, edit: () => Promise<boolean>, written: (changed: boolean) => void = () => undefined): Promise<boolean> {
  try {
    await reload();
  } catch (error) {
    const refused = { lead: "nothing was changed: the configuration does not load", hint: "fix it (`cloister config validate` names the file and line), then try again" };
    // Every problem goes on, as a launch names them: the person fixes them all before trying again.
    if (error instanceof ConfigError) throw new ConfigError(error.problems, refused);
    const problem = error instanceof CloisterError ? error.oneLine() : String(error);
    throw new CloisterError(`${refused.lead}: ${problem}`, refused.hint);
  }
  const changed = await edit();
  try {
    if (changed) await reload();
  } finally {
    written(changed);
  }
  return changed;
}

/** Every edit of a decision file, one at a time: `allow`, `deny`, approvals and undos arrive at once. */
const decisionEdits = new SerialQueue();

/**
 * Changes a decision file through its YAML document, so that what a person wrote there (comments,
 * order, flow lists) stays as it was; `edit` returns whether it changed anything. A file that does
 * not load is refused with its file, line and key, and nothing that would not load is written.
 */
function editDecisionFile(file: string, edit: (doc: Document, current: Decisions) => boolean): Promise<boolean> {
  return decisionEdits.run(async () => {
    const text = (await readIfExists(file)) ?? DECISIONS_HEADER;
    const current = parseConfigText(text, file, "decisions");
    const { doc } = parseYaml(text, file);
    if (!edit(doc, current)) return false;
    const next = doc.toString();
    parseConfigText(next, file, "decisions");
    ensurePrivateDir(dirname(file));
    await writeFileAtomic(file, next, 0o600);
    return true;
  });
}

/** Appends `value` to the list at `path`, making the list (and the mappings above it) where they are missing or empty keys. */
function appendAt(doc: Document, path: readonly string[], value: unknown): void {
  for (let depth = 1; depth <= path.length; depth++) {
    const prefix = path.slice(0, depth);
    if (!isCollection(doc.getIn(prefix, true))) doc.setIn(prefix, doc.createNode(depth === path.length ? [] : {}));
  }
  const list = doc.getIn(path, true);
  if (isSeq(list)) list.add(doc.createNode(value));
}

/** Deletes the items at `indexes` (positions in the parsed list, which has one per item) from the list at `path`. */
function deleteAt(doc: Document, path: readonly string[], indexes: readonly number[]): void {
  for (const index of [...indexes].sort((a, b) => b - a)) doc.deleteIn([...path, index]);
}

function indexesWhere<T>(items: readonly T[], test: (item: T) => boolean): number[] {
  return items.flatMap((item, index) => (test(item) ? [index] : []));
}

/**
 * Adds a rule to a decision file (no-op if it is there already) and returns whether it changed.
 * The rule is parsed first, so nothing unparseable is ever persisted.
 */
export async function recordDecision(paths: CloisterPaths, scope: DecisionScope, project: string | undefined, list: RuleList, entry: RuleEntry): Promise<boolean> {
  const rule = entryRule(entry);
  const stored: RuleEntry = rule.private ? { rule: rule.text, private: true } : rule.text;
  return editDecisionFile(decisionsFile(paths, scope, project), (doc, current) => {
    if (current.proxy[list].some((existing) => sameRule(entryRule(existing), rule))) return false;
    appendAt(doc, ["proxy", list], stored);
    return true;
  });
}

/**
 * Removes a rule from a decision file (undo of an approval, `cloister allow --remove`), whether or
 * not it was written with `private: true`; returns whether it was there.
 */
export async function removeDecision(paths: CloisterPaths, scope: DecisionScope, project: string | undefined, list: RuleList, ruleText: string): Promise<boolean> {
  const text = entryRule(ruleText).text;
  return editDecisionFile(decisionsFile(paths, scope, project), (doc, current) => {
    const found = indexesWhere(current.proxy[list], (existing) => entryRule(existing).text === text);
    deleteAt(doc, ["proxy", list], found);
    return found.length > 0;
  });
}

/** Adds a host command rule to a decision file (an approval "for the project", "for every project"). */
export async function recordCommandDecision(paths: CloisterPaths, scope: DecisionScope, project: string | undefined, entry: CommandRuleEntry): Promise<boolean> {
  return editDecisionFile(decisionsFile(paths, scope, project), (doc, current) => {
    if (current.hostexec.rules.some((rule) => ruleText(rule) === ruleText(entry))) return false;
    appendAt(doc, ["hostexec", "rules"], entry);
    return true;
  });
}

/** Removes a host command rule from a decision file (undo). */
export async function removeCommandDecision(paths: CloisterPaths, scope: DecisionScope, project: string | undefined, text: string): Promise<boolean> {
  return editDecisionFile(decisionsFile(paths, scope, project), (doc, current) => {
    const found = indexesWhere(current.hostexec.rules, (rule) => ruleText(rule) === text);
    deleteAt(doc, ["hostexec", "rules"], found);
    return found.length > 0;
  });
}

function sameRule(a: EgressRule, b: EgressRule): boolean {
  return a.text === b.text && a.private === b.private;
}
