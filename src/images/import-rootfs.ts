import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { hashingTransform, OffloadedSha256, throwIfAborted } from "../util/index.js";
import { bytesSource } from "./content-store.js";
import { decompressor } from "./decompress.js";
import { type Digest, digestOf, finishDigest } from "./digest.js";
import type { ImageConfig, ImageStore } from "./image-store.js";
import { MediaTypes } from "./media-types.js";
import { hostPlatform } from "./platform.js";
import { formatReference, parseNormalizedTagged } from "./reference.js";
import { RootfsGuard } from "./rootfs-guard.js";

export interface ImportOptions {
  /** Name to tag, e.g. `busybox:local`; untagged when omitted. */
  name?: string;
  /** Source shown in the history comment, as Docker does (`-` for stdin). */
  source?: string;
  /** Replaces the `Imported from <source>` comment (`docker import --message`); also the config's `comment`. */
  comment?: string;
  /** Container config for the image (`docker import --change`), e.g. `{ Env: [...], Cmd: [...] }`. */
  config?: Record<string, unknown>;
  signal?: AbortSignal;
}

/**
 * Like `docker import`: one rootfs tarball (plain or gzip) becomes a single gzip layer. The tar is streamed
 * once; the uncompressed diffID and the compressed digest are hashed on the way through, and entries that
 * could land outside the rootfs refuse the whole import (RootfsGuard).
 */
export async function importRootfs(
  store: ImageStore,
  input: Readable,
  opts: ImportOptions = {},
): Promise<{ id: Digest; manifestDigest: Digest; name?: string }> {
  const name = opts.name === undefined ? undefined : formatReference(parseNormalizedTagged(opts.name));
  throwIfAborted(opts.signal);
  // The diffID is hashed on the worker thread while gzip runs in libuv's pool.
  const diffHash = new OffloadedSha256();
  const gzip = createGzip();
  const plain = await decompressor(input);
  let diffId: Digest;
  let layer: Awaited<ReturnType<typeof store.content.ingest>>;
  try {
    [, layer] = await Promise.all([
      pipeline(input, plain, new RootfsGuard(), hashingTransform(diffHash), gzip, { signal: opts.signal }),
      store.content.ingest(gzip, { signal: opts.signal }),
    ]);
    diffId = await finishDigest(diffHash);
  } finally {
    diffHash.dispose();
  }
  const created = new Date().toISOString();
  const platform = hostPlatform();
  const config: ImageConfig = {
    architecture: platform.architecture,
    os: platform.os,
    created,
    ...(opts.comment ? { comment: opts.comment } : {}),
    config: opts.config ?? {},
    rootfs: { type: "layers", diff_ids: [diffId] },
    history: [{ created, comment: opts.comment || `Imported from ${opts.source ?? "-"}` }],
  };
  const configBytes = Buffer.from(JSON.stringify(config));
  const configInfo = await store.content.ingest(bytesSource(configBytes), {
    expectedDigest: digestOf(configBytes),
    signal: opts.signal,
  });
  const manifest = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociManifest,
    config: { mediaType: MediaTypes.ociConfig, digest: configInfo.digest, size: configInfo.size },
    layers: [{ mediaType: MediaTypes.ociLayerGzip, digest: layer.digest, size: layer.size }],
  };
  const put = await store.putManifest(Buffer.from(JSON.stringify(manifest)), MediaTypes.ociManifest, {
    signal: opts.signal,
  });
  const id = configInfo.digest;
  if (name) store.setName(name, put.digest, "import");
  else store.emit({ type: "import", id });
  return { id, manifestDigest: put.digest, name };
}
