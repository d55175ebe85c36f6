import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, lstatSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, test } from "node:test";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import tar from "tar-stream";
import { RuntimeError } from "./errors.js";
import { ensureLayer } from "./layer-unpack.js";
import { mountOverlay, unmount } from "./overlay.js";

const run = promisify(execFile);

type Entry = { name: string; type?: "file" | "directory"; body?: string };

async function tarOf(entries: Entry[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) {
    if (e.type === "directory") pack.entry({ name: e.name, type: "directory", mode: 0o755 });
    else pack.entry({ name: e.name, mode: 0o644 }, e.body ?? "");
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function layerOf(plain: Buffer) {
  const gz = gzipSync(plain);
  return {
    digest: `sha256:${createHash("sha256").update(gz).digest("hex")}`,
    diffId: `sha256:${createHash("sha256").update(plain).digest("hex")}`,
    mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
    open: () => Readable.from([gz]),
  };
}

const root = await mkdtemp(join(tmpdir(), "arca-unpack-"));
const merged = join(root, "merged");
after(async () => {
  await unmount(merged).catch(() => {});
  await rm(root, { recursive: true, force: true });
});

test("whiteouts and opaque dirs stack correctly as overlay lower dirs", async () => {
  const lower = layerOf(
    await tarOf([
      { name: "a/", type: "directory" },
      { name: "a/keep", body: "k" },
      { name: "a/gone", body: "g" },
      { name: "b/", type: "directory" },
      { name: "b/old", body: "o" },
      { name: "file1", body: "1" },
    ]),
  );
  const upper = layerOf(
    await tarOf([
      { name: "a/", type: "directory" },
      { name: "a/.wh.gone" },
      { name: "b/", type: "directory" },
      { name: "b/.wh..wh..opq" },
      { name: "b/new", body: "n" },
      { name: ".wh.file1" },
    ]),
  );
  const layers = join(root, "layers");
  const lowerDir = await ensureLayer(layers, lower);
  const upperDir = await ensureLayer(layers, upper);
  assert.equal(await ensureLayer(layers, upper), upperDir, "second call reuses the unpacked layer");
  assert.ok(lstatSync(join(upperDir, "a/gone")).isCharacterDevice());
  assert.equal(existsSync(join(upperDir, "b/.wh..wh..opq")), false);
  for (const d of ["up", "work", "merged"]) await mkdir(join(root, d));
  await mountOverlay([upperDir, lowerDir], join(root, "up"), join(root, "work"), merged);
  assert.deepEqual((await readdir(merged)).sort(), ["a", "b"]);
  assert.deepEqual(await readdir(join(merged, "a")), ["keep"]);
  assert.deepEqual(await readdir(join(merged, "b")), ["new"]);
  assert.equal(await readFile(join(merged, "b/new"), "utf8"), "n");
  await unmount(merged);
  assert.deepEqual((await readdir(join(layers, "tmp"))).length, 0);
});

test("entries escaping the layer and diff ID mismatches are refused", async () => {
  const layers = join(root, "layers2");
  const evil = layerOf(await tarOf([{ name: "../escape", body: "x" }]));
  await assert.rejects(
    ensureLayer(layers, evil),
    (e) => e instanceof RuntimeError && /escapes/.test(e.message),
  );
  assert.equal(existsSync(join(root, "escape")), false);
  const good = layerOf(await tarOf([{ name: "f", body: "x" }]));
  const wrong = { ...good, diffId: `sha256:${"0".repeat(64)}` };
  await assert.rejects(ensureLayer(layers, wrong), /diff ID mismatch/);
  assert.equal(existsSync(join(layers, "sha256", "0".repeat(64))), false);
});

test("a full disk is reported as no space left on the layer's directory", async () => {
  const small = join(root, "small");
  await mkdir(small);
  await run("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", small]);
  try {
    const big = layerOf(await tarOf([{ name: "big", body: "x".repeat(3 << 20) }]));
    await assert.rejects(
      ensureLayer(small, big),
      (e) => e instanceof RuntimeError && new RegExp(`^no space left on ${small}/tmp/`).test(e.message),
    );
  } finally {
    await run("umount", [small]);
  }
});

test("for a user namespace, owners are shifted into the mapping; an owner beyond it is refused", async () => {
  const ids = { hostId: 100_000, size: 65_536 };
  const pack = tar.pack();
  pack.entry({ name: "d/", type: "directory", mode: 0o755, uid: 0, gid: 0 });
  pack.entry({ name: "d/suid", mode: 0o4755, uid: 0, gid: 0 }, "x");
  pack.entry({ name: "d/user", mode: 0o644, uid: 1000, gid: 100 }, "u");
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  const dir = await ensureLayer(join(root, "shifted"), layerOf(Buffer.concat(chunks)), undefined, ids);
  const owner = (p: string) => {
    const st = lstatSync(join(dir, p));
    return [st.uid, st.gid, st.mode & 0o7777];
  };
  assert.deepEqual(owner("d"), [100_000, 100_000, 0o755]);
  assert.deepEqual(owner("d/suid"), [100_000, 100_000, 0o4755]);
  assert.deepEqual(owner("d/user"), [101_000, 100_100, 0o644]);

  const far = tar.pack();
  far.entry({ name: "f", mode: 0o644, uid: 70_000, gid: 0 }, "f");
  far.finalize();
  const farChunks: Buffer[] = [];
  for await (const c of far) farChunks.push(c as Buffer);
  await assert.rejects(
    ensureLayer(join(root, "shifted"), layerOf(Buffer.concat(farChunks)), undefined, ids),
    /uid 70000 cannot be mapped/,
  );
});
