import type { CacheRecord } from "../build/index.js";
import type { ApiDeps } from "./deps.js";
import { ApiError } from "./errors.js";
import { sendJSON } from "./respond.js";
import type { Router } from "./router.js";
import { versionAtLeast } from "./version.js";

const TYPES = new Set(["container", "image", "volume", "build-cache"]);

/** GET /system/df: images from the store, build cache from BuildKit; `type=` (API ≥ 1.42) limits the work. */
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
      for (const img of deps.store.list()) {
        layersSize += img.size;
        const config = await deps.store.readConfig(img.id).catch(() => undefined);
        const labels = (config?.config as { Labels?: Record<string, string> } | undefined)?.Labels ?? {};
        const summary: Record<string, unknown> = {
          Id: img.id,
          ParentId: "",
          RepoTags: img.repoTags,
          RepoDigests: img.repoDigests,
          Created: img.created ? Math.floor(Date.parse(img.created) / 1000) : 0,
          Size: img.size,
          SharedSize: 0,
          Labels: labels,
          Containers: 0,
        };
        if (!versionAtLeast(apiVersion, "1.44")) summary.VirtualSize = img.size;
        images.push(summary);
      }
    }
    sendJSON(res, 200, {
      LayersSize: layersSize,
      Images: images,
      Containers: want("container") ? [] : null,
      Volumes: want("volume") ? [] : null,
      BuildCache: want("build-cache") ? await buildCache(apiVersion, signal) : null,
    });
  });
}
