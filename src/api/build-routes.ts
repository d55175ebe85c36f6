import {
  BuildJobs,
  type BuildMemo,
  buildCacheUsage,
  cacheRecord,
  parseBuildParams,
  parsePruneParams,
  pruneBuildCache,
  runImageBuild,
} from "../build/index.js";
import { registerDiskUsageRoute } from "./build-disk-usage.js";
import { leaseForBuild } from "./build-lease.js";
import type { ApiDeps } from "./deps.js";
import { ApiError } from "./errors.js";
import { backendDescription } from "./grpc-pool-calls.js";
import { sendJSON, startJSONStream } from "./respond.js";
import type { Router } from "./router.js";

/** POST /build, /build/prune, /build/cancel and GET /system/df. */
export function registerBuildRoutes(router: Router, deps: ApiDeps, builds: BuildMemo): void {
  const jobs = new BuildJobs();
  const memo = {
    builds,
    images: {
      resolve: (ref: string) => {
        try {
          return deps.store.resolve(ref).digest;
        } catch {
          return undefined;
        }
      },
      hasManifest: (digest: string) => deps.store.getManifest(digest) !== undefined,
      tag: (name: string, digest: string) => deps.store.setName(name, digest as `sha256:${string}`),
    },
  };
  const imageIdFor = (ref: string): string | undefined => {
    try {
      return deps.store.resolve(ref).image.id;
    } catch {
      return undefined;
    }
  };

  router.add("POST", "/build", async ({ req, res, query, apiVersion, signal }) => {
    try {
      const header = req.headers["x-registry-config"];
      const params = parseBuildParams({
        query,
        apiVersion,
        registryConfig: Array.isArray(header) ? header[0] : header,
      });
      await runImageBuild(
        {
          dataRoot: deps.dataRoot,
          lease: (route, s) => leaseForBuild(deps, route, s),
          allowPush: deps.allowPush,
          maxContextSize: deps.maxContextSize,
          egress: deps.egress,
          jobs,
          imageIdFor,
          memo,
        },
        { params, body: req, apiVersion, signal, startOutput: () => startJSONStream(res) },
      );
    } catch (err) {
      // Rejected before the body was read: drain it so the error response reaches the client.
      if (!req.readableEnded) req.resume();
      throw err;
    }
    res.end();
  });

  router.add("POST", "/build/cancel", ({ res, query }) => {
    const id = query.get("id") ?? "";
    if (!id) throw new ApiError("invalid_parameter", "build ID not provided");
    jobs.cancel(id, new ApiError("unavailable", "build canceled by POST /build/cancel"));
    res.writeHead(200, { "Content-Type": "application/json", "Content-Length": 0 });
    res.end();
  });

  router.add("POST", "/build/prune", async ({ res, query, apiVersion, signal }) => {
    const opts = parsePruneParams(query, apiVersion);
    const backends = await deps.pool.everyUp(signal);
    // A prune must make the next build really rebuild; the kept uploads it frees are in its report.
    const released = builds.clear();
    // Every backend of the pool is pruned: the cache is the pool's.
    const report: { CachesDeleted: string[] | null; SpaceReclaimed: number } = {
      CachesDeleted: released.length ? released.map((r) => r.ID) : null,
      SpaceReclaimed: released.reduce((n, r) => n + Number(r.Size), 0),
    };
    for (const b of backends) {
      const r = await pruneBuildCache(b.client, opts, signal);
      if (r.CachesDeleted) report.CachesDeleted = [...(report.CachesDeleted ?? []), ...r.CachesDeleted];
      report.SpaceReclaimed += r.SpaceReclaimed;
    }
    deps.events.emit("builder", "prune", "", { reclaimed: String(report.SpaceReclaimed) });
    sendJSON(res, 200, report);
  });

  registerDiskUsageRoute(router, deps, async (apiVersion, signal) => {
    const backends = await deps.pool.everyUp(signal);
    const each = await Promise.all(
      backends.map(async (b) => {
        const records = await buildCacheUsage(b.client, apiVersion, signal);
        if (backends.length > 1)
          for (const r of records) r.Description = backendDescription(b.backend, r.Description);
        return records;
      }),
    );
    // The daemon's own share of the build cache: the classic uploads it keeps for reuse.
    const kept = builds.contexts?.usage() ?? [];
    return [...each.flat(), ...kept.map((r) => cacheRecord(r, apiVersion))];
  });
}
