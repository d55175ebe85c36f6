import {
  type Descriptor,
  type Digest,
  familiarString,
  formatPlatform,
  formatReference,
  hostPlatform,
  type ImageIndex,
  type ImageStore,
  type ParsedManifest,
  type Platform,
  parseManifest,
  type Reference,
} from "../images/index.js";
import { errorMessage } from "../util/index.js";
import { fetchBlob } from "./blob-fetch.js";
import type { BlobSources } from "./blob-sources.js";
import type { RegistryCredentials } from "./credentials.js";
import { openRepository } from "./endpoint-session.js";
import { RegistryError } from "./errors.js";
import { type FetchedManifest, fetchManifest } from "./manifest-fetch.js";
import { layerProgress, layerStatus, type ProgressSink, shortId, throttle } from "./progress.js";
import type { RepositoryClient } from "./repository.js";
import type { RegistrySettings } from "./settings.js";
import type { RegistryTransport } from "./transport.js";

/** dockerd's max-concurrent-downloads default. */
const PARALLEL_DOWNLOADS = 3;

export interface PullRequest {
  ref: Reference;
  platform?: Platform;
  creds: RegistryCredentials;
  progress: ProgressSink;
  signal?: AbortSignal;
}

export interface PullResult {
  /** What the name now points at (the index for a multi-platform image). */
  digest: Digest;
  imageId: Digest;
  upToDate: boolean;
}

export interface PullContext {
  store: ImageStore;
  transport: RegistryTransport;
  settings: RegistrySettings;
  sources: BlobSources;
}

/**
 * docker pull: manifest (an index resolved to the platform), config and
 * layers into the content store (3 downloads at a time, blobs already
 * stored skipped, each verified), then the manifest(s) and the name. On
 * failure the blobs this pull added and nothing references are removed, so
 * the store is as before.
 */
export async function pull(ctx: PullContext, req: PullRequest): Promise<PullResult> {
  const { ref, progress, signal } = req;
  const shown = familiarString(ref);
  const reference = ref.digest ?? ref.tag ?? "latest";
  const { repo, result: top } = await openRepository(
    ctx.transport,
    ctx.settings,
    ref.domain,
    ref.path,
    "pull",
    req.creds,
    (r) => fetchManifest(r, reference, shown).catch((err) => rethrowNotFound(err, shown)),
    signal,
  );
  const topParsed = parse(top);
  let image = top;
  let manifest = topParsed;
  if (topParsed.kind === "index") {
    const want = req.platform ?? hostPlatform();
    const entry = pickPlatform(topParsed, want);
    if (!entry) {
      throw new RegistryError(
        "not_found",
        `no matching manifest for ${formatPlatform(want)} in the manifest list entries`,
      );
    }
    image = await fetchManifest(repo, entry.digest, shown);
    manifest = parse(image);
    if (manifest.kind !== "manifest")
      throw new RegistryError("bad_content", `${shown}: an index inside an index`);
  }
  if (manifest.kind !== "manifest") throw new RegistryError("bad_content", `${shown}: not an image manifest`);
  const fullName = ref.tag
    ? formatReference({ domain: ref.domain, path: ref.path, tag: ref.tag })
    : undefined;
  const before = fullName ? ctx.store.lookupName(fullName) : undefined;
  progress({ status: `Pulling from ${ref.path}`, id: reference });

  const created: Digest[] = [];
  try {
    await pullBlobs(ctx, repo, manifest.config, manifest.layers, created, progress, signal);
    const put = await ctx.store.putManifest(image.bytes, image.mediaType, signal ? { signal } : {});
    let imageId = put.imageId;
    if (top !== image) {
      const idx = await ctx.store.putManifest(top.bytes, top.mediaType, {
        requireAllChildren: false,
        ...(signal ? { signal } : {}),
      });
      imageId = idx.imageId ?? imageId;
    }
    if (!imageId)
      throw new RegistryError(
        "bad_content",
        `${shown} is not a container image (its config is ${manifest.config.mediaType})`,
      );
    if (fullName) ctx.store.setName(fullName, top.digest, "pull");
    else ctx.store.emit({ type: "pull", id: imageId, name: formatReference(ref) });
    for (const l of manifest.layers) await ctx.sources.add(l.digest, ref.domain, ref.path).catch(() => {});
    progress({ status: `Digest: ${top.digest}` });
    const upToDate = fullName ? before === top.digest : created.length === 0;
    progress({
      status: `Status: ${upToDate ? "Image is up to date" : "Downloaded newer image"} for ${shown}`,
    });
    return { digest: top.digest, imageId, upToDate };
  } catch (err) {
    for (const d of created) {
      if (!ctx.store.isBlobReferenced(d)) await ctx.store.content.delete(d).catch(() => {});
    }
    throw err;
  }
}

function parse(m: FetchedManifest): ParsedManifest {
  try {
    return parseManifest(m.bytes, m.mediaType);
  } catch (err) {
    throw new RegistryError("bad_content", errorMessage(err), { cause: err });
  }
}

function rethrowNotFound(err: unknown, shown: string): never {
  if (err instanceof RegistryError && err.code === "not_found") {
    const detail = err.message.replace(/^[A-Z][a-z]+ "[^"]*": /, "");
    throw new RegistryError("not_found", `manifest for ${shown} not found: ${detail}`, { cause: err });
  }
  throw err;
}

/** The index entry for exactly this platform (os, architecture, and variant when asked for). */
function pickPlatform(index: ImageIndex, want: Platform): Descriptor | undefined {
  return index.manifests.find(
    (m) =>
      m.platform?.os === want.os &&
      m.platform?.architecture === want.architecture &&
      (!want.variant || m.platform?.variant === want.variant) &&
      m.annotations?.["vnd.docker.reference.type"] !== "attestation-manifest",
  );
}

async function pullBlobs(
  ctx: PullContext,
  repo: RepositoryClient,
  config: Descriptor,
  layers: Descriptor[],
  created: Digest[],
  progress: ProgressSink,
  signal?: AbortSignal,
): Promise<void> {
  const content = ctx.store.content;
  // One failed layer stops the others, so that nothing is committed after the pull gave up.
  const stop = new AbortController();
  const blobSignal = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
  let firstError: unknown;
  const fetchOne = async (d: Descriptor, onBytes: (n: number) => void) => {
    await fetchBlob(repo, content, d, onBytes, blobSignal);
    created.push(d.digest);
  };
  if (!(await content.has(config.digest))) await fetchOne(config, () => {});
  const unique = new Map<Digest, Descriptor>();
  for (const l of layers) if (!unique.has(l.digest)) unique.set(l.digest, l);
  const todo: Descriptor[] = [];
  for (const l of unique.values()) {
    const id = shortId(l.digest);
    if (await content.has(l.digest)) progress(layerStatus(id, "Already exists"));
    else {
      progress(layerStatus(id, "Pulling fs layer"));
      todo.push(l);
    }
  }
  for (const l of todo.slice(PARALLEL_DOWNLOADS)) progress(layerStatus(shortId(l.digest), "Waiting"));
  // Layers complete in manifest order ("Pull complete" as dockerd's extraction reports it).
  const done = todo.map(() => deferred());
  for (const d of done) d.promise.catch(() => {});
  let next = 0;
  const worker = async () => {
    while (next < todo.length && !stop.signal.aborted) {
      const i = next++;
      const l = todo[i] as Descriptor;
      const id = shortId(l.digest);
      const tick = throttle();
      try {
        await fetchOne(l, (n) => {
          if (tick(n === l.size)) progress(layerProgress(id, "Downloading", n, l.size));
        });
      } catch (err) {
        firstError ??= err;
        stop.abort(err);
        done[i]?.reject(err);
        throw err;
      }
      progress(layerStatus(id, "Verifying Checksum"));
      progress(layerStatus(id, "Download complete"));
      done[i]?.resolve();
    }
  };
  const settled = Promise.allSettled(
    Array.from({ length: Math.min(PARALLEL_DOWNLOADS, todo.length) }, worker),
  );
  try {
    for (const [i, l] of todo.entries()) {
      // Layers no worker started (after a failure) never settle: the workers' end decides then.
      const ended = settled.then(() => {
        if (firstError) throw firstError;
      });
      ended.catch(() => {});
      await Promise.race([done[i]?.promise, ended]);
      await done[i]?.promise;
      progress(layerStatus(shortId(l.digest), "Pull complete"));
    }
  } catch (err) {
    firstError ??= err;
  }
  await settled;
  if (firstError) throw firstError;
}

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (err: unknown) => void } {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
