/**
 * Section 7's "ready" rows: Claude Code started interactively and timed until it draws its input
 * prompt, which is what the issue measures ("to a ready agent process"). `--version`, the other rows
 * of the section, times only the start of the process; a ready agent has also read its config,
 * checked its API and drawn its interface, on the host and in a cloister alike.
 *
 * The agent gets a terminal from util-linux `script` (Debian's essential bsdutils package): Claude
 * Code draws its interface only on a TTY, and this needs no native addon in the bench. Its API is a
 * loopback server that refuses every call: at start Claude Code only checks that the API answers.
 */
import { spawn } from "node:child_process";
import { createServer } from "node:http";

/**
 * What Claude Code 2.x draws at the start of its input line once it takes input: U+276F and a
 * no-break space. Its dialogs (an unapproved API key, an untrusted folder) mark the chosen item with
 * the same arrow, followed by the item, so the space is what tells the prompt from a dialog.
 */
export const CLAUDE_PROMPT = "\u276f\u00a0";
/** The terminal the agent draws on. */
const ROWS = 40;
const COLS = 120;
const READY_TIMEOUT_MS = 20_000;
/** Claude Code exits on a second Ctrl-C; the first only asks "press Ctrl-C again". */
const CTRL_C = "\x03";
const SECOND_CTRL_C_AFTER_MS = 150;
const EXIT_TIMEOUT_MS = 10_000;

export interface FakeApi {
  port: number;
  close(): Promise<void>;
}

/** A stand-in for the Anthropic API on 127.0.0.1: every request gets a 404 error in the API's own shape. */
export async function startFakeAnthropicApi(): Promise<FakeApi> {
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(404, { "content-type": "application/json" });
      res.end('{"type":"error","error":{"type":"not_found_error","message":"bench stand-in"}}');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("the fake API has no port");
  return {
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * Starts `command` on a terminal and resolves with the ms until its output shows `marker`; then
 * ends it with Ctrl-C twice and waits for it to exit (outside the timed span), so runs never overlap.
 * Rejects when the marker does not come within READY_TIMEOUT_MS or the command exits first.
 */
export function timeToPrompt(command: string, args: readonly string[], options: { cwd: string; env: NodeJS.ProcessEnv }, marker = CLAUDE_PROMPT): Promise<number> {
  const quoted = [command, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(" ");
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn("script", ["--quiet", "--flush", "--return", "--command", `stty rows ${ROWS} cols ${COLS}; exec ${quoted}`, "/dev/null"], {
      cwd: options.cwd,
      env: options.env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let screen = "";
    let readyMs: number | undefined;
    let failure: Error | undefined;
    let exitTimer: NodeJS.Timeout | undefined;
    const giveUp = (error: Error) => {
      failure ??= error;
      child.kill("SIGKILL");
    };
    const timer = setTimeout(() => giveUp(new Error(`no prompt (${JSON.stringify(marker)}) within ${READY_TIMEOUT_MS / 1000} s; the screen ended with: ${JSON.stringify(screen.slice(-300))}`)), READY_TIMEOUT_MS);
    child.stdout.on("data", (chunk: Buffer) => {
      if (readyMs !== undefined) return;
      screen += chunk.toString("utf8");
      if (!screen.includes(marker)) return;
      readyMs = performance.now() - started;
      clearTimeout(timer);
      exitTimer = setTimeout(() => giveUp(new Error(`still running ${EXIT_TIMEOUT_MS / 1000} s after Ctrl-C twice`)), EXIT_TIMEOUT_MS);
      child.stdin.write(CTRL_C);
      setTimeout(() => child.stdin.writable && child.stdin.write(CTRL_C), SECOND_CTRL_C_AFTER_MS);
    });
    child.stderr.on("data", (chunk: Buffer) => (screen += chunk.toString("utf8")));
    child.on("error", (error) => giveUp(error));
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      clearTimeout(exitTimer);
      if (failure) return reject(failure);
      if (readyMs === undefined) return reject(new Error(`exited (${code ?? signal}) before its prompt: ${JSON.stringify(screen.slice(-300))}`));
      resolve(readyMs);
    });
  });
}
