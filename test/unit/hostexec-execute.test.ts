import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { executeOnHost, hostEnvironment, HOST_PATH, type ExecuteOptions, type ExecuteResult } from "../../src/guardian/hostexec/execute.js";

let scratch = "";
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), "cloister-hostexec-test-"));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

interface Ran {
  result: ExecuteResult;
  stdout: string;
  stderr: string;
}

async function run(argv: string[], overrides: Partial<ExecuteOptions> = {}): Promise<Ran> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const result = await executeOnHost({
    argv,
    cwd: scratch,
    timeoutMs: 10_000,
    maxOutputBytes: 1 << 20,
    signal: new AbortController().signal,
    onStdout: (chunk) => void out.push(chunk),
    onStderr: (chunk) => void err.push(chunk),
    home: scratch,
    ...overrides,
  });
  return { result, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
}

/** A shell script run without a shell in between: `sh -c SCRIPT`. */
const sh = (script: string): string[] => ["sh", "-c", script];

/** Gone means no such process, or a zombie nobody reaps (this test VM's init does not). */
function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.startsWith("Z") ?? true;
  } catch {
    return true;
  }
}

async function waitUntil(condition: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

function pidsIn(output: string): number[] {
  return output.trim().split("\n").map(Number);
}

const marker = (name: string): string => join(tmpdir(), `ESCAPED-${name}-${randomBytes(6).toString("hex")}`);

describe("how a command ends", () => {
  test("exit codes and both streams are reported", async () => {
    const { result, stdout, stderr } = await run(sh("echo out; echo err >&2; exit 7"));
    assert.equal(result.end, "exited");
    assert.equal(result.exitCode, 7);
    assert.equal(result.signal, null);
    assert.equal(stdout, "out\n");
    assert.equal(stderr, "err\n");
    assert.equal(result.stdoutBytes, 4);
    assert.equal(result.stderrBytes, 4);
    assert.equal(result.message, undefined);
  });

  test("a command killed by a signal is signaled", async () => {
    const { result } = await run(sh("kill -KILL $$"));
    assert.equal(result.end, "signaled");
    assert.equal(result.signal, "SIGKILL");
    assert.equal(result.exitCode, null);
  });

  test("an unknown program is not-found with a sentence for the agent", async () => {
    const { result } = await run(["cloister-no-such-program"]);
    assert.equal(result.end, "not-found");
    assert.match(result.message ?? "", /"cloister-no-such-program" is not installed on the host/);
    assert.equal((await run(["/usr/bin/cloister-no-such-program"])).result.end, "not-found");
  });

  test("a relative program path is refused, never resolved against the working directory", async () => {
    const ran = marker("relative");
    await writeFile(join(scratch, "tool"), `#!/bin/sh\ntouch ${ran}\n`);
    await chmod(join(scratch, "tool"), 0o755);
    for (const program of ["./tool", "../" + join(scratch, "tool").slice(1)]) {
      const { result } = await run([program]);
      assert.equal(result.end, "error");
      assert.match(result.message ?? "", /relative path/);
    }
    assert.equal((await run(["tool"])).result.end, "not-found");
    assert.equal(existsSync(ran), false);
  });

  test("names are looked up in the fixed PATH, not in the guardian's", async () => {
    await writeFile(join(scratch, "cloister-own-tool"), "#!/bin/sh\n");
    await chmod(join(scratch, "cloister-own-tool"), 0o755);
    const saved = process.env.PATH;
    process.env.PATH = `${scratch}:${saved}`;
    try {
      assert.equal((await run(["cloister-own-tool"])).result.end, "not-found");
    } finally {
      process.env.PATH = saved;
    }
    const { stdout } = await run(["sh", "-c", 'echo "$PATH"']);
    assert.equal(stdout, `${HOST_PATH}\n`);
  });

  test("a missing working directory is an error", async () => {
    const { result } = await run(["true"], { cwd: join(scratch, "missing") });
    assert.equal(result.end, "error");
    assert.match(result.message ?? "", /does not exist/);
  });

  test("an argv the kernel cannot take is an error, not a throw", async () => {
    assert.equal((await run(["echo", "a\0b"])).result.end, "error");
  });
});

describe("what the command gets", () => {
  test("an environment built from nothing: no guardian variable reaches it", async () => {
    const canary = `canary-${randomBytes(8).toString("hex")}`;
    process.env.CLOISTER_TEST_CANARY = canary;
    process.env.GITHUB_TOKEN = canary;
    try {
      const { stdout } = await run(["env"]);
      assert.equal(stdout.includes(canary), false);
      const seen = Object.fromEntries(stdout.trim().split("\n").map((line) => line.split(/=(.*)/s).slice(0, 2)));
      assert.deepEqual(seen, hostEnvironment(scratch));
    } finally {
      delete process.env.CLOISTER_TEST_CANARY;
      delete process.env.GITHUB_TOKEN;
    }
  });

  test("the environment names the host user and disables prompts and pagers", () => {
    const env = hostEnvironment("/home/someone");
    assert.equal(env.HOME, "/home/someone");
    assert.equal(env.PATH, HOST_PATH);
    assert.equal(env.GIT_TERMINAL_PROMPT, "0");
    assert.equal(env.GIT_PAGER, "cat");
    assert.ok(env.USER && env.USER === env.LOGNAME);
  });

  test("stdin is empty and the working directory is the project", async () => {
    assert.equal((await run(["wc", "-c"])).stdout.trim(), "0");
    assert.equal((await run(["pwd"])).stdout, `${scratch}\n`);
  });
});

describe("stopping a command", () => {
  test("a timeout kills the whole process group, background children included", async () => {
    const { result, stdout } = await run(sh("echo $$; sleep 100 & echo $!; sleep 100"), { timeoutMs: 300 });
    assert.equal(result.end, "timeout");
    assert.match(result.message ?? "", /did not finish within 0.3 s/);
    for (const pid of pidsIn(stdout)) assert.ok(await waitUntil(() => isGone(pid), 3_000), `pid ${pid} survived`);
  });

  test("a group that ignores SIGTERM gets SIGKILL after the grace", async () => {
    const { result, stdout } = await run(sh('trap "" TERM; echo $$; sleep 100'), { timeoutMs: 200 });
    assert.equal(result.end, "timeout");
    assert.ok(result.durationMs >= 2_000, `stopped after ${result.durationMs} ms`);
    const [pid] = pidsIn(stdout);
    assert.ok(await waitUntil(() => isGone(pid!), 1_000));
  });

  test("a grandchild that keeps the pipes open does not hold the result", async () => {
    const { result, stdout } = await run(sh("sleep 100 & echo $!"), { timeoutMs: 300 });
    assert.equal(result.end, "timeout");
    assert.equal(result.exitCode, 0);
    const [pid] = pidsIn(stdout);
    assert.ok(await waitUntil(() => isGone(pid!), 3_000));
  });

  test("a process that left the group is stopped waiting for after a short grace", async () => {
    const { result, stdout } = await run(sh("setsid sleep 100 & echo $!"), { timeoutMs: 300 });
    assert.equal(result.end, "timeout");
    assert.ok(result.durationMs < 2_000, `took ${result.durationMs} ms`);
    const [pid] = pidsIn(stdout);
    process.kill(pid!, "SIGKILL");
  });

  test("aborting the signal cancels and kills", async () => {
    const abort = new AbortController();
    const pidFile = join(scratch, "cancelled-pid");
    const { result } = await run(sh(`echo $$ > ${pidFile}; echo started; sleep 100`), {
      signal: abort.signal,
      onStdout: () => abort.abort(),
    });
    assert.equal(result.end, "cancelled");
    // Not the 100 s of the command; at most the SIGKILL grace when killed children linger as zombies.
    assert.ok(result.durationMs < 5_000);
    const pid = Number(readFileSync(pidFile, "utf8"));
    assert.ok(await waitUntil(() => isGone(pid), 3_000));
  });

  test("a signal aborted before the start runs nothing", async () => {
    const ran = marker("pre-aborted");
    const { result } = await run(sh(`touch ${ran}`), { signal: AbortSignal.abort() });
    assert.equal(result.end, "cancelled");
    assert.equal(existsSync(ran), false);
  });

  test("a consumer that throws stops the command and the error reaches the caller", async () => {
    const pidFile = join(scratch, "consumer-pid");
    const failure = new Error("agent connection broke");
    await assert.rejects(
      run(sh(`echo $$ > ${pidFile}; echo hi; sleep 100`), {
        onStdout: () => {
          throw failure;
        },
      }),
      failure,
    );
    const pid = Number(readFileSync(pidFile, "utf8"));
    assert.ok(await waitUntil(() => isGone(pid), 3_000));
  });
});

describe("output", () => {
  test("100 MiB of output is cut at the cap exactly and the command is killed", async () => {
    const cap = 1_000_003;
    let received = 0;
    const { result } = await run(["head", "-c", String(100 << 20), "/dev/zero"], {
      maxOutputBytes: cap,
      onStdout: (chunk) => void (received += chunk.length),
    });
    assert.equal(result.end, "output-limit");
    assert.equal(received, cap);
    assert.equal(result.stdoutBytes, cap);
    assert.match(result.message ?? "", /more than 1000003 bytes/);
  });

  test("the cap counts stdout and stderr together", async () => {
    const { result } = await run(sh("head -c 5000 /dev/zero; head -c 5000 /dev/zero >&2"), { maxOutputBytes: 7000 });
    assert.equal(result.end, "output-limit");
    assert.equal(result.stdoutBytes + result.stderrBytes, 7000);
  });

  test("output of exactly the cap is not over it", async () => {
    const { result } = await run(["head", "-c", "1000", "/dev/zero"], { maxOutputBytes: 1000 });
    assert.equal(result.end, "exited");
    assert.equal(result.stdoutBytes, 1000);
  });

  test("a slow consumer holds the command back instead of the guardian buffering", async () => {
    const done = join(scratch, "wrote-everything");
    let chunks = 0;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const running = run(sh(`head -c ${10 << 20} /dev/zero; touch ${done}`), {
      maxOutputBytes: 20 << 20,
      onStdout: () => (++chunks === 1 ? held : undefined),
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(chunks, 1);
    assert.equal(existsSync(done), false, "the command wrote 10 MiB while nobody consumed it");
    release();
    const { result } = await running;
    assert.equal(result.end, "exited");
    assert.equal(result.stdoutBytes, 10 << 20);
    assert.equal(existsSync(done), true);
  });

  test("output streams while the command still runs", async () => {
    // The command waits for a file that only the consumer of its first line creates.
    const go = join(scratch, "go");
    let stdout = "";
    const { result } = await run(sh(`echo first; while [ ! -e ${go} ]; do sleep 0.02; done; echo second`), {
      timeoutMs: 5_000,
      onStdout: (chunk) => {
        stdout += chunk.toString();
        if (stdout === "first\n") return writeFile(go, "");
      },
    });
    assert.equal(result.end, "exited");
    assert.equal(stdout, "first\nsecond\n");
  });
});
