import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { test } from "node:test";
import { gzipSync } from "node:zlib";
import type { Digest } from "./digest.js";
import { ImageError } from "./errors.js";
import { plainLayerStages } from "./save-layers.js";

const sha = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}` as Digest;

/** Runs a stored blob through the save stages; returns what the archive would get. */
async function save(blob: Buffer, layer: Parameters<typeof plainLayerStages>[0]): Promise<Buffer> {
  const out: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out.push(chunk);
      cb();
    },
  });
  const parts: Buffer[] = [];
  for (let i = 0; i < blob.length; i += 65536) parts.push(blob.subarray(i, i + 65536));
  await pipeline([Readable.from(parts), ...plainLayerStages(layer), sink]);
  return Buffer.concat(out);
}

const refused = (what: RegExp) => (err: unknown) =>
  err instanceof ImageError && err.code === "invalid_manifest" && what.test(err.message);

test("a gzip-stored layer of several MiB saves as its plain tar, checked against its diffID on the hashing thread", async () => {
  const plain = randomBytes(5 * 1024 * 1024 + 11);
  const gz = gzipSync(plain);
  const layer = { digest: sha(plain), size: plain.length, stored: sha(gz), gzip: true };
  assert.deepEqual(await save(gz, layer), plain);

  const other = randomBytes(plain.length);
  await assert.rejects(
    save(gzipSync(other), layer),
    refused(/does not unpack to its diffID .*digest sha256:/),
  );
  await assert.rejects(save(gzipSync(plain.subarray(1)), layer), refused(/bytes, not/));
  await assert.rejects(save(gzipSync(Buffer.concat([plain, Buffer.from("x")])), layer), refused(/more than/));
});
