import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { generateKeyPairSync } from "node:crypto";
import { appendFile, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { after, before, describe, test } from "node:test";
import type { Worker } from "node:worker_threads";
import { GENESIS_PREV, hashLine } from "../../src/audit/chain.js";
import { listLogFiles, rotateFiles } from "../../src/audit/files.js";
import { formatRecordLine } from "../../src/audit/format.js";
import { AuditLog, type AuditEvent } from "../../src/audit/log.js";
import { recordBody, SEGMENT_TYPE, signedLine, type AuditRecord } from "../../src/audit/record.js";
import { signBody } from "../../src/audit/signing.js";
import { previousEnd } from "../../src/audit/resume.js";
import { LogFollower } from "../../src/audit/tail.js";
import { describeVerifyResult, verifyAuditLog } from "../../src/audit/verify.js";
import { resolvePaths } from "../../src/config/paths.js";
import { CloisterError } from "../../src/errors.js";

const REPO_ROOT = new URL("../..", import.meta.url).pathname;

let scratch = "";
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), "cloister-audit-test-"));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

let counter = 0;
/** A fresh, not yet existing log directory per test. */
function freshDir(): string {
  return join(scratch, `log-${++counter}`);
}

function egress(i: number, extra: Partial<AuditEvent> = {}): AuditEvent {
  return {
    type: "egress",
    cloister: "c1",
    project: "proj",
    protocol: "connect",
    host: `host-${i}.example.com`,
    port: 443,
    address: "93.184.216.34",
    decision: i % 5 === 0 ? "deny" : "allow",
    rule: "*.example.com",
    tier: "global",
    ...extra,
  } as AuditEvent;
}

/** A script for a child process (run with tsx): `body`, after an import of AuditLog from the sources. */
async function auditScript(name: string, body: string): Promise<string> {
  const script = join(scratch, `${name}-${++counter}.mts`);
  await writeFile(script, `import { AuditLog } from ${JSON.stringify(pathToFileURL(join(REPO_ROOT, "src/audit/log.ts")).href)};\n${body}`);
  return script;
}

/** A closed log with a genesis header (seq 1) and `count` egress records (seq 2 … count+1). */
async function writeLog(count: number, options: { maxBytes?: number; keep?: number } = {}): Promise<string> {
  const dir = freshDir();
  const log = await AuditLog.open({ dir, ...options });
  for (let i = 0; i < count; i++) log.append(egress(i));
  await log.close();
  return dir;
}

async function lines(file: string): Promise<string[]> {
  const text = await readFile(file, "utf8");
  return text.split("\n").filter((line, i, all) => line !== "" || i < all.length - 1);
}

async function records(dir: string): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for (const file of await listLogFiles(dir)) for (const line of await lines(file)) out.push(JSON.parse(line) as AuditRecord);
  return out;
}

/** Rewrite audit.jsonl through `edit` (an array of its lines). */
async function tamper(dir: string, edit: (lines: string[]) => string[]): Promise<void> {
  const file = join(dir, "audit.jsonl");
  await writeFile(file, edit(await lines(file)).map((line) => `${line}\n`).join(""));
}

function mode(info: { mode: number }): number {
  return info.mode & 0o777;
}

/** Runs `action` with this process's stderr caught instead of printed; returns what it printed. */
async function catchStderr(action: () => unknown): Promise<string> {
  const stderr = process.stderr.write;
  let printed = "";
  process.stderr.write = ((chunk: string) => ((printed += chunk), true)) as typeof process.stderr.write;
  try {
    await action();
  } finally {
    process.stderr.write = stderr;
  }
  return printed;
}

/**
 * Makes the log's audit worker thread die at its next message, the way a bug in it would: an
 * append whose events are not a list throws in its message handler, which nothing catches.
 */
function crashWorker(log: AuditLog): void {
  (log as unknown as { worker: Worker }).worker.postMessage({ kind: "append", events: null });
}

// ---------------------------------------------------------------------------------------------------
describe("audit log: chain and signatures", () => {
  test("a written log verifies, from its genesis record", async () => {
    const dir = await writeLog(20);
    const result = await verifyAuditLog(dir);
    assert.equal(result.ok, true, describeVerifyResult(result));
    assert.equal(result.records, 21);
    assert.deepEqual(result.chainStart, { seq: 1, genesis: true });
    assert.equal(result.lastSeq, 21);
    assert.deepEqual(result.files, [join(dir, "audit.jsonl")]);
  });

  test("record format: seq, time, event fields, prev, then sig; first record links to the genesis marker", async () => {
    const dir = await writeLog(2);
    const all = await lines(join(dir, "audit.jsonl"));
    const first = JSON.parse(all[0] ?? "") as AuditRecord;
    assert.equal(first.seq, 1);
    assert.equal(first.type, SEGMENT_TYPE);
    assert.equal(first.reason, "genesis");
    assert.equal(first.prev, GENESIS_PREV);
    const second = JSON.parse(all[1] ?? "") as AuditRecord;
    assert.deepEqual(Object.keys(second), ["seq", "time", "type", "cloister", "project", "protocol", "host", "port", "address", "decision", "rule", "tier", "prev", "sig"]);
    assert.equal(second.prev, hashLine(all[0] ?? ""));
    assert.ok(!Number.isNaN(Date.parse(second.time)));
    assert.match(second.sig, /^[A-Za-z0-9+/]{86}==$/);
  });

  test("the signed bytes are the line without its sig member", async () => {
    const dir = await writeLog(1);
    const line = (await lines(join(dir, "audit.jsonl")))[1] ?? "";
    const { sig, ...rest } = JSON.parse(line) as AuditRecord;
    assert.equal(line, signedLine(JSON.stringify(rest), sig));
  });

  test("append assigns seq in call order; flush puts every record on disk", async () => {
    const dir = freshDir();
    const log = await AuditLog.open({ dir });
    for (let i = 0; i < 500; i++) log.append(egress(i, { n: i }));
    assert.equal(await log.lastSeq(), 501);
    await log.flush();
    const all = await records(dir);
    assert.equal(all.length, 501);
    all.slice(1).forEach((record, i) => {
      assert.equal(record.seq, i + 2);
      assert.equal(record.n, i);
    });
    await log.close();
  });

  test("publicKeyPem is the key in signing-key.pub.pem", async () => {
    const dir = freshDir();
    const log = await AuditLog.open({ dir });
    assert.equal(log.publicKeyPem, await readFile(join(dir, "signing-key.pub.pem"), "utf8"));
    assert.match(log.publicKeyPem, /^-----BEGIN PUBLIC KEY-----/);
    await log.close();
  });
});

// ---------------------------------------------------------------------------------------------------
describe("audit verify: tampering is found, at the right record", () => {
  // Line n holds seq n (line 1 is the genesis header).
  test("an edited record fails its signature", async () => {
    const dir = await writeLog(10);
    await tamper(dir, (all) => all.map((line, i) => (i === 5 ? line.replace('"decision":"allow"', '"decision":"deny"') : line)));
    const result = await verifyAuditLog(dir);
    assert.equal(result.ok, false);
    assert.deepEqual({ ...result.firstBad, reason: undefined }, { file: join(dir, "audit.jsonl"), line: 6, seq: 6, reason: undefined });
    assert.match(result.firstBad?.reason ?? "", /signature does not verify/);
    assert.equal(result.records, 5);
  });

  test("an emptied log is not intact: every file the guardian makes starts with a segment record", async () => {
    const dir = await writeLog(3);
    await tamper(dir, () => []);
    const result = await verifyAuditLog(dir);
    assert.equal(result.ok, false);
    assert.equal(result.records, 0);
    assert.equal(describeVerifyResult(result), `${join(dir, "audit.jsonl")} line 1: no records: the guardian begins every log file with an audit.segment record, so this log was emptied`);
  });

  test("an edit that keeps the JSON equal but changes bytes (spacing) fails too", async () => {
    const dir = await writeLog(5);
    await tamper(dir, (all) => all.map((line, i) => (i === 2 ? line.replace('"port":443', '"port": 443') : line)));
    const result = await verifyAuditLog(dir);
    assert.equal(result.firstBad?.line, 3);
    assert.match(result.firstBad?.reason ?? "", /signature/);
  });

  test("deleted records: the one after them is named, with how many are missing", async () => {
    const dir = await writeLog(10);
    await tamper(dir, (all) => all.filter((_, i) => i !== 4 && i !== 5));
    const result = await verifyAuditLog(dir);
    assert.deepEqual(result.firstBad, { file: join(dir, "audit.jsonl"), line: 5, seq: 7, expectedSeq: 5, reason: "seq 7 where 5 was expected: 2 record(s) missing" });
  });

  test("two records swapped: out of order, not missing, naming where the expected one is", async () => {
    const dir = await writeLog(10);
    await tamper(dir, (all) => all.map((line, i) => (i === 3 ? (all[4] ?? "") : i === 4 ? (all[3] ?? "") : line)));
    const result = await verifyAuditLog(dir);
    assert.deepEqual(result.firstBad, { file: join(dir, "audit.jsonl"), line: 4, seq: 5, expectedSeq: 4, reason: "records out of order: seq 5 where 4 was expected; seq 4 is at audit.jsonl line 5" });
  });

  test("a record moved further on: out of order, with the line it is on now", async () => {
    const dir = await writeLog(10);
    await tamper(dir, (all) => [...all.slice(0, 3), ...all.slice(4, 8), all[3] ?? "", ...all.slice(8)]);
    const result = await verifyAuditLog(dir);
    assert.equal(describeVerifyResult(result), `${join(dir, "audit.jsonl")} line 4 (seq 5): records out of order: seq 5 where 4 was expected; seq 4 is at audit.jsonl line 8`);
  });

  test("one record deleted and the next moved further on: the deleted one is missing, the other said to be out of order", async () => {
    const dir = await writeLog(10);
    await tamper(dir, (all) => [...all.slice(0, 4), ...all.slice(6), all[5] ?? ""]);
    const result = await verifyAuditLog(dir);
    assert.equal(result.firstBad?.line, 5);
    assert.equal(result.firstBad?.reason, "seq 7 where 5 was expected: 1 record(s) missing; seq 6 is further on, out of order");
  });

  test("a line claiming a deleted record's seq, not signed by the key, does not make the gap 'out of order'", async () => {
    const dir = await writeLog(10);
    const other = generateKeyPairSync("ed25519").privateKey;
    await tamper(dir, (all) => {
      const body = recordBody(5, new Date().toISOString(), { type: "egress", host: "evil.example", decision: "allow" }, hashLine(all[3] ?? ""));
      return [...all.filter((_, i) => i !== 4), signedLine(body, signBody(body, other))];
    });
    const result = await verifyAuditLog(dir);
    assert.equal(result.firstBad?.line, 5);
    assert.equal(result.firstBad?.reason, "seq 6 where 5 was expected: 1 record(s) missing");
  });

  test("a record repeated (replayed) right after itself: repeated, naming where it first came", async () => {
    const dir = await writeLog(10);
    await tamper(dir, (all) => [...all.slice(0, 4), all[3] ?? "", ...all.slice(4)]);
    const result = await verifyAuditLog(dir);
    assert.deepEqual(result.firstBad, { file: join(dir, "audit.jsonl"), line: 5, seq: 4, expectedSeq: 5, reason: "records repeated: seq 4 where 5 was expected; seq 4 already came at audit.jsonl line 4" });
  });

  test("an inserted record signed with another key", async () => {
    const dir = await writeLog(10);
    const other = generateKeyPairSync("ed25519").privateKey;
    await tamper(dir, (all) => {
      const prev = hashLine(all[2] ?? "");
      const body = recordBody(4, new Date().toISOString(), { type: "egress", host: "evil.example", decision: "allow" }, prev);
      return [...all.slice(0, 3), signedLine(body, signBody(body, other)), ...all.slice(3)];
    });
    const result = await verifyAuditLog(dir);
    assert.equal(result.firstBad?.line, 4);
    assert.match(result.firstBad?.reason ?? "", /signature does not verify/);
  });

  test("a record re-signed with the real key but the chain not fixed: prev mismatch", async () => {
    // Models an attacker who stole the private key and replaced record 5 with a fresh one of seq 5.
    const dir = freshDir();
    const log = await AuditLog.open({ dir });
    for (let i = 0; i < 8; i++) log.append(egress(i));
    await log.close();
    const { createPrivateKey } = await import("node:crypto");
    const key = createPrivateKey(await readFile(join(dir, "signing-key.pem"), "utf8"));
    await tamper(dir, (all) => {
      const body = recordBody(5, new Date().toISOString(), { type: "egress", host: "other.example", decision: "allow" }, "0".repeat(64));
      return all.map((line, i) => (i === 4 ? signedLine(body, signBody(body, key)) : line));
    });
    const result = await verifyAuditLog(dir);
    assert.equal(result.firstBad?.line, 5);
    assert.equal(result.firstBad?.seq, 5);
    assert.match(result.firstBad?.reason ?? "", /prev does not match/);
  });

  test("the wrong public key is named as such, at the first record", async () => {
    const dir = await writeLog(3);
    const otherPem = generateKeyPairSync("ed25519").publicKey.export({ format: "pem", type: "spki" }).toString();
    const result = await verifyAuditLog(dir, otherPem);
    assert.equal(result.firstBad?.line, 1);
    assert.equal(result.firstBad?.seq, 1);
    assert.match(result.firstBad?.reason ?? "", /wrong key/);
  });

  test("a private key is refused as the key to verify with, in every PEM encoding", async () => {
    const dir = await writeLog(1);
    const pair = generateKeyPairSync("ed25519");
    const encodings = [
      pair.privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
      pair.privateKey.export({ format: "pem", type: "pkcs8", cipher: "aes-256-cbc", passphrase: "x" }).toString(),
      generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "pem", type: "sec1" }).toString(),
      // A public key with the private one appended: still a private key handed around.
      `${pair.publicKey.export({ format: "pem", type: "spki" }).toString()}${pair.privateKey.export({ format: "pem", type: "pkcs8" }).toString()}`,
    ];
    for (const pem of encodings) {
      await assert.rejects(verifyAuditLog(dir, pem, "key.pem"), (error: unknown) => error instanceof CloisterError && error.message === "key.pem is a private key; verifying takes the public key" && /signing-key\.pub\.pem/.test(error.hint ?? ""));
    }
    assert.equal((await verifyAuditLog(dir, await readFile(join(dir, "signing-key.pub.pem"), "utf8"))).ok, true);
  });

  test("a non-Ed25519 key is refused outright", async () => {
    const dir = await writeLog(1);
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({ format: "pem", type: "spki" }).toString();
    await assert.rejects(verifyAuditLog(dir, rsa), (error: unknown) => error instanceof CloisterError && /not Ed25519/.test(error.message));
  });

  test("a cut-off last line (no newline)", async () => {
    const dir = await writeLog(4);
    const file = join(dir, "audit.jsonl");
    const text = await readFile(file, "utf8");
    await writeFile(file, text.slice(0, text.length - 40));
    const result = await verifyAuditLog(dir);
    assert.equal(result.firstBad?.line, 5);
    assert.match(result.firstBad?.reason ?? "", /cut off/);
    assert.equal(result.records, 4);
  });

  test("a line cut in the middle (newline kept) is not JSON", async () => {
    const dir = await writeLog(4);
    await tamper(dir, (all) => all.map((line, i) => (i === 2 ? line.slice(0, 50) : line)));
    const result = await verifyAuditLog(dir);
    assert.equal(result.firstBad?.line, 3);
    assert.match(result.firstBad?.reason ?? "", /not valid JSON/);
  });

  test("the head of the log removed: refused, not mistaken for rotation", async () => {
    const dir = await writeLog(6);
    await tamper(dir, (all) => all.slice(3));
    const result = await verifyAuditLog(dir);
    assert.equal(result.firstBad?.line, 1);
    assert.equal(result.firstBad?.seq, 4);
    assert.match(result.firstBad?.reason ?? "", /starts in the middle of a file/);
  });

  test("a field added after the signature is refused", async () => {
    const dir = await writeLog(3);
    await tamper(dir, (all) => all.map((line, i) => (i === 1 ? `${line.slice(0, -1)},"decision":"deny"}` : line)));
    const result = await verifyAuditLog(dir);
    assert.equal(result.firstBad?.line, 2);
    assert.match(result.firstBad?.reason ?? "", /signature is not the record's last field/);
  });

  test("an empty directory or a missing path is an error, not a pass", async () => {
    const dir = freshDir();
    await mkdir(dir);
    await assert.rejects(verifyAuditLog(dir), /no audit log files/);
    await assert.rejects(verifyAuditLog(join(dir, "nope")), /no audit log at/);
  });
});

// ---------------------------------------------------------------------------------------------------
describe("audit log: rotation", () => {
  test("files rotate by size, every file starts with a segment record, and the chain runs across them", async () => {
    const dir = await writeLog(200, { maxBytes: 8 * 1024, keep: 100 });
    const files = await listLogFiles(dir);
    assert.ok(files.length > 3, `expected several files, got ${files.length}`);
    assert.equal(files.at(-1), join(dir, "audit.jsonl"));
    let previousLast: string | undefined;
    for (const file of files) {
      const all = await lines(file);
      assert.ok((await stat(file)).size <= 8 * 1024, `${file} is over maxBytes`);
      const first = JSON.parse(all[0] ?? "") as AuditRecord;
      assert.equal(first.type, SEGMENT_TYPE);
      if (previousLast !== undefined) {
        assert.equal(first.reason, "rotation");
        assert.equal(first.prev, hashLine(previousLast));
      }
      previousLast = all.at(-1);
    }
    const result = await verifyAuditLog(dir);
    assert.equal(result.ok, true, describeVerifyResult(result));
    assert.deepEqual(result.chainStart, { seq: 1, genesis: true });
    assert.equal(result.files.length, files.length);
    assert.equal(result.lastSeq, result.records);
  });

  test("only `keep` rotated files stay; verify says where the chain now starts", async () => {
    const dir = await writeLog(200, { maxBytes: 4 * 1024, keep: 2 });
    const names = (await readdir(dir)).filter((name) => name.endsWith(".jsonl")).sort();
    assert.deepEqual(names, ["audit.1.jsonl", "audit.2.jsonl", "audit.jsonl"]);
    const result = await verifyAuditLog(dir);
    assert.equal(result.ok, true, describeVerifyResult(result));
    assert.equal(result.chainStart?.genesis, false);
    assert.ok((result.chainStart?.seq ?? 0) > 1);
    assert.match(describeVerifyResult(result), /chain starts at seq \d+/);
  });

  test("keep: 0 deletes the full file at once", async () => {
    const dir = await writeLog(100, { maxBytes: 4 * 1024, keep: 0 });
    assert.deepEqual((await readdir(dir)).filter((name) => name.endsWith(".jsonl")), ["audit.jsonl"]);
    assert.equal((await verifyAuditLog(dir)).ok, true);
  });

  test("one rotated file verifies on its own", async () => {
    const dir = await writeLog(100, { maxBytes: 4 * 1024, keep: 10 });
    const result = await verifyAuditLog(join(dir, "audit.2.jsonl"));
    assert.equal(result.ok, true, describeVerifyResult(result));
    assert.equal(result.files.length, 1);
  });

  test("a missing middle file is found at the first record of the next", async () => {
    const dir = await writeLog(100, { maxBytes: 4 * 1024, keep: 10 });
    await unlink(join(dir, "audit.2.jsonl"));
    const result = await verifyAuditLog(dir);
    assert.equal(result.firstBad?.file, join(dir, "audit.1.jsonl"));
    assert.equal(result.firstBad?.line, 1);
    assert.match(result.firstBad?.reason ?? "", /missing \(first record of audit\.1\.jsonl; audit\.3\.jsonl ends at seq \d+\)/);
  });

  /** Exchanges the names of two files of a log. */
  async function swapFiles(dir: string, a: string, b: string): Promise<void> {
    await rename(join(dir, a), join(dir, "tmp"));
    await rename(join(dir, b), join(dir, a));
    await rename(join(dir, "tmp"), join(dir, b));
  }

  /** seq of the first and the last record of each named file. */
  async function seqRange(dir: string, name: string): Promise<{ first: number; last: number }> {
    const seqs = (await lines(join(dir, name))).map((line) => (JSON.parse(line) as AuditRecord).seq);
    return { first: seqs[0] ?? 0, last: seqs.at(-1) ?? 0 };
  }

  test("two rotated files swapped by name: files out of sequence, not records missing", async () => {
    const dir = await writeLog(100, { maxBytes: 4 * 1024, keep: 10 });
    const [one, three] = [await seqRange(dir, "audit.1.jsonl"), await seqRange(dir, "audit.3.jsonl")];
    await swapFiles(dir, "audit.1.jsonl", "audit.2.jsonl");
    const result = await verifyAuditLog(dir);
    assert.deepEqual(result.firstBad, {
      file: join(dir, "audit.2.jsonl"),
      line: 1,
      seq: one.first,
      expectedSeq: three.last + 1,
      reason: `files out of sequence: audit.2.jsonl begins at seq ${one.first}, but seq ${three.last + 1}, which follows the end of audit.3.jsonl, begins audit.1.jsonl: the rotated files were renamed or swapped`,
    });
  });

  test("the current file exchanged with the last rotated one: files out of sequence", async () => {
    const dir = await writeLog(100, { maxBytes: 4 * 1024, keep: 10 });
    const [current, two] = [await seqRange(dir, "audit.jsonl"), await seqRange(dir, "audit.2.jsonl")];
    await swapFiles(dir, "audit.jsonl", "audit.1.jsonl");
    const result = await verifyAuditLog(dir);
    assert.equal(
      describeVerifyResult(result),
      `${join(dir, "audit.1.jsonl")} line 1 (seq ${current.first}): files out of sequence: audit.1.jsonl begins at seq ${current.first}, but seq ${two.last + 1}, which follows the end of audit.2.jsonl, begins audit.jsonl: the rotated files were renamed or swapped`,
    );
  });

  test("a rotated file renamed to an older number: files out of sequence, not records repeated", async () => {
    const dir = await writeLog(100, { maxBytes: 4 * 1024, keep: 20 });
    const oldest = (await listLogFiles(dir)).length - 1;
    const [moved, next] = [await seqRange(dir, "audit.2.jsonl"), await seqRange(dir, `audit.${oldest}.jsonl`)];
    await rename(join(dir, "audit.2.jsonl"), join(dir, `audit.${oldest + 1}.jsonl`));
    const result = await verifyAuditLog(dir);
    assert.equal(result.firstBad?.file, join(dir, `audit.${oldest}.jsonl`));
    assert.equal(
      result.firstBad?.reason,
      `files out of sequence: audit.${oldest}.jsonl begins at seq ${next.first}, before seq ${moved.last + 1}, which should follow the end of audit.${oldest + 1}.jsonl: the rotated files were renamed or swapped`,
    );
  });

  test("a record larger than maxBytes still gets written (its file holds just it)", async () => {
    const dir = freshDir();
    const log = await AuditLog.open({ dir, maxBytes: 1024 });
    log.append(egress(1));
    log.append(egress(2, { detail: "x".repeat(3000) }));
    log.append(egress(3));
    await log.close();
    assert.equal((await verifyAuditLog(dir)).ok, true);
    assert.equal((await records(dir)).filter((r) => r.type === "egress").length, 3);
  });

  test("a crash between the rename and the new file resumes into a fresh audit.jsonl", async () => {
    const dir = await writeLog(30, { maxBytes: 4 * 1024 });
    // What rotation leaves when killed after `audit.jsonl → audit.1.jsonl`, before anything new.
    await rotateFiles(dir, 10);
    assert.equal((await listLogFiles(dir)).some((file) => file.endsWith("/audit.jsonl")), false);
    const log = await AuditLog.open({ dir, maxBytes: 4 * 1024 });
    log.append(egress(99));
    await log.close();
    const first = JSON.parse((await lines(join(dir, "audit.jsonl")))[0] ?? "") as AuditRecord;
    assert.equal(first.type, SEGMENT_TYPE);
    assert.equal(first.reason, "resume");
    assert.equal((await verifyAuditLog(dir)).ok, true);
  });
});

// ---------------------------------------------------------------------------------------------------
describe("audit log: reopening and crashes", () => {
  test("reopen continues the chain in the same file, without a new segment record", async () => {
    const dir = await writeLog(5);
    const log = await AuditLog.open({ dir });
    assert.equal(await log.lastSeq(), 6);
    log.append({ type: "cloister.start", cloister: "c2", project: "p" });
    await log.close();
    const all = await records(dir);
    assert.deepEqual(
      all.map((r) => r.seq),
      [1, 2, 3, 4, 5, 6, 7],
    );
    assert.equal(all.filter((r) => r.type === SEGMENT_TYPE).length, 1);
    assert.equal((await verifyAuditLog(dir)).ok, true);
  });

  test("a torn last line is moved aside at open, noted in an audit.recovered record, and the log verifies", async () => {
    const dir = await writeLog(5);
    const fragment = '{"seq":7,"time":"2025-01-01T00:00:00.000Z","type":"egr';
    await appendFile(join(dir, "audit.jsonl"), fragment);
    const log = await AuditLog.open({ dir });
    log.append(egress(6));
    await log.close();
    const all = await records(dir);
    const recovered = all.find((r) => r.type === "audit.recovered");
    assert.equal(recovered?.seq, 7);
    assert.equal(recovered?.droppedBytes, Buffer.byteLength(fragment));
    assert.equal(recovered?.file, "audit.jsonl");
    const saved = join(dir, String(recovered?.savedTo));
    assert.equal(await readFile(saved, "utf8"), fragment);
    assert.equal(mode(await stat(saved)), 0o600);
    const result = await verifyAuditLog(dir);
    assert.equal(result.ok, true, describeVerifyResult(result));
    assert.equal(result.lastSeq, 8);
  });

  test("a tail of NUL bytes (power loss) is cut as well, complete lines of it included", async () => {
    const dir = await writeLog(5);
    await appendFile(join(dir, "audit.jsonl"), Buffer.concat([Buffer.alloc(100), Buffer.from("\n"), Buffer.alloc(50)]));
    const log = await AuditLog.open({ dir });
    await log.close();
    const recovered = (await records(dir)).find((r) => r.type === "audit.recovered");
    assert.equal(recovered?.droppedBytes, 151);
    assert.equal((await verifyAuditLog(dir)).ok, true);
  });

  test("a log cut inside its first record starts over cleanly", async () => {
    const dir = await writeLog(0);
    const file = join(dir, "audit.jsonl");
    await writeFile(file, (await readFile(file, "utf8")).slice(0, 30));
    const log = await AuditLog.open({ dir });
    log.append(egress(1));
    await log.close();
    const result = await verifyAuditLog(dir);
    assert.equal(result.ok, true, describeVerifyResult(result));
    assert.deepEqual(result.chainStart, { seq: 1, genesis: true });
  });

  test("kill -9 of a writer at arbitrary moments never leaves a log that fails to verify after reopening", async () => {
    const dir = freshDir();
    const script = await auditScript(
      "writer",
      `const log = await AuditLog.open({ dir: process.argv[2], maxBytes: 16 * 1024, keep: 10_000 });
let i = 0;
for (;;) {
  for (let j = 0; j < 50; j++) log.append({ type: "egress", host: "h" + i++ + ".example", port: 443, decision: "allow", pad: "x".repeat(i % 300) });
  await log.flush();
  if (i === 50) process.stdout.write("ready\\n");
  await new Promise((r) => setImmediate(r));
}
`,
    );
    let lastSeq = 0;
    for (let round = 0; round < 4; round++) {
      const child = spawn(process.execPath, ["--import", "tsx", script, dir], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "inherit"] });
      await new Promise<void>((resolve, reject) => {
        child.stdout.on("data", (d: Buffer) => d.toString().includes("ready") && resolve());
        child.on("exit", (code) => reject(new Error(`writer exited early (${code})`)));
      });
      await new Promise((resolve) => setTimeout(resolve, 30 + round * 40));
      child.kill("SIGKILL");
      await new Promise((resolve) => child.on("close", resolve));
      // Reopening is what repairs a torn tail; then the whole directory must verify.
      const log = await AuditLog.open({ dir, maxBytes: 16 * 1024, keep: 10_000 });
      await log.close();
      const result = await verifyAuditLog(dir);
      assert.equal(result.ok, true, `round ${round}: ${describeVerifyResult(result)}`);
      assert.deepEqual(result.chainStart, { seq: 1, genesis: true });
      assert.ok((result.lastSeq ?? 0) > lastSeq);
      lastSeq = result.lastSeq ?? 0;
    }
  });

  test("past maxBacklog records not yet in the file, events are counted instead, and the count is a record in their place", async () => {
    const dir = freshDir();
    const log = await AuditLog.open({ dir, maxBacklog: 10 });
    // All in one turn of the event loop: nothing reaches the worker before the 11th.
    await catchStderr(() => {
      for (let i = 0; i < 1000; i++) log.append(egress(i));
    });
    assert.match(log.lastError?.message ?? "", /10 records behind.*dropped/);
    await log.flush();
    log.append(egress(1000));
    await log.close();
    const all = await records(dir);
    assert.deepEqual(
      all.slice(1).map((r) => (r.type === "audit.dropped" ? `dropped ${r.records}` : r.host)),
      [...Array.from({ length: 10 }, (_, i) => `host-${i}.example.com`), "dropped 990", "host-1000.example.com"],
    );
    assert.equal((await verifyAuditLog(dir)).ok, true);
  });

  test("the audit worker never holds a process open: one that forgot close() exits, and its flushed records are there", async () => {
    const dir = freshDir();
    const script = await auditScript(
      "forgetful",
      `const log = await AuditLog.open({ dir: process.argv[2] });
for (let i = 0; i < 20; i++) log.append({ type: "egress", host: "h" + i + ".example" });
await log.flush();
log.append({ type: "late" });
`,
    );
    const child = spawn(process.execPath, ["--import", "tsx", script, dir], { cwd: REPO_ROOT, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    const [code, signal] = (await once(child, "close")) as [number | null, string | null];
    clearTimeout(killer);
    assert.equal(signal, null, "the process had to be killed: something kept it alive");
    assert.equal(code, 0, stderr);
    const written = await records(dir);
    assert.deepEqual(
      written.filter((r) => r.type === "egress").map((r) => r.host),
      Array.from({ length: 20 }, (_, i) => `h${i}.example`),
    );
    assert.equal((await verifyAuditLog(dir)).ok, true);
  });

  test("a missing private key next to existing records refuses to open (no silent new chain)", async () => {
    const dir = await writeLog(2);
    await unlink(join(dir, "signing-key.pem"));
    await assert.rejects(AuditLog.open({ dir }), (error: unknown) => error instanceof CloisterError && /signing key signing-key\.pem is missing/.test(error.message));
  });

  test("a replaced private key refuses to open", async () => {
    const dir = await writeLog(2);
    const other = generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }).toString();
    await writeFile(join(dir, "signing-key.pem"), other, { mode: 0o600 });
    await assert.rejects(AuditLog.open({ dir }), /is not signed by the audit signing key/);
  });

  test("a deleted public key file is recreated from the private key", async () => {
    const dir = await writeLog(1);
    const pem = await readFile(join(dir, "signing-key.pub.pem"), "utf8");
    await unlink(join(dir, "signing-key.pub.pem"));
    const log = await AuditLog.open({ dir });
    await log.close();
    assert.equal(await readFile(join(dir, "signing-key.pub.pem"), "utf8"), pem);
  });
});

// ---------------------------------------------------------------------------------------------------
describe("audit log: files, secrets, errors", () => {
  test("directory 0700, private key and log 0600, public key 0644", async () => {
    const dir = await writeLog(1, { maxBytes: 1024 });
    assert.equal(mode(await stat(dir)), 0o700);
    assert.equal(mode(await stat(join(dir, "signing-key.pem"))), 0o600);
    assert.equal(mode(await stat(join(dir, "signing-key.pub.pem"))), 0o644);
    for (const file of await listLogFiles(dir)) assert.equal(mode(await stat(file)), 0o600, file);
  });

  test("a private key with loose permissions is tightened on open", async () => {
    const dir = await writeLog(1);
    const { chmod } = await import("node:fs/promises");
    await chmod(join(dir, "signing-key.pem"), 0o644);
    const log = await AuditLog.open({ dir });
    await log.close();
    assert.equal(mode(await stat(join(dir, "signing-key.pem"))), 0o600);
  });

  test("fields named like credentials are dropped and the record says redacted", async () => {
    const dir = freshDir();
    const log = await AuditLog.open({ dir });
    log.append({
      type: "egress",
      host: "api.example.com",
      token: "tok-VALUE-1",
      proxyToken: "tok-VALUE-2",
      secret: "sec-VALUE-3",
      password: "pw-VALUE-4",
      Authorization: "Bearer VALUE-5",
      apiKey: "key-VALUE-6",
    });
    log.append({ type: "egress", host: "plain.example.com" });
    await log.close();
    const raw = await readFile(join(dir, "audit.jsonl"), "utf8");
    assert.doesNotMatch(raw, /VALUE/);
    const [, redacted, plain] = await records(dir);
    assert.equal(redacted?.redacted, true);
    assert.equal(redacted?.host, "api.example.com");
    assert.equal(plain?.redacted, undefined);
  });

  test("an event cannot set seq, time, prev or sig; odd values are written as plain ones", async () => {
    const dir = freshDir();
    const log = await AuditLog.open({ dir });
    const sneaky = { type: "egress", seq: 999, time: "yesterday", prev: "0".repeat(64), sig: "x", port: Number.NaN, weird: undefined } as unknown as AuditEvent;
    log.append(sneaky);
    await log.close();
    const record = (await records(dir))[1];
    assert.equal(record?.seq, 2);
    assert.notEqual(record?.time, "yesterday");
    assert.equal(record?.port, "NaN");
    assert.equal(record?.weird, null);
    assert.equal((await verifyAuditLog(dir)).ok, true);
  });

  test("very long values are cut and marked", async () => {
    const dir = freshDir();
    const log = await AuditLog.open({ dir });
    log.append({ type: "egress", host: "a".repeat(10_000) });
    await log.close();
    const record = (await records(dir))[1];
    assert.equal(record?.truncated, true);
    assert.ok(String(record?.host).length < 5000);
  });

  test("append after close never throws; the error is kept in lastError", async () => {
    const dir = freshDir();
    const log = await AuditLog.open({ dir });
    await log.close();
    const printed = await catchStderr(() => {
      log.append(egress(1));
      log.append(egress(2));
    });
    assert.match(log.lastError?.message ?? "", /after close/);
    assert.equal(printed.split("\n").filter(Boolean).length, 1, "reported on stderr once");
  });

  test("a failing disk (file size limit): append keeps going, flush rejects, one line on stderr; reopening repairs", async () => {
    const dir = freshDir();
    const script = await auditScript(
      "efbig",
      `const log = await AuditLog.open({ dir: process.argv[2] });
for (let i = 0; i < 100; i++) log.append({ type: "egress", host: "h" + i + ".example", pad: "x".repeat(100) });
let flushError = null;
await log.flush().catch((error) => (flushError = error.message));
log.append({ type: "after" });
process.stdout.write(JSON.stringify({ flushError, lastError: log.lastError?.message ?? null }));
process.exit(0);
`,
    );
    // RLIMIT_FSIZE of 8 blocks: writes past 4 KiB fail with EFBIG (node ignores SIGXFSZ), like a full disk.
    const child = spawn("sh", ["-c", 'ulimit -f 8 && exec "$0" --import tsx "$1" "$2"', process.execPath, script, dir], { cwd: REPO_ROOT });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise((resolve) => child.on("close", resolve));
    assert.equal(code, 0, stderr);
    const outcome = JSON.parse(stdout) as { flushError: string | null; lastError: string | null };
    assert.match(outcome.flushError ?? "", /EFBIG/);
    assert.match(outcome.lastError ?? "", /EFBIG/);
    assert.equal(stderr.split("\n").filter((line) => line.includes("audit log")).length, 1, stderr);
    const log = await AuditLog.open({ dir });
    await log.close();
    const result = await verifyAuditLog(dir);
    assert.equal(result.ok, true, describeVerifyResult(result));
    assert.ok((await records(dir)).some((record) => record.type === "audit.recovered"));
  });

  test("resolvePaths puts the audit directory under the state directory", () => {
    const paths = resolvePaths({ CLOISTER_HOME: "/x" });
    assert.equal(paths.auditDir, "/x/state/audit");
  });
});

// ---------------------------------------------------------------------------------------------------
describe("audit log: a worker that dies", () => {
  test("is started again, and every record appended before and after is in the log, in order", async () => {
    const dir = freshDir();
    const log = await AuditLog.open({ dir });
    const printed = await catchStderr(async () => {
      for (let i = 0; i < 300; i++) log.append(egress(i, { n: i }));
      // lastSeq() hands these over at once; the worker dies right behind them, before (most of) their write.
      void log.lastSeq();
      crashWorker(log);
      for (let i = 300; i < 600; i++) log.append(egress(i, { n: i }));
      await log.flush();
    });
    assert.match(printed, /the audit worker failed: .*; started again, handing it the \d+ record\(s\) it had not written/);
    assert.equal(log.lastError, undefined);
    log.append(egress(600, { n: 600 }));
    await log.close();

    const result = await verifyAuditLog(dir);
    assert.equal(result.ok, true, describeVerifyResult(result));
    const all = await records(dir);
    const restarted = all.filter((r) => r.type === "audit.worker-restarted");
    assert.equal(restarted.length, 1);
    assert.match(String(restarted[0]?.reason), /^the audit worker failed: /);
    assert.equal(typeof restarted[0]?.resent, "number");
    // Each record once, in the order appended (one the dying worker wrote but had not counted could
    // come twice, right after itself: the order still holds).
    const appended = all.filter((r) => r.type === "egress").map((r) => Number(r.n));
    assert.deepEqual([...new Set(appended)], Array.from({ length: 601 }, (_, i) => i));
    assert.deepEqual(appended, [...appended].sort((a, b) => a - b));
  });

  test("one that keeps dying is given up on the fourth time within a minute: appends go on without throwing, questions fail", async () => {
    const dir = freshDir();
    const log = await AuditLog.open({ dir });
    const printed = await catchStderr(async () => {
      for (let restart = 1; restart <= 3; restart++) {
        log.append(egress(restart));
        crashWorker(log);
        // Asked of the dying worker; answered by the next one, once the record is in the file.
        await log.flush();
        assert.equal(await log.lastSeq(), 2 * restart + 1);
      }
      log.append(egress(4));
      crashWorker(log);
      await assert.rejects(log.lastSeq(), /the audit worker failed: .*for the 4th time within 60 s \(1 record\(s\) not yet written are lost\); no more audit records can be written/);
      log.append(egress(99));
    });
    assert.equal(printed.match(/started again/g)?.length, 3, printed);
    assert.match(log.lastError?.message ?? "", /no more audit records can be written/);
    await assert.rejects(log.close(), /no more audit records can be written/);
    const all = await records(dir);
    assert.deepEqual(
      all.filter((r) => r.type === "egress").map((r) => r.host),
      [1, 2, 3].map((i) => `host-${i}.example.com`),
    );
    assert.equal(all.filter((r) => r.type === "audit.worker-restarted").length, 3);
    assert.equal((await verifyAuditLog(dir)).ok, true);
  });
});

// ---------------------------------------------------------------------------------------------------
describe("audit tail: reading and following", () => {
  test("last lines come from rotated files when the current one holds fewer", async () => {
    const dir = await writeLog(100, { maxBytes: 2048 });
    const follower = await LogFollower.open(dir);
    const last = await follower.lastLines(30);
    await follower.close();
    assert.equal(last.length, 30);
    const seqs = last.map((line) => (JSON.parse(line) as AuditRecord).seq);
    const lastSeq = (await records(dir)).at(-1)?.seq ?? 0;
    assert.deepEqual(
      seqs,
      Array.from({ length: 30 }, (_, i) => lastSeq - 29 + i),
    );
  });

  test("following sees every new record exactly once, across rotations", async () => {
    const dir = freshDir();
    const log = await AuditLog.open({ dir, maxBytes: 2048, keep: 100 });
    log.append(egress(0));
    await log.flush();
    const follower = await LogFollower.open(dir);
    const seen: number[] = [];
    const stop = new AbortController();
    const following = follower.follow((line) => seen.push((JSON.parse(line) as AuditRecord).seq), stop.signal, { pollMs: 10 });
    for (let i = 1; i <= 200; i++) {
      log.append(egress(i));
      if (i % 20 === 0) await log.flush();
    }
    await log.flush();
    const expected = (await log.lastSeq()) - 2; // everything after the header and the first egress record
    for (let i = 0; i < 500 && seen.length < expected; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    stop.abort();
    await following;
    await log.close();
    assert.ok((await listLogFiles(dir)).length > 3, "the test must cross rotations");
    assert.deepEqual(
      seen,
      Array.from({ length: expected }, (_, i) => i + 3),
    );
  });

  /** seq of every record in the log's files now. */
  async function seqsOnDisk(dir: string): Promise<number[]> {
    return (await records(dir)).map((record) => record.seq);
  }

  /** A follower's reading: the seqs it was handed and the ranges it said it missed. */
  function reading(): { seen: number[]; missed: Array<[number, number]>; onLine: (line: string) => void; onMissed: (first: number, last: number) => void } {
    const seen: number[] = [];
    const missed: Array<[number, number]> = [];
    return { seen, missed, onLine: (line) => seen.push((JSON.parse(line) as AuditRecord).seq), onMissed: (first, last) => missed.push([first, last]) };
  }

  // maxBytes 600 holds a file's segment record and one egress record: every record rotates the log.
  const ONE_RECORD_A_FILE = 600;

  test("rotations between two reads, more than `keep` of them: every record still on disk is read, in order, none twice, and the rest is counted as missed", async () => {
    const dir = freshDir();
    const log = await AuditLog.open({ dir, maxBytes: ONE_RECORD_A_FILE, keep: 3 });
    log.append(egress(0));
    await log.flush();
    const follower = await LogFollower.open(dir);
    const startSeq = await log.lastSeq();
    const { seen, missed, onLine, onMissed } = reading();
    let deletedUnderIt = 0;
    // Between two reads, 0 to 7 records: up to 7 new files where the log keeps 4, so the file the
    // follower is in is often deleted under it, and some files after it too.
    for (let round = 1; round <= 40; round++) {
      for (let i = 0; i < round % 8; i++) log.append(egress(round * 10 + i));
      await log.flush();
      const onDisk = (await seqsOnDisk(dir)).filter((seq) => seq > startSeq);
      if ((onDisk[0] ?? 0) > (seen.at(-1) ?? startSeq)) deletedUnderIt++; // the file with the last record read is gone
      await follower.readAvailable(onLine, onMissed);
      const unread = onDisk.filter((seq) => !seen.includes(seq));
      assert.deepEqual(unread, [], `round ${round}: records on disk that the follower did not read`);
    }
    await follower.close();
    await log.close();
    const lastSeq = (await seqsOnDisk(dir)).at(-1) ?? 0;
    const missedSeqs = missed.flatMap(([first, last]) => Array.from({ length: last - first + 1 }, (_, i) => first + i));
    assert.deepEqual(
      [...seen, ...missedSeqs].sort((a, b) => a - b),
      Array.from({ length: lastSeq - startSeq }, (_, i) => startSeq + 1 + i),
      "each record once: read, or counted as missed",
    );
    assert.deepEqual(seen, [...seen].sort((a, b) => a - b), "read in log order");
    assert.ok(missed.length > 0 && deletedUnderIt > 0, "the test must rotate out files the follower had not read, and the file it was in");
  });

  test("a file deleted while the follower is in it is read to its end; the records deleted unread are reported as one range", async () => {
    const dir = freshDir();
    const log = await AuditLog.open({ dir, maxBytes: ONE_RECORD_A_FILE, keep: 1 });
    await log.flush();
    const follower = await LogFollower.open(dir); // in audit.jsonl, after its segment record (seq 1)
    for (let i = 0; i < 5; i++) log.append(egress(i));
    await log.flush();
    // seq 2 in the first file; then files of (segment, record): 3–4, 5–6, 7–8, 9–10. keep 1 leaves 7–10.
    assert.deepEqual(await seqsOnDisk(dir), [7, 8, 9, 10]);
    const { seen, missed, onLine, onMissed } = reading();
    await follower.readAvailable(onLine, onMissed);
    await follower.close();
    await log.close();
    assert.deepEqual(seen, [2, 7, 8, 9, 10]);
    assert.deepEqual(missed, [[3, 6]]);
  });

  test("a log started over (the old one moved away) is followed from its first record", async () => {
    const dir = freshDir();
    const old = await AuditLog.open({ dir });
    old.append(egress(0));
    await old.close();
    const follower = await LogFollower.open(dir);
    await mkdir(join(dir, "old"));
    for (const file of await listLogFiles(dir)) await rename(file, join(dir, "old", "audit.jsonl"));
    const log = await AuditLog.open({ dir });
    log.append(egress(1));
    await log.close();
    const { seen, missed, onLine, onMissed } = reading();
    await follower.readAvailable(onLine, onMissed);
    await follower.close();
    assert.deepEqual(seen, [1, 2]);
    assert.deepEqual(missed, []);
  });

  test("a line being written when the follower opens is read whole once it ends, not from its middle", async () => {
    const dir = await writeLog(2);
    const file = join(dir, "audit.jsonl");
    const all = await lines(file);
    const last = all.at(-1) ?? "";
    await writeFile(file, `${all.slice(0, -1).join("\n")}\n${last.slice(0, 40)}`);
    const follower = await LogFollower.open(dir);
    assert.deepEqual((await follower.lastLines(1)).map((line) => (JSON.parse(line) as AuditRecord).seq), [2]);
    await appendFile(file, `${last.slice(40)}\n`);
    const { seen, onLine, onMissed } = reading();
    await follower.readAvailable(onLine, onMissed);
    await follower.close();
    assert.deepEqual(seen, [3]);
  });

  test("readable lines: fixed fields first, terminal control characters escaped", () => {
    const line = JSON.stringify({ seq: 9, time: "2025-01-01T00:00:00.000Z", type: "egress.end", cloister: "c1", project: "p", host: "evil\u001b]0;pwned\u0007.example", port: 443, decision: "allow", rule: "*.example", bytesUp: 2048, bytesDown: 10, durationMs: 1500, prev: "x", sig: "y" });
    const text = formatRecordLine(line);
    assert.equal(text, "2025-01-01T00:00:00.000Z #9 egress.end c1 evil\\e]0;pwned\\x07.example:443 allow rule=*.example ↑2KiB ↓10B 1.5s");
    assert.doesNotMatch(text, /\u001b/);
    assert.equal(formatRecordLine("garbage\u001b"), "(unreadable) garbage\\e");
  });

  test("readable lines: an IPv6 address before its port is bracketed, as in a URL", () => {
    const line = (host: string) => JSON.stringify({ seq: 1, time: "2025-01-01T00:00:00.000Z", type: "egress", cloister: "c1", project: "p", host, port: 8082, decision: "unlisted", prev: "x", sig: "y" });
    assert.match(formatRecordLine(line("::1")), / \[::1\]:8082 /);
    assert.match(formatRecordLine(line("::ffff:7f00:1")), / \[::ffff:7f00:1\]:8082 /);
    assert.match(formatRecordLine(line("example.com")), / example\.com:8082 /);
  });
});

// ---------------------------------------------------------------------------------------------------
describe("cloister audit (CLI)", () => {
  interface Run {
    code: number;
    stdout: string;
    stderr: string;
  }

  /** `cloister ARGS` from source, with its own CLOISTER_HOME. */
  function cli(home: string, args: string[], untilOutput?: (out: string) => boolean): Promise<Run> & { kill(signal: NodeJS.Signals): void } {
    const child = spawn(process.execPath, ["--import", "tsx", join(REPO_ROOT, "src/cli/main.ts"), ...args], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH, HOME: home, CLOISTER_HOME: home },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    const done = new Promise<Run>((resolve) => {
      child.stdout.on("data", (d: Buffer) => {
        stdout += d.toString();
        if (untilOutput?.(stdout)) untilOutput = undefined;
      });
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      child.on("close", (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
    });
    return Object.assign(done, { kill: (signal: NodeJS.Signals) => void child.kill(signal) });
  }

  async function instance(count: number): Promise<{ home: string; dir: string }> {
    const home = join(scratch, `home-${++counter}`);
    const dir = resolvePaths({ CLOISTER_HOME: home }).auditDir;
    const log = await AuditLog.open({ dir });
    log.append({ type: "cloister.start", cloister: "c1", project: "proj" });
    for (let i = 0; i < count; i++) log.append(egress(i));
    await log.close();
    return { home, dir };
  }

  test("verify: exit 0 and a summary when intact", async () => {
    const { home } = await instance(5);
    const run = await cli(home, ["audit", "verify"]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^Audit log intact: 7 records in 1 file, seq 1–7, from its genesis record\n$/);
  });

  test("verify: exit 1 and one line naming the record when edited; --json prints the result", async () => {
    const { home, dir } = await instance(5);
    await tamper(dir, (all) => all.map((line, i) => (i === 3 ? line.replace("host-1", "host-X") : line)));
    const run = await cli(home, ["audit", "verify"]);
    assert.equal(run.code, 1);
    assert.equal(run.stdout.split("\n").filter(Boolean).length, 1);
    assert.match(run.stdout, /NOT intact: .*audit\.jsonl line 4 \(seq 4\): signature does not verify/);
    const json = await cli(home, ["audit", "verify", "--json"]);
    assert.equal(json.code, 1);
    const result = JSON.parse(json.stdout) as { ok: boolean; firstBad: { line: number; seq: number } };
    assert.equal(result.ok, false);
    assert.deepEqual([result.firstBad.line, result.firstBad.seq], [4, 4]);
  });

  test("verify FILE --pubkey K: a copy of the right key passes, another key fails", async () => {
    const { home, dir } = await instance(2);
    const copy = join(home, "copy.pem");
    await writeFile(copy, await readFile(join(dir, "signing-key.pub.pem")));
    const good = await cli(home, ["audit", "verify", join(dir, "audit.jsonl"), "--pubkey", copy]);
    assert.equal(good.code, 0, good.stdout + good.stderr);
    const wrong = join(home, "wrong.pem");
    await writeFile(wrong, generateKeyPairSync("ed25519").publicKey.export({ format: "pem", type: "spki" }));
    const bad = await cli(home, ["audit", "verify", "--pubkey", wrong]);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /line 1 \(seq 1\).*wrong key/);
  });

  test("verify --pubkey with the private key: refused, naming the public key to pass instead", async () => {
    const { home, dir } = await instance(2);
    const privateKey = join(dir, "signing-key.pem");
    const run = await cli(home, ["audit", "verify", "--pubkey", privateKey]);
    assert.equal(run.code, 125);
    assert.equal(run.stdout, "");
    assert.match(run.stderr, new RegExp(`--pubkey ${privateKey} is a private key; verifying takes the public key \\(pass signing-key\\.pub\\.pem from the audit directory`));
    assert.equal(run.stderr.trim().split("\n").length, 1, run.stderr);
  });

  test("verify without any log: exit 125 with a reason", async () => {
    const home = join(scratch, `home-${++counter}`);
    const run = await cli(home, ["audit", "verify"]);
    assert.equal(run.code, 125);
    assert.match(run.stderr, /no audit log/);
  });

  test("tail -n, tail --json and path", async () => {
    const { home, dir } = await instance(10);
    const readable = await cli(home, ["audit", "tail", "-n", "3"]);
    assert.equal(readable.code, 0, readable.stderr);
    const shown = readable.stdout.trim().split("\n");
    assert.equal(shown.length, 3);
    assert.match(shown[2] ?? "", /^\S+Z #12 egress c1 host-9\.example\.com:443 allow rule=\*\.example\.com /);
    const json = await cli(home, ["audit", "tail", "-n", "2", "--json"]);
    assert.deepEqual(
      json.stdout
        .trim()
        .split("\n")
        .map((line) => (JSON.parse(line) as AuditRecord).seq),
      [11, 12],
    );
    const path = await cli(home, ["audit", "path"]);
    assert.equal(path.stdout, `${dir}\n`);
    const none = await cli(home, ["audit", "tail", "-n", "0"]);
    assert.deepEqual([none.code, none.stdout, none.stderr], [0, "", ""], "-n 0 asks for nothing, and the log is not empty");
  });

  test("tail -f prints records as they come and ends on Ctrl-C", async () => {
    const { home, dir } = await instance(1);
    let sawNew!: () => void;
    const newRecord = new Promise<void>((resolve) => (sawNew = resolve));
    let started!: () => void;
    const ready = new Promise<void>((resolve) => (started = resolve));
    const run = cli(home, ["audit", "tail", "-f", "-n", "1"], (out) => {
      if (out.includes("#3 ")) started();
      if (out.includes("follow-me.example")) {
        sawNew();
        return true;
      }
      return false;
    });
    await ready;
    const log = await AuditLog.open({ dir });
    log.append(egress(7, { host: "follow-me.example" }));
    await log.close();
    await newRecord;
    run.kill("SIGINT");
    const result = await run;
    assert.equal(result.code, 0, result.stderr);
  });

  test("--help shows examples", async () => {
    const run = await cli(scratch, ["audit", "verify", "--help"]);
    assert.match(run.stdout, /Examples:\n  cloister audit verify/);
  });
});

describe("previousEnd: how the guardian before ended", () => {
  /** A log whose last records are `types`, closed as the guardian leaves it; returns the last record. */
  async function logEndingWith(dir: string, types: string[], options: { maxBytes?: number } = {}): Promise<AuditRecord> {
    const log = await AuditLog.open({ dir, ...options });
    for (const type of types) log.append({ type, pid: 1 });
    await log.close();
    const last = (await records(dir)).at(-1);
    assert.ok(last);
    return last;
  }

  test("none for a log not made yet, stopped after guardian.stop, crashed after anything else", async () => {
    const dir = freshDir();
    assert.deepEqual(await previousEnd(dir), { previous: "none" });
    const stop = await logEndingWith(dir, ["guardian.start", "guardian.stop"]);
    assert.deepEqual(await previousEnd(dir), { previous: "stopped", lastRecordAt: stop.time });
    const egressRecord = await logEndingWith(dir, ["guardian.start", "egress"]);
    assert.deepEqual(await previousEnd(dir), { previous: "crashed", lastRecordAt: egressRecord.time });
  });

  test("a damaged tail after a clean stop: still stopped, at the stop's time, with tail damaged (torn, garbage, or zeros)", async () => {
    for (const debris of ['{"seq":9,"time":"2026-01-01T00:00:00.000Z","type":"egr', "garbage\n", "\0".repeat(40) + "\n" + "\0".repeat(8)]) {
      const dir = freshDir();
      const stop = await logEndingWith(dir, ["guardian.start", "guardian.stop"]);
      await appendFile(join(dir, "audit.jsonl"), debris);
      assert.deepEqual(await previousEnd(dir), { previous: "stopped", lastRecordAt: stop.time, tail: "damaged" }, JSON.stringify(debris));
    }
  });

  test("a damaged tail after other records: crashed at the last valid record's time, tail damaged", async () => {
    const dir = freshDir();
    const last = await logEndingWith(dir, ["guardian.start", "egress"]);
    await appendFile(join(dir, "audit.jsonl"), "not a record\n{\"seq\":");
    assert.deepEqual(await previousEnd(dir), { previous: "crashed", lastRecordAt: last.time, tail: "damaged" });
  });

  test("an audit.jsonl of nothing but debris: the last record is found in the file before it", async () => {
    const dir = freshDir();
    const stop = await logEndingWith(dir, ["guardian.start", "guardian.stop"]);
    await rotateFiles(dir, 10);
    await writeFile(join(dir, "audit.jsonl"), "garbage\n");
    assert.deepEqual(await previousEnd(dir), { previous: "stopped", lastRecordAt: stop.time, tail: "damaged" });
    await writeFile(join(dir, "audit.jsonl"), "");
    assert.deepEqual(await previousEnd(dir), { previous: "stopped", lastRecordAt: stop.time }, "an empty file is a rotation cut short, not damage");
  });

  test("the next start record, written as the guardian does, agrees with the audit.recovered record before it, and the log verifies", async () => {
    const dir = freshDir();
    const stop = await logEndingWith(dir, ["guardian.start", "guardian.stop"]);
    await appendFile(join(dir, "audit.jsonl"), "garbage\n");
    const previous = await previousEnd(dir);
    const log = await AuditLog.open({ dir });
    log.append({ type: "guardian.start", pid: 2, ...previous });
    await log.close();
    const [recovered, start] = (await records(dir)).slice(-2);
    assert.equal(recovered?.type, "audit.recovered");
    assert.equal(recovered?.droppedBytes, "garbage\n".length);
    assert.deepEqual([start?.type, start?.previous, start?.lastRecordAt, start?.tail], ["guardian.start", "stopped", stop.time, "damaged"]);
    const result = await verifyAuditLog(dir);
    assert.equal(result.ok, true, describeVerifyResult(result));
    assert.deepEqual(await previousEnd(dir), { previous: "crashed", lastRecordAt: start?.time }, "once repaired, the tail is whole again");
  });
});
