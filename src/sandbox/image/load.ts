import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import {
  type Digest,
  formatReference,
  type ImageStore,
  MediaTypes,
  parseDigest,
  parseNormalizedTagged,
} from "../../images/index.js";
import { throwIfAborted } from "../../util/index.js";
import { SandboxError } from "../errors.js";
import { blobPath, readLayoutManifest } from "./oci-layout.js";

export interface LoadSandboxImageOptions {
  /** Name to give the image, e.g. `arca-buildkit:v0.32.2`. */
  name: string;
  signal?: AbortSignal;
}

export interface LoadSandboxImageResult {
  /** False when the store already had this manifest under this name (nothing was read or written). */
  loaded: boolean;
  manifestDigest: Digest;
  /** Image ID (config digest). */
  imageId: Digest;
  /** Full normalized name, e.g. `docker.io/library/arca-buildkit:v0.32.2`. */
  name: string;
}

/**
 * Loads the layout's image into the store unless the name already points at the same manifest. Blobs go
 * straight into the content store (digest-verified), then the manifest and the name: no tar round trip.
 */
export async function loadSandboxImage(
  store: ImageStore,
  layoutDir: string,
  opts: LoadSandboxImageOptions,
): Promise<LoadSandboxImageResult> {
  const name = formatReference(parseNormalizedTagged(opts.name));
  const desc = await readLayoutManifest(layoutDir);
  const manifestDigest = parseDigest(desc.digest);
  const existing = store.getManifest(manifestDigest);
  if (
    existing?.imageId &&
    store.lookupName(name) === manifestDigest &&
    (await store.content.has(manifestDigest))
  ) {
    return { loaded: false, manifestDigest, imageId: existing.imageId, name };
  }

  const manifestBytes = await readFile(blobPath(layoutDir, manifestDigest));
  const manifest = JSON.parse(manifestBytes.toString("utf8")) as {
    mediaType?: string;
    config?: { digest: string; size: number };
    layers?: { digest: string; size: number }[];
  };
  if (!manifest.config || !Array.isArray(manifest.layers)) {
    throw new SandboxError(
      "invalid_layout",
      `${layoutDir}: manifest ${manifestDigest} is not an image manifest`,
    );
  }
  for (const blob of [manifest.config, ...manifest.layers]) {
    throwIfAborted(opts.signal);
    if (await store.content.has(blob.digest)) continue;
    await store.content.ingest(
      createReadStream(blobPath(layoutDir, blob.digest), { highWaterMark: 1024 * 1024 }),
      {
        expectedDigest: blob.digest,
        expectedSize: blob.size,
        signal: opts.signal,
      },
    );
  }
  const put = await store.putManifest(manifestBytes, manifest.mediaType ?? MediaTypes.ociManifest, {
    signal: opts.signal,
  });
  if (put.digest !== manifestDigest || !put.imageId) {
    throw new SandboxError(
      "invalid_layout",
      `${layoutDir}: manifest ${manifestDigest} does not describe an image`,
    );
  }
  store.setName(name, put.digest, "load");
  return { loaded: true, manifestDigest, imageId: put.imageId, name };
}
