/**
 * A multi-producer, single-consumer queue bounded by bytes: producers await
 * push() while the consumer (the response generator connect drains with
 * backpressure) is behind, so memory stays bounded.
 */
export class PacketQueue<T> {
  private items: { value: T; size: number }[] = [];
  private head = 0;
  private bytes = 0;
  private closed = false;
  private failure: { error: unknown } | undefined;
  private wakeConsumer: (() => void) | undefined;
  private spaceWaiters: (() => void)[] = [];

  constructor(private readonly maxBytes: number) {}

  async push(value: T, size: number): Promise<void> {
    while (this.bytes > 0 && this.bytes + size > this.maxBytes && !this.closed && !this.failure) {
      await new Promise<void>((resolve) => this.spaceWaiters.push(resolve));
    }
    if (this.failure) throw this.failure.error;
    if (this.closed) throw new Error("packet queue closed");
    this.items.push({ value, size });
    this.bytes += size;
    this.wake();
  }

  /** No more packets: the consumer ends after the queued ones. */
  close(): void {
    this.closed = true;
    this.wakeAll();
  }

  /** The consumer throws `error` after the queued packets; producers stop. */
  fail(error: unknown): void {
    if (!this.failure) this.failure = { error };
    this.wakeAll();
  }

  get isOpen(): boolean {
    return !this.closed && !this.failure;
  }

  async *drain(): AsyncGenerator<T> {
    for (;;) {
      if (this.head < this.items.length) {
        const it = this.items[this.head] as { value: T; size: number };
        this.items[this.head++] = undefined as unknown as { value: T; size: number };
        if (this.head > 1024 && this.head * 2 > this.items.length) {
          this.items = this.items.slice(this.head);
          this.head = 0;
        }
        this.bytes -= it.size;
        this.releaseSpace();
        yield it.value;
        continue;
      }
      if (this.failure) throw this.failure.error;
      if (this.closed) return;
      await new Promise<void>((resolve) => {
        this.wakeConsumer = resolve;
      });
    }
  }

  private wake(): void {
    const w = this.wakeConsumer;
    this.wakeConsumer = undefined;
    w?.();
  }

  private releaseSpace(): void {
    const waiters = this.spaceWaiters;
    this.spaceWaiters = [];
    for (const w of waiters) w();
  }

  private wakeAll(): void {
    this.wake();
    this.releaseSpace();
  }
}
