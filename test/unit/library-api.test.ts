/**
 * The library's public surface, where it needs no sandbox (QA library-cli L3): the types a caller
 * holds or passes on can be named from the package's entry point, a listing hides a cloister's proxy
 * password and the values of its environment, and stopping a cloister that is not there resolves.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { CloisterError, listCloisters, resolvePaths, stopCloister, stoppedCloisters, vaultCredentials, type CloisterPaths } from "../../src/index.js";
import { writeRecord } from "../../src/sandbox/records.js";
import { sampleRecord } from "../helpers/records.js";

const base = mkdtempSync(join(tmpdir(), "clib-"));
after(() => rmSync(base, { recursive: true, force: true }));
const srcIndex = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "src", "index.ts");

describe("the library's public surface", () => {
  it("names every type its calls take and give (a caller's `import type` compiles)", () => {
    // In the test's temp dir, as a caller's own file would be: only the entry point is reachable.
    const consumer = join(base, "consumer.ts");
    writeFileSync(
      consumer,
      `import type { AgentSession, CloisterListing, CloisterOptions, CloisterPaths, CloisterRecord, Credential, CredentialKind, CredentialLookup, ExecOptions, ExecResult, ExecSession, RemovedCloister, RemoveOptions, RunOptions, SessionRules, StoppedCloister } from ${JSON.stringify(srcIndex.replace(/\.ts$/, ".js"))};
import { Cloister, CloisterError, NameTaken, removeCloister, stoppedCloisters, vaultCredentials } from ${JSON.stringify(srcIndex.replace(/\.ts$/, ".js"))};
export async function use(c: Cloister, o: CloisterOptions & RunOptions, e: ExecOptions, p: CloisterPaths): Promise<unknown[]> {
  const session: ExecSession = c.exec(["true"], e);
  const result: ExecResult = await session.done;
  const agent: AgentSession | undefined = c.agent;
  const kind: CredentialKind = "api_key";
  const lookup: CredentialLookup = async (): Promise<Credential | undefined> => ({ kind, value: "x" });
  const vault: CredentialLookup = vaultCredentials(p);
  const record: CloisterRecord = c.record;
  const rules: SessionRules | undefined = record.session;
  const listing: CloisterListing[] = [];
  const errors = [CloisterError, NameTaken];
  const stopped: StoppedCloister[] = await stoppedCloisters(p);
  const remove: RemoveOptions = { force: true, paths: p };
  const removed: RemovedCloister = await removeCloister("api", remove);
  return [o, p, result, agent, lookup, vault, rules, listing, errors, stopped, removed];
}
`,
    );
    const program = ts.createProgram([consumer], {
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      skipLibCheck: true,
      types: ["node"],
      typeRoots: [join(dirname(srcIndex), "..", "node_modules", "@types")],
    });
    const problems = ts.getPreEmitDiagnostics(program, program.getSourceFile(consumer)).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
    assert.deepEqual(problems, []);
  });

  it("listCloisters leaves out the proxy token and the environment's values, as the guardian's listing does", async () => {
    const paths = resolvePaths({ CLOISTER_HOME: join(base, "list") });
    // Without a keeper: a dead cloister, listed until the guardian sweeps it.
    writeRecord(paths, sampleRecord("secretive", { keeperPid: undefined, network: true, proxyToken: "proxy-password-canary", env: { DB_PASSWORD: "env-value-canary" } }));
    const listed = await listCloisters(paths);
    assert.deepEqual(listed.map((c) => [c.name, c.running]), [["secretive", false]]);
    assert.doesNotMatch(JSON.stringify(listed), /canary/);
    assert.ok(!("proxyToken" in listed[0]!) && !("env" in listed[0]!));
  });

  it("stopCloister of a name with no cloister resolves with false, without starting a guardian to ask", async () => {
    const paths = resolvePaths({ CLOISTER_HOME: join(base, "stop") });
    assert.equal(await stopCloister("never-started", paths), false);
    assert.equal(await stopCloister("never-started", paths), false, "and again");
    assert.ok(!existsSync(paths.guardianSocket), "a guardian was started");
  });

  it("the calls that take the paths themselves say so when given options that hold them ({ paths })", async () => {
    const paths = resolvePaths({ CLOISTER_HOME: join(base, "wrapped") });
    const said = "paths must be the object resolvePaths() returns, not an object that holds it ({ paths }) (pass the paths themselves, as resolvePaths() returns them)";
    const wrapped = { paths } as unknown as CloisterPaths;
    for (const call of [() => stopCloister("x", wrapped), () => listCloisters(wrapped), () => stoppedCloisters(wrapped), async () => vaultCredentials(wrapped)]) {
      await assert.rejects(call, (error: unknown) => error instanceof CloisterError && error.oneLine() === said);
    }
  });
});
