/**
 * How fast one cloister may fill the audit log. Every decision gets its record, so a cloister that
 * opens thousands of connections a second to a refused host writes thousands of records a second,
 * and the log's rotation (audit.keep × audit.max_size) would push everyone's history out within
 * minutes. Dropping records would break the rule that each decision is audited; instead new work
 * of the cloister (a connection, a request) waits its turn, and the turns come at the rate.
 *
 * A token bucket that may go into debt. A turn takes one token, which prepays the record the work
 * will make (its decision or refusal); any record beyond the prepaid ones (a connection's end, a
 * refusal that came without a turn) takes a token when it is written, into debt if need be, and
 * no turn is given while the balance is below one. So the records of a cloister stay within
 * `burst + rate × seconds`, give or take what work already under way writes. Records themselves
 * are never delayed or dropped.
 */

export interface PaceLimits {
  /** Records per second, sustained. */
  rate: number;
  /** Records that may be written at once after a quiet spell. */
  burst: number;
}

export class RecordPace {
  private tokens: number;
  private lastRefill: number;
  /** Records paid for by turns and not written yet. */
  private prepaid = 0;
  /** Work waiting for a turn, first come first served. */
  private readonly waiting: Array<() => void> = [];
  private timer?: NodeJS.Timeout;

  /** `limits` is read on every use, so a reloaded config applies at once. */
  constructor(
    private readonly limits: () => PaceLimits,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = limits().burst;
    this.lastRefill = this.now();
  }

  /** A record was written. */
  spend(): void {
    if (this.prepaid > 0) {
      this.prepaid--;
      return;
    }
    this.refill();
    this.tokens -= 1;
  }

  /** Whether new work would have to wait for its turn now. */
  get paced(): boolean {
    this.refill();
    return this.waiting.length > 0 || this.tokens < 1;
  }

  /** Takes a turn if one is free now, without waiting; false when the work must wait (turn()). */
  tryTurn(): boolean {
    if (this.paced) return false;
    this.take();
    return true;
  }

  /** Resolves when the work may start: at once if a turn is free, else in its place in the queue. */
  turn(): Promise<void> {
    if (this.tryTurn()) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.schedule();
    });
  }

  /** Lets everything waiting go (the cloister is gone; its connections are closed already). */
  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const go of this.waiting.splice(0)) go();
  }

  /** One timer for the whole queue, set for when the next token comes. */
  private schedule(): void {
    if (this.timer !== undefined || this.waiting.length === 0) return;
    this.refill();
    const ms = Math.max(1, Math.ceil(((1 - this.tokens) / this.limits().rate) * 1000));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.refill();
      while (this.waiting.length > 0 && this.tokens >= 1) {
        this.take();
        this.waiting.shift()?.();
      }
      this.schedule();
    }, ms);
  }

  /** A turn given: its token prepays the record its work will make. */
  private take(): void {
    this.tokens -= 1;
    this.prepaid++;
  }

  private refill(): void {
    const { rate, burst } = this.limits();
    const now = this.now();
    this.tokens = Math.min(burst, this.tokens + ((now - this.lastRefill) / 1000) * rate);
    this.lastRefill = now;
  }
}
