/**
 * Watches a relayed connection for silence: fires once when no byte moved
 * either way for `ms` while nothing was waiting on the client. A chunk the
 * client is still taking (hold .. release) is the client's slowness, not
 * the upstream's silence, so it never counts as idle. One timer per
 * connection, re-armed lazily: touching costs a clock read, not a timer.
 */
export class IdleWatch {
  private last = Date.now();
  private held = 0;
  private timer: NodeJS.Timeout | undefined;

  /** `ms` ≤ 0: never fires. */
  constructor(
    private readonly ms: number,
    private readonly onIdle: () => void,
  ) {
    if (ms > 0) this.arm(ms);
  }

  /** A byte moved. */
  touch(): void {
    this.last = Date.now();
  }

  /** A chunk is handed to the client; release() when it took it. */
  hold(): void {
    this.held++;
    this.last = Date.now();
  }

  release(): void {
    this.held--;
    this.last = Date.now();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(after: number): void {
    this.timer = setTimeout(() => this.check(), after);
    this.timer.unref();
  }

  private check(): void {
    this.timer = undefined;
    const quiet = Date.now() - this.last;
    if (this.held > 0) this.arm(this.ms);
    else if (quiet < this.ms) this.arm(this.ms - quiet);
    else this.onIdle();
  }
}
