import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, test } from "node:test";
import { gzipSync } from "node:zlib";
import { startedWorkers } from "../../test/support/worker-capture.js";
import { ContentStore } from "./content-store.js";
import { ImageError } from "./errors.js";

let root: string;
let store: ContentStore;
before(async () => {
  root = await mkdtemp(join(tmpdir(), "arca-cs-"));
  store = await ContentStore.open(root);
});
after(() => rm(root, { recursive: true, force: true }));

const sha = (b: Buffer | string) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
function chunks(data: Buffer, size = 1000): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) parts.push(data.subarray(i, i + size));
  return Readable.from(parts);
}
const isCode = (code: string) => (err: unknown) => err instanceof ImageError && err.code === code;

test("ingest stores a blob at blobs/sha256/<hex>, verifies it and leaves no temp file", async () => {
  const data = Buffer.alloc(300_000, 7);
  const info = await store.ingest(chunks(data), { expectedDigest: sha(data), expectedSize: data.length });
  assert.deepEqual(info, { digest: sha(data), size: data.length, created: true });
  assert.deepEqual(await readFile(join(root, "blobs/sha256", sha(data).slice(7))), data);
  assert.deepEqual(await store.stat(sha(data)), { size: data.length });
  assert.deepEqual(await readdir(join(root, "ingest")), []);
  const again = await store.ingest(chunks(data), { expectedDigest: sha(data) });
  assert.equal(again.created, false);
});

test("digest or size mismatch leaves nothing behind", async () => {
  const data = Buffer.from("hello world");
  const wrong = sha("something else");
  await assert.rejects(store.ingest(chunks(data, 3), { expectedDigest: wrong }), isCode("digest_mismatch"));
  await assert.rejects(store.ingest(chunks(data, 3), { expectedSize: 3 }), isCode("size_mismatch"));
  await assert.rejects(store.ingest(chunks(data, 3), { expectedSize: 100 }), isCode("size_mismatch"));
  assert.equal(await store.has(wrong), false);
  assert.equal(await store.has(sha(data)), false);
  assert.deepEqual(await readdir(join(root, "ingest")), []);
});

test("an existing blob is verified against the source, and kept", async () => {
  const data = Buffer.from("kept");
  await store.ingest(chunks(data), {});
  await assert.rejects(
    store.ingest(Readable.from([Buffer.from("different")]), { expectedDigest: sha(data) }),
    isCode("digest_mismatch"),
  );
  assert.deepEqual(await readFile(store.blobPath(sha(data))), data);
});

test("an aborted or failing source leaves nothing behind", async () => {
  async function* failing() {
    yield Buffer.from("partial");
    throw new Error("source broke");
  }
  await assert.rejects(store.ingest(failing()), /source broke/);
  const ac = new AbortController();
  async function* slow() {
    yield Buffer.from("x");
    ac.abort();
    yield Buffer.from("y");
  }
  await assert.rejects(store.ingest(slow(), { signal: ac.signal }), { name: "AbortError" });
  assert.deepEqual(await readdir(join(root, "ingest")), []);
  assert.equal(await store.has(sha("partial")), false);
});

test("concurrent ingests of the same blob both succeed with one file", async () => {
  const data = Buffer.alloc(2_000_000, 3);
  const results = await Promise.all(
    Array.from({ length: 6 }, () => store.ingest(chunks(data, 65536), { expectedDigest: sha(data) })),
  );
  for (const r of results) assert.equal(r.digest, sha(data));
  assert.deepEqual(await readFile(store.blobPath(sha(data))), data);
  assert.deepEqual(await readdir(join(root, "ingest")), []);
});

test("malformed digests are rejected", async () => {
  for (const d of [
    "sha256:abc",
    `sha512:${"a".repeat(64)}`,
    `sha256:${"A".repeat(64)}`,
    "../../etc/passwd",
  ]) {
    await assert.rejects(store.stat(d), isCode("invalid_digest"), d);
    await assert.rejects(store.ingest(Readable.from([]), { expectedDigest: d }), isCode("invalid_digest"), d);
  }
});

test("range reads, walk and delete", async () => {
  const data = Buffer.from("0123456789");
  const { digest } = await store.ingest(chunks(data, 4));
  const part: Buffer[] = [];
  for await (const c of store.createReadStream(digest, { start: 2, end: 5 })) part.push(c);
  assert.equal(Buffer.concat(part).toString(), "2345");
  const all: string[] = [];
  for await (const b of store.walk()) all.push(b.digest);
  assert.ok(all.includes(digest));
  assert.equal(await store.delete(digest), true);
  assert.equal(await store.delete(digest), false);
  assert.equal(await store.has(digest), false);
});

test("resumable uploads: append at offset, reject bad offsets, commit verifies", async () => {
  const data = Buffer.from("chunk-one|chunk-two|chunk-three");
  const id = await store.startUpload();
  assert.equal(await store.uploadSize(id), 0);
  assert.equal(await store.appendUpload(id, Readable.from([data.subarray(0, 10)]), { offset: 0 }), 10);
  await assert.rejects(
    store.appendUpload(id, Readable.from([data.subarray(10)]), { offset: 5 }),
    isCode("invalid_offset"),
  );
  assert.equal(await store.appendUpload(id, Readable.from([data.subarray(10)]), { offset: 10 }), data.length);
  await assert.rejects(store.commitUpload(id, sha("nope")), isCode("digest_mismatch"));
  const info = await store.commitUpload(id, sha(data));
  assert.deepEqual(info, { digest: sha(data), size: data.length });
  assert.deepEqual(await readFile(store.blobPath(sha(data))), data);
  await assert.rejects(store.uploadSize(id), isCode("upload_not_found"));

  // A fresh store (another process) still commits by re-reading the upload file.
  const id2 = await store.startUpload();
  await store.appendUpload(id2, Readable.from([Buffer.from("other")]));
  const other = await ContentStore.open(root);
  assert.equal((await other.commitUpload(id2, sha("other"))).size, 5);

  const id3 = await store.startUpload();
  await store.abortUpload(id3);
  await assert.rejects(store.uploadSize(id3), isCode("upload_not_found"));
  await assert.rejects(store.uploadSize("../../x"), isCode("upload_not_found"));
  assert.deepEqual(await readdir(join(root, "ingest")), []);
});

test("blobs and uploads of several MiB (hashed on the worker thread) get the same digests", async () => {
  const MiB = 1 << 20;
  const big = randomBytes(5 * MiB + 3);
  const info = await store.ingest(chunks(big, 65536), { expectedDigest: sha(big) });
  assert.deepEqual(info, { digest: sha(big), size: big.length, created: true });
  assert.deepEqual(await readFile(store.blobPath(sha(big))), big);
  const other = randomBytes(3 * MiB);
  await assert.rejects(
    store.ingest(chunks(other, 3 * MiB), { expectedDigest: sha(big) }),
    isCode("digest_mismatch"),
  );
  assert.equal(await store.stat(sha(other)), undefined);

  const data = randomBytes(5 * MiB + 17);
  const id = await store.startUpload();
  await store.appendUpload(id, chunks(data.subarray(0, 1.5 * MiB), 65536), { offset: 0 });
  await store.appendUpload(id, chunks(data.subarray(1.5 * MiB, 4 * MiB), 3 * MiB), { offset: 1.5 * MiB });
  await assert.rejects(store.commitUpload(id, sha(data)), isCode("digest_mismatch"));
  // After a failed commit the upload goes on: the finished running hash is dropped and the file rehashed.
  await store.appendUpload(id, chunks(data.subarray(4 * MiB), 100_000), { offset: 4 * MiB });
  assert.deepEqual(await store.commitUpload(id, sha(data)), { digest: sha(data), size: data.length });
  assert.deepEqual(await readFile(store.blobPath(sha(data))), data);
  assert.deepEqual(await readdir(join(root, "ingest")), []);
});

test("an upload outlives its hashing thread: the next append goes on and the commit hashes the file", async () => {
  const MiB = 1 << 20;
  const data = randomBytes(4 * MiB + 9);
  const id = await store.startUpload();
  await store.appendUpload(id, chunks(data.subarray(0, 2 * MiB + 1), 65536), { offset: 0 });
  const thread = startedWorkers.at(-1);
  assert.ok(thread, "the store hashes uploads over 1 MiB on a worker thread");
  await thread.terminate();
  await store.appendUpload(id, chunks(data.subarray(2 * MiB + 1), 65536), { offset: 2 * MiB + 1 });
  assert.deepEqual(await store.commitUpload(id, sha(data)), { digest: sha(data), size: data.length });

  // Stopped while the running hash sits finished-less between append and commit: the commit still succeeds.
  const id2 = await store.startUpload();
  const data2 = randomBytes(3 * MiB);
  await store.appendUpload(id2, chunks(data2, MiB), { offset: 0 });
  await (startedWorkers.at(-1) as NonNullable<(typeof startedWorkers)[number]>).terminate();
  assert.deepEqual(await store.commitUpload(id2, sha(data2)), { digest: sha(data2), size: data2.length });

  // Stopped in the middle of an append: the bytes still land, and the commit hashes the file.
  const id3 = await store.startUpload();
  const data3 = randomBytes(6 * MiB);
  async function* stopMidway() {
    for (let i = 0; i < 6; i++) {
      if (i === 3) await (startedWorkers.at(-1) as NonNullable<(typeof startedWorkers)[number]>).terminate();
      yield data3.subarray(i * MiB, (i + 1) * MiB);
    }
  }
  assert.equal(await store.appendUpload(id3, stopMidway(), { offset: 0 }), data3.length);
  assert.deepEqual(await store.commitUpload(id3, sha(data3)), { digest: sha(data3), size: data3.length });
});

test("an upload aborted while it is written ends upload_not_found and leaves nothing", async () => {
  const MiB = 1 << 20;
  const id = await store.startUpload();
  let aborted = false;
  async function* slowly() {
    for (let i = 0; i < 6; i++) {
      if (i === 3 && !aborted) {
        aborted = true;
        await store.abortUpload(id);
      }
      yield randomBytes(MiB);
    }
  }
  await assert.rejects(store.appendUpload(id, slowly(), { offset: 0 }), isCode("upload_not_found"));
  await assert.rejects(store.uploadSize(id), isCode("upload_not_found"));
  assert.deepEqual(await readdir(join(root, "ingest")), []);
});

test("uncompressedSize: a gzip blob's size from its trailer, anything else as stored", async () => {
  const data = Buffer.alloc(300_000, "layer bytes ");
  const gz = gzipSync(data);
  const zipped = await store.ingest(Readable.from([gz]));
  assert.equal(await store.uncompressedSize(zipped.digest), data.length);
  const plain = await store.ingest(Readable.from([Buffer.from("plain tar stand-in")]));
  assert.equal(await store.uncompressedSize(plain.digest), "plain tar stand-in".length);
});

test("an upload whose write fails half-way (ENOSPC, pusher gone) gives its space back", async () => {
  const id = await store.startUpload();
  await store.appendUpload(id, Readable.from([Buffer.from("first chunk")]));
  const failing = new Readable({
    read() {
      this.push(Buffer.alloc(1024));
      this.destroy(Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" }));
    },
  });
  await assert.rejects(store.appendUpload(id, failing), /ENOSPC/);
  await assert.rejects(store.uploadSize(id), (e) => e instanceof ImageError && e.code === "upload_not_found");
  assert.deepEqual(
    (await readdir(join(root, "ingest"))).filter((n) => n.includes(id)),
    [],
  );
});

test("the start-up sweep removes ingest files of dead writers, not live uploads", async () => {
  const live = await store.startUpload();
  const dead = spawnSync(process.execPath, ["-e", ""]).pid as number;
  await writeFile(join(root, "ingest", `blob-${dead}-abcd`), "partial");
  await writeFile(join(root, "ingest", `upload-${dead}-11111111-2222-4333-8444-555555555555`), "partial");
  const report = await store.sweepIngest();
  assert.equal(report.files, 2);
  assert.equal(await store.uploadSize(live), 0);
  await store.abortUpload(live);
});
