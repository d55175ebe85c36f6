import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { PassThrough, Writable } from "node:stream";
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

test("pacedPipe: a burst of small writes crosses whole, in order, in far fewer reads", {
  timeout: 20_000,
}, async () => {
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

test("pacedPipe: sparse messages (request/response traffic) are never held back", {
  timeout: 20_000,
}, async () => {
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

test("pacedPipe: bulk bytes (large reads) are never paused", { timeout: 20_000 }, async () => {
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

test("pacedPipe: backpressure from a slow destination loses and reorders nothing", {
  timeout: 20_000,
}, async () => {
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

/** A connected pair over a real unix socket: the client and the server's socket. */
async function socketPair() {
  const dir = await mkdtemp(path.join(os.tmpdir(), "arca-paced-"));
  const sockPath = path.join(dir, "s.sock");
  let accepted: ((s: net.Socket) => void) | undefined;
  const got = new Promise<net.Socket>((r) => {
    accepted = r;
  });
  const server = net.createServer({ allowHalfOpen: true }, (s) => accepted?.(s));
  await new Promise<void>((r) => server.listen(sockPath, r));
  const client = net.connect(sockPath);
  await new Promise<void>((r) => client.once("connect", r));
  const srv = await got;
  const close = async () => {
    client.destroy();
    srv.destroy();
    server.close();
    await rm(dir, { recursive: true, force: true });
  };
  return { client, srv, close };
}

test("pacedPipe: a client that half-closed before the relay started still ends the destination", {
  timeout: 20_000,
}, async () => {
  const { client, srv, close } = await socketPair();
  try {
    // As the upgrade path leaves it: paused, no data listener, then the client ends its side.
    srv.pause();
    client.end();
    await sleep(50);
    const sink = new PassThrough();
    sink.resume();
    const ended = new Promise<boolean>((r) => {
      sink.once("end", () => r(true));
      setTimeout(() => r(false), 2000);
    });
    pacedPipe(srv, sink);
    assert.equal(await ended, true, "the destination never saw the client's end");
  } finally {
    await close();
  }
});

test("pacedPipe: a pause while Node itself has stopped reading (full buffer) never breaks the socket", {
  timeout: 20_000,
}, async () => {
  const { client, srv, close } = await socketPair();
  try {
    let socketError: string | undefined;
    srv.on("error", (e) => {
      socketError = e.message;
    });
    const got: Buffer[] = [];
    let stats: { pauses: number } = { pauses: 0 };
    let seen = 0;
    const dst = new Writable({
      highWaterMark: 1,
      write(chunk: Buffer, _enc, cb) {
        got.push(chunk);
        // First write held long enough for Node's read buffer to fill (Node stops reading) ...
        if (got.length === 1) return void setTimeout(cb, 100);
        // ... then, right after pacing starts, a stall longer than the pause.
        if (stats.pauses > seen) {
          seen = stats.pauses;
          return void setTimeout(cb, 20);
        }
        setImmediate(cb);
      },
    });
    const finished = new Promise<void>((r) => dst.once("finish", () => r()));
    stats = pacedPipe(srv, dst);
    const parts: Buffer[] = [];
    for (let i = 0; i < 150; i++) {
      const b = Buffer.alloc(100, i);
      parts.push(b);
      client.write(b);
      await new Promise((r) => setImmediate(r));
    }
    // Past Node's 16 KiB buffer in one piece: Node stops reading with the kernel's queue empty.
    const big = Buffer.alloc(5000, 7);
    parts.push(big);
    client.write(big);
    await sleep(300);
    client.end();
    await finished;
    assert.equal(socketError, undefined);
    assert.ok(stats.pauses > 0, "pacing never started");
    assert.deepEqual(Buffer.concat(got), Buffer.concat(parts));
  } finally {
    await close();
  }
});
