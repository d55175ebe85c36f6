import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { holdMessages, startedWorkers } from "../../test/support/worker-capture.js";
import { OffloadedSha256 } from "./offloaded-sha256.js";

const MiB = 1 << 20;

/** Feeds data in chunks of the given sizes (cycled), awaiting each update as callers must. */
async function hashInChunks(data: Buffer, sizes: number[]): Promise<OffloadedSha256> {
  const h = new OffloadedSha256();
  let off = 0;
  for (let i = 0; off < data.length; i++) {
    const n = Math.min(sizes[i % sizes.length] as number, data.length - off);
    await h.update(data.subarray(off, off + n));
    off += n;
  }
  return h;
}

const expected = (data: Buffer) => createHash("sha256").update(data).digest("hex");

describe("OffloadedSha256", () => {
  it("gives crypto's digest for every size around the slot boundaries and any chunking", async () => {
    const data = randomBytes(7 * MiB + 123);
    const lengths = [0, 1, MiB - 1, MiB, MiB + 1, 3 * MiB, 7 * MiB + 123];
    const chunkings = [[1 * MiB], [65536], [4093, 77, 300001], [3 * MiB + 5], [MiB - 1, 2]];
    for (const len of lengths) {
      for (const sizes of chunkings) {
        const part = data.subarray(0, len);
        const h = await hashInChunks(part, sizes);
        assert.equal(h.size, len);
        assert.equal(await h.digest(), expected(part), `length ${len}, chunks ${sizes.join("/")}`);
      }
    }
  });

  it("hashes data within one slot on this thread and larger data on the worker", async () => {
    const small = await hashInChunks(randomBytes(MiB - 1), [65536]);
    const big = await hashInChunks(randomBytes(2 * MiB + 1), [65536]);
    await small.digest();
    await big.digest();
    assert.equal(small.offloaded, 0);
    assert.equal(big.offloaded, 2 * MiB + 1);
  });

  it("keeps concurrent hashes apart (they share the thread and the slot pool)", async () => {
    const inputs = [randomBytes(9 * MiB + 7), randomBytes(5 * MiB), randomBytes(MiB + 3)];
    const hashes = inputs.map(() => new OffloadedSha256());
    // Interleaved, one chunk each in turn, with a 3 MiB chunk forcing waits for slots.
    const offs = inputs.map(() => 0);
    for (let round = 0; offs.some((o, i) => o < (inputs[i] as Buffer).length); round++) {
      await Promise.all(
        inputs.map((data, i) => {
          const n = round % 3 === 0 ? 3 * MiB : 65536;
          const chunk = data.subarray(offs[i], (offs[i] as number) + n);
          offs[i] = (offs[i] as number) + chunk.length;
          return chunk.length ? (hashes[i] as OffloadedSha256).update(chunk) : undefined;
        }),
      );
    }
    const digests = await Promise.all(hashes.map((h) => h.digest()));
    assert.deepEqual(digests, inputs.map(expected));
  });

  it("copies what it takes: the caller may overwrite a chunk once update returned", async () => {
    const data = randomBytes(5 * MiB);
    const h = new OffloadedSha256();
    const scratch = Buffer.alloc(512 * 1024);
    for (let off = 0; off < data.length; off += scratch.length) {
      data.copy(scratch, 0, off, off + scratch.length);
      await h.update(scratch);
      scratch.fill(0xaa);
    }
    assert.equal(await h.digest(), expected(data));
  });

  it("is finished after digest (same answer again, no more bytes)", async () => {
    const h = await hashInChunks(randomBytes(2 * MiB), [MiB]);
    const a = await h.digest();
    assert.equal(await h.digest(), a);
    assert.equal(h.finished, true);
    assert.throws(() => h.update(Buffer.from("x")), /already finished/);
  });

  it("a disposed hash fails its waits and leaves later hashes correct", async () => {
    const h = new OffloadedSha256();
    // 8 MiB at once: more than the hash's slots, so the update waits for the thread.
    const waiting = h.update(randomBytes(8 * MiB));
    assert.ok(waiting, "an update larger than the slots must wait for the thread");
    h.dispose();
    await assert.rejects(waiting as Promise<void>, /disposed/);
    await assert.rejects(h.digest(), /disposed/);
    const data = randomBytes(6 * MiB + 11);
    const next = await hashInChunks(data, [700000]);
    assert.equal(await next.digest(), expected(data));
  });

  it("dispose fails a pending digest (it never hangs, nor holds the process)", {
    timeout: 10_000,
  }, async () => {
    const h = await hashInChunks(randomBytes(2 * MiB + 5), [MiB]);
    const pending = h.digest();
    h.dispose();
    await assert.rejects(pending, /disposed/);
  });

  it("digest while an update waits is refused; the update completes and the digest after it is whole", async () => {
    const data = randomBytes(8 * MiB);
    const h = new OffloadedSha256();
    const waiting = h.update(data);
    assert.ok(waiting, "an 8 MiB update must wait for the thread");
    await assert.rejects(h.digest(), /while an update waits/);
    await waiting;
    assert.equal(await h.digest(), expected(data));
  });

  it("park leaves an idle hash at most 64 KiB here and hands the rest to the thread", async () => {
    const small = randomBytes(10_000);
    const h1 = new OffloadedSha256();
    h1.update(small);
    h1.park();
    assert.equal(h1.offloaded, 0);
    assert.equal(await h1.digest(), expected(small));

    const data = randomBytes(3 * MiB);
    const h2 = new OffloadedSha256();
    h2.update(data.subarray(0, 100_000));
    h2.park();
    assert.equal(h2.offloaded, 100_000);
    await h2.update(data.subarray(100_000, MiB + 7));
    h2.park();
    assert.equal(h2.offloaded, MiB + 7);
    await h2.update(data.subarray(MiB + 7));
    assert.equal(await h2.digest(), expected(data));
  });

  it("a stopped thread fails what waits on it, marks the hash failed, and the next hash gets a new thread", {
    timeout: 10_000,
  }, async () => {
    // The thread gets nothing from here on, so what follows is still outstanding when it stops
    // (a backlog raced it before: on a machine with slow page faults the thread won the race).
    await (await hashInChunks(randomBytes(2 * MiB), [MiB])).digest();
    const thread = startedWorkers.at(-1);
    assert.ok(thread, "the hashing thread was started through worker_threads");
    holdMessages(thread);
    const block = randomBytes(8 * MiB);
    const backlog = Array.from({ length: 3 }, () => new OffloadedSha256());
    for (const b of backlog) assert.equal(b.update(block.subarray(0, 4 * MiB)), undefined);
    const waiting = new OffloadedSha256();
    const slotWait = waiting.update(block);
    assert.ok(slotWait, "the update waits for slots the thread has not given back");
    const h = new OffloadedSha256();
    h.update(block.subarray(0, 2 * MiB));
    const digest = h.digest();
    const stopped = thread.terminate();
    await assert.rejects(slotWait as Promise<void>, /hashing thread stopped/);
    await assert.rejects(digest, /hashing thread stopped/);
    await stopped;
    for (const b of backlog) assert.equal(b.failed, true);
    assert.equal(waiting.failed, true);
    const data = randomBytes(3 * MiB + 1);
    const next = await hashInChunks(data, [65536]);
    assert.equal(await next.digest(), expected(data));
    assert.notEqual(startedWorkers.at(-1), thread);
  });
});
