import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { main } from "../src/cli/main.js";
import { writeBusyboxRootfs } from "./support/busybox-rootfs.js";
import { textSink } from "./support/image-files.js";

const run = promisify(execFile);
let tmp: string;
let rootfs: string;

async function arca(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = textSink();
  const err = textSink();
  const code = await main(args, { stdout: out.stream, stderr: err.stream });
  return { code, out: out.text(), err: err.text() };
}

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "arca-imgcli-"));
  rootfs = path.join(tmp, "rootfs.tar");
  await writeBusyboxRootfs(rootfs);
});
after(() => rm(tmp, { recursive: true, force: true }));

test("arca image: import, ls, tag, inspect, save, load into another store, rm", async () => {
  const a = path.join(tmp, "a");
  const imported = await arca("image", "import", "--data-root", a, rootfs, "busybox:local");
  assert.equal(imported.code, 0, imported.err);
  const id = imported.out.trim();
  assert.match(id, /^sha256:[a-f0-9]{64}$/);

  assert.equal(
    (await arca("image", "tag", "--data-root", a, "busybox:local", "example.com/tools/bb:2")).code,
    0,
  );
  const ls = await arca("image", "ls", "--data-root", a);
  assert.match(ls.out, /^busybox\s+local\s+[a-f0-9]{12}\s/m);
  assert.match(ls.out, /^example\.com\/tools\/bb\s+2\s/m);

  const inspect = JSON.parse((await arca("image", "inspect", "--data-root", a, "busybox:local")).out);
  const info = Array.isArray(inspect) ? inspect[0] : inspect;
  assert.equal(info.Id, id);
  assert.equal(info.Os, "linux");
  assert.equal(info.RootFS.Layers.length, 1);

  const archive = path.join(tmp, "saved.tar");
  assert.equal((await arca("image", "save", "--data-root", a, "-o", archive, "busybox:local")).code, 0);
  const { stdout: listing } = await run("tar", ["-tf", archive]);
  assert.match(listing, /^manifest\.json$/m);
  assert.match(listing, /^index\.json$/m);

  const b = path.join(tmp, "b");
  const loaded = await arca("image", "load", "--data-root", b, "-i", archive);
  assert.equal(loaded.code, 0, loaded.err);
  const inspectB = JSON.parse((await arca("image", "inspect", "--data-root", b, "busybox:local")).out);
  assert.equal((Array.isArray(inspectB) ? inspectB[0] : inspectB).Id, id);

  assert.equal((await arca("image", "rm", "--data-root", a, "example.com/tools/bb:2")).code, 0);
  const missing = await arca("image", "inspect", "--data-root", a, "example.com/tools/bb:2");
  assert.equal(missing.code, 1);
  assert.match(missing.err, /^arca: .*(no such image|not found)/i);
});

test("arca image load rejects a hostile archive without writing outside the store", async () => {
  const evil = path.join(tmp, "evil.tar");
  await run("tar", ["-cf", evil, "-C", tmp, "--transform", "s,^,../../,", "rootfs.tar"]);
  const r = await arca("image", "load", "--data-root", path.join(tmp, "c"), "-i", evil);
  assert.equal(r.code, 1);
  assert.match(r.err, /arca: refusing archive entry "..\/..\/rootfs.tar": path escapes the archive/);
});
