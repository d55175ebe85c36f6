import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { pacedPipe } from "./paced-pipe.js";

/** A real unix socket pair: the server side goes through pacedPipe into a sink. */
async function relay(send: (client: net.Socket) => Promise<void>) {
  const dir = await mkdtemp(path.join(os.tmpdir(), "arca-paced-"));
  const sockPath = path.join(dir, "s.sock");
  const sink = new PassThrough();
  const received: Buffer[] = [];
  sink.on("data", (c: Buffer) => received.push(c));
  let stats: { pauses: number } | undefined;
  const server = net.createServer((s) => {
    stats = pacedPipe(s, sink);
  });
  await new Promise<void>((r) => server.listen(sockPath, r));
  try {
    const client = net.connect(sockPath);
    await new Promise<void>((r) => client.once("connect", r));
    const ended = new Promise<void>((r) => sink.once("end", r));
    await send(client);
    client.end();
    await ended;
    return { bytes: Buffer.concat(received), reads: received.length, pauses: stats?.pauses ?? -1 };
  } finally {
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
}

test("pacedPipe: a burst of small writes crosses whole, in order, in far fewer reads", async () => {
  const messages = Array.from({ length: 2000 }, (_, i) =>
    Buffer.from(`${String(i).padStart(6, "0")}:${"x".repeat(360)}\n`),
  );
  const out = await relay(async (client) => {
    for (const [i, m] of messages.entries()) {
      client.write(m);
      // Separate kernel writes, as an HTTP/2 sender flushing each frame makes them.
      if (i % 4 === 3) await new Promise((r) => setImmediate(r));
    }
  });
  assert.deepEqual(out.bytes, Buffer.concat(messages));
  assert.ok(out.pauses > 0, "reading was never paused during the burst");
  assert.ok(out.reads < messages.length / 4, `${out.reads} reads for ${messages.length} messages`);
});

test("pacedPipe: sparse messages (request/response traffic) are never held back", async () => {
  const messages = Array.from({ length: 12 }, (_, i) => Buffer.from(`message ${i}\n`));
  const out = await relay(async (client) => {
    for (const m of messages) {
      client.write(m);
      await sleep(5);
    }
  });
  assert.deepEqual(out.bytes, Buffer.concat(messages));
  assert.equal(out.pauses, 0);
});

test("pacedPipe: bulk bytes (large reads) are never paused", async () => {
  const data = randomBytes(16 << 20);
  const out = await relay(async (client) => {
    for (let off = 0; off < data.length; off += 256 << 10) {
      if (!client.write(data.subarray(off, off + (256 << 10))))
        await new Promise((r) => client.once("drain", r));
    }
  });
  assert.ok(out.bytes.equals(data), "bulk bytes differ");
  assert.equal(out.pauses, 0);
});

test("pacedPipe: backpressure from a slow destination loses and reorders nothing", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "arca-paced-"));
  const sockPath = path.join(dir, "s.sock");
  // A destination that buffers little and drains slowly.
  const slow = new PassThrough({ highWaterMark: 1024 });
  const got: Buffer[] = [];
  const server = net.createServer((s) => pacedPipe(s, slow));
  await new Promise<void>((r) => server.listen(sockPath, r));
  try {
    const messages = Array.from({ length: 3000 }, (_, i) => Buffer.from(`${i};`.padEnd(200, "y")));
    const client = net.connect(sockPath);
    await new Promise<void>((r) => client.once("connect", r));
    const drained = (async () => {
      for await (const c of slow) {
        got.push(c as Buffer);
        if (got.length % 50 === 0) await sleep(1);
      }
    })();
    for (const [i, m] of messages.entries()) {
      client.write(m);
      if (i % 8 === 7) await new Promise((r) => setImmediate(r));
    }
    client.end();
    await drained;
    assert.deepEqual(Buffer.concat(got), Buffer.concat(messages));
  } finally {
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
});
