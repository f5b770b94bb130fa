import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { resolvePaths } from "../../src/config/paths.js";
import { listRecords, readRecord, writeRecord } from "../../src/sandbox/records.js";
import { sampleRecord as record } from "../helpers/records.js";

const base = mkdtempSync(join(tmpdir(), "crec-"));
after(() => rmSync(base, { recursive: true, force: true }));

describe("records that do not read as records", () => {
  it("count as no record (torn, empty, wrong field types, another name), and leave the others listed", () => {
    const paths = resolvePaths({ CLOISTER_HOME: join(base, "a") });
    writeRecord(paths, record("healthy"));
    mkdirSync(paths.cloisterRecordDir, { recursive: true });
    const bad: Record<string, string> = {
      torn: '{"name": "torn", "id": "01',
      empty: "",
      nothing: "{}",
      typed: JSON.stringify({ ...record("typed"), name: 5, keeperPid: "abc" }),
      listless: JSON.stringify({ ...record("listless"), cgroupDirs: "text" }),
      renamed: JSON.stringify(record("other-name")),
    };
    for (const [name, text] of Object.entries(bad)) writeFileSync(join(paths.cloisterRecordDir, `${name}.json`), text);
    for (const name of Object.keys(bad)) assert.equal(readRecord(paths, name), undefined, name);
    assert.deepEqual(listRecords(paths).map((r) => r.name), ["healthy"]);
  });
});
