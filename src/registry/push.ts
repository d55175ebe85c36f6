import {
  type Descriptor,
  type Digest,
  digestOf,
  formatReference,
  type ImageStore,
  MediaTypes,
  type ParsedManifest,
  type Reference,
} from "../images/index.js";
import type { BlobSources } from "./blob-sources.js";
import { type BlobToPush, uploadBlob } from "./blob-upload.js";
import type { RegistryCredentials } from "./credentials.js";
import { openRepository } from "./endpoint-session.js";
import { RegistryError } from "./errors.js";
import { gzipLayerType, UNCOMPRESSED_LAYERS } from "./media.js";
import { layerProgress, layerStatus, type ProgressSink, shortId, throttle } from "./progress.js";
import type { PushLayerCache } from "./push-layer-cache.js";
import type { RepositoryClient } from "./repository.js";
import type { RegistrySettings } from "./settings.js";
import type { RegistryTransport } from "./transport.js";

/** dockerd's max-concurrent-uploads default. */
const PARALLEL_UPLOADS = 5;

export interface PushRequest {
  /** The local name to push; its domain and path say where. */
  ref: Reference & { tag: string };
  creds: RegistryCredentials;
  progress: ProgressSink;
  signal?: AbortSignal;
}

export interface PushResult {
  tag: string;
  digest: Digest;
  size: number;
}

export interface PushContext {
  store: ImageStore;
  transport: RegistryTransport;
  settings: RegistrySettings;
  sources: BlobSources;
  layers: PushLayerCache;
}

/**
 * docker push of one tag: the layers (uncompressed ones gzip-compressed
 * once, see PushLayerCache), the config, then the manifest (rewritten only
 * when layers were compressed; an index is rewritten to its children's new
 * digests) under the tag. Progress as dockerd's; the digest in the aux.
 */
export async function push(ctx: PushContext, req: PushRequest): Promise<PushResult> {
  const { ref, progress, signal } = req;
  const fullName = formatReference(ref);
  const resolved = ctx.store.resolve(fullName);
  progress({ status: `The push refers to repository [${ref.domain}/${ref.path}]` });
  const { repo } = await openRepository(
    ctx.transport,
    ctx.settings,
    ref.domain,
    ref.path,
    "pull,push",
    req.creds,
    async (r) => {
      await r.auth.ping();
    },
    signal,
  );
  const top = ctx.store.getManifest(resolved.digest);
  let pushed: { bytes: Buffer; mediaType: string };
  if (top?.kind === "index") {
    pushed = await pushIndex(
      ctx,
      repo,
      ref,
      resolved.digest,
      resolved.image.manifestDigest,
      progress,
      signal,
    );
  } else {
    pushed = await pushImageManifest(ctx, repo, ref, resolved.digest, progress, signal, true);
  }
  const digest = await putManifest(repo, ref.tag, pushed.bytes, pushed.mediaType);
  progress({ status: `${ref.tag}: digest: ${digest} size: ${pushed.bytes.length}` });
  progress({ progressDetail: {}, aux: { Tag: ref.tag, Digest: digest, Size: pushed.bytes.length } });
  return { tag: ref.tag, digest, size: pushed.bytes.length };
}

async function putManifest(
  repo: RepositoryClient,
  reference: string,
  bytes: Buffer,
  mediaType: string,
): Promise<Digest> {
  const res = await repo.send("PUT", `manifests/${reference}`, {
    headers: { "content-type": mediaType, "content-length": bytes.length },
    body: bytes,
  });
  res.resume();
  return digestOf(bytes);
}

/**
 * An index: every child that is stored is pushed by digest (the image's
 * own child with progress), the index rewritten to the children's pushed
 * digests. Children missing locally (a single-platform pull of an index)
 * leave only the image's own manifest to push, as dockerd does.
 */
async function pushIndex(
  ctx: PushContext,
  repo: RepositoryClient,
  ref: PushRequest["ref"],
  indexDigest: Digest,
  imageManifest: Digest,
  progress: ProgressSink,
  signal?: AbortSignal,
): Promise<{ bytes: Buffer; mediaType: string }> {
  const row = ctx.store.getManifest(indexDigest);
  const index = (await ctx.store.readManifest(indexDigest)) as ParsedManifest & { kind: "index" };
  const missing = index.manifests.some((m) => !ctx.store.getManifest(m.digest));
  if (missing) return pushImageManifest(ctx, repo, ref, imageManifest, progress, signal, true);
  const doc = JSON.parse((await ctx.store.content.readSmall(indexDigest)).toString("utf8")) as {
    manifests: Descriptor[];
  };
  let changed = false;
  for (const m of doc.manifests) {
    const child = await pushImageManifest(
      ctx,
      repo,
      ref,
      m.digest,
      progress,
      signal,
      m.digest === imageManifest,
    );
    const d = await putManifest(repo, digestOf(child.bytes), child.bytes, child.mediaType);
    if (d !== m.digest) {
      m.digest = d;
      m.size = child.bytes.length;
      changed = true;
    }
  }
  const bytes = changed ? Buffer.from(JSON.stringify(doc)) : await ctx.store.content.readSmall(indexDigest);
  return { bytes, mediaType: row?.mediaType ?? index.mediaType };
}

/** Pushes a manifest's blobs; returns the manifest to PUT (the stored bytes unless layers were compressed). */
async function pushImageManifest(
  ctx: PushContext,
  repo: RepositoryClient,
  ref: PushRequest["ref"],
  manifestDigest: Digest,
  progress: ProgressSink,
  signal: AbortSignal | undefined,
  visible: boolean,
): Promise<{ bytes: Buffer; mediaType: string }> {
  const content = ctx.store.content;
  const row = ctx.store.getManifest(manifestDigest);
  const stored = await content.readSmall(manifestDigest);
  const manifest = await ctx.store.readManifest(manifestDigest);
  if (manifest.kind !== "manifest")
    throw new RegistryError("bad_content", `${manifestDigest} is not an image manifest`);
  const isImage =
    manifest.config.mediaType === MediaTypes.ociConfig ||
    manifest.config.mediaType === MediaTypes.dockerConfig;
  const diffIds = isImage
    ? ((await ctx.store.readConfig(manifest.config.digest)).rootfs?.diff_ids ?? [])
    : [];
  const say: ProgressSink = visible ? progress : () => {};
  const ids = manifest.layers.map((l, i) => shortId(diffIds[i] ?? l.digest));
  for (const id of ids) say(layerStatus(id, "Preparing"));
  for (const id of ids.slice(PARALLEL_UPLOADS)) say(layerStatus(id, "Waiting"));
  const pushedLayers: Descriptor[] = manifest.layers.map((l) => ({ ...l }));
  let next = 0;
  const worker = async () => {
    while (next < manifest.layers.length) {
      const i = next++;
      const layer = manifest.layers[i] as Descriptor;
      const id = ids[i] as string;
      let blob: BlobToPush;
      if (UNCOMPRESSED_LAYERS.has(layer.mediaType)) {
        const c = await ctx.layers.compressed(content, layer.digest, signal);
        blob = { digest: c.digest, size: c.size, open: (s, e) => ctx.layers.open(c, s, e) };
        pushedLayers[i] = {
          ...layer,
          mediaType: gzipLayerType(manifest.mediaType),
          digest: c.digest,
          size: c.size,
        };
      } else {
        blob = {
          digest: layer.digest,
          size: layer.size,
          open: (s, e) =>
            content.createReadStream(layer.digest, { start: s, ...(e === undefined ? {} : { end: e }) }),
        };
      }
      const tick = throttle();
      const outcome = await uploadBlob(
        repo,
        blob,
        await ctx.sources.repositories(blob.digest, ref.domain),
        (n) => {
          if (tick(n === blob.size)) say(layerProgress(id, "Pushing", n, blob.size));
        },
      );
      await ctx.sources.add(blob.digest, ref.domain, ref.path).catch(() => {});
      say(
        layerStatus(
          id,
          outcome.kind === "exists"
            ? "Layer already exists"
            : outcome.kind === "mounted"
              ? `Mounted from ${outcome.from}`
              : "Pushed",
        ),
      );
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL_UPLOADS, manifest.layers.length) }, worker));
  const config = manifest.config;
  await uploadBlob(
    repo,
    {
      digest: config.digest,
      size: config.size,
      open: (s, e) =>
        content.createReadStream(config.digest, { start: s, ...(e === undefined ? {} : { end: e }) }),
    },
    [],
    () => {},
  );
  const mediaType = row?.mediaType ?? manifest.mediaType;
  const changed = pushedLayers.some((l, i) => l.digest !== manifest.layers[i]?.digest);
  if (!changed) return { bytes: stored, mediaType };
  const doc = JSON.parse(stored.toString("utf8")) as { layers: Descriptor[] };
  doc.layers = doc.layers.map((l, i) => ({ ...l, ...pick(pushedLayers[i] as Descriptor) }));
  return { bytes: Buffer.from(JSON.stringify(doc)), mediaType };
}

function pick(d: Descriptor): Pick<Descriptor, "mediaType" | "digest" | "size"> {
  return { mediaType: d.mediaType, digest: d.digest, size: d.size };
}
