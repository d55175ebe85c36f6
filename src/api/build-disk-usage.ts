import type { CacheRecord } from "../build/index.js";
import type { ApiDeps } from "./deps.js";
import { ApiError } from "./errors.js";
import { imageLayers, layerAccounting } from "./image-layers.js";
import { sendJSON } from "./respond.js";
import type { Router } from "./router.js";
import { versionAtLeast } from "./version.js";
import { VolumeStore } from "./volume-store.js";

const TYPES = new Set(["container", "image", "volume", "build-cache"]);

/**
 * GET /system/df as dockerd's: images with the size they share with others (by layer chain ID), every
 * layer counted once in LayersSize, volumes with their usage, build cache from BuildKit; `type=`
 * (API ≥ 1.42) limits the work.
 */
export function registerDiskUsageRoute(
  router: Router,
  deps: ApiDeps,
  buildCache: (apiVersion: string, signal: AbortSignal) => Promise<CacheRecord[]>,
): void {
  router.add("GET", "/system/df", async ({ res, query, apiVersion, signal }) => {
    const wanted = versionAtLeast(apiVersion, "1.42") ? query.getAll("type") : [];
    for (const t of wanted) {
      if (!TYPES.has(t)) throw new ApiError("invalid_parameter", `unknown object type: ${t}`);
    }
    const want = (t: string) => wanted.length === 0 || wanted.includes(t);
    let layersSize = 0;
    let images: unknown[] | null = null;
    if (want("image")) {
      images = [];
      const all = await imageLayers(deps.store);
      const accounting = layerAccounting(all);
      // Arca's own containers count here: an image they use is not reclaimable (prune keeps it).
      const users = new Map<string, number>();
      for (const c of deps.runtime.list({ all: true })) users.set(c.imageId, (users.get(c.imageId) ?? 0) + 1);
      layersSize = accounting.layersSize;
      for (const { image: img } of all) {
        const config = await deps.store.readConfig(img.id).catch(() => undefined);
        const labels = (config?.config as { Labels?: Record<string, string> } | undefined)?.Labels ?? {};
        const summary: Record<string, unknown> = {
          Id: img.id,
          ParentId: "",
          RepoTags: img.repoTags,
          RepoDigests: img.repoDigests,
          Created: img.created ? Math.floor(Date.parse(img.created) / 1000) : 0,
          Size: img.size,
          SharedSize: accounting.sharedSize.get(img.id) ?? 0,
          Labels: labels,
          Containers: users.get(img.id) ?? 0,
        };
        if (!versionAtLeast(apiVersion, "1.44")) summary.VirtualSize = img.size;
        images.push(summary);
      }
    }
    sendJSON(res, 200, {
      LayersSize: layersSize,
      Images: images,
      Containers: want("container") ? [] : null,
      Volumes: want("volume") ? await volumeUsage(deps) : null,
      BuildCache: want("build-cache") ? await buildCache(apiVersion, signal) : null,
    });
  });
}

/** Volumes as df lists them: each with its size and how many containers mount it. */
async function volumeUsage(deps: ApiDeps): Promise<unknown[]> {
  const store = new VolumeStore(deps);
  const users = store.users();
  const out: unknown[] = [];
  for (const name of await store.names()) {
    const v = await store.inspect(name);
    if (!v) continue;
    out.push({ ...v, UsageData: { Size: await store.size(name), RefCount: users.get(name)?.length ?? 0 } });
  }
  return out;
}
