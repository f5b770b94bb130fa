import { randomBytes } from "node:crypto";
import { statSync, writeFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { cloisterRuntimeDir, resolvePaths, type CloisterPaths } from "../config/paths.js";
import { ensurePrivateDir } from "../config/atomic-write.js";
import { CloisterError } from "../errors.js";
import { hiddenPaths, type HiddenPaths } from "../sandbox/bwrap/host-facts.js";
import { destroyCloister } from "../sandbox/engine.js";
import { isKeeperAlive, listRecords, readRecord, type CloisterRecord } from "../sandbox/records.js";
import { VERSION } from "../version.js";
import { serveControl } from "./control-server.js";
import { EgressEndpoint } from "./egress.js";
import { guardianStatus } from "./control-client.js";

/** A record without a keeper yet is a launch in progress; after this long it is a failed one. */
const LAUNCH_GRACE_MS = 60_000;
const REAP_INTERVAL_MS = 2_000;
const HIDDEN_PATHS_TTL_MS = 5_000;

/**
 * The per-user guardian: tracks cloisters, owns their egress sockets, and cleans up after any that
 * died. Cloister records on disk are the source of truth, so a restarted guardian picks up every
 * running cloister (its egress socket is re-created at the same path) and loses nothing.
 */
class Guardian {
  private readonly endpoints = new Map<string, EgressEndpoint>();
  private readonly startedAt = new Date().toISOString();
  private controlInode = 0;
  private hidden?: { at: number; value: HiddenPaths };

  constructor(private readonly paths: CloisterPaths) {}

  async start(): Promise<void> {
    if (await guardianStatus(this.paths)) {
      process.stderr.write("cloister guardian: already running for this instance\n");
      process.exit(0);
    }
    await ensurePrivateDir(this.paths.runtimeDir);
    await this.reconcile();
    await serveControl(this.paths.guardianSocket, this.routes());
    this.controlInode = statSync(this.paths.guardianSocket).ino;
    writeFileSync(this.paths.guardianPidFile, `${process.pid}\n`, { mode: 0o600 });
    setInterval(() => void this.tick(), REAP_INTERVAL_MS).unref();
    for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => this.exit());
    // A detached daemon must survive its starting terminal going away.
    process.on("SIGHUP", () => undefined);
    log(`guardian ${VERSION} started (pid ${process.pid}), ${this.endpoints.size} cloister(s) adopted`);
  }

  private routes() {
    return {
      "GET /v1/status": () => ({
        pid: process.pid,
        startedAt: this.startedAt,
        version: VERSION,
        cloisters: listRecords(this.paths).length,
        controlSocket: this.paths.guardianSocket,
      }),
      "GET /v1/cloisters": () => listRecords(this.paths).map((r) => ({ ...publicView(r), running: isKeeperAlive(r) })),
      "POST /v1/cloisters": (body: Record<string, unknown>) => this.register(String(body.name), String(body.id), body.network === true),
      "POST /v1/cloisters/:name/stop": (_: unknown, [name]: string[]) => this.stop(name ?? ""),
      "POST /v1/reload": () => ({ reloaded: true }),
      "POST /v1/shutdown": async () => {
        const stopped = await this.stopAll();
        setImmediate(() => this.exit());
        return { stopped };
      },
    };
  }

  /** A new cloister is about to launch: give it its egress socket and proxy token. */
  private async register(name: string, id: string, network: boolean): Promise<{ token?: string; socketDir?: string; hidden: HiddenPaths }> {
    if (!/^[a-z0-9][a-z0-9._-]{0,62}$/.test(name) || !/^[0-9a-f]{8}$/.test(id)) throw new CloisterError("invalid cloister name or id");
    const hidden = this.hiddenPaths();
    if (!network) return { hidden };
    const token = randomBytes(32).toString("hex");
    const socketDir = join(cloisterRuntimeDir(this.paths, id), "guardian");
    this.endpoints.get(name)?.close();
    this.endpoints.set(name, await EgressEndpoint.open(name, token, socketDir));
    return { token, socketDir, hidden };
  }

  /**
   * The secrets to cover in every cloister's system view. Scanning /etc costs ~15 ms, more than the
   * rest of a launch, so the result is reused for a few seconds: a secret file created in /etc is
   * covered from the next scan on.
   */
  private hiddenPaths(): HiddenPaths {
    if (!this.hidden || Date.now() - this.hidden.at > HIDDEN_PATHS_TTL_MS) {
      this.hidden = { at: Date.now(), value: hiddenPaths(process.getuid?.() ?? 0) };
    }
    return this.hidden.value;
  }

  private async stop(name: string): Promise<{ stopped: string }> {
    const record = readRecord(this.paths, name);
    if (!record) throw new CloisterError(`no cloister named ${JSON.stringify(name)}`, "see `cloister list`");
    await this.forget(record);
    return { stopped: name };
  }

  private async stopAll(): Promise<string[]> {
    const records = listRecords(this.paths);
    await Promise.all(records.map((r) => this.forget(r)));
    return records.map((r) => r.name);
  }

  private async forget(record: CloisterRecord): Promise<void> {
    this.endpoints.get(record.name)?.close();
    this.endpoints.delete(record.name);
    await destroyCloister(this.paths, record);
  }

  /** Adopts live cloisters (re-opening their egress sockets) and cleans up dead ones. */
  private async reconcile(): Promise<void> {
    for (const record of listRecords(this.paths)) {
      if (isKeeperAlive(record)) {
        if (record.network && record.proxyToken && !this.endpoints.has(record.name)) {
          const socketDir = join(cloisterRuntimeDir(this.paths, record.id), "guardian");
          this.endpoints.set(record.name, await EgressEndpoint.open(record.name, record.proxyToken, socketDir));
        }
      } else if (record.keeperPid !== undefined || Date.now() - Date.parse(record.createdAt) > LAUNCH_GRACE_MS) {
        log(`cloister ${record.name} is gone; cleaning up`);
        await this.forget(record);
      }
    }
  }

  private async tick(): Promise<void> {
    // Another guardian took over the control socket (e.g. two started at once): leave quietly.
    try {
      if (statSync(this.paths.guardianSocket).ino !== this.controlInode) this.exit();
    } catch {
      this.exit();
    }
    await this.reconcile().catch((error: unknown) => log(`reconcile failed: ${String(error)}`));
  }

  private exit(): never {
    for (const endpoint of this.endpoints.values()) endpoint.close();
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

/** What `list` may show: never the proxy token. */
function publicView(record: CloisterRecord): Omit<CloisterRecord, "proxyToken"> {
  const { proxyToken: _omitted, ...rest } = record;
  return rest;
}

function log(message: string): void {
  process.stderr.write(`${new Date().toISOString()} ${message}\n`);
}

await new Guardian(resolvePaths()).start();
