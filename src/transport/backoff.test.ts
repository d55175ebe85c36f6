import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import {
  type BackoffAttempt,
  connectWithBackoff,
  DEFAULT_BACKOFF_DELAYS_MS,
  parseDialAddress,
  TransportError,
} from "./index.js";

const dir = mkdtempSync(join(tmpdir(), "arca-backoff-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function failing(n: number) {
  let calls = 0;
  return async () => {
    calls++;
    if (calls <= n) throw new Error(`boom ${calls}`);
    return `ok after ${calls}`;
  };
}

describe("connectWithBackoff", () => {
  it("defaults to immediate, 1, 2, 4, 8, 16 s", () => {
    assert.deepEqual(DEFAULT_BACKOFF_DELAYS_MS, [0, 1000, 2000, 4000, 8000, 16000]);
  });

  it("retries until success and reports each attempt", async () => {
    const seen: BackoffAttempt[] = [];
    const got = await connectWithBackoff(failing(2), {
      delaysMs: [0, 5, 10],
      onAttempt: (a) => seen.push(a),
    });
    assert.equal(got, "ok after 3");
    assert.deepEqual(
      seen.map((a) => [a.attempt, a.attempts, a.delayMs, a.error?.message]),
      [
        [1, 10, 0, undefined],
        [2, 10, 5, "boom 1"],
        [3, 10, 10, "boom 2"],
      ],
    );
  });

  it("repeats the last delay and waits that long", async () => {
    const seen: number[] = [];
    const t0 = Date.now();
    await assert.rejects(
      connectWithBackoff(failing(99), {
        attempts: 5,
        delaysMs: [0, 10, 20],
        onAttempt: (a) => seen.push(a.delayMs),
      }),
    );
    assert.deepEqual(seen, [0, 10, 20, 20, 20]);
    assert.ok(Date.now() - t0 >= 65, "waited the sum of delays");
  });

  it("gives up with unavailable, the attempt count and the last cause", async () => {
    const err = await connectWithBackoff(failing(99), { attempts: 3, delaysMs: [0, 1] }).catch(
      (e: unknown) => e,
    );
    assert.ok(err instanceof TransportError);
    assert.equal(err.code, "unavailable");
    assert.equal(err.kind, "unavailable");
    assert.match(err.message, /3 attempts/);
    assert.match(err.message, /boom 3/);
    assert.equal((err.cause as Error).message, "boom 3");
  });

  it("aborts during a wait without waiting it out", async () => {
    const ac = new AbortController();
    const t0 = Date.now();
    setTimeout(() => ac.abort(), 20);
    const err = await connectWithBackoff(failing(99), { delaysMs: [0, 10_000], signal: ac.signal }).catch(
      (e: unknown) => e,
    );
    assert.ok(err instanceof TransportError);
    assert.equal(err.code, "aborted");
    assert.equal(err.kind, "canceled");
    assert.match(err.message, /boom 1/);
    assert.ok(Date.now() - t0 < 1000);
  });

  it("aborts during an attempt that ignores the signal", async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 20);
    const err = await connectWithBackoff(() => new Promise<never>(() => {}), { signal: ac.signal }).catch(
      (e: unknown) => e,
    );
    assert.ok(err instanceof TransportError);
    assert.equal(err.code, "aborted");
  });

  it("stops at once when shouldRetry says no", async () => {
    let calls = 0;
    const err = await connectWithBackoff(
      async () => {
        calls++;
        throw new TransportError("invalid_address", "bad");
      },
      {
        delaysMs: [0, 1],
        shouldRetry: (e) => !(e instanceof TransportError && e.kind === "invalid_argument"),
      },
    ).catch((e: unknown) => e);
    assert.equal(calls, 1);
    assert.equal((err as TransportError).code, "invalid_address");
  });

  it("connects to a unix socket that appears after a few attempts", async () => {
    const path = join(dir, "late.sock");
    const dialer = parseDialAddress(`unix://${path}`);
    const srv = createServer((s) => s.end("ready\n"));
    const errors: string[] = [];
    setTimeout(() => srv.listen(path), 40);
    const sock = await connectWithBackoff((signal) => dialer.dial(signal), {
      delaysMs: [0, 15],
      onAttempt: (a) => {
        if (a.error) errors.push((a.error as TransportError).code);
      },
    });
    const [line] = (await once(sock, "data")) as [Buffer];
    assert.equal(line.toString(), "ready\n");
    sock.destroy();
    srv.close();
    assert.ok(errors.length >= 1);
    assert.ok(errors.every((c) => c === "not_found"));
  });
});
