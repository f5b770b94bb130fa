/** A cloister record with every field a record needs (one missing counts as no record), for tests that write one. */
import type { CloisterRecord } from "../../src/sandbox/records.js";

export function sampleRecord(name: string, fields: Partial<CloisterRecord> = {}): CloisterRecord {
  return {
    name,
    id: "0123abcd",
    project: "p",
    projectRoot: "/p",
    persistent: true,
    network: false,
    createdAt: new Date(0).toISOString(),
    keeperPid: 42,
    initSocket: "/r/init.sock",
    runtimeDir: "/r",
    homeDir: "/h",
    ephemeralHome: false,
    cgroupDirs: [],
    placeholders: [],
    limitMechanism: "rlimit",
    ...fields,
  };
}
