import { createHash } from "node:crypto";
import type { Digest, ImageStore, ImageSummary } from "../images/index.js";

export interface ImageLayers {
  image: ImageSummary;
  /** Each layer's chain ID (dockerd's layer identity: the layer and everything under it) and unpacked size. */
  layers: { chainId: string; size: number }[];
}

/**
 * Chain IDs as the image spec defines them: the first layer's diff ID, then
 * sha256(parent chain ID + " " + diff ID). Two images share a layer when they
 * share its chain ID, i.e. the same layer on the same layers below.
 */
export function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out.at(-1);
    out.push(prev === undefined ? d : `sha256:${createHash("sha256").update(`${prev} ${d}`).digest("hex")}`);
  }
  return out;
}

/** Every image's layers, identified by chain ID, with the unpacked sizes `docker images` adds up. */
export async function imageLayers(store: ImageStore, images = store.list()): Promise<ImageLayers[]> {
  const out: ImageLayers[] = [];
  for (const image of images)
    out.push({ image, layers: await layersOf(store, image.id, image.manifestDigest) });
  return out;
}

async function layersOf(
  store: ImageStore,
  id: Digest,
  manifestDigest: Digest,
): Promise<ImageLayers["layers"]> {
  const manifest = await store.readManifest(manifestDigest).catch(() => undefined);
  if (manifest?.kind !== "manifest") return [];
  const sizes = await store.unpackedLayerSizes(manifest.layers);
  const config = await store.readConfig(id).catch(() => undefined);
  const diffIds = config?.rootfs?.diff_ids ?? [];
  // Without diff IDs (never for a valid image), the compressed digests still identify the layers.
  const ids = chainIds(
    diffIds.length === manifest.layers.length ? diffIds : manifest.layers.map((l) => l.digest),
  );
  return ids.map((chainId, i) => ({ chainId, size: sizes[i] ?? 0 }));
}

/**
 * dockerd's disk-usage accounting: an image's SharedSize is what its layers that other images use too
 * take; LayersSize counts every distinct layer once.
 */
export function layerAccounting(all: ImageLayers[]): {
  sharedSize: Map<Digest, number>;
  layersSize: number;
} {
  const users = new Map<string, { size: number; images: Set<Digest> }>();
  for (const { image, layers } of all)
    for (const l of layers) {
      const u = users.get(l.chainId) ?? { size: l.size, images: new Set<Digest>() };
      u.images.add(image.id);
      users.set(l.chainId, u);
    }
  const sharedSize = new Map<Digest, number>();
  for (const { image, layers } of all) {
    let shared = 0;
    for (const chainId of new Set(layers.map((l) => l.chainId))) {
      const u = users.get(chainId);
      if (u && u.images.size > 1) shared += u.size;
    }
    sharedSize.set(image.id, shared);
  }
  let layersSize = 0;
  for (const u of users.values()) layersSize += u.size;
  return { sharedSize, layersSize };
}
