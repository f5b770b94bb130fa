/**
 * What a running cloister remembers of the agent it was set up for: a small file in its runtime
 * directory (on the host, outside the cloister, removed with it). Kept free of other imports: the
 * library checks for it on every `exec`.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface AgentMarker {
  name: string;
  /** The launcher's name in the agent-bin directory. */
  command: string;
}

const markerFile = (runtimeDir: string) => join(runtimeDir, "agent.json");

export function hasAgentMarker(runtimeDir: string): boolean {
  return existsSync(markerFile(runtimeDir));
}

export function writeAgentMarker(runtimeDir: string, marker: AgentMarker): void {
  writeFileSync(markerFile(runtimeDir), JSON.stringify(marker), { mode: 0o600 });
}

export function readAgentMarker(runtimeDir: string): AgentMarker | undefined {
  try {
    const data = JSON.parse(readFileSync(markerFile(runtimeDir), "utf8")) as Partial<AgentMarker>;
    return typeof data.name === "string" && typeof data.command === "string" ? { name: data.name, command: data.command } : undefined;
  } catch {
    return undefined;
  }
}
