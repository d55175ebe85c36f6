import { type ImageConfig, importRootfs, loadImages, saveImages } from "../images/index.js";
import { errorMessage } from "../util/index.js";
import type { ApiDeps } from "./deps.js";
import { ApiError } from "./errors.js";
import { applyChanges } from "./image-changes.js";
import { deleteImage, repoTagReference } from "./image-delete.js";
import { globToRegExp, labelsMatch, parseTimeFilter, referenceMatches } from "./image-filters.js";
import { PRUNE_FILTERS, pruneImages } from "./image-prune.js";
import { historyJSON, inspectJSON, labelsOf, summaryJSON, unixSeconds } from "./image-views.js";
import { boolFilter, boolValue, parseFilters } from "./query-params.js";
import { pullImage, pushImage } from "./registry-routes.js";
import { sendJSON, startJSONStream } from "./respond.js";
import type { RequestContext, Router } from "./router.js";
import { versionAtLeast } from "./version.js";

const LIST_FILTERS = ["before", "dangling", "label", "reference", "since", "until"] as const;

/** The /images endpoints: list, inspect, history, tag, remove, save, load, import/pull, push, prune. */
export function registerImageRoutes(router: Router, deps: ApiDeps): void {
  const { store, runtime } = deps;

  router.add("GET", "/images/json", (ctx) => listImages(deps, ctx));

  router.add("GET", "/images/get", (ctx) => exportImages(deps, ctx, ctx.query.getAll("names")));

  router.add("POST", "/images/load", async ({ req, res, signal }) => {
    // `quiet` only hides dockerd's progress bars; Arca prints none either way.
    let loaded: Awaited<ReturnType<typeof loadImages>>;
    try {
      loaded = await loadImages(store, req, signal);
    } catch (err) {
      // The body may be only partly read: do not reuse this connection.
      res.setHeader("Connection", "close");
      throw err;
    }
    const send = startJSONStream(res);
    for (const img of loaded) {
      if (img.names.length === 0) send({ stream: `Loaded image ID: ${img.id}\n` });
      for (const n of img.names) send({ stream: `Loaded image: ${n}\n` });
    }
    res.end();
  });

  router.add("POST", "/images/create", (ctx) =>
    ctx.query.get("fromImage") ? pullImage(deps, ctx) : importImage(deps, ctx),
  );

  router.add("POST", "/images/prune", async ({ res, query, signal }) => {
    const report = await pruneImages(
      store,
      runtime,
      parseFilters(query.get("filters"), PRUNE_FILTERS),
      signal,
    );
    deps.events.emit("image", "prune", "", { reclaimed: String(report.SpaceReclaimed) });
    sendJSON(res, 200, report);
  });

  router.add("GET", "/images/{name*}/json", async ({ res, params, apiVersion }) => {
    sendJSON(res, 200, await inspectJSON(store, params.name as string, apiVersion));
  });

  router.add("GET", "/images/{name*}/history", async ({ res, params }) => {
    sendJSON(res, 200, await historyJSON(store, params.name as string));
  });

  router.add("GET", "/images/{name*}/get", (ctx) => exportImages(deps, ctx, [ctx.params.name as string]));

  router.add("POST", "/images/{name*}/tag", ({ res, params, query }) => {
    const repo = query.get("repo") ?? "";
    if (!repo) throw new ApiError("invalid_parameter", "repository name must be specified");
    const target = repoTagReference(repo, query.get("tag") ?? "") as string;
    if (familiarRepo(target) === "sha256") {
      throw new ApiError(
        "invalid_parameter",
        "refusing to create an ambiguous tag using digest algorithm as name",
      );
    }
    const source = params.name as string;
    try {
      store.resolve(source);
    } catch (err) {
      // dockerd answers 404 for any source it cannot find, even a malformed one.
      throw new ApiError("not_found", errorMessage(err), { cause: err });
    }
    store.tag(source, target);
    res.writeHead(201, { "Content-Length": 0 });
    res.end();
  });

  router.add("POST", "/images/{name*}/push", (ctx) => pushImage(deps, ctx));

  router.add("DELETE", "/images/{name*}", async ({ res, params, query }) => {
    const name = params.name as string;
    if (name.trim() === "") throw new ApiError("invalid_parameter", "image name cannot be blank");
    // noprune is accepted; Arca keeps no parent chain, so there is nothing more to prune.
    sendJSON(res, 200, await deleteImage(store, runtime, name, { force: boolValue(query, "force") }));
  });
}

async function listImages(deps: ApiDeps, { res, query, apiVersion }: RequestContext): Promise<void> {
  const { store } = deps;
  const filters = parseFilters(query.get("filters"), LIST_FILTERS);
  const legacy = query.get("filter");
  if (!versionAtLeast(apiVersion, "1.25") && legacy && !filters.has("reference"))
    filters.set("reference", [legacy]);
  const dangling = boolFilter(filters, "dangling");
  const patterns = filters.get("reference")?.map(globToRegExp);
  const createdOf = (ref: string) => unixSeconds(store.resolve(ref).image.created) * 1000;
  const before = filters.get("before")?.map(createdOf);
  const since = filters.get("since")?.map(createdOf);
  const until = filters.get("until")?.map((v) => parseTimeFilter(v));
  const sharedSizes = versionAtLeast(apiVersion, "1.42") && boolValue(query, "shared-size");

  const containers = new Map<string, number>();
  for (const c of deps.runtime.list({ all: true }))
    containers.set(c.imageId, (containers.get(c.imageId) ?? 0) + 1);
  const images = store.list();
  const layerUse = sharedSizes ? await layerUsage(deps, images) : undefined;

  const out: Record<string, unknown>[] = [];
  for (const img of images) {
    let { repoTags, repoDigests } = img;
    if (dangling === true && repoTags.length > 0) continue;
    if (dangling === false && repoTags.length === 0) continue;
    if (patterns) {
      repoTags = repoTags.filter((t) => referenceMatches(patterns, t));
      repoDigests = repoDigests.filter((d) => referenceMatches(patterns, d));
      if (repoTags.length === 0 && repoDigests.length === 0) continue;
    }
    const createdMs = unixSeconds(img.created) * 1000;
    if (before?.some((t) => createdMs >= t) || since?.some((t) => createdMs <= t)) continue;
    if (until?.some((t) => createdMs > t)) continue;
    let config: ImageConfig = {};
    try {
      config = await store.readConfig(img.id);
    } catch {
      // Removed while listing: skip it, as dockerd does for vanished layers.
      continue;
    }
    if (!labelsMatch(filters.get("label"), labelsOf(config))) continue;
    const row = store.getManifest(img.manifestDigest);
    let shared = -1;
    if (layerUse) {
      shared = 0;
      for (const l of layerUse.byImage.get(img.id) ?? [])
        if ((layerUse.count.get(l.digest) ?? 0) > 1) shared += l.size;
    }
    out.push(
      summaryJSON(img, config, {
        apiVersion,
        repoTags,
        repoDigests,
        containers: containers.get(img.id) ?? 0,
        sharedSize: shared,
        descriptor: { mediaType: row?.mediaType ?? "", digest: img.manifestDigest, size: row?.size ?? 0 },
      }),
    );
  }
  out.sort((a, b) => (b.Created as number) - (a.Created as number));
  sendJSON(res, 200, out);
}

/** Layers per image and how many images use each, for SharedSize. */
async function layerUsage(deps: ApiDeps, images: ReturnType<ApiDeps["store"]["list"]>) {
  const byImage = new Map<string, { digest: string; size: number }[]>();
  const count = new Map<string, number>();
  for (const img of images) {
    const m = await deps.store.readManifest(img.manifestDigest).catch(() => undefined);
    const layers = m?.kind === "manifest" ? m.layers : [];
    byImage.set(img.id, layers);
    for (const l of new Set(layers.map((x) => x.digest))) count.set(l, (count.get(l) ?? 0) + 1);
  }
  return { byImage, count };
}

async function exportImages(deps: ApiDeps, { res, signal }: RequestContext, names: string[]): Promise<void> {
  // Resolve first so a missing image is a 404 rather than a broken tarball.
  for (const n of names) deps.store.resolve(n);
  res.writeHead(200, { "Content-Type": "application/x-tar" });
  await saveImages(deps.store, names, res, signal);
}

async function importImage(deps: ApiDeps, { req, res, query, signal }: RequestContext): Promise<void> {
  const src = query.get("fromSrc") ?? "";
  if (src !== "-") {
    throw new ApiError(
      "unsupported",
      `cannot import from ${JSON.stringify(src)}: Arca has no network access; send the tarball in the request body (fromSrc=-)`,
    );
  }
  const name = repoTagReference(query.get("repo") ?? "", query.get("tag") ?? "");
  const config = applyChanges(query.getAll("changes"));
  const message = query.get("message") ?? "";
  let result: Awaited<ReturnType<typeof importRootfs>>;
  try {
    result = await importRootfs(deps.store, req, {
      name,
      source: src,
      comment: message || undefined,
      config,
      signal,
    });
  } catch (err) {
    res.setHeader("Connection", "close");
    throw err;
  }
  const send = startJSONStream(res);
  send({ status: result.id });
  res.end();
}

function familiarRepo(familiar: string): string {
  return familiar.replace(/@.*$/, "").replace(/:[^/:]*$/, "");
}
