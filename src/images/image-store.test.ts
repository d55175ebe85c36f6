import assert from "node:assert/strict";
import { createReadStream } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { after, before, test } from "node:test";
import { createGunzip } from "node:zlib";
import tar from "tar-stream";
import { writeBusyboxRootfs } from "../../test/support/busybox-rootfs.js";
import { ImageError } from "./errors.js";
import { type ImageEvent, ImageStore } from "./image-store.js";
import { importRootfs } from "./import-rootfs.js";
import { hostPlatform } from "./platform.js";

let tmp: string;
let rootfs: string;
let store: ImageStore;
const events: ImageEvent[] = [];
const isCode = (code: string) => (err: unknown) => err instanceof ImageError && err.code === code;

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), "arca-is-"));
  rootfs = join(tmp, "rootfs.tar");
  await writeBusyboxRootfs(rootfs);
  store = await ImageStore.open(join(tmp, "images"), { onEvent: (e) => events.push(e) });
});
after(async () => {
  store.close();
  await rm(tmp, { recursive: true, force: true });
});

async function tarNames(stream: Readable): Promise<Map<string, { type: string; linkname?: string | null }>> {
  const out = new Map<string, { type: string; linkname?: string | null }>();
  const extract = tar.extract();
  const done = (async () => {
    for await (const e of extract) {
      out.set(e.header.name, { type: e.header.type ?? "file", linkname: e.header.linkname });
      e.resume();
    }
  })();
  await Promise.all([pipeline(stream, createGunzip(), extract), done]);
  return out;
}

test("import: one gzip layer, OCI config with host arch, diff_ids and history; name recorded", async () => {
  const r = await importRootfs(store, createReadStream(rootfs), { name: "busybox:local" });
  assert.match(r.id, /^sha256:[a-f0-9]{64}$/);
  assert.equal(r.name, "docker.io/library/busybox:local");
  const img = await store.inspect("busybox:local");
  assert.equal(img.Id, r.id);
  assert.deepEqual(img.RepoTags, ["busybox:local"]);
  assert.equal(img.Architecture, hostPlatform().architecture);
  assert.equal(img.Os, "linux");
  assert.equal(img.Layers.length, 1);
  assert.equal(img.Layers[0]?.mediaType, "application/vnd.oci.image.layer.v1.tar+gzip");
  assert.equal(img.ImageConfig.history?.[0]?.comment, "Imported from -");

  // The diff_id is the digest of the uncompressed layer, which is the rootfs tar itself.
  const { createHash } = await import("node:crypto");
  const h = createHash("sha256");
  for await (const c of createReadStream(rootfs)) h.update(c);
  assert.deepEqual(img.RootFS.Layers, [`sha256:${h.digest("hex")}`]);

  const layer = img.Layers[0];
  assert.ok(layer);
  const files = await tarNames(store.content.createReadStream(layer.digest));
  assert.equal(files.get("bin/busybox")?.type, "file");
  assert.deepEqual(files.get("bin/sh"), { type: "symlink", linkname: "busybox" });
  assert.ok(
    events.some((e) => e.type === "import" && e.id === r.id && e.name === "docker.io/library/busybox:local"),
  );
});

test("import of a gzip rootfs yields the same diff_id", async () => {
  const { createGzip } = await import("node:zlib");
  const plain = await store.inspect("busybox:local");
  const r = await importRootfs(store, createReadStream(rootfs).pipe(createGzip()), { name: "busybox:gz" });
  const img = await store.inspect(r.id);
  assert.deepEqual(img.RootFS.Layers, plain.RootFS.Layers);
});

test("resolve by full name, short name, full id, id prefix; ambiguity and absence", async () => {
  const id = store.resolve("busybox:local").image.id;
  assert.equal(store.resolve("docker.io/library/busybox:local").image.id, id);
  assert.equal(store.resolve(id).image.id, id);
  assert.equal(store.resolve(id.slice(7, 19)).image.id, id);
  assert.equal(store.resolve(`sha256:${id.slice(7, 15)}`).image.id, id);
  assert.throws(() => store.resolve("nosuch:tag"), isCode("image_not_found"));
  assert.throws(() => store.resolve("Bad:Name"), isCode("invalid_reference"));
  const m = store.resolve("busybox:local").digest;
  assert.equal(store.resolve(`busybox@${m}`).image.id, id);
});

test("tag, list, untag and remove like docker", async () => {
  const id = store.resolve("busybox:local").image.id;
  store.tag("busybox:local", "ghcr.io/x/y:2");
  store.tag(id, "other");
  const summary = store.list().find((i) => i.id === id);
  assert.deepEqual(summary?.repoTags.sort(), ["busybox:local", "ghcr.io/x/y:2", "other:latest"]);
  assert.throws(() => store.tag("busybox:local", `x@sha256:${"a".repeat(64)}`), isCode("invalid_reference"));

  await assert.rejects(store.remove(id), isCode("image_conflict"));
  const r1 = await store.remove("other");
  assert.deepEqual(r1, { untagged: ["other:latest"], deleted: [] });
  store.untag("ghcr.io/x/y:2");
  assert.throws(() => store.untag("ghcr.io/x/y:2"), isCode("image_not_found"));

  // The gz import is another image (its created time differs); removing its last name deletes it.
  const gz = store.resolve("busybox:gz").image;
  const layer = (await store.inspect("busybox:gz")).Layers[0];
  const r2 = await store.remove("busybox:gz");
  assert.deepEqual(r2, { untagged: ["busybox:gz"], deleted: [gz.id] });
  assert.throws(() => store.resolve(gz.id), isCode("image_not_found"));
  assert.equal(await store.content.has(gz.id), false, "config blob not collected");
  // Both imports produce byte-identical gzip layers, so the shared layer must survive.
  if (layer) assert.equal(await store.content.has(layer.digest), true);
  assert.ok(events.some((e) => e.type === "delete" && e.id === gz.id));
});

test("putManifest refuses manifests with missing blobs; indexes register their host platform", async () => {
  const base = await store.inspect("busybox:local");
  const manifest = Buffer.from(JSON.stringify(base.Manifest));
  const missing = JSON.parse(manifest.toString());
  missing.layers[0].digest = `sha256:${"0".repeat(64)}`;
  await assert.rejects(
    store.putManifest(Buffer.from(JSON.stringify(missing)), "application/vnd.oci.image.manifest.v1+json"),
    isCode("blob_not_found"),
  );
  await assert.rejects(store.putManifest(Buffer.from("{"), undefined), isCode("invalid_manifest"));
  const p = hostPlatform();
  const index = {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [
      {
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        digest: base.ManifestDigest,
        size: manifest.length,
        platform: { os: p.os, architecture: p.architecture },
      },
    ],
  };
  const put = await store.putManifest(Buffer.from(JSON.stringify(index)), undefined);
  assert.equal(put.imageId, base.Id);
  store.setName("multi:1", put.digest);
  assert.equal(store.resolve("multi:1").image.id, base.Id);
  assert.equal(store.resolve("multi:1").digest, put.digest);
  assert.deepEqual((await store.inspect("multi:1")).RepoTags.sort(), ["busybox:local", "multi:1"]);
  await store.remove("multi:1");
  assert.equal(store.resolve("busybox:local").image.id, base.Id);
});

test("a second ImageStore on the same root (another process) sees the same data", async () => {
  const other = await ImageStore.open(join(tmp, "images"));
  try {
    assert.equal(other.resolve("busybox:local").image.id, store.resolve("busybox:local").image.id);
    other.tag("busybox:local", "shared:1");
    assert.equal(store.resolve("shared:1").image.id, other.resolve("busybox:local").image.id);
  } finally {
    other.close();
  }
  assert.deepEqual(await readdir(join(tmp, "images", "ingest")), []);
});

test("inputs are streams: importing from a Readable of chunks works", async () => {
  const chunks: Buffer[] = [];
  for await (const c of createReadStream(rootfs, { highWaterMark: 4096 })) chunks.push(c as Buffer);
  const r = await importRootfs(store, Readable.from(chunks), { name: "chunked:1" });
  assert.deepEqual(
    (await store.inspect(r.id)).RootFS.Layers,
    (await store.inspect("busybox:local")).RootFS.Layers,
  );
});
