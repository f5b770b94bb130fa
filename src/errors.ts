/**
 * An error meant for the person at the terminal: the message says what went wrong, the hint (if any)
 * says what to do about it. The CLI prints both on one line and exits 125 (cloister itself failed).
 */
export class CloisterError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
    /** The CLI's exit code for it, when not CLOISTER_FAILED (e.g. 130 for a launch cut off by Ctrl-C). */
    readonly exitCode?: number,
  ) {
    super(message);
    this.name = "CloisterError";
  }

  /** One line: "message (hint)". */
  oneLine(): string {
    return this.hint ? `${this.message} (${this.hint})` : this.message;
  }

  /** What the CLI prints for it: the one line; an error made of several problems (ConfigError) lists each under a heading. */
  terminalLines(): string[] {
    return [this.oneLine()];
  }

  /** What the CLI's JSON error object holds beyond message, hint and exit code (ConfigError: every problem). */
  jsonDetails(): Record<string, unknown> {
    return {};
  }
}

/** Exit code when cloister itself fails (as opposed to the command it ran), like `docker run`. */
export const CLOISTER_FAILED = 125;

/** What a failed file system call was doing, in words. */
const SYSCALL_WORDS: Readonly<Record<string, string>> = {
  mkdir: "create the directory",
  open: "open",
  read: "read",
  write: "write",
  scandir: "list the directory",
  rename: "rename",
  unlink: "remove",
  rmdir: "remove the directory",
  chmod: "change the permissions of",
  stat: "look at",
  lstat: "look at",
  access: "reach",
};

const REASONS: Readonly<Record<string, { reason: string; hint?: string }>> = {
  EACCES: { reason: "permission denied", hint: "check the owners and permissions of the directories on that path" },
  EPERM: { reason: "operation not permitted", hint: "check the owners and permissions of the directories on that path" },
  EROFS: { reason: "the file system is read-only" },
  ENOSPC: { reason: "no space left on the device", hint: "free some disk space" },
  ENOTDIR: { reason: "a part of the path is not a directory" },
  EISDIR: { reason: "it is a directory" },
};

/**
 * A file system error node threw ("EACCES: permission denied, mkdir '/x/config'") as a sentence that
 * names the path and says what to check; undefined for errors without a path.
 */
export function fileSystemError(error: unknown): CloisterError | undefined {
  const { code, syscall, path } = error as NodeJS.ErrnoException;
  if (!(error instanceof Error) || code === undefined || path === undefined) return undefined;
  const known = REASONS[code];
  const action = SYSCALL_WORDS[syscall ?? ""] ?? syscall ?? "use";
  const home = process.env.CLOISTER_HOME;
  const inInstance = home !== undefined && home !== "" && path.startsWith(home);
  const hint = [known?.hint, inInstance ? "CLOISTER_HOME must be a directory you can write" : undefined].filter(Boolean).join("; ");
  return new CloisterError(`cannot ${action} ${path}: ${known?.reason ?? code}`, hint || undefined);
}
