import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { constants, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { after, before, test } from "node:test";
import { createDirectFileWriter } from "./direct-file-writer.js";

let tmp: string;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "arca-direct-writer-"));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** Splits bytes into chunks of odd sizes, so stage boundaries fall inside chunks. */
function chunked(bytes: Buffer, size: number): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) parts.push(bytes.subarray(i, i + size));
  return Readable.from(parts);
}

/** The open flags of this process's descriptors on `file` (from /proc/self/fdinfo). */
function openFlags(file: string): number[] {
  const flags: number[] = [];
  for (const fd of readdirSync("/proc/self/fd")) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    if (target !== file) continue;
    const f = fdFlags(fd);
    if (f !== undefined) flags.push(f);
  }
  return flags;
}

/** One descriptor's open flags (from /proc/self/fdinfo). */
function fdFlags(fd: number | string): number | undefined {
  const line = readFileSync(`/proc/self/fdinfo/${fd}`, "utf8").match(/^flags:\s+([0-7]+)$/m);
  return line?.[1] ? Number.parseInt(line[1], 8) : undefined;
}

test("a new file gets every byte, whole blocks written through an O_DIRECT descriptor", async () => {
  const file = path.join(tmp, "new");
  // 9 MiB and a bit: two full 4 MiB stages, an aligned remainder and an unaligned tail.
  const bytes = randomBytes(9 * 1024 * 1024 + 12_345);
  const writer = await createDirectFileWriter(file, { create: true, position: 0 });
  let flagsAfterStages: number[] = [];
  const source = Readable.from(
    (async function* () {
      yield* chunked(bytes, 100_003);
      // Two stages went out by now; a refused direct write would have closed the direct descriptor.
      flagsAfterStages = openFlags(file);
    })(),
  );
  await pipeline(source, writer);
  assert.ok(
    flagsAfterStages.some((f) => (f & constants.O_DIRECT) !== 0),
    `no O_DIRECT descriptor after the first blocks: ${flagsAfterStages.map((f) => f.toString(8)).join(", ")}`,
  );
  assert.deepEqual(openFlags(file), [], "descriptors left open after the end");
  assert.equal(Buffer.compare(await readFile(file), bytes), 0, "file content differs");
});

test("create refuses an existing file", async () => {
  const file = path.join(tmp, "exists");
  await writeFile(file, "x");
  await assert.rejects(createDirectFileWriter(file, { create: true, position: 0 }), { code: "EEXIST" });
});

test("appends at an aligned and at an unaligned position", async () => {
  for (const head of [8192, 100]) {
    const file = path.join(tmp, `append-${head}`);
    const first = randomBytes(head);
    await writeFile(file, first);
    const more = randomBytes(5 * 1024 * 1024 + 7);
    await pipeline(
      chunked(more, 65_537),
      await createDirectFileWriter(file, { create: false, position: head }),
    );
    const got = await readFile(file);
    assert.equal(got.length, head + more.length, `size after appending at ${head}`);
    assert.equal(Buffer.compare(got, Buffer.concat([first, more])), 0, `content after appending at ${head}`);
  }
});

test("a failed source closes the file, and the next writer's bytes are its own", async () => {
  const file = path.join(tmp, "failed");
  const failing = Readable.from(
    (async function* () {
      yield randomBytes(6 * 1024 * 1024);
      throw new Error("source broke");
    })(),
  );
  const writer = await createDirectFileWriter(file, { create: true, position: 0 });
  await assert.rejects(pipeline(failing, writer), /source broke/);
  // As with fs.WriteStream, the descriptors close asynchronously after the destroy.
  if (!writer.closed) await new Promise((resolve) => writer.once("close", resolve));
  assert.deepEqual(openFlags(file), [], "descriptors left open after the failure");

  // The staging buffers went back to the pool: a later writer must not see stale bytes.
  const next = path.join(tmp, "after-failure");
  const bytes = randomBytes(4 * 1024 * 1024 + 4096 * 3 + 1);
  await pipeline(chunked(bytes, 1 << 20), await createDirectFileWriter(next, { create: true, position: 0 }));
  assert.equal(Buffer.compare(await readFile(next), bytes), 0, "content after a failed writer");
});

test("an empty stream leaves an empty file", async () => {
  const file = path.join(tmp, "empty");
  await pipeline(Readable.from([]), await createDirectFileWriter(file, { create: true, position: 0 }));
  assert.equal((await readFile(file)).length, 0);
});

test("a direct write the filesystem refuses falls back to ordinary writes without losing bytes", async () => {
  // The refusal is injected (ext4 here takes every aligned direct write): the fallback is pure logic.
  const probe = await open(path.join(tmp, "probe"), "w");
  const proto = Object.getPrototypeOf(probe) as { write: (...args: unknown[]) => Promise<unknown> };
  await probe.close();
  const realWrite = proto.write;
  for (const refuseAt of [1, 2, 3]) {
    let directWrites = 0;
    proto.write = function (this: { fd: number }, ...args: unknown[]) {
      if (((fdFlags(this.fd) ?? 0) & constants.O_DIRECT) !== 0 && ++directWrites === refuseAt) {
        return Promise.reject(
          Object.assign(new Error("EINVAL: invalid argument, write"), { code: "EINVAL" }),
        );
      }
      return realWrite.apply(this, args);
    };
    try {
      const file = path.join(tmp, `refused-${refuseAt}`);
      // Three full stages and a tail: the refusal lands on the first, second or third block.
      const bytes = randomBytes(3 * 4 * 1024 * 1024 + 4096 + 17);
      await pipeline(
        chunked(bytes, 300_007),
        await createDirectFileWriter(file, { create: true, position: 0 }),
      );
      assert.equal(directWrites >= refuseAt, true, `the refusal at direct write ${refuseAt} never happened`);
      assert.equal(
        Buffer.compare(await readFile(file), bytes),
        0,
        `content after a refusal at write ${refuseAt}`,
      );
    } finally {
      proto.write = realWrite;
    }
  }
});
