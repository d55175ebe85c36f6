import type { Transform } from "node:stream";
import { createGunzip } from "node:zlib";
import { hashingTransform, OffloadedSha256 } from "../util/index.js";
import { type Digest, digestOf, finishDigest, parseDigest } from "./digest.js";
import { ImageError } from "./errors.js";
import type { ImageStore } from "./image-store.js";
import type { Descriptor, ImageManifest } from "./manifest.js";
import { isUncompressedLayer, MediaTypes } from "./media-types.js";

/** One layer as `docker save` writes it: the plain tar, named by its diffID. */
export interface SavedLayer {
  /** The diffID: what the archive names the layer by. */
  digest: Digest;
  /** Bytes of the plain tar. */
  size: number;
  /** The blob in the store (gzip or plain). */
  stored: Digest;
  gzip: boolean;
}

/** What an image looks like in a save archive: its layers and the manifest that names them. */
export interface SavedForm {
  layers: SavedLayer[];
  manifest: { digest: Digest; bytes: Buffer };
}

/**
 * The form dockerd's save gives every image: plain layer tars named by their
 * diffIDs and a manifest that lists exactly those (OCI media types, no
 * annotations), so an image saves to the same bytes whether it was built
 * here (uncompressed layers) or pulled (gzip layers) — a push and pull round
 * trip saves identically. Undefined when a layer cannot be decompressed here
 * (zstd: Node 20's zlib has none), in which case the stored form is saved.
 */
export async function savedForm(
  store: ImageStore,
  id: Digest,
  manifest: ImageManifest,
): Promise<SavedForm | undefined> {
  const config = JSON.parse((await store.content.readSmall(id)).toString("utf8")) as {
    rootfs?: { diff_ids?: string[] };
  };
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== manifest.layers.length) return undefined;
  const layers: SavedLayer[] = [];
  for (const [i, l] of manifest.layers.entries()) {
    const saved = await savedLayer(store, l, parseDigest(diffIds[i] ?? ""));
    if (!saved) return undefined;
    layers.push(saved);
  }
  const doc = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociManifest,
    config: { mediaType: MediaTypes.ociConfig, digest: id, size: (await statSize(store, id)) ?? 0 },
    layers: layers.map((l) => ({ mediaType: MediaTypes.ociLayer, digest: l.digest, size: l.size })),
  };
  const bytes = Buffer.from(JSON.stringify(doc));
  return { layers, manifest: { digest: digestOf(bytes), bytes } };
}

async function savedLayer(store: ImageStore, l: Descriptor, diffId: Digest): Promise<SavedLayer | undefined> {
  const size = await statSize(store, l.digest);
  if (size === undefined) throw new ImageError("blob_not_found", `blob ${l.digest} not found`);
  if (isUncompressedLayer(l.mediaType)) return { digest: diffId, size, stored: l.digest, gzip: false };
  if (!(await isGzip(store, l.digest))) return undefined;
  // The gzip trailer holds the size modulo 4 GiB; the stream check below catches a wrapped one.
  return {
    digest: diffId,
    size: await store.content.uncompressedSize(l.digest),
    stored: l.digest,
    gzip: true,
  };
}

async function statSize(store: ImageStore, digest: Digest): Promise<number | undefined> {
  return (await store.content.stat(digest))?.size;
}

async function isGzip(store: ImageStore, digest: Digest): Promise<boolean> {
  for await (const chunk of store.content.createReadStream(digest, { start: 0, end: 1 })) {
    const b = chunk as Buffer;
    return b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;
  }
  return false;
}

/**
 * The stages that turn a stored layer into the plain tar the archive names:
 * gunzip when stored compressed, then a check that the bytes are the layer's
 * diffID and size (an archive that lies about a layer must not be finished).
 */
export function plainLayerStages(layer: SavedLayer): Transform[] {
  // A plain blob is content addressed by that very digest: the store checked it on the way in.
  if (!layer.gzip && layer.stored === layer.digest) return [];
  // Hashed on the worker thread while the gunzip (libuv's pool) and the archive writer run.
  const hash = new OffloadedSha256();
  let seen = 0;
  const check = hashingTransform(hash, {
    check: (chunk) => {
      seen += chunk.length;
      return seen > layer.size ? mismatch(layer, `more than ${layer.size} bytes`) : undefined;
    },
    atEnd: async () => {
      if (seen !== layer.size) return mismatch(layer, `${seen} bytes, not ${layer.size}`);
      const got = await finishDigest(hash);
      return got === layer.digest ? undefined : mismatch(layer, `digest ${got}`);
    },
  });
  // The hash is this stage's alone: a stopped save gives its memory back.
  check.once("close", () => hash.dispose());
  return layer.gzip ? [createGunzip(), check] : [check];
}

function mismatch(layer: SavedLayer, what: string): ImageError {
  return new ImageError(
    "invalid_manifest",
    `layer ${layer.stored} does not unpack to its diffID ${layer.digest} (${what}); the save was stopped`,
  );
}
