import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createInstance, REPO_ROOT, startCommand, type CliResult, type TestInstance } from "../helpers/cloister.js";

const BIN = join(REPO_ROOT, "bin", "cloister");

/** Runs the installed command (bin/cloister, as a user types `cloister`) with the instance's env plus `extraEnv`. */
function runBin(t: TestInstance, bin: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  const live = startCommand(bin, args, { env: { ...t.env, ...extraEnv }, cwd: t.project, timeoutMs: 60_000 });
  live.endInput();
  return live.done;
}

/** The environment of a running process, by name. */
function environOf(pid: number): Map<string, string> {
  const entries = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").filter(Boolean);
  return new Map(entries.map((entry) => [entry.slice(0, entry.indexOf("=")), entry.slice(entry.indexOf("=") + 1)]));
}

describe("bin/cloister: the installed command", () => {
  let t: TestInstance;
  let scratch: string;
  let hostCerts: string;
  before(() => {
    t = createInstance("bin");
    scratch = mkdtempSync(join(tmpdir(), "bin-"));
    hostCerts = join(scratch, "corporate roots.pem");
    writeFileSync(hostCerts, "not parsed by the CLI\n");
  });
  after(async () => {
    await t.teardown();
    rmSync(scratch, { recursive: true, force: true });
  });

  it("a reader that stops early (| head) ends the command quietly with SIGPIPE's status, also a run whose command would write forever", async () => {
    // `| true` closes the pipe before the CLI writes (node alone takes longer to start).
    for (const command of ["config show", "agent list", "run -- yes"]) {
      const r = await runBin(t, "bash", ["-c", `${BIN} ${command} | true; echo "status \${PIPESTATUS[0]}"`]);
      assert.match(r.stdout, /^status 141$/m, `${command}: ${r.stdout}${r.stderr}`);
      assert.doesNotMatch(r.stderr, /EPIPE|Unhandled|at /, command);
    }
  });

  it("a run with the config cache warm loads neither the config schema nor its parsers (zod, yaml, tldts: ~50 ms of every command)", async () => {
    // Records every vendored library the CLI requires, through node's own module loader.
    const tracer = join(scratch, "trace-vendor.cjs");
    const loaded = join(scratch, "vendor-loaded.txt");
    writeFileSync(
      tracer,
      `const Module = require("node:module"); const fs = require("node:fs"); const load = Module._load;
Module._load = function (request, ...rest) { if (request.includes("/vendor/")) fs.appendFileSync(${JSON.stringify(loaded)}, request + "\\n"); return load.call(this, request, ...rest); };\n`,
    );
    // Warms the config cache: the first run registers the project and starts the guardian, whose
    // first files change what the cache is keyed on, so the second one writes the entry that lasts.
    for (let i = 0; i < 2; i++) assert.equal((await runBin(t, BIN, ["run", "--", "true"])).code, 0);
    rmSync(loaded, { force: true });
    const r = await runBin(t, BIN, ["run", "--", "true"], { NODE_OPTIONS: `--require ${tracer}` });
    assert.equal(r.code, 0, r.stderr);
    let vendors = "";
    try {
      vendors = readFileSync(loaded, "utf8");
    } catch {
      // Nothing vendored was loaded.
    }
    assert.doesNotMatch(vendors, /zod|yaml|tldts/, `loaded on a warm run: ${vendors}`);
  });

  it("start --help shows examples, and repeatable options carry no \"(default: [])\"", async () => {
    const r = await runBin(t, BIN, ["start", "--help"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\nExamples:\n {2}cloister start +a shell/);
    assert.match(r.stdout, /--env <NAME=VALUE> +set an environment variable inside \(repeatable\)\n/);
    assert.doesNotMatch(r.stdout, /default: \[\]/);
  });

  it("a usage error is one line like any other error: the problem, commander's suggestion, the help to read; exit 125", async () => {
    const cases: [string[], string][] = [
      [["start", "--memry", "1G"], "cloister: unknown option '--memry' (did you mean --memory?; see cloister start --help)\n"],
      [["stat"], "cloister: unknown command 'stat' (did you mean start?; see cloister --help)\n"],
      [["policy", "explain"], "cloister: missing required argument 'target' (see cloister policy explain --help)\n"],
      [["run", "--bogus", "--", "true"], "cloister: unknown option '--bogus' (see cloister run --help)\n"],
    ];
    for (const [args, stderr] of cases) {
      const r = await runBin(t, BIN, args);
      assert.deepEqual([r.code, r.stderr, r.stdout], [125, stderr, ""], args.join(" "));
    }
    // A command group typed alone shows its help, and nothing else (QA: it added "(outputHelp)").
    const group = await runBin(t, BIN, ["config"]);
    assert.match(group.stderr, /^Usage: cloister config \[options\] \[command\]\n/);
    assert.doesNotMatch(group.stderr, /outputHelp|cloister: /);
  });

  it("a command asked for --json that fails says so in JSON on stdout as well as in words on stderr", async () => {
    const r = await runBin(t, BIN, ["policy", "explain", "bad host", "--json"]);
    assert.equal(r.code, 125);
    assert.deepEqual(JSON.parse(r.stdout), { error: { message: '"bad host": host contains a space', exitCode: 125 } });
    assert.equal(r.stderr, 'cloister: "bad host": host contains a space\n');
    const missing = await runBin(t, BIN, ["config", "show", "--json", "--project", "/no/such/dir"]);
    assert.equal(missing.code, 125);
    assert.deepEqual(JSON.parse(missing.stdout), {
      error: { message: 'no project named or at "/no/such/dir"', hint: "pass --project NAME (see `cloister project list`) or a directory in a git repository; without it, config show merges the project you are in", exitCode: 125 },
    });
    const words = await runBin(t, BIN, ["policy", "explain", "bad host"]);
    assert.equal(words.stdout, "", "without --json, stdout stays empty");
    // A usage error too, which commander finds before the command runs (QA: stdout was empty).
    const usage = await runBin(t, BIN, ["secret", "list", "--json", "--bogus"]);
    assert.equal(usage.code, 125);
    assert.deepEqual(JSON.parse(usage.stdout), { error: { message: "unknown option '--bogus'", hint: "see cloister secret list --help", exitCode: 125 } });
    assert.equal(usage.stderr, "cloister: unknown option '--bogus' (see cloister secret list --help)\n");
    // --json after `--` is the command's word, and a command without --json gets none.
    for (const args of [["run", "--bogus", "--", "jq", "--json"], ["stop", "--json", "--bogus"]]) assert.equal((await runBin(t, BIN, args)).stdout, "", args.join(" "));
  });

  it("passes every argument through untouched and the exit code back, also through a symlink (npm link)", async () => {
    const link = join(scratch, "cloister");
    symlinkSync(BIN, link);
    for (const bin of [BIN, link]) {
      const r = await runBin(t, bin, ["run", "--", "sh", "-c", 'printf "%s|" "$@"; exit 3', "sh", "a b", "", "*", "$HOME", "--x"]);
      assert.equal(r.code, 3, r.stderr);
      assert.equal(r.stdout, "a b||*|$HOME|--x|");
    }
  });

  it("gives the guardian it starts the user's NODE_EXTRA_CA_CERTS unchanged, and nothing of its own", async () => {
    await t.cli(["guardian", "stop"]);
    const started = await runBin(t, BIN, ["guardian", "start"], { NODE_EXTRA_CA_CERTS: hostCerts });
    assert.equal(started.code, 0, started.stderr);
    const status = JSON.parse((await t.cli(["guardian", "status", "--json"])).stdout) as { pid: number };
    const env = environOf(status.pid);
    assert.equal(env.get("NODE_EXTRA_CA_CERTS"), hostCerts);
    assert.ok(![...env.keys()].some((name) => name.startsWith("CLOISTER_HOST_")), [...env.keys()].join(" "));
  });

  it("starts the guardian without the node flags of the process that started it (--inspect, --cpu-prof, …)", async () => {
    await t.cli(["guardian", "stop"]);
    const live = startCommand(process.execPath, ["--stack-size=900", "--no-warnings", join(REPO_ROOT, "dist", "bundle", "main.cjs"), "guardian", "start"], { env: t.env, cwd: t.project, timeoutMs: 60_000 });
    live.endInput();
    const started = await live.done;
    assert.equal(started.code, 0, started.stderr);
    const status = JSON.parse((await t.cli(["guardian", "status", "--json"])).stdout) as { pid: number };
    const argv = readFileSync(`/proc/${status.pid}/cmdline`, "utf8").split("\0").filter(Boolean);
    assert.deepEqual(argv.slice(1), [join(REPO_ROOT, "dist", "bundle", "daemon.js")]);
  });

  it("leaves NODE_EXTRA_CA_CERTS unset for the guardian when the user has none", async () => {
    await t.cli(["guardian", "stop"]);
    const started = await runBin(t, BIN, ["guardian", "start"]);
    assert.equal(started.code, 0, started.stderr);
    const status = JSON.parse((await t.cli(["guardian", "status", "--json"])).stdout) as { pid: number };
    const env = environOf(status.pid);
    assert.equal(env.has("NODE_EXTRA_CA_CERTS"), false);
    assert.equal(env.has("CLOISTER_HOST_NODE_EXTRA_CA_CERTS"), false);
  });

  it("never lets the user's NODE_EXTRA_CA_CERTS into a cloister: node there trusts the guardian's file", async () => {
    const r = await runBin(t, BIN, ["run", "--", "sh", "-c", 'echo "$NODE_EXTRA_CA_CERTS|${CLOISTER_HOST_NODE_EXTRA_CA_CERTS-unset}"'], { NODE_EXTRA_CA_CERTS: hostCerts });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), "/run/cloister/node-extra-ca.pem|unset");
  });
});
