import type { RestartPolicy } from "./types.js";

/** Docker's restart backoff: 100 ms doubling per consecutive restart, capped, reset after a long-enough run. */
export const BACKOFF_START_MS = 100;
export const BACKOFF_MAX_MS = 16_000;
export const BACKOFF_RESET_AFTER_MS = 10_000;

export interface ExitFacts {
  exitCode: number;
  /** stop() was called: only an explicit start brings it back. */
  userStopped: boolean;
  /** Restarts so far (on-failure counts them against maximumRetryCount). */
  restartCount: number;
}

/** Whether the policy restarts a container that just exited. */
export function shouldRestart(policy: RestartPolicy, facts: ExitFacts): boolean {
  if (facts.userStopped) return false;
  switch (policy.name) {
    case "always":
    case "unless-stopped":
      return true;
    case "on-failure": {
      if (facts.exitCode === 0) return false;
      const max = policy.maximumRetryCount ?? 0;
      return max <= 0 || facts.restartCount < max;
    }
    default:
      return false;
  }
}

/**
 * Next delay given the previous one and how long the container ran: a run of at least
 * BACKOFF_RESET_AFTER_MS resets the backoff (the crash loop is over).
 */
export function nextBackoff(previousMs: number, uptimeMs: number): number {
  if (previousMs <= 0 || uptimeMs >= BACKOFF_RESET_AFTER_MS) return BACKOFF_START_MS;
  return Math.min(previousMs * 2, BACKOFF_MAX_MS);
}
