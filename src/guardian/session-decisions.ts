import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { ensurePrivateDir, writeFileAtomic } from "../config/atomic-write.js";
import { SerialQueue } from "../serial-queue.js";

/**
 * Answers a human gave "for this session": they last as long as the cloister, also across a
 * guardian restart, and die with it. Kept per cloister id (random per launch, unlike names, which
 * a later cloister reuses) in the guardian's state dir, which no cloister can see or write.
 */
export interface SessionDecisions {
  egress: { allow: string[]; deny: string[] };
  commands: { allow: string[][]; deny: string[][] };
}

export function emptySessionDecisions(): SessionDecisions {
  return { egress: { allow: [], deny: [] }, commands: { allow: [], deny: [] } };
}

export class SessionDecisionStore {
  /** Updates are chained: two answers at once must not both read the old file and lose one. */
  private readonly updates = new SerialQueue();

  constructor(private readonly dir: string) {}

  /** Reads, changes and writes back a cloister's remembered answers, one update at a time. */
  update(id: string, change: (decisions: SessionDecisions) => void): Promise<void> {
    return this.updates.run(async () => {
      const decisions = this.load(id);
      change(decisions);
      await this.save(id, decisions);
    });
  }

  /**
   * A cloister's remembered answers; none when it has none. An unreadable file throws: a session
   * deny silently forgotten would reopen what a human closed.
   */
  load(id: string): SessionDecisions {
    let text: string;
    try {
      text = readFileSync(this.file(id), "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return emptySessionDecisions();
      throw error;
    }
    const parsed = JSON.parse(text) as SessionDecisions;
    if (!isSessionDecisions(parsed)) throw new Error(`${this.file(id)} is not a session decision file`);
    return parsed;
  }

  private async save(id: string, decisions: SessionDecisions): Promise<void> {
    ensurePrivateDir(this.dir);
    await writeFileAtomic(this.file(id), `${JSON.stringify(decisions)}\n`, 0o600);
  }

  remove(id: string): void {
    rmSync(this.file(id), { force: true });
  }

  private file(id: string): string {
    if (!/^[0-9a-f]{8}$/.test(id)) throw new Error(`invalid cloister id ${JSON.stringify(id)}`);
    return join(this.dir, `${id}.json`);
  }
}

function isSessionDecisions(value: SessionDecisions): boolean {
  const strings = (list: unknown) => Array.isArray(list) && list.every((item) => typeof item === "string");
  const argvs = (list: unknown) => Array.isArray(list) && list.every(strings);
  return strings(value?.egress?.allow) && strings(value?.egress?.deny) && argvs(value?.commands?.allow) && argvs(value?.commands?.deny);
}
