import { createHash, randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { rmdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cloisterRuntimeDir, resolvePaths, type CloisterPaths } from "../config/paths.js";
import { ensurePrivateDir, writeFileAtomic } from "../config/atomic-write.js";
import { CloisterError } from "../errors.js";
import { hiddenPaths } from "../sandbox/bwrap/host-facts.js";
import { destroyCloister, killCloisterNow, removedLinkWords, type LaunchGrant } from "../sandbox/engine.js";
import { writableGitDirs } from "../sandbox/git-symlinks.js";
import { RELEASE_TIMEOUT_MS } from "../sandbox/limits.js";
import { removeDeferredPlaceholders } from "../sandbox/placeholder-release.js";
import { orphanRecord, runtimeDirUnchangedFor, setAsideUnreadableRecords, snapshotCloisters, unrecordedIds, type CloisterSnapshot } from "../sandbox/orphans.js";
import { cloisterListing, isKeeperAlive, isLauncherAlive, isLaunchOrphaned, listRecords, noSuchCloister, processStartTime, readRecord, type CloisterRecord } from "../sandbox/records.js";
import { VERSION } from "../version.js";
import { JsonLines, serveControl } from "./control-server.js";
import { AuditLog } from "../audit/log.js";
import { previousEnd } from "../audit/resume.js";
import { SAFE_NAME_RE } from "../config/names.js";
import { DEFAULT_UI_PORT, type RuleEntry } from "../config/schema.js";
import type { SessionRules } from "../sandbox/records.js";
import { Egress, loadPolicy } from "./egress.js";
import { loadTunnelRelay } from "./proxy/native-relay.js";
import { cloisterBuild, GUARDIAN_FAILED, guardianStatus, readGuardianInfo, type GuardianInfo } from "./control-client.js";
import { ApprovalQueue, type DecisionKeeper } from "./approvals/queue.js";
import type { AnswerInput } from "./approvals/types.js";
import type { AuditEvent } from "../audit/log.js";
import { HostCommands } from "./host-commands.js";
import { ProtectionWatch } from "./protection-watch.js";
import { GitSymlinkWatch, type GitLinkEvent } from "./git-symlink-watch.js";
import { entryKind, MANDATORY_PROTECTED } from "../sandbox/protected-paths.js";
import { Vault } from "./vault/vault.js";
import { vaultRoutes } from "./vault/routes.js";
import { agentCredential, checkAgentName, credentialSecretName } from "./vault/agent-credentials.js";
import { Broker } from "./broker/broker.js";
import { BUILTIN_RULES } from "../policy/injection.js";
import { SessionDecisionStore } from "./session-decisions.js";
import { UiServer } from "./ui/server.js";
import { PACKAGE_ROOT } from "../package-root.js";

/** The build this guardian runs, read once: a rebuild or upgrade later is another build. */
const BUILD = cloisterBuild();

/**
 * A grant without a record, or a record without a keeper or a launcher (written by an older build),
 * is a launch in progress; after this long it is a failed one.
 */
const LAUNCH_GRACE_MS = 60_000;

/** A keeperless record of an older build, which does not say who launches it, past the grace period. */
function launchOverdue(record: CloisterRecord): boolean {
  return record.launcherPid === undefined && Date.now() - Date.parse(record.createdAt) > LAUNCH_GRACE_MS;
}

/**
 * A cloister whose keeper died this soon after its launch began, while its launcher still runs, is
 * most likely a launch failing (bwrap refused a mount, user namespaces are off): the launcher reads
 * bwrap's own words from the keeper's log in the runtime dir, says them, and removes it all itself.
 * Cleaned up first, the log was gone and the user told only that the cloister was "gone".
 */
const LAUNCHER_OWNS_MS = 10_000;

/** The dead cloister of `record` is left to its launcher for now (see LAUNCHER_OWNS_MS). */
function launcherStillOwns(record: CloisterRecord): boolean {
  return Date.now() - Date.parse(record.createdAt) < LAUNCHER_OWNS_MS && isLauncherAlive(record);
}

/** How long an exiting guardian waits for stops under way (see exit): a stop's cgroups get RELEASE_TIMEOUT_MS to empty. */
const EXIT_WAIT_MS = RELEASE_TIMEOUT_MS + 1_000;
const REAP_INTERVAL_MS = 2_000;

/**
 * The per-user guardian: tracks cloisters, owns their egress sockets, and cleans up after any that
 * died. Cloister records on disk are the source of truth, so a restarted guardian picks up every
 * running cloister (its egress socket is re-created at the same path) and loses nothing.
 */
class Guardian {
  private egress!: Egress;
  private audit!: AuditLog;
  private approvals!: ApprovalQueue;
  private hostCommands!: HostCommands;
  private vault!: Vault;
  private broker!: Broker;
  /** Keyed by cloister id: a cleanup of a dead cloister must not unwatch a new one of the same name. */
  private readonly protection = new ProtectionWatch((cloister, file) => void this.protectionLost(cloister, file));
  /** Likewise: symlinks planted in the git dirs of running cloisters (sandbox/git-symlinks.ts). */
  private readonly gitLinks = new GitSymlinkWatch((cloister, event) => void this.gitLinkFound(cloister, event));
  private ui: UiServer | undefined;
  /** The `ui.port` the UI was last started for (0: any free port). */
  private uiPort: number | undefined;
  /** Why the approval UI is not served (e.g. its port is taken); approvals still work from the CLI. */
  private uiError: string | undefined;
  private readonly startedAt = new Date().toISOString();
  /** Grants not yet followed by a started cloister, by name: see abandon. */
  private readonly launching = new Map<string, { id: string; project: string; at: number }>();
  private controlInode = 0;
  /** Cloisters being ended (see forget), by id: an exit waits for them, so none is left half removed. */
  private readonly forgetting = new Map<string, Promise<void>>();

  constructor(private readonly paths: CloisterPaths) {}

  async start(): Promise<void> {
    if ((await guardianStatus(this.paths)) || !(await holdInstanceLock(this.paths))) {
      process.stderr.write("cloister guardian: already running for this instance\n");
      process.exit(0);
    }
    ensurePrivateDir(this.paths.runtimeDir);
    // Now rather than at the first tunnel: a guardian without its relay would refuse every one.
    loadTunnelRelay();
    const policy = await loadPolicy(this.paths);
    const previous = await previousEnd(this.paths.auditDir);
    // Rotation settings come from the config (defaults while it is invalid); a reload applies new ones.
    this.audit = await AuditLog.open({ dir: this.paths.auditDir, maxBytes: policy.store?.audit.maxBytes, keep: policy.store?.audit.keep });
    const sessions = new SessionDecisionStore(join(this.paths.stateDir, "sessions"));
    this.approvals = new ApprovalQueue(this.decisionKeeper(), (event) => this.audit.append(event));
    const audit = (event: AuditEvent) => this.audit.append(event);
    this.vault = Vault.open(this.paths);
    this.broker = await Broker.open(this.paths, this.vault, () => ({ inspect: this.egress.settings.inspect, upstreamCa: this.egress.settings.upstream_ca }));
    this.egress = new Egress(this.paths, policy, {
      audit: this.audit,
      sessionDecisions: sessions,
      askDomain: (question, timeoutMs, signal) => this.approvals.askDomain(question, timeoutMs, signal),
      hostexecPort: (cloister) => this.hostCommands.port(cloister),
      credentials: (id) => ({ interception: (host, port) => this.broker.interception(id, host, port), active: () => this.broker.active(id) }),
    });
    this.hostCommands = new HostCommands(this.paths, () => this.egress.currentStore, () => this.egress.reload(), sessions, (question, timeoutMs, signal) => this.approvals.askCommand(question, timeoutMs, signal), audit);
    await this.startUi(policy.store?.uiPort ?? DEFAULT_UI_PORT);
    if (this.egress.policyError) log(`the configuration is invalid, so all egress is refused until it is fixed: ${this.egress.policyError}`);
    await this.reconcile();
    await serveControl(this.paths.guardianSocket, this.routes());
    this.controlInode = statSync(this.paths.guardianSocket).ino;
    writeFileSync(this.paths.guardianPidFile, `${process.pid}\n`, { mode: 0o600 });
    // Last, once everything above serves: a CLI that finds this file skips asking (ensureGuardian).
    const info: GuardianInfo = { pid: process.pid, startTime: processStartTime(process.pid) ?? "", build: BUILD, socketInode: this.controlInode };
    await writeFileAtomic(this.paths.guardianInfoFile, JSON.stringify(info), 0o600, false);
    setInterval(() => void this.tick(), REAP_INTERVAL_MS).unref();
    for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => void this.exit());
    // The daemon runs in its own session, so SIGHUP only ever comes from someone asking for a reload.
    process.on("SIGHUP", () => void this.reload().catch((error: unknown) => log(`reload failed, old policy kept: ${described(error)}`)));
    this.audit.append({ ...guardianRecord("guardian.start"), ...previous });
    if (previous.previous === "crashed") {
      log(`the previous guardian did not stop cleanly (its last audit record: ${previous.lastRecordAt ?? "none"}); connections it had open then have no egress.end record`);
    }
    if (previous.tail === "damaged") {
      log(`the audit log ended in bytes that are not a record (a write cut off by a crash or power loss), after its last record (${previous.lastRecordAt ?? "none"}); they were moved aside, see the audit.recovered record`);
    }
    log(`guardian ${VERSION} started (pid ${process.pid})`);
  }

  private routes() {
    return {
      ...vaultRoutes(this.vault, (event) => {
        this.audit.append(event);
        this.broker.invalidate();
      }),
      // The CLI hands an agent its credential when it starts the agent in cloister ID: a placeholder
      // the proxy swaps for the real value, unless no rule brokers the secret (then the value).
      // Over the 0600 control socket only.
      "GET /v1/agents/:name/credential/:id": async (_: unknown, [name = "", id = ""]: string[]) => {
        const credential = await agentCredential(this.vault, checkAgentName(name));
        if (!credential) return {};
        if (!/^[0-9a-f]{8}$/.test(id)) throw new CloisterError("invalid cloister id");
        const secret = credentialSecretName(name, credential.kind);
        const placeholder = await this.broker.placeholder(id, secret);
        if (placeholder === undefined) await this.refuseValueDelivery(secret);
        this.audit.append({ type: "secret.deliver", ...this.cloisterOf(id), agent: name, kind: credential.kind, placeholder: placeholder !== undefined });
        return placeholder !== undefined ? { kind: credential.kind, value: placeholder, placeholder: true } : { ...credential, placeholder: false };
      },
      // `--secret NAME=SECRET`: the cloister gets the placeholder of a brokered secret, never a value.
      "GET /v1/secrets/:name/placeholder/:id": async (_: unknown, [name = "", id = ""]: string[]) => {
        if (!/^[0-9a-f]{8}$/.test(id)) throw new CloisterError("invalid cloister id");
        const placeholder = await this.broker.placeholder(id, name);
        if (placeholder !== undefined) return { placeholder };
        await this.vault.get(name); // says "no secret named …" or "locked" when that is why
        throw new CloisterError(`the secret ${name} has no injection rule, so there is no placeholder to hand out (a cloister never gets a stored value)`, `say where it goes: cloister secret set ${name} --host HOST --header "Authorization: Bearer {}"`);
      },
      "GET /v1/broker": () => ({ caCertificate: this.broker.ca.certFile, trustBundle: this.broker.trustBundle }),
      "GET /v1/status": () => ({
        pid: process.pid,
        startedAt: this.startedAt,
        version: VERSION,
        build: BUILD,
        cloisters: listRecords(this.paths).length,
        controlSocket: this.paths.guardianSocket,
        // Why egress is refused for everyone, when the configuration does not load.
        policyError: this.egress.policyError ?? null,
        policyProblems: this.egress.policyProblems ?? null,
        policyLoadedAt: this.egress.policyLoadedAt ?? null,
        // Why the files no longer load, while the policy loaded before stays in force.
        reloadError: this.egress.reloadError ?? null,
        reloadProblems: this.egress.reloadProblems ?? null,
        openConnections: this.egress.openConnections,
        directListeners: this.egress.directListeners,
        auditDir: this.paths.auditDir,
        ui: this.ui?.url ?? null,
        uiError: this.uiError ?? null,
        pendingApprovals: this.approvals.pending().length,
      }),
      "GET /v1/approvals": () => ({ pending: this.approvals.pending(), recent: this.approvals.recent() }),
      "GET /v1/approvals/events": () =>
        new JsonLines((write, onClose) => {
          write({ type: "snapshot", pending: this.approvals.pending(), recent: this.approvals.recent() });
          onClose(this.approvals.subscribe(write));
        }),
      "POST /v1/approvals/:id/answer": (body: Record<string, unknown>, [id]: string[]) => this.approvals.answer(id ?? "", answerInput(body)),
      "POST /v1/decisions/:id/undo": (_: unknown, [id]: string[]) => this.approvals.undo(id ?? "", "cli"),
      "GET /v1/ui": () => {
        if (!this.ui) throw new CloisterError(`the approval UI is not running: ${this.uiError ?? "unknown reason"}`, "fix the cause, then restart the guardian (`cloister guardian stop`; it starts again with the next command); approvals still work with `cloister approvals`");
        return { url: this.ui.url, loginUrl: this.ui.loginUrl(), token: this.ui.apiToken };
      },
      "GET /v1/cloisters": () => listRecords(this.paths).map(cloisterListing),
      "POST /v1/cloisters": (body: Record<string, unknown>) =>
        this.register(String(body.name), String(body.id), body.network === true, String(body.project), String(body.projectRoot), body.session as SessionRules | undefined),
      "POST /v1/cloisters/:name/stop": (body: Record<string, unknown>, [name]: string[]) => this.stop(name ?? "", typeof body.id === "string" ? body.id : undefined),
      "POST /v1/cloisters/:name/abandon": (body: Record<string, unknown>, [name]: string[]) => ({ abandoned: this.abandon(name ?? "", String(body.id)) }),
      "POST /v1/reload": async () => ({ reloaded: true, uiWarning: (await this.reload()) ?? null }),
      "POST /v1/decisions": async (body: Record<string, unknown>) => {
        const rule = String(body.rule);
        const entry: RuleEntry = body.private === true ? { rule, private: true } : rule;
        const scope = body.scope === "global" ? "global" : "project";
        const project = scope === "project" ? String(body.project) : undefined;
        const list = body.list === "deny" ? "deny" : "allow";
        // A rule taken away decides no waiting request: they still wait for their human.
        if (body.remove === true) return { changed: await this.egress.undecide(scope, project, list, rule) };
        const changed = await this.egress.decide(scope, project, list, entry);
        this.approvals.policyChanged({ scope, rule, by: "cli" });
        return { changed };
      },
      // Replaced by a newer build: leave the cloisters running (the next guardian adopts them).
      "POST /v1/restart": () => {
        setImmediate(() => void this.exit());
        return { restarting: true };
      },
      "POST /v1/shutdown": async () => {
        const stopped = await this.stopAll();
        setImmediate(() => void this.exit());
        return { stopped };
      },
    };
  }

  /**
   * A stored value goes into a cloister only for a secret no rule was ever meant to broker (a custom
   * agent's credential without one). A built-in agent's credential, or a secret whose stored rule no
   * longer parses, is never handed out as a value: that would quietly undo the broker.
   */
  private async refuseValueDelivery(secret: string): Promise<void> {
    const info = (await this.vault.list()).find((entry) => entry.name === secret);
    const builtin = BUILTIN_RULES.some((rule) => rule.secret === secret);
    if (!info?.injectError && !builtin) return;
    throw new CloisterError(
      `the secret ${secret} is not handed to a cloister: ${info?.injectError ? `its injection rule is invalid (${info.injectError})` : "its rule cannot be applied"}`,
      `set its rule again: cloister secret set ${secret} --host HOST --header "NAME: {}" (or --no-inject for the built-in rule)`,
    );
  }

  /** Answers change what the egress side (and later the host command side) remembers. */
  private decisionKeeper(): DecisionKeeper {
    return {
      keep: (request, verdict, scope, wildcard) =>
        request.kind === "domain" ? this.egress.keepDomainAnswer(request, verdict, scope, wildcard) : this.hostCommands.keepAnswer(request, verdict, scope),
      revoke: (decision) => (decision.kind === "domain" ? this.egress.revokeDomainAnswer(decision) : this.hostCommands.revokeAnswer(decision)),
      recheck: (request) => (request.kind === "domain" ? this.egress.recheck(request) : this.hostCommands.recheck(request)),
    };
  }

  /**
   * Serves the approval UI on `port`, at start and after a reload that changed `ui.port` (QA H14: it
   * stayed on the old one) or while it could not be served. The new server is up before the old one
   * closes; one that cannot listen leaves the old one serving, and says why (also as the result).
   */
  private async startUi(port: number): Promise<string | undefined> {
    if (this.ui && port === this.uiPort) return undefined;
    try {
      const started = await UiServer.start({ service: this.approvals, port, assetsDir: join(PACKAGE_ROOT, "dist", "ui"), log });
      await this.ui?.close().catch(() => undefined);
      this.ui = started;
      this.uiPort = port;
      this.uiError = undefined;
      log(`the approval UI is served at ${started.url}`);
      return undefined;
    } catch (error) {
      const why = (error as Error).message;
      const warning = this.ui ? `the approval UI stays at ${this.ui.url} (ui.port ${port}: ${why})` : `the approval UI is not served: ${why}`;
      if (!this.ui) this.uiError = why;
      log(warning);
      return warning;
    }
  }

  /** The name and project of cloister ID, for audit records; nothing when no cloister has that id. */
  private cloisterOf(id: string): { cloister?: string; project?: string } {
    const record = listRecords(this.paths).find((r) => r.id === id);
    if (record) return { cloister: record.name, project: record.project };
    const launch = [...this.launching].find(([, l]) => l.id === id);
    return launch ? { cloister: launch[0], project: launch[1].project } : {};
  }

  /** A new cloister is about to launch: give it its egress socket and proxy token. */
  private async register(name: string, id: string, network: boolean, project: string, projectRoot: string, session: SessionRules | undefined): Promise<LaunchGrant> {
    if (!SAFE_NAME_RE.test(name) || !SAFE_NAME_RE.test(project) || !/^[0-9a-f]{8}$/.test(id)) throw new CloisterError("invalid cloister name, project or id");
    // Scanned for every launch (~10-20 ms as root): a reused scan would bind a secret file created
    // in /etc since then readable into this cloister.
    const grant: LaunchGrant = { hidden: hiddenPaths(process.getuid?.() ?? 0), build: BUILD };
    // Before anything else is opened for it: a git dir that cannot be watched refuses the launch.
    this.gitLinks.watch(id, name, writableGitDirs(projectRoot), Date.now());
    if (network) {
      grant.token = randomBytes(32).toString("hex");
      grant.socketDir = join(cloisterRuntimeDir(this.paths, id), "guardian");
      grant.trustBundle = this.broker.trustBundle;
      grant.nodeTrustFile = this.broker.nodeTrustFile;
      if (this.egress.policyError) grant.policyError = this.egress.policyError;
      // Opened before the start is recorded: a bad --allow rule fails the launch, and then no start is.
      await this.egress.open({ name, id, project, projectRoot, token: grant.token, socketDir: grant.socketDir, session }).catch((error: unknown) => {
        this.gitLinks.unwatch(id);
        throw error;
      });
    }
    // Watched from now on, not from the next reconcile: the launch record adds the full list.
    this.protection.watch(id, name, existingProtectedFiles(projectRoot));
    this.audit.append({ type: "cloister.start", cloister: name, project, network });
    this.launching.set(name, { id, project, at: Date.now() });
    return grant;
  }

  /**
   * A launch that never started its cloister (it failed after the grant, or its launcher died):
   * closes what register opened. Only the latest grant of that name, and never a started cloister.
   */
  private abandon(name: string, id: string): boolean {
    const launch = this.launching.get(name);
    const record = readRecord(this.paths, name);
    if (launch?.id !== id || (record?.id === id && isKeeperAlive(record))) return false;
    this.launching.delete(name);
    this.protection.unwatch(id);
    this.gitLinks.unwatch(id);
    this.egress.forget(name, id);
    this.broker.forget(id);
    // The grant made its egress socket's directory, and the runtime dir above it again when the
    // failed launch had already removed its own: both go, unless something else is in them.
    const runtimeDir = cloisterRuntimeDir(this.paths, id);
    for (const dir of [join(runtimeDir, "guardian"), runtimeDir]) {
      try {
        rmdirSync(dir);
      } catch {
        // Not there, or not empty: not ours to remove.
      }
    }
    this.audit.append({ type: "cloister.stop", cloister: name, project: launch.project });
    return true;
  }

  /** Re-reads the configuration; resolves with a warning when the approval UI could not follow it. */
  private async reload(): Promise<string | undefined> {
    await this.egress.reload();
    const rotation = this.egress.currentStore?.audit;
    if (rotation) this.audit.setRotation(rotation);
    this.approvals.policyChanged(null);
    const uiWarning = await this.startUi(this.egress.currentStore?.uiPort ?? DEFAULT_UI_PORT);
    this.audit.append(guardianRecord("guardian.reload"));
    log("configuration reloaded");
    return uiWarning;
  }

  /**
   * Stops the cloister named `name`; with `id`, only if it is still that one. A library handle stops
   * by id: a cloister of the same name started since its own was stopped is another, left running,
   * and checking here (not only in the caller) leaves no moment between the check and the stop.
   */
  private async stop(name: string, id?: string): Promise<{ stopped: string }> {
    const record = readRecord(this.paths, name);
    if (!record || (id !== undefined && record.id !== id)) throw noSuchCloister(name);
    await this.forget(record, "a stop request (`cloister stop`, `rm -f`, `worktree remove -f`, a library's stop())");
    return { stopped: name };
  }

  private async stopAll(): Promise<string[]> {
    const snapshot = snapshotCloisters(this.paths);
    await Promise.all([...snapshot.records.map((r) => this.forget(r, "`cloister guardian stop`")), this.sweepUnrecorded(snapshot)]);
    return snapshot.records.map((r) => r.name);
  }

  /**
   * Ends a cloister, or joins its end already under way: its removal may take seconds (a `run`'s
   * HOME of many files), while its record still names it to a second stop and to reconcile.
   */
  private forget(record: CloisterRecord, by = "the guardian"): Promise<void> {
    const underWay = this.forgetting.get(record.id);
    if (underWay) return underWay;
    const done = this.forgetNow(record, by).finally(() => this.forgetting.delete(record.id));
    this.forgetting.set(record.id, done);
    return done;
  }

  /** `by`: who ends it, in words, for a command still running in it to say (stopMarkOf). */
  private async forgetNow(record: CloisterRecord, by: string): Promise<void> {
    if (this.launching.get(record.name)?.id === record.id) this.launching.delete(record.name);
    this.protection.unwatch(record.id);
    this.gitLinks.unwatch(record.id);
    this.egress.forget(record.name, record.id);
    this.broker.forget(record.id);
    this.hostCommands.close(record.name);
    await destroyCloister(this.paths, record, by, (ended, path, error) => {
      log(removedLinkWords(ended, path, error));
      this.audit.append({ type: "cloister.git-symlink", cloister: ended.name, project: ended.project, file: path, at: "end", ...(error === undefined ? {} : { error }) });
    });
    this.audit.append({ type: "cloister.stop", cloister: record.name, project: record.project });
  }

  /** Adopts live cloisters (re-opening their egress sockets) and cleans up dead ones. */
  private async reconcile(): Promise<void> {
    for (const [name, launch] of this.launching) {
      const record = readRecord(this.paths, name);
      // Its record is there: started (the records below take over), or still starting.
      if (record?.id === launch.id) {
        if (record.keeperPid !== undefined) this.launching.delete(name);
      } else if (Date.now() - launch.at > LAUNCH_GRACE_MS) {
        this.abandon(name, launch.id);
      }
    }
    const snapshot = snapshotCloisters(this.paths);
    for (const record of snapshot.records) {
      if (this.forgetting.has(record.id)) continue; // being ended already: its removal may take a while
      if (isKeeperAlive(record)) {
        if (record.protectedFiles) this.protection.watch(record.id, record.name, record.protectedFiles);
        this.watchGitDirs(record);
        if (record.network && record.proxyToken && !this.egress.has(record.name)) {
          const socketDir = join(cloisterRuntimeDir(this.paths, record.id), "guardian");
          // One cloister whose policy cannot load (its project file broke since) stays without
          // network, fail closed; it must not keep the guardian from adopting the others.
          const { name, id, project, projectRoot, proxyToken: token, session } = record;
          await this.egress
            .open({ name, id, project, projectRoot, token, socketDir, session })
            .catch((error: unknown) => log(`cloister ${record.name} has no network until its policy loads: ${described(error)}`));
        }
      } else if (launcherStillOwns(record)) {
        continue;
      } else if (record.keeperPid !== undefined || isLaunchOrphaned(record) || launchOverdue(record)) {
        log(`cloister ${record.name} is gone; cleaning up`);
        await this.forget(record);
      }
    }
    await this.sweepUnrecorded(snapshot);
    // Events the kernel dropped (a queue flooded on purpose) hide no link for longer than this tick.
    this.gitLinks.sweep();
    this.broker.forgetAllBut(new Set([...snapshot.records.map((r) => r.id), ...[...this.launching.values()].map((launch) => launch.id)]), Date.now() - LAUNCH_GRACE_MS);
    await removeDeferredPlaceholders(this.paths).catch((error: unknown) => log(`placeholders left for another instance's cloister are not removed yet: ${described(error)}`));
  }

  /**
   * Ends the cloisters whose record is unreadable (see orphans.ts), found by their runtime dirs.
   * A launch writes its record before it makes its runtime dir, so such a dir is no launch's; a
   * grant's dir (abandon removes it) and any dir changed within LAUNCH_GRACE_MS are left alone all
   * the same, so that a launch stays safe whatever that order becomes. The unreadable records are
   * set aside once no unrecorded dir is left: until then one of them may be all that is left of
   * such a cloister.
   */
  private async sweepUnrecorded(snapshot: CloisterSnapshot): Promise<void> {
    const granted = new Set([...this.launching.values()].map((launch) => launch.id));
    const unrecorded = unrecordedIds(snapshot);
    for (const id of unrecorded) {
      if (granted.has(id) || !runtimeDirUnchangedFor(this.paths, id, LAUNCH_GRACE_MS)) continue;
      const known = this.egress.cloisterWithId(id);
      log(`cloister ${known ? `${known.name} (id ${id})` : `#${id}`} is gone: no readable record names it; cleaning up`);
      const record = orphanRecord(this.paths, id, known);
      await this.forget(record);
    }
    if (snapshot.unreadable.length === 0) return;
    if (unrecorded.length > 0 && unrecordedIds(snapshotCloisters(this.paths)).length > 0) return;
    for (const file of await setAsideUnreadableRecords(this.paths)) log(`the cloister record ${file} is unreadable: moved to ${file}.unreadable`);
  }

  /** A protected file was replaced on the host: its read-only mount is gone, so the cloister goes too. */
  private protectionLost(cloister: { id: string; name: string }, file: string): Promise<void> {
    return this.stopAtOnce(cloister, {
      cause: `${file} was replaced on the host`,
      log: `${file} was replaced on the host, which lifts its read-only protection inside; stopping the cloister (start it again to protect the new file)`,
      audit: { type: "cloister.protection-lost", file },
    });
  }

  /** A symlink appeared in a git dir the cloister writes (removed already), or a directory there cannot be watched. */
  private gitLinkFound(cloister: { id: string; name: string }, event: GitLinkEvent): Promise<void> {
    if (event.kind === "unwatchable") {
      return this.stopAtOnce(cloister, {
        cause: `${event.path} cannot be watched`,
        log: `cannot watch ${event.path} for symbolic links the cloister could plant there (${event.error}); stopping the cloister`,
        audit: { type: "cloister.git-unwatched", file: event.path, error: event.error },
      });
    }
    const removed = event.error === undefined ? "removed it" : `could not remove it (${event.error}): remove it before running git there`;
    return this.stopAtOnce(cloister, {
      cause: `it planted a symbolic link at ${event.path}`,
      log: `a symbolic link appeared at ${event.path}, in a git dir the cloister writes (the host's git would write through it, outside the project); ${removed}, stopping the cloister`,
      audit: { type: "cloister.git-symlink", file: event.path, at: "running", ...(event.error === undefined ? {} : { error: event.error }) },
    });
  }

  /** The git dirs of a running cloister, watched from its start on (a guardian adopting it removes the links it made meanwhile). */
  private watchGitDirs(record: CloisterRecord): void {
    try {
      this.gitLinks.watch(record.id, record.name, writableGitDirs(record.projectRoot), Date.parse(record.createdAt) || 0);
    } catch (error) {
      const why = described(error);
      void this.stopAtOnce(record, { cause: why, log: `${why}; stopping the cloister`, audit: { type: "cloister.git-unwatched", file: record.projectRoot, error: why } });
    }
  }

  /**
   * A protection of a running cloister failed (`cause`, in words): every process of it ends at once,
   * synchronously, before anything else, while the agent may be polling for the moment it can act;
   * then it is logged, audited (`audit`: the record's type and fields) and removed.
   */
  private async stopAtOnce(cloister: { id: string; name: string }, why: { cause: string; log: string; audit: AuditEvent }): Promise<void> {
    // By id: a name is used again once its cloister is gone, and the new one's watches are its own.
    const record = readRecord(this.paths, cloister.name);
    if (record?.id !== cloister.id) {
      this.protection.unwatch(cloister.id);
      this.gitLinks.unwatch(cloister.id);
      return;
    }
    killCloisterNow(record, `the guardian: ${why.cause}`);
    log(`cloister ${record.name}: ${why.log}`);
    const { type, ...fields } = why.audit;
    this.audit.append({ type, cloister: record.name, project: record.project, ...fields });
    await this.forget(record);
  }

  private async tick(): Promise<void> {
    // Another guardian took over the control socket (e.g. two started at once): leave quietly.
    try {
      if (statSync(this.paths.guardianSocket).ino !== this.controlInode) return void this.exit();
    } catch {
      return void this.exit();
    }
    await this.reconcile().catch((error: unknown) => log(`reconcile failed: ${String(error)}`));
  }

  /** Removes guardianInfoFile if it is this guardian's (a guardian that took over wrote its own). */
  private forgetInfoFile(): void {
    if (readGuardianInfo(this.paths)?.pid === process.pid) rmSync(this.paths.guardianInfoFile, { force: true });
  }

  private async exit(): Promise<never> {
    // First: from now on a CLI asks (and finds no guardian) instead of trusting the file.
    this.forgetInfoFile();
    // A stop or clean-up under way finishes first (killed processes go within milliseconds; the
    // bound is for a cgroup that will not empty): cut short, it would leave cgroups behind, and its
    // record, which the next guardian would have to clean up, if this instance is still there.
    await Promise.race([Promise.allSettled(this.forgetting.values()), new Promise((resolve) => setTimeout(resolve, EXIT_WAIT_MS))]);
    this.protection.close();
    this.gitLinks.close();
    this.approvals.cancelAll();
    await this.ui?.close().catch(() => undefined);
    this.egress.closeAll();
    this.audit.append(guardianRecord("guardian.stop"));
    await this.audit.close().catch(() => undefined);
    try {
      if (statSync(this.paths.guardianSocket).ino === this.controlInode) {
        rmSync(this.paths.guardianSocket, { force: true });
        rmSync(this.paths.guardianPidFile, { force: true });
      }
    } catch {
      // Nothing to remove.
    }
    log("guardian stopped");
    process.exit(0);
  }
}

/**
 * One guardian per instance, even when two start at the same moment (two CLI calls racing): both
 * would otherwise append to the same audit chain and fork it. The lock is an abstract unix socket
 * named after the instance: the kernel releases it when the holder dies, even by kill -9, so there
 * is no stale lock file to judge. (Abstract names have no permissions: another local user could
 * squat the name and keep this guardian from starting, but could not impersonate it.)
 */
async function holdInstanceLock(paths: CloisterPaths): Promise<boolean> {
  const digest = createHash("sha256").update(paths.runtimeDir).digest("hex").slice(0, 24);
  const lock = createServer();
  return new Promise((resolve) => {
    lock.once("error", () => resolve(false));
    lock.listen(`\0cloister-guardian-${process.getuid?.() ?? 0}-${digest}`, () => {
      lock.unref();
      resolve(true);
    });
  });
}

/** The mandatory protected paths of a project that are files now (the launch adds placeholders and extras). */
function existingProtectedFiles(projectRoot: string): string[] {
  return MANDATORY_PROTECTED.map((rel) => join(projectRoot, rel)).filter((path) => entryKind(path) === "file");
}

/**
 * A record of this guardian's start, reload or stop: each says which process and version it was
 * (docs/audit.md), so a log that spans upgrades and restarts shows which guardian did what.
 */
function guardianRecord(type: "guardian.start" | "guardian.reload" | "guardian.stop"): AuditEvent {
  return { type, pid: process.pid, version: VERSION };
}

/** An answer from the CLI; the queue checks the values, this only gives them their types. */
function answerInput(body: Record<string, unknown>): AnswerInput {
  return { verdict: body.verdict as AnswerInput["verdict"], scope: (body.scope ?? "once") as AnswerInput["scope"], wildcard: body.wildcard === true, by: "cli" };
}

function log(message: string): void {
  process.stderr.write(`${new Date().toISOString()} ${message}\n`);
}

/** An error for the log: a CloisterError as its one line (a ConfigError's names every problem), else as node gives it. */
function described(error: unknown): string {
  return error instanceof CloisterError ? error.oneLine() : String(error);
}

try {
  await new Guardian(resolvePaths()).start();
} catch (error) {
  // The CLI that started this guardian reads this line back from the log (control-client.ts) and
  // tells the user why; the stack stays in the log for a bug report.
  if (!(error instanceof CloisterError)) process.stderr.write(`${(error as Error)?.stack ?? String(error)}\n`);
  process.stderr.write(`${GUARDIAN_FAILED}${error instanceof CloisterError ? error.oneLine() : String((error as Error)?.message ?? error)}\n`);
  process.exit(1);
}
