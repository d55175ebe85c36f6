import { abortReason, errorMessage, sleep } from "../util/index.js";
import { TransportError } from "./errors.js";

export interface BackoffAttempt {
  /** 1-based number of the attempt about to start. */
  attempt: number;
  attempts: number;
  /** How long we waited before this attempt. */
  delayMs: number;
  /** Why the previous attempt failed (absent for the first). */
  error?: Error;
}

export interface BackoffOptions {
  /** Total tries including the first; default 10. */
  attempts?: number;
  /** Wait before attempt i (0-based); the last entry repeats. Default 0,1,2,4,8,16 s. */
  delaysMs?: number[];
  signal?: AbortSignal;
  onAttempt?: (info: BackoffAttempt) => void;
  /** Return false to give up at once on an error retrying cannot fix; default retries everything. */
  shouldRetry?: (err: Error) => boolean;
}

export const DEFAULT_BACKOFF_DELAYS_MS: readonly number[] = [0, 1000, 2000, 4000, 8000, 16000];

/**
 * Calls connect until it succeeds: immediately, then after 1, 2, 4, 8, 16,
 * 16, ... seconds. Abortable while waiting and while an attempt runs (the
 * attempt gets the signal; a connect that ignores it is abandoned).
 */
export async function connectWithBackoff<T>(
  connect: (signal: AbortSignal | undefined) => Promise<T>,
  opts: BackoffOptions = {},
): Promise<T> {
  const attempts = opts.attempts ?? 10;
  const delays = opts.delaysMs && opts.delaysMs.length > 0 ? opts.delaysMs : DEFAULT_BACKOFF_DELAYS_MS;
  if (!Number.isInteger(attempts) || attempts < 1) {
    throw new TransportError("unavailable", `connectWithBackoff: attempts must be >= 1, got ${attempts}`);
  }
  const { signal } = opts;
  let lastError: Error | undefined;
  for (let i = 0; i < attempts; i++) {
    const delayMs = delays[Math.min(i, delays.length - 1)] as number;
    try {
      if (delayMs > 0) await sleep(delayMs, signal);
      checkAborted(signal, lastError);
      opts.onAttempt?.({ attempt: i + 1, attempts, delayMs, ...(lastError ? { error: lastError } : {}) });
      return await raceAbort(connect(signal), signal);
    } catch (err) {
      if (signal?.aborted) throw aborted(signal, lastError);
      lastError = err instanceof Error ? err : new Error(String(err));
      if (opts.shouldRetry && !opts.shouldRetry(lastError)) throw lastError;
    }
  }
  throw new TransportError(
    "unavailable",
    `gave up after ${attempts} attempt${attempts === 1 ? "" : "s"}: ${errorMessage(lastError)}`,
    { cause: lastError },
  );
}

function checkAborted(signal: AbortSignal | undefined, lastError: Error | undefined): void {
  if (signal?.aborted) throw aborted(signal, lastError);
}

function aborted(signal: AbortSignal, lastError: Error | undefined): TransportError {
  const suffix = lastError ? ` (last error: ${lastError.message})` : "";
  return new TransportError("aborted", `connect aborted${suffix}`, { cause: abortReason(signal) });
}

/**
 * Settles with p, or rejects as soon as the signal aborts. A connection that
 * arrives after the abort is destroyed so it does not leak.
 */
function raceAbort<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortReason(signal));
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        if (signal.aborted) disposeLate(v);
        else resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

function disposeLate(v: unknown): void {
  const d = (v as { destroy?: unknown } | null)?.destroy;
  if (typeof d === "function") d.call(v);
}
