import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { throwIfAborted } from "../util/index.js";
import { archivePath, linkTarget } from "./archive-path.js";
import type { BlobInfo } from "./content-store.js";
import { decompressor } from "./decompress.js";
import { type Digest, isDigest } from "./digest.js";
import { ImageError } from "./errors.js";
import type { ImageStore } from "./image-store.js";
import { type Descriptor, MANIFEST_SIZE_LIMIT, parseManifest } from "./manifest.js";
import { isIndexMediaType, MediaTypes } from "./media-types.js";
import { familiarName, formatReference, parseNormalizedTagged } from "./reference.js";

export interface LoadedImage {
  id: Digest;
  /** Familiar names tagged by this load. */
  names: string[];
}

/** Metadata documents are read into memory; anything bigger than this is not a real one. */
const METADATA_LIMIT = 16 * 1024 * 1024;
/** No layer in a sane image is this big; refuse before writing it. */
const BLOB_LIMIT = 256 * 1024 ** 3;
const ENTRY_LIMIT = 1_000_000;
const METADATA_FILES = new Set(["manifest.json", "index.json", "oci-layout", "repositories"]);
const HEX_JSON_RE = /^([a-f0-9]{64})\.json$/;
const OCI_BLOB_RE = /^blobs\/sha256\/([a-f0-9]{64})$/;

interface DockerManifestEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

/**
 * Loads a `docker save` archive (current or legacy `<id>/layer.tar` layout) or an OCI image layout
 * tarball, plain or gzip. Blobs stream straight into the content store (digest-checked when the entry
 * name is a digest); nothing is written anywhere else. Blobs that end up unreferenced are removed.
 */
export async function loadImages(
  store: ImageStore,
  input: Readable,
  signal?: AbortSignal,
): Promise<LoadedImage[]> {
  const blobs = new Map<string, BlobInfo>();
  const links = new Map<string, string>();
  const docs = new Map<string, Buffer>();
  const created = new Set<Digest>();
  try {
    const plain = await decompressor(input);
    const extract = tar.extract();
    const reading = pipeline(input, plain, extract, { signal });
    let count = 0;
    try {
      for await (const entry of extract) {
        throwIfAborted(signal);
        if (++count > ENTRY_LIMIT) throw new ImageError("invalid_archive", "archive has too many entries");
        const h = entry.header;
        const path = archivePath(h.name);
        const size = h.size ?? 0;
        if (h.type === "symlink" || h.type === "link") {
          links.set(path, linkTarget(path, h.linkname ?? "", h.type));
          entry.resume();
        } else if (h.type === "directory") {
          entry.resume();
        } else if (h.type === "file" || h.type === "contiguous-file") {
          if (size > BLOB_LIMIT)
            throw new ImageError("invalid_archive", `entry ${path} is too large (${size} bytes)`);
          if (METADATA_FILES.has(path)) {
            if (size > METADATA_LIMIT)
              throw new ImageError("invalid_archive", `${path} is too large (${size} bytes)`);
            docs.set(path, await readAll(entry as unknown as Readable));
          } else {
            // manifest.json names its Config and Layers by path (`cfg.json` is as valid as
            // `<digest>.json`): every other file may be one; those nothing references are removed below.
            const named = OCI_BLOB_RE.exec(path)?.[1] ?? HEX_JSON_RE.exec(path)?.[1];
            const r = await store.content.ingest(entry as unknown as Readable, {
              expectedDigest: named ? `sha256:${named}` : undefined,
              expectedSize: size,
              signal,
            });
            if (r.created) created.add(r.digest);
            blobs.set(path, { digest: r.digest, size: r.size });
          }
        } else {
          throw new ImageError("invalid_archive", `unsupported entry type ${h.type} for ${path}`);
        }
      }
    } catch (err) {
      extract.destroy(err as Error);
      await reading.catch(() => {});
      throw err;
    }
    await reading;
    const loaded = await register(store, { blobs, links, docs }, signal);
    return loaded;
  } catch (err) {
    if (err instanceof ImageError || (err as Error).name === "AbortError") throw err;
    throw new ImageError("invalid_archive", `cannot load archive: ${(err as Error).message}`, { cause: err });
  } finally {
    // Whatever this load stored that no manifest uses (failed load, stray files) is removed again.
    for (const d of created) if (!store.isBlobReferenced(d)) await store.content.delete(d);
  }
}

async function readAll(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const c of stream) chunks.push(c);
  return Buffer.concat(chunks);
}

interface Archive {
  blobs: Map<string, BlobInfo>;
  links: Map<string, string>;
  docs: Map<string, Buffer>;
}

function blobAt(a: Archive, path: string): BlobInfo {
  let p = archivePath(path);
  for (let i = 0; i < 32; i++) {
    const b = a.blobs.get(p);
    if (b) return b;
    const next = a.links.get(p);
    if (next === undefined) break;
    p = next;
  }
  throw new ImageError("invalid_archive", `archive lacks ${path}`);
}

function parseDoc<T>(a: Archive, name: string): T | undefined {
  const bytes = a.docs.get(name);
  if (!bytes) return undefined;
  try {
    return JSON.parse(bytes.toString("utf8")) as T;
  } catch (err) {
    throw new ImageError("invalid_archive", `${name} is not valid JSON`, { cause: err });
  }
}

async function register(store: ImageStore, a: Archive, signal?: AbortSignal): Promise<LoadedImage[]> {
  const result = new Map<Digest, LoadedImage>();
  const note = (id: Digest, manifestDigest: Digest, names: string[]) => {
    const img = result.get(id) ?? { id, names: [] };
    result.set(id, img);
    for (const n of names) {
      const full = formatReference(parseNormalizedTagged(n));
      store.setName(full, manifestDigest, "load");
      const fam = familiarName(full);
      if (!img.names.includes(fam)) img.names.push(fam);
    }
  };
  const dockerManifest = parseDoc<DockerManifestEntry[]>(a, "manifest.json") ?? [];
  if (!Array.isArray(dockerManifest)) throw new ImageError("invalid_archive", "manifest.json is not a list");
  const index = parseDoc<{ manifests?: Descriptor[] }>(a, "index.json");
  if (!index && dockerManifest.length === 0) {
    throw new ImageError("invalid_archive", "archive has neither manifest.json nor index.json");
  }

  // OCI layout first: it carries the original manifests, so digests survive a round trip unchanged.
  const namesByConfig = new Map<string, string[]>();
  for (const e of dockerManifest) {
    const config = e.Config ? a.blobs.get(archivePath(e.Config)) : undefined;
    if (config) namesByConfig.set(config.digest, e.RepoTags ?? []);
  }
  for (const d of index?.manifests ?? []) {
    if (!d || typeof d.digest !== "string" || !isDigest(d.digest)) {
      throw new ImageError("invalid_archive", "index.json has an invalid descriptor");
    }
    if (!(await store.content.has(d.digest)))
      throw new ImageError("invalid_archive", `archive lacks blob ${d.digest}`);
    const put = await putTree(store, d, signal);
    if (!put.imageId) continue;
    const names: string[] = [];
    const full = d.annotations?.["io.containerd.image.name"];
    const refName = d.annotations?.["org.opencontainers.image.ref.name"];
    if (full) names.push(full);
    else if (refName?.includes(":") || refName?.includes("/")) names.push(refName);
    names.push(...(namesByConfig.get(put.imageId) ?? []));
    note(put.imageId, put.digest, [...new Set(names)]);
  }

  // docker save entries not covered above: synthesize an OCI manifest from config + layers.
  for (const e of dockerManifest) {
    if (typeof e?.Config !== "string" || !Array.isArray(e.Layers)) {
      throw new ImageError("invalid_archive", "manifest.json entry lacks Config or Layers");
    }
    const config = blobAt(a, e.Config);
    if (result.has(config.digest)) continue;
    const layers: Descriptor[] = [];
    for (const l of e.Layers) {
      const b = blobAt(a, l);
      layers.push({ mediaType: await layerMediaType(store, b.digest), digest: b.digest, size: b.size });
    }
    const manifest = {
      schemaVersion: 2,
      mediaType: MediaTypes.ociManifest,
      config: { mediaType: MediaTypes.ociConfig, digest: config.digest, size: config.size },
      layers,
    };
    const put = await store.putManifest(Buffer.from(JSON.stringify(manifest)), MediaTypes.ociManifest, {
      signal,
    });
    if (!put.imageId)
      throw new ImageError("invalid_archive", `config ${config.digest} is not an image config`);
    note(put.imageId, put.digest, e.RepoTags ?? []);
  }
  for (const img of result.values()) if (img.names.length === 0) store.emit({ type: "load", id: img.id });
  return [...result.values()];
}

/** Stores a manifest, or an index after those of its children present in the archive. */
async function putTree(store: ImageStore, d: Descriptor, signal?: AbortSignal, depth = 0) {
  const bytes = await store.content.readSmall(d.digest, MANIFEST_SIZE_LIMIT);
  if (isIndexMediaType(d.mediaType) && depth < 4) {
    const parsed = parseManifest(bytes, d.mediaType);
    if (parsed.kind === "index") {
      for (const child of parsed.manifests) {
        if (await store.content.has(child.digest)) {
          try {
            await putTree(store, child, signal, depth + 1);
          } catch (err) {
            // Partial multi-platform archives are common (one platform saved); skip children lacking blobs.
            if (!(err instanceof ImageError && err.code === "blob_not_found")) throw err;
          }
        }
      }
    }
  }
  return store.putManifest(bytes, d.mediaType, { requireAllChildren: false, signal });
}

/** docker save layers are plain tars (legacy) or whatever the daemon stored; sniff the compression. */
async function layerMediaType(store: ImageStore, digest: Digest): Promise<string> {
  const head: Uint8Array[] = [];
  for await (const c of store.content.createReadStream(digest, { start: 0, end: 3 }))
    head.push(c as Uint8Array);
  const b = Buffer.concat(head);
  if (b[0] === 0x1f && b[1] === 0x8b) return MediaTypes.ociLayerGzip;
  if (b[0] === 0x28 && b[1] === 0xb5 && b[2] === 0x2f && b[3] === 0xfd)
    return "application/vnd.oci.image.layer.v1.tar+zstd";
  return MediaTypes.ociLayer;
}
