import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { after, test } from "node:test";
import tar from "tar-stream";
import { type ContextArchive, spoolContext } from "./context-archive.js";
import { ContextReuse } from "./context-reuse.js";

const root = await mkdtemp(path.join(os.tmpdir(), "arca-reuse-"));
after(() => rm(root, { recursive: true, force: true }));

/** A tar of `files` spooled into root/tmp/NAME, reusing `base`'s big files. */
async function upload(name: string, files: Record<string, Buffer>, base?: ContextArchive) {
  const pack = tar.pack();
  for (const [n, data] of Object.entries(files)) pack.entry({ name: n }, data);
  pack.finalize();
  const tmp = path.join(root, "tmp");
  await mkdir(tmp, { recursive: true });
  return spoolContext(Readable.from(pack), path.join(tmp, name), new AbortController().signal, { base });
}

test("kept uploads move out of the temp dir, are taken once, and go by project count and bytes", async () => {
  const dir = path.join(root, "kept");
  const reuse = new ContextReuse(dir, { bytes: 5 << 20, projects: 2, entries: 1000 });
  const big = randomBytes(2 << 20);
  // Nothing big: keeping it would save nothing.
  await reuse.keep("small", await upload("s", { a: Buffer.from("a") }));
  assert.equal(reuse.take("small"), undefined);
  assert.deepEqual(await readdir(path.join(root, "tmp")), []);

  await reuse.keep("p1", await upload("1", { big }));
  assert.deepEqual(await readdir(dir), ["1"]);
  assert.deepEqual(await readdir(path.join(root, "tmp")), []);
  const taken = reuse.take("p1");
  assert.ok(taken);
  assert.equal(reuse.take("p1"), undefined, "taken once");
  // The next upload of p1 reuses it, then is kept in its place: one spool file of p1's on disk.
  const next = await upload("2", { big }, taken);
  await taken.close();
  await reuse.keep("p1", next);
  assert.deepEqual(await readdir(dir), ["1", "2"], "2 holds nothing big, 1 still holds `big`");
  assert.equal(reuse.keptBytes(), big.length + (next.files[0]?.size ?? 0));

  await reuse.keep("p2", await upload("3", { big: randomBytes(2 << 20) }));
  // Over 5 MiB with a third project: the least recently kept (p1) goes, its files with it.
  await reuse.keep("p3", await upload("4", { big: randomBytes(2 << 20) }));
  assert.equal(reuse.take("p1"), undefined);
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual((await readdir(dir)).sort(), ["3", "4"]);

  reuse.clear();
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(await readdir(dir), []);

  // Too many entries to hold their index in memory: not kept, however few bytes.
  const many: Record<string, Buffer> = { big: randomBytes(1 << 20) };
  for (let i = 0; i < 1000; i++) many[`f${i}`] = Buffer.from("x");
  await reuse.keep("many", await upload("5", many));
  assert.equal(reuse.take("many"), undefined);

  // A prune while a keep is moving its files: the upload is not brought back after it.
  const keeping = reuse.keep("p4", await upload("6", { big }));
  reuse.clear();
  await keeping;
  assert.equal(reuse.take("p4"), undefined);
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(await readdir(dir), []);
  assert.deepEqual(await readdir(path.join(root, "tmp")), []);
});

test("kept uploads are build cache records: sized by their own spool bytes, named, counted by reuse, released by clear", async () => {
  const dir = path.join(root, "usage");
  const reuse = new ContextReuse(dir, { bytes: 64 << 20, projects: 2, entries: 1000 });
  assert.deepEqual(reuse.usage(), []);
  const big = randomBytes(2 << 20);
  await reuse.keep("p1", await upload("u1", { big }), "app:1 (Dockerfile)");
  const [first] = reuse.usage();
  assert.ok(first);
  assert.equal(first.RecordType, "source.local");
  assert.equal(first.Description, "kept upload of a classic build context: app:1 (Dockerfile)");
  assert.equal(first.ID.length, 25);
  assert.equal(first.Size, BigInt(big.length), "the file's bytes in the spool");
  assert.equal(first.UsageCount, 0n);
  assert.equal(first.InUse, false);
  assert.equal(first.Shared, false);
  assert.ok(first.CreatedAt && first.LastUsedAt);

  // Reused by the next upload, which is kept in its place: same record, used once, same bytes on disk.
  const taken = reuse.take("p1");
  assert.ok(taken);
  const next = await upload("u2", { big, small: Buffer.from("s") }, taken);
  await taken.close();
  await reuse.keep("p1", next, "app:1 (Dockerfile)");
  const [again] = reuse.usage();
  assert.equal(again?.ID, first.ID);
  assert.equal(again?.UsageCount, 1n);
  assert.equal(again?.Size, BigInt(reuse.keptBytes()));

  // A second project: its own record, its own bytes; both within the byte limit.
  const other = randomBytes(1 << 20);
  await reuse.keep("p2", await upload("u3", { other }), "untagged build (Dockerfile)");
  const both = reuse.usage();
  assert.equal(both.length, 2);
  assert.notEqual(both[0]?.ID, both[1]?.ID);
  assert.equal(
    both.reduce((n, r) => n + r.Size, 0n),
    BigInt(reuse.keptBytes()),
    "every kept byte counted once",
  );

  // An upload not worth keeping does not leave a record behind.
  await reuse.take("p2")?.close();
  await reuse.keep("p2", await upload("u4", { tiny: Buffer.from("t") }));
  assert.deepEqual(
    reuse.usage().map((r) => r.ID),
    [first.ID],
  );

  const released = reuse.clear();
  assert.deepEqual(
    released.map((r) => [r.ID, r.Size]),
    [[first.ID, again?.Size]],
  );
  assert.deepEqual(reuse.usage(), []);
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(await readdir(dir), []);
});
