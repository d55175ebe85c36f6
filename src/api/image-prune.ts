import type { Digest, ImageStore } from "../images/index.js";
import type { Runtime } from "../runtime/index.js";
import { type DeleteRecord, purgeImage } from "./image-delete.js";
import { labelsExclude, labelsMatch, untilOf } from "./image-filters.js";
import { labelsOf } from "./image-views.js";
import { boolFilter, type Filters } from "./query-params.js";

export const PRUNE_FILTERS = ["dangling", "label", "label!", "until"] as const;

/**
 * `POST /images/prune` as dockerd's ImagesPrune: dangling images only unless `dangling=false` (then every
 * image no container uses), narrowed by `until` and labels. SpaceReclaimed counts the layers really
 * freed, unpacked, as dockerd does (the measure `docker images` shows, not the compressed blobs).
 */
export async function pruneImages(
  store: ImageStore,
  runtime: Runtime,
  filters: Filters,
  signal: AbortSignal,
): Promise<{ ImagesDeleted: DeleteRecord[] | null; SpaceReclaimed: number }> {
  const danglingOnly = boolFilter(filters, "dangling") ?? true;
  const until = untilOf(filters);
  const used = new Set(runtime.list({ all: true }).map((c) => c.imageId));
  const deleted: DeleteRecord[] = [];
  let reclaimed = 0;
  for (const img of store.list()) {
    signal.throwIfAborted();
    if (used.has(img.id) || (danglingOnly && img.repoTags.length > 0)) continue;
    if (until !== undefined && (img.created ? Date.parse(img.created) : 0) >= until) continue;
    if (filters.has("label") || filters.has("label!")) {
      const labels = labelsOf(await store.readConfig(img.id));
      if (!labelsMatch(filters.get("label"), labels) || !labelsExclude(filters.get("label!"), labels))
        continue;
    }
    const blobs = await blobSizes(store, img.manifestDigest);
    deleted.push(...(await purgeImage(store, img.id)));
    for (const [digest, size] of blobs) if (!(await store.content.has(digest))) reclaimed += size;
  }
  return { ImagesDeleted: deleted.length > 0 ? deleted : null, SpaceReclaimed: reclaimed };
}

/** Each layer blob's unpacked size (what `docker images` adds up), read before the blobs may go. */
async function blobSizes(store: ImageStore, manifestDigest: Digest): Promise<Map<Digest, number>> {
  const sizes = new Map<Digest, number>();
  const manifest = await store.readManifest(manifestDigest);
  if (manifest.kind !== "manifest") return sizes;
  const unpacked = await store.unpackedLayerSizes(manifest.layers);
  manifest.layers.forEach((l, i) => {
    sizes.set(l.digest, unpacked[i] ?? l.size);
  });
  return sizes;
}
