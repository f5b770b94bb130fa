import { spawnSync } from "node:child_process";
import { constants as osConstants } from "node:os";
import { CloisterError } from "../errors.js";
import type { Cloister } from "../cloister.js";

/**
 * Runs a command in a cloister wired to this process's terminal: a PTY inside when stdin and stdout
 * are terminals (raw mode here, window resizes forwarded; the command's stderr on a pipe of its own
 * when this process's stderr is not the terminal), plain pipes otherwise. Signals that reach
 * the CLI are passed on to the command. Resolves with the command's exit code.
 */
export async function runAttached(cloister: Cloister, argv: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Promise<number> {
  const interactive = Boolean(process.stdin.isTTY && process.stdout.isTTY);
  const session = cloister.exec(argv, {
    ...options,
    stdin: process.stdin,
    // `cloister run -- make 2>build.log` in a terminal: the command's stderr follows the user's redirection.
    tty: interactive ? { rows: process.stdout.rows || 24, cols: process.stdout.columns || 80, separateStderr: !process.stderr.isTTY } : undefined,
  });
  const onResize = () => session.resize(process.stdout.rows || 24, process.stdout.columns || 80);
  const forwarders = (["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"] as const).map((signal) => {
    const forward = () => session.signal(signal);
    process.on(signal, forward);
    return () => process.off(signal, forward);
  });
  if (interactive) {
    process.stdin.setRawMode(true);
    setOutputProcessing(false);
    process.stdout.on("resize", onResize);
  }
  try {
    return (await session.done).exitCode;
  } finally {
    if (interactive) {
      setOutputProcessing(true);
      process.stdin.setRawMode(false);
      process.stdout.off("resize", onResize);
    }
    process.stdin.pause();
    for (const remove of forwarders) remove();
  }
}

/**
 * Turns the output processing of this process's terminal off or back on. Node's raw mode (libuv's)
 * keeps it on, so the terminal turned each \r\n the cloister's PTY sent into \r\r\n, and a full-screen
 * program's bare \n (cursor down) into a carriage return as well; ssh turns it off for the same
 * reason. Node has no call for it: stty on the output terminal does it. A failure only leaves the
 * doubled \r, so it is not an error.
 */
function setOutputProcessing(on: boolean): void {
  spawnSync("stty", [on ? "opost" : "-opost"], { stdio: [process.stdout.fd, "ignore", "ignore"] });
}

/**
 * Runs a launch with Ctrl-C (and SIGTERM, SIGHUP) turned into its abort signal: what the launch had
 * made (placeholders in the project, cgroups, the keeper) is removed before the CLI exits with 128 +
 * the signal's number. Without this, node's default exit left all of it behind. A second signal
 * exits at once.
 */
export async function launchInterruptibly<T>(launch: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let received: NodeJS.Signals | undefined;
  const handlers = (["SIGINT", "SIGTERM", "SIGHUP"] as const).map((name) => {
    const handler = (): void => {
      if (received) process.exit(128 + osConstants.signals[received]);
      received = name;
      controller.abort(new CloisterError(`interrupted (${name}) while starting; nothing of the launch was left behind`, undefined, 128 + osConstants.signals[name]));
    };
    process.on(name, handler);
    return () => process.off(name, handler);
  });
  try {
    return await launch(controller.signal);
  } finally {
    for (const remove of handlers) remove();
  }
}
