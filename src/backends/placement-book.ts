import { abortReason } from "../util/index.js";

interface Entry<T> {
  placed?: T;
  /** Arrived, waiting for its place: callers wait for it without a deadline. */
  pending: boolean;
  waiters: Set<() => void>;
}

/**
 * Where things named by id were placed (a client session, a solve's ref), for calls that name
 * them and may arrive first, on another connection: they wait while the thing is pending, or a
 * while for an id not seen yet.
 */
export class PlacementBook<T> {
  readonly #entries = new Map<string, Entry<T>>();

  /** `id` arrived and waits for its place. Returns forget(), for one that never got placed. */
  expect(id: string): () => void {
    const e = this.#entry(id);
    e.pending = true;
    return () => {
      if (this.#entries.get(id) === e && e.placed === undefined) {
        this.#entries.delete(id);
        wakeAll(e.waiters);
      }
    };
  }

  /** `id` is at `value` until the returned function runs (and `lingerMs` after it). */
  place(id: string, value: T, lingerMs = 0): () => void {
    const e = this.#entry(id);
    e.placed = value;
    e.pending = false;
    wakeAll(e.waiters);
    const drop = () => {
      if (this.#entries.get(id) === e) this.#entries.delete(id);
    };
    return () => {
      if (lingerMs === 0) return drop();
      setTimeout(drop, lingerMs).unref();
    };
  }

  /** Where `id` is, once placed; undefined if it was never seen within `waitMs`. */
  async placed(id: string, signal: AbortSignal, waitMs: number): Promise<T | undefined> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const e = this.#entry(id);
      if (e.placed !== undefined) return e.placed;
      const left = e.pending ? 60_000 : deadline - Date.now();
      try {
        if (left <= 0) return undefined;
        await waitIn(e.waiters, left, signal);
      } finally {
        // Nobody waits for it and nothing placed it: no entry is kept for ids that never come.
        if (e.waiters.size === 0 && !e.pending && e.placed === undefined && this.#entries.get(id) === e)
          this.#entries.delete(id);
      }
    }
  }

  #entry(id: string): Entry<T> {
    const found = this.#entries.get(id);
    if (found) return found;
    const e: Entry<T> = { pending: false, waiters: new Set() };
    this.#entries.set(id, e);
    return e;
  }
}

function wakeAll(set: Set<() => void>): void {
  for (const w of [...set]) w();
}

/** Resolves when woken through `set` or after `ms`; rejects when the signal aborts. */
function waitIn(set: Set<() => void>, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(t);
      set.delete(done);
      signal.removeEventListener("abort", onAbort);
    };
    const done = () => {
      cleanup();
      resolve();
    };
    const onAbort = () => {
      cleanup();
      reject(abortReason(signal));
    };
    const t = setTimeout(done, ms);
    if (signal.aborted) return onAbort();
    set.add(done);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
