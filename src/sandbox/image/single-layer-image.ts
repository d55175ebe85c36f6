import { createHash, randomUUID } from "node:crypto";
import { mkdir, stat, unlink } from "node:fs/promises";
import path from "node:path";
import { MediaTypes } from "../../images/index.js";
import { SandboxError } from "../errors.js";
import type { AssembledImage } from "./input-record.js";
import { type LayerResult, writeLayer } from "./layer-writer.js";
import {
  blobPath,
  commitBlobFile,
  type LayoutDescriptor,
  publishLayout,
  REF_NAME_ANNOTATION,
  readLayoutManifest,
  writeBlob,
} from "./oci-layout.js";
import type { RootfsEntry } from "./rootfs-plan.js";

export interface SingleLayerImageInput {
  /** `<dataRoot>/buildkit`: the temp layer goes to its `tmp/`. */
  buildDir: string;
  layoutDir: string;
  entries: RootfsEntry[];
  /** mtime of every entry. */
  mtime: number;
  gzipLevel: number;
  /** The layout's ref name annotation. */
  refName: string;
  /** The image config for the written layer (its diff_id goes in rootfs). */
  config: (layer: LayerResult) => Record<string, unknown>;
  onLayer?: (layer: LayerResult) => void;
  signal?: AbortSignal;
}

/**
 * Writes a one-layer image into an OCI layout: the layer (to a temp file, then committed by digest),
 * its config and manifest, and the index naming it. What the sandbox and the frontend image share.
 */
export async function writeSingleLayerImage(i: SingleLayerImageInput): Promise<AssembledImage> {
  const tmpDir = path.join(i.buildDir, "tmp");
  await mkdir(tmpDir, { recursive: true });
  await mkdir(i.layoutDir, { recursive: true });
  const tmpLayer = path.join(tmpDir, `layer-${randomUUID()}`);
  try {
    const layer = await writeLayer(i.entries, tmpLayer, {
      mtime: i.mtime,
      gzipLevel: i.gzipLevel,
      signal: i.signal,
    });
    i.onLayer?.(layer);
    await commitBlobFile(i.layoutDir, layer.digest, tmpLayer);
    const configBytes = Buffer.from(JSON.stringify(i.config(layer)));
    const configDigest = sha256Digest(configBytes);
    await writeBlob(i.layoutDir, configDigest, configBytes);
    const manifestBytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaTypes.ociManifest,
        config: { mediaType: MediaTypes.ociConfig, digest: configDigest, size: configBytes.length },
        layers: [{ mediaType: MediaTypes.ociLayerGzip, digest: layer.digest, size: layer.size }],
      }),
    );
    const manifestDigest = sha256Digest(manifestBytes);
    await writeBlob(i.layoutDir, manifestDigest, manifestBytes);
    await publishLayout(
      i.layoutDir,
      {
        mediaType: MediaTypes.ociManifest,
        digest: manifestDigest,
        size: manifestBytes.length,
        annotations: { [REF_NAME_ANNOTATION]: i.refName },
      },
      [configDigest, layer.digest],
    );
    return {
      ...layer,
      manifestDigest,
      manifestSize: manifestBytes.length,
      configDigest,
      configSize: configBytes.length,
    };
  } finally {
    await unlink(tmpLayer).catch(() => {});
  }
}

/** The layout's manifest descriptor when the layout still holds exactly this image (digests and sizes). */
export async function layoutHolding(
  layoutDir: string,
  image: AssembledImage,
): Promise<LayoutDescriptor | undefined> {
  try {
    const desc = await readLayoutManifest(layoutDir);
    if (desc.digest !== image.manifestDigest) return undefined;
    const sizes = await Promise.all(
      [image.manifestDigest, image.configDigest, image.digest].map(
        async (d) => (await stat(blobPath(layoutDir, d))).size,
      ),
    );
    const same = sizes[0] === image.manifestSize && sizes[1] === image.configSize && sizes[2] === image.size;
    return same ? desc : undefined;
  } catch {
    return undefined;
  }
}

/** The config's `created`: the source date epoch in RFC 3339, without fractional seconds. */
export function createdAt(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString().replace(/\.000Z$/, "Z");
}

/** $SOURCE_DATE_EPOCH (seconds), 0 when unset. */
export function sourceDateEpochFromEnv(): number {
  const v = process.env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === "") return 0;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0)
    throw new SandboxError("assembly_failed", `SOURCE_DATE_EPOCH is not a number of seconds: ${v}`);
  return n;
}

export function sha256Hex(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

function sha256Digest(bytes: Buffer): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}
