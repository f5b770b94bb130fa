/**
 * The library's own contract, beside what the CLI tests cover through the same code: runInCloister's
 * timeout and abort signal stop a command that runs (the call settles once nothing of its cloister
 * is left), and wrong options or commands are refused before anything starts, as CloisterErrors
 * that name them, with no CLI flag in the words. Stopping is idempotent, and a cloister that is not
 * persistent does not keep its caller's process from exiting, but ends with it.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { createCloister, findCloister, NameTaken, runInCloister, stopCloister, type CloisterOptions, type RunOptions } from "../../src/cloister.js";
import { resolvePaths, type CloisterPaths } from "../../src/config/paths.js";
import { CloisterError } from "../../src/errors.js";
import { guardianCall } from "../../src/guardian/control-client.js";
import { listRecords, type CloisterRecord } from "../../src/sandbox/records.js";
import { createInstance, REPO_ROOT, startCommand, waitUntil, withConfig, type TestInstance } from "../helpers/cloister.js";
import { hostTree, waitGone, type HostProc } from "../helpers/host-processes.js";

/** A fresh cloister seen while its command ran: its record and host processes (keeper, bwrap, init, the command). */
interface Seen {
  record: CloisterRecord;
  procs: HostProc[];
}

describe("the library: runInCloister's timeout and signal, and its inputs", () => {
  let t: TestInstance;
  let paths: CloisterPaths;

  before(() => {
    t = createInstance("lib");
    paths = resolvePaths({ CLOISTER_HOME: t.home });
  });
  after(async () => t.teardown());

  /**
   * Runs `script` in a fresh cloister; `sh -c` prints "started" first, and at that moment the
   * cloister is seen (its processes taken from the host) and `onStart` is called.
   */
  async function runScript(script: string, options: RunOptions, onStart: () => void = () => undefined): Promise<{ result: Promise<number>; seen: () => Seen | undefined; output: () => string }> {
    let output = "";
    let seen: Seen | undefined;
    const stdout = new Writable({
      write(chunk: Buffer, _encoding, done) {
        output += chunk.toString();
        if (!seen && output.includes("started")) {
          const record = listRecords(paths).find((r) => !r.persistent && r.keeperPid !== undefined);
          assert.ok(record?.keeperPid, "no running cloister recorded while its command runs");
          seen = { record, procs: hostTree(record.keeperPid) };
          onStart();
        }
        done();
      },
    });
    const result = runInCloister(["sh", "-c", `echo started; ${script}`], { project: t.project, paths, ...options }, { stdout });
    return { result, seen: () => seen, output: () => output };
  }

  /** Nothing of the cloister is left: record, runtime dir, cgroups, host processes, entries in the project. */
  async function assertGone(seen: Seen | undefined, projectBefore: string[], what: string): Promise<void> {
    assert.ok(seen, `the command of ${what} never started`);
    const { record, procs } = seen;
    assert.ok(procs.length >= 3, `expected keeper, bwrap and init, found ${procs.length}`);
    assert.ok(!existsSync(join(paths.cloisterRecordDir, `${record.name}.json`)), `${what} left its record`);
    assert.ok(!existsSync(record.runtimeDir), `${what} left its runtime dir`);
    assert.deepEqual(record.cgroupDirs.filter((dir) => existsSync(dir)), [], `${what} left cgroups`);
    assert.deepEqual(readdirSync(t.project).sort(), projectBefore, `${what} left entries in the project`);
    await waitGone(procs, what);
  }

  it("a timeout in milliseconds stops a command that runs on: resolves with 124 (as `run --timeout` exits) once nothing is left", async () => {
    const projectBefore = readdirSync(t.project).sort();
    const run = await runScript("sleep 8; echo ran-to-end", { timeout: 500 });
    assert.equal(await run.result, 124);
    assert.doesNotMatch(run.output(), /ran-to-end/);
    await assertGone(run.seen(), projectBefore, "a run stopped by its timeout");
  });

  it("a timeout as a duration, or config limits.timeout, which the CLI's run honours too; none lifts it", async () => {
    assert.equal(await (await runScript("sleep 8", { timeout: "1s" })).result, 124);
    await withConfig(t, (config) => config.replace(/^ {2}timeout: none$/m, "  timeout: 1s"), async () => {
      assert.equal(await (await runScript("sleep 8", {})).result, 124, "config limits.timeout");
      const lifted = await runScript("sleep 2; echo ran-to-end", { timeout: "none" });
      assert.equal(await lifted.result, 0);
      assert.match(lifted.output(), /ran-to-end/);
      const cli = await t.cli(["run", "--", "sleep", "8"]);
      assert.equal(cli.code, 124, cli.stderr);
      assert.equal(cli.stderr, "cloister: sleep timed out after 1s; the cloister was stopped\n");
    });
  });

  it("a command that ends before its timeout keeps its exit code", async () => {
    assert.equal(await (await runScript("exit 3", { timeout: "30s" })).result, 3);
  });

  it("the signal aborting while the command runs stops it and rejects with the abort's reason once nothing is left", async () => {
    const projectBefore = readdirSync(t.project).sort();
    const controller = new AbortController();
    const run = await runScript("sleep 8; echo ran-to-end", { signal: controller.signal }, () => controller.abort(new Error("enough")));
    await assert.rejects(run.result, (error: unknown) => error instanceof Error && error.message === "enough");
    assert.doesNotMatch(run.output(), /ran-to-end/);
    await assertGone(run.seen(), projectBefore, "a run aborted by its signal");
  });

  it("a reason that is not an Error is the rejection as given, whether the signal aborts during the launch or the command (QA: a string became \"the launch was aborted\")", async () => {
    const projectBefore = readdirSync(t.project).sort();
    const controller = new AbortController();
    const run = await runScript("sleep 8; echo ran-to-end", { signal: controller.signal }, () => controller.abort("enough"));
    await assert.rejects(run.result, (reason: unknown) => reason === "enough");
    await assertGone(run.seen(), projectBefore, "a run aborted with a string");
    const reason = { why: "enough" };
    const launching = new AbortController();
    const launch = runInCloister(["true"], { project: t.project, paths, network: false, signal: launching.signal });
    launching.abort(reason);
    await assert.rejects(launch, (rejected: unknown) => rejected === reason);
    assert.deepEqual(listRecords(paths), []);
  });

  it("AbortSignal.timeout() ends the run with its TimeoutError, whether it fires during the launch or the command", async () => {
    const run = await runScript("sleep 8; echo ran-to-end", { signal: AbortSignal.timeout(1_500) });
    await assert.rejects(run.result, (error: unknown) => error instanceof Error && error.name === "TimeoutError");
    assert.doesNotMatch(run.output(), /ran-to-end/);
    assert.deepEqual(listRecords(paths), []);
  });

  it("one signal shared by a dozen runs: no leak warning, and its abort stops every run", async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error): number => warnings.push(warning);
    process.on("warning", onWarning);
    try {
      const shared = new AbortController();
      const finished = await Promise.all(Array.from({ length: 12 }, () => runInCloister(["true"], { project: t.project, paths, network: false, signal: shared.signal })));
      assert.deepEqual(finished, Array(12).fill(0));

      const aborting = new AbortController();
      const runs = Array.from({ length: 12 }, () => runInCloister(["sleep", "30"], { project: t.project, paths, network: false, signal: aborting.signal }));
      await waitUntil("all twelve cloisters running", () => listRecords(paths).filter((r) => r.keeperPid !== undefined).length === 12, 30_000);
      aborting.abort(new Error("enough"));
      const settled = await Promise.allSettled(runs);
      assert.deepEqual(settled.map((outcome) => (outcome.status === "rejected" ? (outcome.reason as Error).message : outcome.value)), Array(12).fill("enough"));
      assert.deepEqual(listRecords(paths), []);
    } finally {
      process.off("warning", onWarning);
    }
    // Node warns on the next tick: by now it would have.
    assert.deepEqual(warnings.map((warning) => warning.name), []);
  });

  describe("wrong inputs are refused before anything starts, as CloisterErrors naming them", () => {
    /** Expects `call` to reject with a CloisterError whose line is `message`, having made nothing. */
    async function assertRefused(call: () => Promise<unknown>, message: string | RegExp): Promise<void> {
      const runtime = join(t.home, "run", "c");
      const runtimeBefore = existsSync(runtime) ? readdirSync(runtime) : [];
      await assert.rejects(call, (error: unknown) => {
        assert.ok(error instanceof CloisterError, `not a CloisterError: ${String(error)}`);
        if (typeof message === "string") assert.equal(error.oneLine(), message);
        else assert.match(error.oneLine(), message);
        assert.doesNotMatch(error.oneLine(), /--[a-z]/, "a CLI flag in a library message");
        return true;
      });
      assert.deepEqual(listRecords(paths), []);
      assert.deepEqual(existsSync(runtime) ? readdirSync(runtime) : [], runtimeBefore);
    }

    /** The options as a JavaScript caller may pass them, past the compiler. */
    const loose = (options: Record<string, unknown>) => ({ project: t.project, paths, ...options }) as RunOptions;

    it("options of the wrong type, misspelt or of another call (the QA's cases)", async () => {
      const cases: [Record<string, unknown>, string | RegExp][] = [
        [{ allow: "example.com" }, /^options\.allow must be an array of rules/],
        [{ memory: {} }, /^options\.memory must be a size .* not an object$/],
        [{ pids: true }, /^options\.pids must be a process count .* not true$/],
        [{ netwrok: false, timout: 5 }, "options.netwrok is not an option (did you mean options.network?)"],
        [{ network: "no" }, 'options.network must be true or false, not the string "no"'],
        [{ env: "FOO=bar" }, /^options\.env must be an object of variable names to values/],
        [{ env: { X: 5 } }, "options.env.X must be a string, not the number 5"],
        [{ env: { "": "x" } }, /^options\.env has an invalid variable name ""/],
        [{ signal: "x" }, 'options.signal must be an AbortSignal, not the string "x"'],
        [{ name: "BAD NAME!!" }, /^options\.name names a persistent cloister/],
      ];
      for (const [options, message] of cases) await assertRefused(() => runInCloister(["true"], loose(options)), message);
    });

    it("values that do not parse, or are too small, name their option", async () => {
      await assertRefused(() => runInCloister(["true"], loose({ memory: "junk" })), /^options\.memory: "junk" is not a size/);
      await assertRefused(() => runInCloister(["true"], loose({ pids: 2 })), /^options\.pids: a process limit of 2 is too small/);
      await assertRefused(() => runInCloister(["true"], loose({ timeout: "30d" })), 'options.timeout: "30d" is longer than the longest supported (24 days)');
      await assertRefused(() => runInCloister(["true"], loose({ network: false, allow: ["example.com"] })), /^options\.allow, options\.deny, options\.allowPrivate and options\.resolve have no effect without a network/);
      await assertRefused(() => runInCloister(["true"], loose({ project: join(t.home, "missing") })), /pass an existing directory with options\.project/);
      await assertRefused(() => runInCloister(["true"], loose({ resolve: { "1.2.3.4": "a" } })), /^options\.resolve 1\.2\.3\.4=a: .*only names can be mapped/);
    });

    it("a command that is not an array of strings, or holds a NUL byte", async () => {
      const run = (argv: unknown) => () => runInCloister(argv as string[], { project: t.project, paths });
      await assertRefused(run(["echo", 5]), "argv[1] must be a string, not the number 5");
      await assertRefused(run("echo hi"), /^argv must be an array of strings, not the string "echo hi"/);
      await assertRefused(run(["echo", "a\0b"]), /^argv\[1\] contains a NUL byte/);
    });

    it("createCloister, and the commands of a cloister it made, the same way", async () => {
      await assertRefused(() => createCloister({ project: t.project, paths, timeout: "5m" } as CloisterOptions, true), /^options\.timeout is runInCloister's/);
      await assertRefused(() => createCloister({ project: t.project, paths, name: "api" }, false), /^options\.name names a persistent cloister/);
      const cloister = await createCloister({ project: t.project, paths, network: false }, true);
      try {
        assert.throws(() => cloister.exec(["env"], { env: { "": "x" } }), (error: unknown) => error instanceof CloisterError && /^options\.env has an invalid variable name ""/.test(error.message));
        assert.throws(() => cloister.exec(["echo", "a\0b"]), (error: unknown) => error instanceof CloisterError && error.message === "argv[1] contains a NUL byte");
        assert.equal((await cloister.exec(["true"]).done).exitCode, 0, "the cloister still serves");
      } finally {
        await cloister.stop();
      }
    });

    it("findCloister refuses an option that applies only when a cloister is made, and leaves the cloister as it was; env it takes", async () => {
      const running = await createCloister({ project: t.project, paths, name: "found", network: true }, true);
      try {
        await assert.rejects(
          // @ts-expect-error -- FindOptions has no network: the compiler refuses it too
          findCloister("found", { paths, network: false }),
          (error: unknown) => {
            assert.ok(error instanceof CloisterError, `not a CloisterError: ${String(error)}`);
            assert.equal(error.oneLine(), "options.network is createCloister's: it applies when a cloister is made; a running one keeps what it was started with (stop it and create it again with the new options, or leave it out)");
            return true;
          },
        );
        const records = listRecords(paths);
        assert.deepEqual(records.map((r) => [r.name, r.id, r.network]), [["found", running.record.id, true]], "the running cloister changed");
        let output = "";
        const stdout = new Writable({
          write(chunk: Buffer, _encoding, done) {
            output += chunk.toString();
            done();
          },
        });
        const found = await findCloister("found", { paths, env: { FOUND_BY: "findCloister" }, network: undefined });
        assert.ok(found, "findCloister did not find the running cloister");
        assert.equal(found.record.id, running.record.id);
        assert.equal((await found.exec(["sh", "-c", 'echo "$FOUND_BY $HTTPS_PROXY"'], { stdout }).done).exitCode, 0);
        assert.match(output, /^findCloister http:\/\/cloister:[^@]+@127\.0\.0\.1:3128\n$/, "the command's env, with the network the cloister was started with");
        // The CLI's start takes the library's find, and says its own flags for what it would ignore.
        const cli = await t.cli(["start", "-d", "--name", "found", "--memory", "16M"]);
        assert.equal(cli.code, 125);
        assert.equal(cli.stderr, "cloister: cloister found is already running; --memory applies only when a cloister starts (stop it first (cloister stop found) and start it again with it)\n");
      } finally {
        await running.stop();
      }
    });

    it("the CLI says its flags where the library says options", async () => {
      const memory = await t.cli(["run", "--memory", "junk", "--", "true"]);
      assert.equal(memory.code, 125);
      assert.match(memory.stderr, /^cloister: --memory: "junk" is not a size/);
      const rule = await t.cli(["run", "--deny", "*.co.uk", "--", "true"]);
      assert.equal(rule.code, 125);
      assert.match(rule.stderr, /^cloister: --deny \*\.co\.uk: /);
      assert.doesNotMatch(memory.stderr + rule.stderr, /options\./);
    });
  });

  describe("stopping, and the end of a caller that does not stop", () => {
    it("a cloister's stop resolves again once it is gone, stopped from here or by the CLI, and leaves one of the same name started since", async () => {
      const first = await createCloister({ project: t.project, paths, name: "twice", network: false }, true);
      assert.equal(await first.stop(), true);
      assert.equal(await first.stop(), false, "a second stop");
      assert.equal(await stopCloister("twice", paths), false, "stopCloister of a stopped one");
      const second = await createCloister({ project: t.project, paths, name: "twice", network: false }, true);
      try {
        assert.equal(await first.stop(), false, "the first one's stop, with another of its name running");
        // The guardian checks the id too, so that no new cloister of the name can start between the check and the stop.
        await assert.rejects(guardianCall(paths, "POST", "/v1/cloisters/twice/stop", { id: "an-earlier-one" }), /no cloister named "twice"/);
        assert.equal((await second.exec(["true"]).done).exitCode, 0, "the second one was stopped");
        const cli = await t.cli(["stop", "twice"]);
        assert.equal(cli.code, 0, cli.stderr);
        assert.equal(await second.stop(), false, "stop after `cloister stop`");
      } finally {
        await second.stop();
      }
      // The CLI still fails on a stop that stopped nothing, saying that it is stopped already; a
      // name that names nothing may be a typo.
      const stopped = await t.cli(["stop", "twice"]);
      assert.equal(stopped.code, 125);
      assert.equal(stopped.stderr, "cloister: cloister twice is already stopped; its HOME is kept for its next start (`cloister rm twice` removes it)\n");
      const unknown = await t.cli(["stop", "twise"]);
      assert.equal(unknown.code, 125);
      assert.equal(unknown.stderr, 'cloister: no cloister named "twise" (see `cloister list`)\n');
    });

    it("`cloister stop --all NAME` is refused, and stops nothing", async () => {
      const cloister = await createCloister({ project: t.project, paths, name: "kept", network: false }, true);
      try {
        const both = await t.cli(["stop", "--all", "other"]);
        assert.equal(both.code, 125);
        assert.equal(both.stderr, 'cloister: --all stops every cloister, not "other" (give either the name (cloister stop other) or --all)\n');
        assert.equal((await cloister.exec(["true"]).done).exitCode, 0, "--all NAME stopped a cloister");
      } finally {
        await cloister.stop();
      }
    });

    it("a name another cloister holds is a NameTaken that says what to do in the library's words, and the holder is left running", async () => {
      const holder = await createCloister({ project: t.project, paths, name: "held", network: false }, true);
      try {
        await assert.rejects(createCloister({ project: t.project, paths, name: "held", network: false }, true), (error: unknown) => {
          assert.ok(error instanceof NameTaken, `not a NameTaken: ${String(error)}`);
          assert.equal(error.holder.id, holder.record.id);
          assert.equal(
            error.oneLine(),
            `cloister held is already running (project ${holder.record.project} at ${holder.record.projectRoot}) (use it: findCloister("held"), or give options.name another name)`,
          );
          return true;
        });
        assert.equal((await holder.exec(["true"]).done).exitCode, 0, "the holder was stopped");
      } finally {
        await holder.stop();
      }
    });

    it("a fresh cloister never stopped lets its caller's process exit, and ends with it: nothing of it is left", async () => {
      // A caller that forgets stop(), with a daemon left running inside, in a node of its own.
      const script = `
        import { createCloister } from ${JSON.stringify(pathToFileURL(join(REPO_ROOT, "dist", "index.js")).href)};
        const cloister = await createCloister({ project: ${JSON.stringify(t.project)}, network: false });
        const { exitCode } = await cloister.exec(["sh", "-c", "sleep 600 >/dev/null 2>&1 &"]).done;
        process.stdout.write("exit=" + exitCode + " keeper=" + cloister.record.keeperPid + " name=" + cloister.name + "\\n");
        // A moment for the test to see the cloister's processes; then nothing holds this process.
        setTimeout(() => undefined, 1_500);
      `;
      const live = startCommand(process.execPath, ["--input-type=module", "-e", script], { env: t.env, cwd: t.project, timeoutMs: 20_000 });
      await live.waitFor("keeper=");
      const [, exitCode, keeperPid, name] = /exit=(\d+) keeper=(\d+) name=(\S+)/.exec(live.output()) ?? [];
      assert.equal(exitCode, "0", live.output());
      const record = listRecords(paths).find((r) => r.name === name);
      assert.ok(record, `no record of ${name}`);
      const procs = hostTree(Number(keeperPid));
      assert.ok(procs.some((p) => p.cmd?.startsWith("sleep 600")), `the daemon inside is not running: ${JSON.stringify(procs)}`);
      const started = Date.now();
      const result = await live.done;
      assert.equal(result.code, 0, `the caller did not exit by itself (${result.stderr})`);
      assert.ok(Date.now() - started < 10_000, "the caller took too long to exit");
      await waitGone(procs, "the caller's exit");
      await waitUntil(`the guardian's sweep of ${name}`, () => !existsSync(join(paths.cloisterRecordDir, `${name}.json`)), 15_000);
      assert.ok(!existsSync(record.runtimeDir), "its runtime dir was left");
      assert.deepEqual(record.cgroupDirs.filter((dir) => existsSync(dir)), [], "its cgroups were left");
    });
  });
});
