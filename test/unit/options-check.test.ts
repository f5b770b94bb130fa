import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { describe, test } from "node:test";
import { resolvePaths } from "../../src/config/paths.js";
import { CloisterError } from "../../src/errors.js";
import { checkArgv, checkExecOptions, checkOptions, checkTerminalSize, findOptionsOf, signalNumber, type OptionsUse } from "../../src/options-check.js";
import { execInCloister } from "../../src/sandbox/init-client.js";
import { inFlagWords } from "../../src/cli/option-flags.js";

/** The one-line message a check throws (a CloisterError, nothing else), or undefined when it passes. */
function problem(check: () => void): string | undefined {
  try {
    check();
    return undefined;
  } catch (error) {
    assert.ok(error instanceof CloisterError, `not a CloisterError: ${String(error)}`);
    return error.oneLine();
  }
}

const optionsProblem = (options: unknown, use: OptionsUse = "run") => problem(() => checkOptions(options, use));

describe("checkOptions", () => {
  test("wrong types name the option and what it must be (the QA's cases)", () => {
    const cases: [unknown, string][] = [
      [{ allow: "example.com" }, 'options.allow must be an array of rules (strings such as "example.com"), not the string "example.com"'],
      [{ memory: {} }, 'options.memory must be a size such as "8GiB", a number of bytes, or "none", not an object'],
      [{ pids: true }, 'options.pids must be a process count such as 4096, or "none", not true'],
      [{ resolve: ["a=1.2.3.4"] }, 'options.resolve must be an object of host names to IP addresses, such as { "api.test": "127.0.0.1" }, not an array'],
      [{ network: "no" }, 'options.network must be true or false, not the string "no"'],
      [{ network: 0 }, "options.network must be true or false, not the number 0"],
      [{ env: "FOO=bar" }, 'options.env must be an object of variable names to values, such as { NODE_ENV: "test" }, not the string "FOO=bar"'],
      [{ env: { X: 5 } }, "options.env.X must be a string, not the number 5"],
      [{ env: { "": "x" } }, 'options.env has an invalid variable name "" (use letters, digits and _, not starting with a digit)'],
      [{ env: { X: "a\0b" } }, "options.env.X contains a NUL byte (no string handed to a cloister may hold one)"],
      [{ env: { BIG1: "a".repeat(300_000), BIG2: "a".repeat(300_000) } }, "options.env holds 600012 bytes, more than the 524288 a command's environment may take here (put large values in a file in the project and pass its path)"],
      [{ signal: "x" }, 'options.signal must be an AbortSignal, not the string "x"'],
      [{ timeout: [] }, 'options.timeout must be a duration such as "5m", a number of milliseconds, or "none", not an array'],
      [{ allow: ["ok.example", 7] }, "options.allow[1] must be a string, not the number 7"],
      [{ paths: { configDir: "/x" } }, "options.paths must be the object resolvePaths() returns: its stateDir is undefined (pass resolvePaths({ CLOISTER_HOME: dir }) for an instance of its own)"],
      [{ paths: { paths: resolvePaths() } }, "options.paths must be the object resolvePaths() returns, not an object that holds it ({ paths }) (pass the paths themselves, as resolvePaths() returns them)"],
      [{ agent: false }, 'options.agent must be an agent\'s name (such as "claude") or true, not false'],
      [{ warn: "stderr" }, 'options.warn must be a function, not the string "stderr"'],
      [null, "options must be an object, not null"],
      [new Map(), "options must be an object, not a Map"],
    ];
    for (const [options, message] of cases) assert.equal(optionsProblem(options), message, JSON.stringify(options));
  });

  test("an unknown key is refused with the nearest valid one, or the list of them", () => {
    assert.equal(optionsProblem({ netwrok: false }), "options.netwrok is not an option (did you mean options.network?)");
    assert.equal(optionsProblem({ timout: 5 }), "options.timout is not an option (did you mean options.timeout?)");
    assert.equal(optionsProblem({ allowprivate: [] }, "persistent"), "options.allowprivate is not an option (did you mean options.allowPrivate?)");
    assert.match(optionsProblem({ toString: 1 }) ?? "", /^options\.toString is not an option \(the options are project, allowNoGit, /);
  });

  test("an option of another call says whose it is", () => {
    assert.equal(optionsProblem({ name: "BAD NAME!!" }, "run"), "options.name names a persistent cloister; runInCloister's is named for you (leave it out, or create a persistent one: createCloister(options, true))");
    assert.match(optionsProblem({ name: "api" }, "fresh") ?? "", /^options\.name names a persistent cloister; a fresh one is named for you/);
    assert.match(optionsProblem({ timeout: "5m" }, "persistent") ?? "", /^options\.timeout is runInCloister's/);
    assert.match(optionsProblem({ timeout: "5m" }, "fresh") ?? "", /^options\.timeout is runInCloister's/);
  });

  test("takes every option of the right type, and undefined as unset (the CLI's way)", () => {
    const lookup = async () => undefined;
    const all = {
      project: "/p",
      allowNoGit: false,
      branch: "feature",
      network: true,
      memory: 512 * 1024 ** 2,
      pids: "100",
      cpu: "150%",
      env: { NODE_ENV: "test" },
      secretEnv: { GITHUB_TOKEN: "gh" },
      allow: ["example.com"],
      deny: [],
      allowPrivate: ["db.test:5432"],
      resolve: { "db.test": "127.0.0.1" },
      paths: resolvePaths({ CLOISTER_HOME: "/tmp/x" }),
      signal: new AbortController().signal,
      agent: true,
      credentials: lookup,
      passEnvCredential: false,
      warn: () => undefined,
    };
    assert.equal(optionsProblem({ ...all, name: "api" }, "persistent"), undefined);
    assert.equal(optionsProblem({ ...all, timeout: 5000, name: undefined }, "run"), undefined);
    assert.equal(optionsProblem({ ...all, timeout: "none" }, "run"), undefined);
    assert.equal(optionsProblem(Object.assign(Object.create(null) as object, { memory: "none" }), "fresh"), undefined);
  });
});

describe("checkOptions for findCloister (a running cloister)", () => {
  const made = "is createCloister's: it applies when a cloister is made; a running one keeps what it was started with (stop it and create it again with the new options, or leave it out)";
  const foundByName = "is createCloister's: findCloister finds a cloister by its name alone, whatever its project (leave it out; a found cloister's project is its record.projectRoot)";

  test("findOptionsOf keeps of a launch's options those findCloister takes, and only those", () => {
    const warn = () => undefined;
    const picked = findOptionsOf({ name: "api", project: "/p", network: false, memory: "1G", allow: ["a.test"], env: { A: "1" }, agent: "claude", warn });
    assert.deepEqual(Object.fromEntries(Object.entries(picked).filter(([, value]) => value !== undefined)), { env: { A: "1" }, agent: "claude", warn });
    assert.equal(optionsProblem(picked, "running"), undefined);
  });

  test("each option that applies only when a cloister is made is refused by name, with what to do", () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ network: false }, `options.network ${made}`],
      [{ memory: "16M" }, `options.memory ${made}`],
      [{ pids: 100 }, `options.pids ${made}`],
      [{ cpu: "50%" }, `options.cpu ${made}`],
      [{ allow: ["example.com"] }, `options.allow ${made}`],
      [{ deny: [] }, `options.deny ${made}`],
      [{ allowPrivate: ["db.test"] }, `options.allowPrivate ${made}`],
      [{ resolve: { "api.test": "127.0.0.1" } }, `options.resolve ${made}`],
      [{ project: "/nope" }, `options.project ${foundByName}`],
      [{ allowNoGit: true }, `options.allowNoGit ${foundByName}`],
      [{ branch: "feature" }, `options.branch ${foundByName}`],
      [{ name: "api" }, "options.name is createCloister's: findCloister takes the name as its first argument (leave it out: findCloister(name))"],
      [{ timeout: "5m" }, "options.timeout is runInCloister's: a cloister made here runs until it is stopped (stop it yourself: cloister.stop())"],
    ];
    for (const [options, message] of cases) assert.equal(optionsProblem(options, "running"), message, JSON.stringify(options));
  });

  test("the first launch option is named even beside valid ones; a misspelt one gets the nearest it takes", () => {
    assert.equal(optionsProblem({ env: { A: "1" }, network: false, memory: "16M" }, "running"), `options.network ${made}`);
    assert.equal(optionsProblem({ secretEnf: {} }, "running"), "options.secretEnf is not an option (did you mean options.secretEnv?)");
  });

  test("takes every option it uses, and launch options set to undefined as unset", () => {
    const used = {
      env: { NODE_ENV: "test" },
      secretEnv: { GITHUB_TOKEN: "gh" },
      paths: resolvePaths({ CLOISTER_HOME: "/tmp/x" }),
      signal: new AbortController().signal,
      agent: "claude",
      credentials: async () => undefined,
      passEnvCredential: true,
      warn: () => undefined,
    };
    assert.equal(optionsProblem(used, "running"), undefined);
    assert.equal(optionsProblem({ ...used, network: undefined, memory: undefined, project: undefined, name: undefined, timeout: undefined }, "running"), undefined);
    assert.equal(optionsProblem({}, "running"), undefined);
  });

  test("a used option is checked as for createCloister", () => {
    assert.equal(optionsProblem({ env: "A=1" }, "running"), 'options.env must be an object of variable names to values, such as { NODE_ENV: "test" }, not the string "A=1"');
  });
});

describe("checkArgv", () => {
  const argvProblem = (argv: unknown, mayBeEmpty = false) => problem(() => checkArgv(argv, "argv", mayBeEmpty));

  test("a command is an array of strings without NUL bytes, not empty unless an agent's", () => {
    assert.equal(argvProblem(["echo", 5]), "argv[1] must be a string, not the number 5");
    assert.equal(argvProblem("echo hi"), 'argv must be an array of strings, not the string "echo hi" (one element per word, as in ["echo","hi"]; no shell splits it)');
    assert.equal(argvProblem(["echo", "a\0b"]), "argv[1] contains a NUL byte (no string handed to a cloister may hold one)");
    assert.equal(argvProblem([]), 'argv is empty: no command given (give the command and its arguments, such as ["npm", "test"])');
    assert.equal(argvProblem([], true), undefined);
    assert.equal(argvProblem(["sh", "-c", "true"]), undefined);
  });
});

describe("checkExecOptions", () => {
  const execProblem = (options: unknown) => problem(() => checkExecOptions(options, "exec"));

  test("checks each field, the terminal's size within", () => {
    assert.equal(execProblem({ cwd: 1 }), "exec.cwd must be a string, not the number 1");
    assert.equal(execProblem({ tty: { rows: 24 } }), "exec.tty.cols is missing (give the terminal's size: { rows: 24, cols: 80 })");
    assert.equal(execProblem({ tty: { rows: 0, cols: 80 } }), "exec.tty.rows must be a whole number from 1 to 65535, not the number 0");
    assert.equal(execProblem({ tty: { rows: 24, cols: 80, height: 9 } }), "exec.tty.height is not an option (the options are rows, cols, separateStderr)");
    assert.equal(execProblem({ stdout: "out.log" }), 'exec.stdout must be a writable stream, not the string "out.log"');
    assert.equal(execProblem({ stdot: process.stdout }), "exec.stdot is not an option (did you mean exec.stdout?)");
    assert.equal(execProblem({ cwd: "/work", env: { A: "1" }, tty: { rows: 24, cols: 80, separateStderr: true }, stdin: new PassThrough(), stdout: new PassThrough(), stderr: process.stderr }), undefined);
  });
});

describe("a running command's resize and signal", () => {
  test("a new terminal size is checked as exec.tty's is", () => {
    assert.equal(problem(() => checkTerminalSize(-5, 80)), "rows must be a whole number from 1 to 65535, not the number -5");
    assert.equal(problem(() => checkTerminalSize(24, 0)), "cols must be a whole number from 1 to 65535, not the number 0");
    assert.equal(problem(() => checkTerminalSize(24, 80)), undefined);
  });

  test("a signal is a name node knows or a number from 1 to 64", () => {
    assert.equal(signalNumber("SIGTERM"), 15);
    assert.equal(signalNumber(9), 9);
    assert.equal(signalNumber(64), 64);
    const hint = 'give a name such as "SIGTERM" or "SIGINT", or a number from 1 to 64';
    assert.equal(problem(() => signalNumber("SIGBOGUS")), `signal must be a signal's name or number, not the string "SIGBOGUS" (${hint})`);
    assert.equal(problem(() => signalNumber("toString")), `signal must be a signal's name or number, not the string "toString" (${hint})`);
    assert.equal(problem(() => signalNumber(0)), `signal must be a signal's name or number, not the number 0 (${hint})`);
    assert.equal(problem(() => signalNumber(65)), `signal must be a signal's name or number, not the number 65 (${hint})`);
  });

  test("a session refuses them with a CloisterError, before anything is sent", async () => {
    const session = execInCloister("/nonexistent/cloister/init.sock", { tty: false, cwd: "/work", argv: ["true"], env: {} });
    const failed = session.done.catch((error: unknown) => error);
    // @ts-expect-error: a JavaScript caller's wrong value
    assert.match(problem(() => session.signal("SIGBOGUS")) ?? "", /^signal must be a signal's name or number/);
    assert.match(problem(() => session.resize(-5, 80)) ?? "", /^rows must be a whole number from 1 to 65535/);
    assert.ok((await failed) instanceof Error, "the session to a missing socket fails");
  });
});

describe("inFlagWords: the CLI says options as its flags", () => {
  test("each option the CLI sets has its flag; the others and unknown words stay", () => {
    assert.equal(inFlagWords("options.allow, options.deny, options.allowPrivate and options.resolve have no effect without a network (drop them, or drop options.network)"), "--allow, --deny, --allow-private and --resolve have no effect without a network (drop them, or drop --no-network)");
    assert.equal(inFlagWords('options.secretEnv and options.timeout: "0"'), '--secret and --timeout: "0"');
    assert.equal(inFlagWords("options.paths and options.toString and myoptions.memory"), "options.paths and options.toString and myoptions.memory");
  });
});
