import type { Command } from "commander";
import { resolvePaths, type CloisterPaths } from "../config/paths.js";
import { CloisterError } from "../errors.js";
import { ensureGuardian, guardianCall } from "../guardian/control-client.js";
import type { EgressRule } from "../policy/rules.js";
import { visible, visibleArgv } from "../policy/visible.js";

/** Policy code (and the YAML/schema libraries it needs) loads only for these commands. */
async function policyModules() {
  const [store, egress, hosts, rules, registry] = await Promise.all([
    import("../guardian/policy-store.js"),
    import("../policy/egress.js"),
    import("../policy/hosts.js"),
    import("../policy/rules.js"),
    import("../config/project-registry.js"),
  ]);
  return { ...store, ...egress, ...hosts, ...rules, ...registry };
}

interface ScopeFlags {
  project?: string;
  global?: boolean;
}

/**
 * The project a command is about: `--project` may name a registered project or a directory in
 * one; without it, the project of the current directory. `orGlobal`: the command takes --global
 * instead, which the hint then offers (QA: `policy explain` was told to pass an option it lacks).
 */
async function targetProject(paths: CloisterPaths, given: string | undefined, orGlobal = false): Promise<string> {
  const { knownProject } = await policyModules();
  // Any other directory would get a decision file that no cloister reads.
  const project = await knownProject(paths, given ?? process.cwd());
  if (project !== undefined) return project;
  throw new CloisterError(
    given === undefined ? "the current directory is in no git repository nor in a project cloister knows" : `no project named or at ${JSON.stringify(given)}`,
    `run it in your project, or pass --project NAME (see \`cloister project list\`)${orGlobal ? " or --global" : ""}`,
  );
}

async function persist(list: "allow" | "deny", ruleText: string, flags: ScopeFlags & { private?: boolean; remove?: boolean }): Promise<void> {
  const { parseRule, RuleError, HostSyntaxError } = await policyModules();
  if (flags.global && flags.project !== undefined) throw new CloisterError("--global and --project exclude each other");
  if (flags.remove && flags.private) throw new CloisterError("--remove takes the rule away whether or not it reaches private addresses: give it without --private");
  let rule: EgressRule;
  try {
    rule = parseRule(ruleText, { private: flags.private === true, list });
  } catch (error) {
    if (error instanceof RuleError || error instanceof HostSyntaxError) throw new CloisterError(error.message);
    throw error;
  }
  const canonical = rule.text;
  const paths = resolvePaths();
  const project = flags.global ? undefined : await targetProject(paths, flags.project, true);
  await ensureGuardian(paths);
  const { changed } = await guardianCall<{ changed: boolean }>(paths, "POST", "/v1/decisions", {
    scope: flags.global ? "global" : "project",
    project,
    list,
    rule: canonical,
    private: flags.private === true,
    remove: flags.remove === true,
  });
  const where = project ? `project ${project}` : "every project";
  if (flags.remove) return reportRemoval(paths, list, canonical, project, changed);
  const what = list === "allow" ? `Allowed ${canonical}${flags.private ? " (private addresses too)" : ""}` : `Denied ${canonical}${rule.ports === null ? " on every port" : ""}`;
  process.stderr.write(changed ? `${what} for ${where}; running cloisters apply it to every new connection now (one already open stays until it ends).\n` : `${canonical} was already on the ${list} list for ${where}.\n`);
  if (list === "allow") await warnIfDenied(paths, project, rule);
}

/**
 * After `allow|deny --remove`: said when it went; when it was not among the rules `cloister allow|deny`
 * and approvals write, but a config file has it, the rule still holds: an error naming that file.
 */
async function reportRemoval(paths: CloisterPaths, list: "allow" | "deny", rule: string, project: string | undefined, removed: boolean): Promise<void> {
  const where = project ? `project ${project}` : "every project";
  if (removed) return void process.stderr.write(`Removed the ${list} rule ${rule} for ${where}; running cloisters apply that to every new connection now.\n`);
  const { PolicyStore, emptyPolicy, ruleSource } = await policyModules();
  const store = await PolicyStore.load(paths, project === undefined ? [] : [project]);
  // The tier holds its config file's rules and its decision file's, and the latter has it no more.
  const tier = project === undefined ? store.globalEgress : store.policyFor(project, emptyPolicy().session).project;
  if (tier[list].some((r) => r.text === rule)) {
    const file = await ruleSource(paths, project === undefined ? "global" : "project", project, list, rule);
    const edit = project === undefined ? "cloister config edit" : `cloister project edit ${project}`;
    throw new CloisterError(`the ${list} rule ${rule} for ${where} is written in ${file}, which --remove does not change`, `remove it there (${edit}), then run \`cloister guardian reload\``);
  }
  process.stderr.write(`${rule} was not on the ${list} list for ${where}; nothing changed.\n`);
}

/** The allow was written, but a deny rule still wins over it: say which, and where it is written. */
async function warnIfDenied(paths: CloisterPaths, project: string | undefined, allow: EgressRule): Promise<void> {
  const { PolicyStore, denyOverriding, emptyPolicy, ruleSource } = await policyModules();
  const store = await PolicyStore.load(paths, project === undefined ? [] : [project]);
  // A global allow is checked against the global tier: each project's own denies are its business.
  const tiers = project === undefined ? { ...emptyPolicy(), global: store.globalEgress } : store.policyFor(project, emptyPolicy().session);
  const deny = denyOverriding(tiers, allow);
  if (!deny || deny.tier === "session") return;
  const file = await ruleSource(paths, deny.tier, project, "deny", deny.text);
  process.stderr.write(`Warning: the deny rule ${deny.text} in ${file} still wins over it (a deny beats every allow); remove it there and run \`cloister guardian reload\` to allow ${allow.text}.\n`);
}

/** Why `policy explain` says an unlisted destination is held or refused (see unlistedHandling). */
const UNLISTED_WORDS = {
  ask: "a cloister's request is held until a human answers it (proxy.unlisted: ask)",
  refuse: "unlisted hosts are refused (proxy.unlisted: deny)",
  "refuse-non-public": "the proxy refuses a non-public address at once and never asks a human about it (an approval would open it with one click)",
} as const;

const VERDICT_WORDS = { allow: "allowed", deny: "denied", unlisted: "unlisted" } as const;

export function registerPolicyCommands(program: Command): void {
  program
    .command("allow")
    .description("allow a host for a project (default: the current one) or every project, persistently")
    .argument("<rule>", "example.com, *.example.com (subdomains), example.com:8443, 10.1.2.3:5432")
    .option("--project <name>", "the project (a name from `cloister project list`, or a directory in it)")
    .option("--global", "for every project")
    .option("--private", "let it reach loopback/private/link-local addresses too")
    .option("--remove", "take away an allow rule that `cloister allow` or an approval wrote")
    .addHelpText("after", "\nExamples:\n  cloister allow api.github.com\n  cloister allow '*.githubusercontent.com' --global\n  cloister allow db.internal:5432 --private --project shop\n  cloister allow --remove api.github.com")
    .action((rule: string, flags: ScopeFlags & { private?: boolean; remove?: boolean }) => persist("allow", rule, flags));

  program
    .command("deny")
    .description("deny a host for a project (default: the current one) or every project; a deny beats every allow")
    .argument("<rule>", "example.com (every port), *.example.com, example.com:8443 (that port only), 10.1.2.3")
    .option("--project <name>", "the project (a name from `cloister project list`, or a directory in it)")
    .option("--global", "for every project")
    .option("--scope <scope>", "when RULE is a waiting request's id: how long the denial lasts (once, session, project, global)")
    .option("--remove", "take away a deny rule that `cloister deny` or an approval wrote")
    .addHelpText("after", "\nGiven the id of a waiting request (see `cloister approvals`), or 6 or more hex characters that start one, it denies that request instead; a host name that reads as such (facade) is written with a trailing dot (facade.) to mean the host, on every port.\n\nExamples:\n  cloister deny tracker.example.com\n  cloister deny --remove tracker.example.com")
    .action(async (rule: string, flags: ScopeFlags & { scope?: string; remove?: boolean }) => {
      const { denyIfRequest } = await import("./approval-commands.js");
      if (!flags.remove && (await denyIfRequest(rule, { scope: flags.scope }))) return;
      await persist("deny", rule, flags);
    });

  const policy = program.command("policy").description("inspect the egress and hostexec policy");

  policy
    .command("command")
    .description("say what `hostexec ARGV...` in a cloister of a project would meet: allow, ask or deny, and which rule decides")
    .argument("<argv...>", "the command and its arguments, exactly as the agent would pass them (put -- before options)")
    .option("--project <name>", "the project (default: the current directory's)")
    .option("--json", "machine-readable output")
    .addHelpText("after", "\nExamples:\n  cloister policy command -- gh pr view 12\n  cloister policy command -- git -c core.pager=less log")
    .action(async (argv: string[], flags: { project?: string; json?: boolean }) => {
      const [{ PolicyStore }, commands] = await Promise.all([import("../guardian/policy-store.js"), import("../policy/commands.js")]);
      const paths = resolvePaths();
      const project = await targetProject(paths, flags.project);
      const rules = (await PolicyStore.load(paths, [project])).commandRules(project);
      let decision: ReturnType<typeof commands.evaluateCommand>;
      try {
        // Answers a human persisted come first, as in the guardian (session answers are not known here).
        const decided = commands.evaluateCommand(rules.decided, argv);
        decision = decided.rule ? decided : commands.evaluateCommand(rules.configured, argv);
      } catch (error) {
        if (error instanceof commands.CommandRequestError) throw new CloisterError(error.message);
        throw error;
      }
      const hazards = commands.hazards(argv).map(commands.hazardText);
      if (flags.json) {
        const result = { argv, project, verdict: decision.verdict, rule: decision.rule, skipped: decision.skipped && { rule: decision.skipped.rule, hazard: commands.hazardText(decision.skipped.hazard) }, hazards };
        return void process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      }
      // The deciding rule may be an exact-argv rule an answer wrote, the agent's bytes (QA: printed raw).
      const lines = [`${visibleArgv(argv)}: ${visible(commands.decisionText(decision))} (project ${project})`];
      for (const hazard of hazards) lines.push(`  hazard: ${visible(hazard)}`);
      lines.push("  (answers given for a running cloister's session are not included)");
      process.stdout.write(`${lines.join("\n")}\n`);
    });

  policy
    .command("explain")
    .description("say whether a cloister of a project may reach HOST[:PORT], and which rule decides")
    .argument("<target>", "host or host:port (default ports: 443, and 80 is judged the same way)")
    .option("--project <name>", "the project (default: the current directory's)")
    .option("--json", "machine-readable output")
    .action(async (target: string, flags: { project?: string; json?: boolean }) => {
      const { PolicyStore, decide, parseAuthority, formatAuthority, hostText, emptyPolicy, HostSyntaxError } = await policyModules();
      const paths = resolvePaths();
      const project = await targetProject(paths, flags.project);
      if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target)) {
        throw new CloisterError(`${JSON.stringify(target)} is a URL; policy explain takes a host`, 'write just the host and port, e.g. "api.anthropic.com" or "api.anthropic.com:443"');
      }
      let parsed: ReturnType<typeof parseAuthority>;
      try {
        parsed = parseAuthority(target, 443);
      } catch (error) {
        if (error instanceof HostSyntaxError) throw new CloisterError(`${JSON.stringify(target)}: ${error.message}`);
        throw error;
      }
      const [store, { unlistedHandling, refusalFor }] = await Promise.all([PolicyStore.load(paths, [project]), import("../guardian/proxy/judge.js")]);
      const decision = decide(store.policyFor(project, emptyPolicy().session), parsed.host, parsed.port);
      // What the proxy does with it should no rule decide, by the proxy's own function.
      const handling = unlistedHandling(parsed.host, store.settings.unlisted);
      const unlisted = decision.verdict === "unlisted" ? handling : null;
      const override = parsed.host.kind === "name" ? store.resolve[parsed.host.name] : undefined;
      const result = {
        target: formatAuthority(parsed.host, parsed.port),
        project,
        verdict: decision.verdict,
        rule: decision.rule?.text ?? null,
        tier: decision.rule?.tier ?? null,
        list: decision.rule?.list ?? null,
        unlisted,
        privateAddresses: decision.allowPrivate,
        resolvesTo: override ?? null,
      };
      if (flags.json) return void process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      const because = decision.rule ? `by ${decision.rule.list} rule ${decision.rule.text} (${decision.rule.tier})` : `no rule matches: ${UNLISTED_WORDS[handling]}`;
      const verdict = unlisted === "refuse-non-public" ? "refused" : VERDICT_WORDS[decision.verdict];
      const lines = [`${result.target}: ${verdict} for project ${project}, ${because}`];
      if (decision.verdict === "allow") {
        lines.push(
          decision.allowPrivate
            ? "  may reach loopback/private addresses"
            : `  only if ${hostText(parsed.host)} resolves to a public address (loopback/private/link-local/metadata addresses are refused)`,
        );
      }
      // Refused at once: what the cloister is told, with how to allow it.
      if (decision.verdict !== "allow" && unlisted !== "ask") lines.push(`  a cloister is told: ${refusalFor(decision, parsed.host, parsed.port, { project })}`);
      if (override) lines.push(`  the guardian connects ${hostText(parsed.host)} to ${override} (proxy.resolve)`);
      // The CLI reads the config and decision files; a running cloister's session tier lives in the guardian.
      lines.push("  (a running cloister's session rules are not included: neither --allow/--deny given to it nor answers for its session)");
      process.stdout.write(`${lines.join("\n")}\n`);
    });
}
