/**
 * Time source for the plain printer, which (like buildctl) decides what to
 * print from wall-clock time. Tests pass a virtual clock to replay a
 * recorded stream with its recorded timing.
 */
export interface ProgressClock {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Runs fn after ms; returns a function that cancels it. */
  setTimeout(fn: () => void, ms: number): () => void;
}

export const systemClock: ProgressClock = {
  now: () => performance.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    // A pending refresh must not keep the process alive on its own.
    t.unref();
    return () => clearTimeout(t);
  },
};
