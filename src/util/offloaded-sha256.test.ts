import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { describe, it } from "node:test";
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
});
