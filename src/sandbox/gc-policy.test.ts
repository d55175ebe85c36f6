import assert from "node:assert/strict";
import { statfs } from "node:fs/promises";
import { tmpdir } from "node:os";
import { test } from "node:test";
import { defaultGcKeepBytes, gcKeepBytesForDisk } from "./gc-policy.js";

test("build cache reserve follows the disk as dockerd's default: 10%, at most 10 GB", async () => {
  assert.equal(gcKeepBytesForDisk(20e9), 2e9);
  assert.equal(gcKeepBytesForDisk(64 * 1024 ** 3), Math.floor(6.4 * 1024 ** 3));
  assert.equal(gcKeepBytesForDisk(2e12), 10e9);
  const st = await statfs(tmpdir());
  assert.equal(await defaultGcKeepBytes(tmpdir()), gcKeepBytesForDisk(st.bsize * st.blocks));
});
