import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ownedTempName, sweepOrphanedTemps, tempOwner } from "./owned-temp.js";

test("owned temp names carry their writer's pid", () => {
  const name = ownedTempName("build-", ".spool");
  assert.match(name, new RegExp(`^build-${process.pid}-[a-f0-9]{16}\\.spool$`));
  assert.equal(tempOwner(name, "build-"), process.pid);
  assert.equal(tempOwner("build-abc.spool", "build-"), undefined);
});

test("sweep removes files of dead writers and unowned names, keeps live writers' and other files", async () => {
  const dir = await mkdtemp(join(tmpdir(), "arca-sweep-"));
  try {
    // A pid that certainly existed and is gone: a child that has exited.
    const dead = spawnSync(process.execPath, ["-e", ""]).pid as number;
    const files = {
      [`blob-${dead}-aaaa`]: "partial",
      "blob-1b2c3d4e-legacy": "old name, no pid",
      [`upload-${dead}-11111111-2222-4333-8444-555555555555`]: "xx",
      [ownedTempName("blob-")]: "mine, in flight",
      "blob-1-bbbb": "pid 1 is alive",
      "metadata.db": "not a temp file",
    };
    for (const [n, body] of Object.entries(files)) await writeFile(join(dir, n), body);
    const report = await sweepOrphanedTemps(dir, ["blob-", "upload-"]);
    assert.deepEqual(report, { files: 3, bytes: "partial".length + "old name, no pid".length + 2 });
    const left = await readdir(dir);
    assert.equal(left.length, 3);
    assert.ok(left.includes("blob-1-bbbb") && left.includes("metadata.db"));
    assert.ok(left.some((n) => n.startsWith(`blob-${process.pid}-`)));
    assert.deepEqual(await sweepOrphanedTemps(join(dir, "missing"), ["blob-"]), { files: 0, bytes: 0 });
    // ownToo: this process's own names go too (a restarted daemon with its predecessor's pid), others' stay.
    assert.deepEqual(await sweepOrphanedTemps(dir, ["blob-"], { ownToo: true }), { files: 1, bytes: 15 });
    assert.deepEqual((await readdir(dir)).sort(), ["blob-1-bbbb", "metadata.db"]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
