import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { after, before, test } from "node:test";
import { createGzip } from "node:zlib";
import tar from "tar-stream";
import { writeBusyboxRootfs } from "../../test/support/busybox-rootfs.js";
import { ImageError } from "./errors.js";
import { ImageStore } from "./image-store.js";
import { importRootfs } from "./import-rootfs.js";
import { loadImages } from "./load.js";
import { saveImages } from "./save.js";

let tmp: string;
let store: ImageStore;
let archive: string;
const isCode = (code: string) => (err: unknown) => err instanceof ImageError && err.code === code;

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), "arca-sl-"));
  const rootfs = join(tmp, "rootfs.tar");
  await writeBusyboxRootfs(rootfs);
  store = await ImageStore.open(join(tmp, "a"));
  await importRootfs(store, createReadStream(rootfs), { name: "busybox:local" });
  store.tag("busybox:local", "ghcr.io/x/y:2");
  archive = join(tmp, "save.tar");
  await saveImages(store, ["busybox:local", "ghcr.io/x/y:2"], createWriteStream(archive));
});
after(async () => {
  store.close();
  await rm(tmp, { recursive: true, force: true });
});

async function readTar(file: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const extract = tar.extract();
  const done = (async () => {
    for await (const e of extract) {
      const chunks: Buffer[] = [];
      for await (const c of e) chunks.push(c as Buffer);
      out.set(e.header.name, Buffer.concat(chunks));
    }
  })();
  await Promise.all([pipeline(createReadStream(file), extract), done]);
  return out;
}

test("save writes an OCI layout plus docker manifest.json and repositories", async () => {
  const files = await readTar(archive);
  const img = await store.inspect("busybox:local");
  assert.deepEqual(JSON.parse(String(files.get("oci-layout"))), { imageLayoutVersion: "1.0.0" });
  const manifestJson = JSON.parse(String(files.get("manifest.json")));
  assert.deepEqual(manifestJson, [
    {
      Config: `blobs/sha256/${img.Id.slice(7)}`,
      RepoTags: ["busybox:local", "ghcr.io/x/y:2"],
      // Plain layer tars named by their diffIDs, as dockerd saves (the store holds this one gzip).
      Layers: img.RootFS.Layers.map((d) => `blobs/sha256/${d.slice(7)}`),
    },
  ]);
  const index = JSON.parse(String(files.get("index.json")));
  assert.equal(index.manifests.length, 2);
  const saved = JSON.parse(String(files.get(`blobs/sha256/${index.manifests[0].digest.slice(7)}`)));
  assert.deepEqual(saved.config.digest, img.Id);
  assert.deepEqual(
    saved.layers.map((l: { mediaType: string; digest: string }) => [l.mediaType, l.digest]),
    img.RootFS.Layers.map((d) => ["application/vnd.oci.image.layer.v1.tar", d]),
  );
  assert.equal(index.manifests[0].annotations["io.containerd.image.name"], "docker.io/library/busybox:local");
  assert.equal(index.manifests[0].annotations["org.opencontainers.image.ref.name"], "local");
  assert.deepEqual(JSON.parse(String(files.get("repositories"))), {
    busybox: { local: img.Id.slice(7) },
    "ghcr.io/x/y": { "2": img.Id.slice(7) },
  });
  for (const d of [img.Id, index.manifests[0].digest, ...img.RootFS.Layers]) {
    assert.ok(files.has(`blobs/sha256/${d.slice(7)}`), d);
  }
  const layer = files.get(`blobs/sha256/${img.RootFS.Layers[0]?.slice(7)}`) as Buffer;
  assert.equal(layer.subarray(257, 262).toString(), "ustar");
  assert.equal(`sha256:${createHash("sha256").update(layer).digest("hex")}`, img.RootFS.Layers[0]);
});

test("save -> load into a fresh store keeps ids and names (plain and gzip archives); saved again, the same bytes", async () => {
  const img = await store.inspect("busybox:local");
  const savedManifest = JSON.parse(String((await readTar(archive)).get("index.json"))).manifests[0].digest;
  for (const gz of [false, true]) {
    const fresh = await ImageStore.open(join(tmp, gz ? "b-gz" : "b"));
    try {
      let input = createReadStream(archive) as NodeJS.ReadableStream;
      if (gz) input = input.pipe(createGzip());
      const loaded = await loadImages(fresh, input as unknown as import("node:stream").Readable);
      assert.deepEqual(loaded, [{ id: img.Id, names: ["busybox:local", "ghcr.io/x/y:2"] }]);
      const again = await fresh.inspect("busybox:local");
      assert.equal(again.Id, img.Id);
      assert.equal(again.ManifestDigest, savedManifest);
      assert.deepEqual(again.RootFS, img.RootFS);
      assert.equal(fresh.resolve("ghcr.io/x/y:2").image.id, img.Id);
      // Stored plain now (the original store holds gzip): the archive does not tell them apart.
      const resaved = join(tmp, `resave-${gz}.tar`);
      await saveImages(fresh, ["busybox:local", "ghcr.io/x/y:2"], createWriteStream(resaved));
      assert.ok((await readFile(resaved)).equals(await readFile(archive)), "re-saved archive differs");
    } finally {
      fresh.close();
    }
  }
});

/** Writes a tar whose entries are given as [name, content|{linkname}] (tar-stream keeps names verbatim). */
async function writeTar(file: string, entries: [string, string | { symlink: string }][]): Promise<void> {
  const pack = tar.pack();
  const out = pipeline(pack, createWriteStream(file));
  for (const [name, body] of entries) {
    if (typeof body === "string") pack.entry({ name }, body);
    else pack.entry({ name, type: "symlink", linkname: body.symlink });
  }
  pack.finalize();
  await out;
}

test("legacy docker save layout (<id>/layer.tar, <id>.json config, symlinked duplicate layer)", async () => {
  const files = await readTar(archive);
  const img = await store.inspect("busybox:local");
  const layer = files.get(`blobs/sha256/${img.RootFS.Layers[0]?.slice(7)}`) as Buffer;
  const config = files.get(`blobs/sha256/${img.Id.slice(7)}`) as Buffer;
  const legacy = join(tmp, "legacy.tar");
  const pack = tar.pack();
  const out = pipeline(pack, createWriteStream(legacy));
  pack.entry({ name: "aaa/layer.tar" }, layer);
  pack.entry({ name: "bbb/layer.tar", type: "symlink", linkname: "../aaa/layer.tar" });
  pack.entry({ name: `${img.Id.slice(7)}.json` }, config);
  pack.entry(
    { name: "manifest.json" },
    JSON.stringify([
      { Config: `${img.Id.slice(7)}.json`, RepoTags: ["legacy:1"], Layers: ["aaa/layer.tar"] },
    ]),
  );
  pack.finalize();
  await out;
  const fresh = await ImageStore.open(join(tmp, "c"));
  try {
    const loaded = await loadImages(fresh, createReadStream(legacy));
    assert.deepEqual(loaded, [{ id: img.Id, names: ["legacy:1"] }]);
    const again = await fresh.inspect("legacy:1");
    assert.equal(again.Layers[0]?.mediaType, "application/vnd.oci.image.layer.v1.tar");
    assert.deepEqual(again.RootFS, img.RootFS);
  } finally {
    fresh.close();
  }
});

test("a config not named by its digest (cfg.json, as manifest.json's Config path says) loads", async () => {
  const files = await readTar(archive);
  const img = await store.inspect("busybox:local");
  const layerPath = `blobs/sha256/${img.RootFS.Layers[0]?.slice(7)}`;
  const renamed = join(tmp, "cfg.tar");
  const pack = tar.pack();
  const out = pipeline(pack, createWriteStream(renamed));
  pack.entry({ name: "cfg.json" }, files.get(`blobs/sha256/${img.Id.slice(7)}`) as Buffer);
  pack.entry({ name: "layers/base.tgz" }, files.get(layerPath) as Buffer);
  pack.entry({ name: "README" }, "not part of any image");
  pack.entry(
    { name: "manifest.json" },
    JSON.stringify([{ Config: "cfg.json", RepoTags: ["cfg:1"], Layers: ["layers/base.tgz"] }]),
  );
  pack.finalize();
  await out;
  const fresh = await ImageStore.open(join(tmp, "cfg"));
  try {
    assert.deepEqual(await loadImages(fresh, createReadStream(renamed)), [{ id: img.Id, names: ["cfg:1"] }]);
    assert.deepEqual((await fresh.inspect("cfg:1")).RootFS, img.RootFS);
    // The stray file was stored only while the load ran.
    const blobs = await readdir(join(tmp, "cfg", "blobs", "sha256"));
    assert.equal(blobs.length, 3, "config, layer and the synthesized manifest");
  } finally {
    fresh.close();
  }
});

test("hostile archives are refused and nothing lands outside the content store", async () => {
  const target = join(tmp, "hostile");
  await mkdir(target);
  const fresh = await ImageStore.open(join(target, "store"));
  try {
    const cases: [string, [string, string | { symlink: string }][], RegExp][] = [
      [
        "dotdot.tar",
        [
          ["blobs/sha256/x", "fine"],
          ["../evil", "pwned"],
        ],
        /escapes/,
      ],
      ["abs.tar", [["/abs", "pwned"]], /absolute path/],
      ["nested.tar", [["blobs/../../evil2", "pwned"]], /escapes/],
      ["link.tar", [["a/layer.tar", { symlink: "../../../etc/passwd" }]], /link escapes/],
      ["nothing.tar", [["hello.txt", "hi"]], /neither manifest.json nor index.json/],
      ["badjson.tar", [["manifest.json", "{"]], /not valid JSON/],
      [
        "missing.tar",
        [["manifest.json", JSON.stringify([{ Config: "x.json", Layers: ["nope/layer.tar"] }])]],
        /lacks/,
      ],
    ];
    for (const [name, entries, message] of cases) {
      const file = join(target, name);
      await writeTar(file, entries);
      await assert.rejects(
        loadImages(fresh, createReadStream(file)),
        (err: unknown) => isCode("invalid_archive")(err) && message.test((err as Error).message),
        name,
      );
    }
    const digestLie = join(target, "lie.tar");
    await writeTar(digestLie, [[`blobs/sha256/${"0".repeat(64)}`, "not that"]]);
    await assert.rejects(loadImages(fresh, createReadStream(digestLie)), isCode("digest_mismatch"));
    assert.deepEqual(
      (await readdir(target)).sort(),
      [...cases.map(([n]) => n), "lie.tar", "store"].sort(),
      "an entry escaped",
    );
    assert.deepEqual(await readdir(join(target, "store", "blobs", "sha256")), [], "failed loads left blobs");
    assert.deepEqual(await readdir(join(target, "store", "ingest")), []);
    await assert.rejects(readFile(join(tmp, "evil")), { code: "ENOENT" });
  } finally {
    fresh.close();
  }
});

test("entries with absurd sizes are refused before anything is written", async () => {
  // A hand-made header claiming a 1 TiB file (tar-stream would otherwise wait for the bytes).
  const header = tar.pack();
  const chunks: Buffer[] = [];
  header.on("data", (c: unknown) => {
    chunks.push(c as Buffer);
  });
  const w = header.entry({ name: `blobs/sha256/${"1".repeat(64)}`, size: 1024 ** 4 });
  w.on("error", () => {});
  const file = join(tmp, "huge.tar");
  await new Promise((r) => setImmediate(r));
  const { writeFile } = await import("node:fs/promises");
  await writeFile(file, Buffer.concat([...chunks, Buffer.alloc(512)]));
  const fresh = await ImageStore.open(join(tmp, "d"));
  try {
    await assert.rejects(
      loadImages(fresh, createReadStream(file)),
      (err: unknown) => isCode("invalid_archive")(err) && /too large/.test((err as Error).message),
    );
  } finally {
    fresh.close();
  }
});
