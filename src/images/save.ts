import type { Readable, Transform, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { throwIfAborted } from "../util/index.js";
import { type Digest, digestHex } from "./digest.js";
import { ImageError } from "./errors.js";
import type { ImageStore } from "./image-store.js";
import type { Descriptor, ImageManifest } from "./manifest.js";
import { MediaTypes } from "./media-types.js";
import { familiarName, familiarRepository, parseReference } from "./reference.js";
import { plainLayerStages, type SavedForm, savedForm } from "./save-layers.js";

interface SavedImage {
  id: Digest;
  manifest: Descriptor;
  layers: Descriptor[];
  /** Plain layers and their manifest, when every layer has one (see savedForm). */
  form?: SavedForm;
  /** Full names. */
  names: string[];
}

/** Fixed mtime so saving the same images twice yields the same bytes. */
const EPOCH = new Date(0);

/**
 * Writes a tarball that is both an OCI image layout and a `docker save` archive (manifest.json and
 * repositories), so stock `docker load` (20.10+) and OCI tools read it. Blobs stream from disk into the tar.
 */
export async function saveImages(
  store: ImageStore,
  names: string[],
  out: Writable,
  signal?: AbortSignal,
): Promise<void> {
  const images = new Map<Digest, SavedImage>();
  for (const n of names) {
    const resolved = store.resolve(n);
    let saved = images.get(resolved.image.id);
    if (!saved) {
      const manifest = (await store.readManifest(resolved.image.manifestDigest)) as ImageManifest;
      const row = store.getManifest(resolved.image.manifestDigest);
      saved = {
        id: resolved.image.id,
        manifest: {
          mediaType: row?.mediaType ?? manifest.mediaType,
          digest: resolved.image.manifestDigest,
          size: row?.size ?? 0,
        },
        layers: manifest.layers,
        names: [],
      };
      const form = await savedForm(store, saved.id, manifest);
      if (form) {
        saved.form = form;
        saved.manifest = {
          mediaType: MediaTypes.ociManifest,
          digest: form.manifest.digest,
          size: form.manifest.bytes.length,
        };
        saved.layers = form.layers.map((l) => ({
          mediaType: MediaTypes.ociLayer,
          digest: l.digest,
          size: l.size,
        }));
      }
      images.set(saved.id, saved);
    }
    if (resolved.name && !saved.names.includes(resolved.name)) saved.names.push(resolved.name);
  }

  const pack = tar.pack();
  const piping = pipeline(pack, out, { signal });
  try {
    await writeEntry(pack, "oci-layout", JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    await writeDir(pack, "blobs/");
    await writeDir(pack, "blobs/sha256/");
    const written = new Set<Digest>();
    const once = (digest: Digest) => {
      if (written.has(digest)) return false;
      throwIfAborted(signal);
      written.add(digest);
      return true;
    };
    for (const img of images.values()) {
      if (!img.form) {
        for (const digest of [img.id, img.manifest.digest, ...img.layers.map((l) => l.digest)]) {
          if (once(digest)) await writeBlob(store, pack, digest, signal);
        }
        continue;
      }
      if (once(img.id)) await writeBlob(store, pack, img.id, signal);
      const m = img.form.manifest;
      if (once(m.digest)) await writeEntry(pack, `blobs/sha256/${digestHex(m.digest)}`, m.bytes, 0o444);
      for (const layer of img.form.layers) {
        if (!once(layer.digest)) continue;
        const stages = plainLayerStages(layer);
        const source = store.content.createReadStream(layer.stored);
        await writeStream(pack, layer.digest, layer.size, [source, ...stages], signal);
      }
    }
    const index = {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [...images.values()].flatMap((img) =>
        img.names.length === 0
          ? [img.manifest]
          : img.names.map((name) => ({
              ...img.manifest,
              annotations: {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": parseReference(name).tag ?? "latest",
              },
            })),
      ),
    };
    await writeEntry(pack, "index.json", JSON.stringify(index));
    const manifestJson = [...images.values()].map((img) => ({
      Config: `blobs/sha256/${digestHex(img.id)}`,
      RepoTags: img.names.map(familiarName),
      Layers: img.layers.map((l) => `blobs/sha256/${digestHex(l.digest)}`),
    }));
    await writeEntry(pack, "manifest.json", JSON.stringify(manifestJson));
    const repositories: Record<string, Record<string, string>> = {};
    for (const img of images.values()) {
      for (const name of img.names) {
        const ref = parseReference(name);
        const repo = familiarRepository(ref);
        repositories[repo] = { ...repositories[repo], [ref.tag ?? "latest"]: digestHex(img.id) };
      }
    }
    await writeEntry(pack, "repositories", JSON.stringify(repositories));
    pack.finalize();
  } catch (err) {
    pack.destroy(err as Error);
    await piping.catch(() => {});
    throw err;
  }
  await piping;
}

async function writeBlob(
  store: ImageStore,
  pack: tar.Pack,
  digest: Digest,
  signal?: AbortSignal,
): Promise<void> {
  const st = await store.content.stat(digest);
  if (!st) throw new ImageError("blob_not_found", `blob ${digest} not found`);
  await writeStream(pack, digest, st.size, [store.content.createReadStream(digest)], signal);
}

/** Streams `blobs/sha256/<digest>` of `size` bytes into the archive through the given stages. */
async function writeStream(
  pack: tar.Pack,
  digest: Digest,
  size: number,
  stages: [Readable, ...Transform[]],
  signal?: AbortSignal,
): Promise<void> {
  const entry = pack.entry({ name: `blobs/sha256/${digestHex(digest)}`, size, mode: 0o444, mtime: EPOCH });
  await pipeline([...stages, entry], { signal });
}

function writeEntry(pack: tar.Pack, name: string, content: string | Buffer, mode = 0o644): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry({ name, mode, mtime: EPOCH }, content, (err) => (err ? reject(err) : resolve()));
  });
}

function writeDir(pack: tar.Pack, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry({ name, type: "directory", mode: 0o755, mtime: EPOCH }, (err) =>
      err ? reject(err) : resolve(),
    );
  });
}
