import assert from "node:assert/strict";
import { test } from "node:test";
import { BACKOFF_MAX_MS, BACKOFF_START_MS, nextBackoff, shouldRestart } from "./restart-policy.js";

test("restart policies follow Docker's rules", () => {
  const facts = { exitCode: 0, userStopped: false, restartCount: 0 };
  assert.equal(shouldRestart({ name: "no" }, { ...facts, exitCode: 1 }), false);
  assert.equal(shouldRestart({ name: "always" }, facts), true);
  assert.equal(shouldRestart({ name: "always" }, { ...facts, userStopped: true }), false);
  assert.equal(shouldRestart({ name: "unless-stopped" }, { ...facts, exitCode: 137 }), true);
  assert.equal(shouldRestart({ name: "unless-stopped" }, { ...facts, userStopped: true }), false);
  assert.equal(shouldRestart({ name: "on-failure" }, facts), false);
  assert.equal(shouldRestart({ name: "on-failure" }, { ...facts, exitCode: 2 }), true);
  const limited = { name: "on-failure", maximumRetryCount: 2 } as const;
  assert.equal(shouldRestart(limited, { ...facts, exitCode: 2, restartCount: 1 }), true);
  assert.equal(shouldRestart(limited, { ...facts, exitCode: 2, restartCount: 2 }), false);
});

test("backoff doubles up to the cap and resets after a long run", () => {
  let d = 0;
  const seen: number[] = [];
  for (let i = 0; i < 10; i++) {
    d = nextBackoff(d, 50);
    seen.push(d);
  }
  assert.deepEqual(seen.slice(0, 4), [BACKOFF_START_MS, 200, 400, 800]);
  assert.equal(seen.at(-1), BACKOFF_MAX_MS);
  assert.equal(nextBackoff(BACKOFF_MAX_MS, 10_000), BACKOFF_START_MS);
});
