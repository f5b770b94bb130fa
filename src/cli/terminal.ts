import type { Cloister } from "../cloister.js";

/**
 * Runs a command in a cloister wired to this process's terminal: a PTY inside when stdin and stdout
 * are terminals (raw mode here, window resizes forwarded), plain pipes otherwise. Signals that reach
 * the CLI are passed on to the command. Resolves with the command's exit code.
 */
export async function runAttached(cloister: Cloister, argv: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Promise<number> {
  const interactive = Boolean(process.stdin.isTTY && process.stdout.isTTY);
  const session = cloister.exec(argv, {
    ...options,
    stdin: process.stdin,
    tty: interactive ? { rows: process.stdout.rows || 24, cols: process.stdout.columns || 80 } : undefined,
  });
  const onResize = () => session.resize(process.stdout.rows || 24, process.stdout.columns || 80);
  const forwarders = (["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"] as const).map((signal) => {
    const forward = () => session.signal(signal);
    process.on(signal, forward);
    return () => process.off(signal, forward);
  });
  if (interactive) {
    process.stdin.setRawMode(true);
    process.stdout.on("resize", onResize);
  }
  try {
    return (await session.done).exitCode;
  } finally {
    if (interactive) {
      process.stdin.setRawMode(false);
      process.stdout.off("resize", onResize);
    }
    process.stdin.pause();
    for (const remove of forwarders) remove();
  }
}
