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
}

/** Exit code when cloister itself fails (as opposed to the command it ran), like `docker run`. */
export const CLOISTER_FAILED = 125;
