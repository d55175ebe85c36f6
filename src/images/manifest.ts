import { type Bytes, type Digest, isDigest } from "./digest.js";
import { ImageError } from "./errors.js";
import { isIndexMediaType, isManifestMediaType } from "./media-types.js";
import { hostPlatform, type Platform } from "./platform.js";

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
}

export interface ImageManifest {
  kind: "manifest";
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
}

export interface ImageIndex {
  kind: "index";
  mediaType: string;
  manifests: Descriptor[];
}

export type ParsedManifest = ImageManifest | ImageIndex;

/** Manifests above this are refused, as distribution does (4 MiB). */
export const MANIFEST_SIZE_LIMIT = 4 * 1024 * 1024;

function bad(why: string): ImageError {
  return new ImageError("invalid_manifest", `invalid manifest: ${why}`);
}

function descriptor(v: unknown, what: string): Descriptor {
  const d = v as Partial<Descriptor> | null;
  if (!d || typeof d !== "object") throw bad(`${what} is not an object`);
  if (typeof d.digest !== "string" || !isDigest(d.digest)) throw bad(`${what} has an invalid digest`);
  if (typeof d.size !== "number" || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw bad(`${what} has an invalid size`);
  }
  if (typeof d.mediaType !== "string") throw bad(`${what} has no mediaType`);
  return d as Descriptor;
}

/**
 * Parses a manifest or index. mediaType is the transport's (Content-Type); when it is missing or generic,
 * the document's own mediaType field, then its shape, decides.
 */
export function parseManifest(bytes: Bytes, mediaType?: string): ParsedManifest {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(Buffer.from(bytes as Uint8Array).toString("utf8"));
  } catch {
    throw bad("not JSON");
  }
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) throw bad("not an object");
  if (doc.schemaVersion !== 2) throw bad("schemaVersion must be 2");
  const declared = typeof doc.mediaType === "string" ? doc.mediaType : undefined;
  let mt =
    mediaType && (isManifestMediaType(mediaType) || isIndexMediaType(mediaType)) ? mediaType : declared;
  if (declared && mt && declared !== mt) throw bad(`mediaType ${declared} does not match ${mt}`);
  if (!mt) {
    if (Array.isArray(doc.manifests)) mt = "application/vnd.oci.image.index.v1+json";
    else if (doc.config) mt = "application/vnd.oci.image.manifest.v1+json";
    else throw bad("unknown manifest type");
  }
  if (isIndexMediaType(mt)) {
    if (!Array.isArray(doc.manifests)) throw bad("index has no manifests");
    return {
      kind: "index",
      mediaType: mt,
      manifests: doc.manifests.map((m, i) => descriptor(m, `manifests[${i}]`)),
    };
  }
  if (isManifestMediaType(mt)) {
    const config = descriptor(doc.config, "config");
    if (!Array.isArray(doc.layers)) throw bad("manifest has no layers");
    return {
      kind: "manifest",
      mediaType: mt,
      config,
      layers: doc.layers.map((l, i) => descriptor(l, `layers[${i}]`)),
    };
  }
  throw new ImageError("unsupported", `unsupported manifest media type ${mt}`);
}

/**
 * Picks the index entry for the host platform, then linux/amd64, then the first real image
 * (BuildKit adds attestation manifests with platform unknown/unknown; they are never images).
 */
export function selectPlatformManifest(
  index: ImageIndex,
  want: Platform = hostPlatform(),
): Descriptor | undefined {
  const images = index.manifests.filter(
    (m) => isManifestMediaType(m.mediaType) && m.platform?.os !== "unknown" && !isAttestation(m),
  );
  const match = (os: string, arch: string) =>
    images.find((m) => m.platform?.os === os && m.platform?.architecture === arch);
  return match(want.os, want.architecture) ?? match("linux", "amd64") ?? images[0];
}

function isAttestation(d: Descriptor): boolean {
  return d.annotations?.["vnd.docker.reference.type"] === "attestation-manifest";
}
