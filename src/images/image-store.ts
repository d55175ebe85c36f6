import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { bytesSource, ContentStore } from "./content-store.js";
import { type Bytes, type Digest, digestHex, digestOf, isDigest } from "./digest.js";
import { ImageError } from "./errors.js";
import {
  type Descriptor,
  type ImageManifest,
  MANIFEST_SIZE_LIMIT,
  type ParsedManifest,
  parseManifest,
  selectPlatformManifest,
} from "./manifest.js";
import { MediaTypes } from "./media-types.js";
import { type ImageRow, type ManifestRow, Metadata } from "./metadata.js";
import { formatPlatform } from "./platform.js";
import {
  familiarName,
  familiarRepository,
  formatReference,
  parseNormalizedTagged,
  parseReference,
} from "./reference.js";

export type ImageEventType = "tag" | "untag" | "delete" | "import" | "load" | "push" | "pull";

export interface ImageEvent {
  type: ImageEventType;
  /** Image ID (config digest). */
  id: Digest;
  /** Full normalized name, when the event concerns one. */
  name?: string;
}

export interface ImageStoreOptions {
  onEvent?: (event: ImageEvent) => void;
}

export interface ResolvedImage {
  image: ImageRow;
  /** What the reference points at: the name's manifest or index, or the image's manifest for an ID. */
  digest: Digest;
  /** Full normalized name when resolved through a name. */
  name?: string;
}

export interface ImageSummary {
  id: Digest;
  /** Familiar names, e.g. `busybox:local`. */
  repoTags: string[];
  repoDigests: string[];
  created: string | null;
  size: number;
  platform: string;
  manifestDigest: Digest;
}

/** Image configuration as in the OCI image spec (only what Arca reads is typed). */
export interface ImageConfig {
  architecture?: string;
  os?: string;
  variant?: string;
  created?: string;
  author?: string;
  config?: Record<string, unknown>;
  rootfs?: { type: string; diff_ids: string[] };
  history?: Record<string, unknown>[];
  [key: string]: unknown;
}

export interface ImageInspect {
  Id: Digest;
  RepoTags: string[];
  RepoDigests: string[];
  Created: string | null;
  Size: number;
  Architecture: string;
  Os: string;
  Variant?: string;
  Author: string;
  Config: Record<string, unknown> | null;
  RootFS: { Type: string; Layers: string[] };
  /** Arca extras: the stored manifest and its descriptors. */
  ManifestDigest: Digest;
  MediaType: string;
  Manifest: unknown;
  Layers: Descriptor[];
  ImageConfig: ImageConfig;
}

export interface RemoveResult {
  untagged: string[];
  deleted: Digest[];
}

export interface PutManifestResult {
  digest: Digest;
  mediaType: string;
  /** Set when the manifest (or the index's selected platform) is an image. */
  imageId?: Digest;
}

const HEX_PREFIX_RE = /^(?:sha256:)?([a-f0-9]{1,64})$/;

/** Facade over the content store and metadata: what the CLI, the registry and the daemon use. */
export class ImageStore {
  private constructor(
    readonly root: string,
    readonly content: ContentStore,
    private readonly meta: Metadata,
    private readonly onEvent: ((e: ImageEvent) => void) | undefined,
  ) {}

  /** Opens (creating if needed) the store at root: `<root>/blobs`, `<root>/ingest`, `<root>/metadata.db`. */
  static async open(root: string, opts: ImageStoreOptions = {}): Promise<ImageStore> {
    await mkdir(root, { recursive: true });
    const content = await ContentStore.open(root);
    const meta = new Metadata(join(root, "metadata.db"));
    return new ImageStore(root, content, meta, opts.onEvent);
  }

  close(): void {
    this.meta.close();
  }

  emit(event: ImageEvent): void {
    try {
      this.onEvent?.(event);
    } catch {
      // A listener's failure must not undo a committed change.
    }
  }

  /** Resolves a full or short name, `name@digest`, a full ID or a unique ID prefix (like Docker). */
  resolve(nameOrId: string): ResolvedImage {
    if (isDigest(nameOrId)) {
      const image = this.meta.getImage(nameOrId);
      if (image) return { image, digest: image.manifestDigest };
    }
    let refError: unknown;
    try {
      const ref = parseNormalizedTagged(nameOrId);
      if (ref.digest) {
        const m = this.meta.getManifest(ref.digest);
        const image = m?.imageId ? this.meta.getImage(m.imageId) : undefined;
        if (m && image) return { image, digest: m.digest };
      } else {
        const name = formatReference(ref);
        const row = this.meta.getName(name);
        if (row) {
          const image = this.imageForDigest(row.digest);
          if (image) return { image, digest: row.digest, name };
        }
      }
    } catch (err) {
      refError = err;
    }
    const prefix = HEX_PREFIX_RE.exec(nameOrId);
    if (prefix?.[1]) {
      const found = this.meta.findImagesByPrefix(prefix[1]);
      if (found.length > 1) {
        throw new ImageError(
          "ambiguous_reference",
          `multiple images match ID prefix ${JSON.stringify(nameOrId)}`,
        );
      }
      const image = found[0];
      if (image) return { image, digest: image.manifestDigest };
    }
    if (refError) throw refError;
    throw new ImageError("image_not_found", `No such image: ${nameOrId}`);
  }

  list(): ImageSummary[] {
    const children = this.meta.indexChildren();
    const out: ImageSummary[] = [];
    for (const image of this.meta.listImages()) {
      const names = this.meta.namesForImage(image.id);
      if (names.length === 0 && children.has(image.manifestDigest)) continue;
      out.push({
        id: image.id,
        repoTags: names.map((n) => familiarName(n.name)),
        repoDigests: repoDigests(names),
        created: image.created,
        size: image.size,
        platform: image.platform,
        manifestDigest: image.manifestDigest,
      });
    }
    return out;
  }

  /** Points newName at what src resolves to; returns the full normalized new name. */
  tag(src: string, newName: string): string {
    const resolved = this.resolve(src);
    const ref = parseNormalizedTagged(newName);
    if (ref.digest)
      throw new ImageError("invalid_reference", `refusing to create a tag with a digest: ${newName}`);
    const name = formatReference(ref);
    this.setName(name, resolved.digest, "tag");
    return name;
  }

  /** Records name -> manifest digest (the manifest must be stored); emits `event`. */
  setName(name: string, digest: Digest, event: ImageEventType = "tag"): void {
    const ref = parseReference(name);
    if (ref.digest || ref.tag === undefined) {
      throw new ImageError("invalid_reference", `a tag is required to name an image: ${name}`);
    }
    const full = formatReference(ref);
    const image = this.imageForDigest(digest);
    if (!this.meta.getManifest(digest))
      throw new ImageError("manifest_not_found", `manifest ${digest} not found`);
    const prev = this.meta.setName(full, digest);
    if (prev && prev !== digest) {
      const old = this.imageForDigest(prev);
      if (old && old.id !== image?.id) this.emit({ type: "untag", id: old.id, name: full });
    }
    if (image) this.emit({ type: event, id: image.id, name: full });
  }

  /** Removes one name; the image stays (even if dangling). */
  untag(name: string): { name: string; id: Digest } {
    const full = formatReference(parseNormalizedTagged(name));
    const row = this.meta.getName(full);
    if (!row) throw new ImageError("image_not_found", `No such image: ${name}`);
    const image = this.imageForDigest(row.digest);
    this.meta.deleteName(full);
    if (image) this.emit({ type: "untag", id: image.id, name: full });
    return { name: full, id: image?.id ?? row.digest };
  }

  /**
   * Docker's `rmi`: a name is untagged and the image deleted once no name is left; an ID deletes the image
   * with all its names, which needs force when they span several repositories.
   */
  async remove(nameOrId: string, opts: { force?: boolean } = {}): Promise<RemoveResult> {
    const resolved = this.resolve(nameOrId);
    const id = resolved.image.id;
    const untagged: string[] = [];
    if (resolved.name) {
      const names = this.meta.namesForImage(id);
      if (names.length > 1 || names[0]?.name !== resolved.name) {
        this.untag(resolved.name);
        return { untagged: [familiarName(resolved.name)], deleted: [] };
      }
    } else if (!opts.force) {
      const repos = new Set(
        this.meta.namesForImage(id).map((n) => familiarRepository(parseReference(n.name))),
      );
      if (repos.size > 1) {
        throw new ImageError(
          "image_conflict",
          `conflict: unable to delete ${digestHex(id).slice(0, 12)} (must be forced) - image is referenced in multiple repositories`,
        );
      }
    }
    const removed = this.meta.removeImage(id);
    for (const n of removed.names) {
      untagged.push(familiarName(n));
      this.emit({ type: "untag", id, name: n });
    }
    for (const blob of removed.blobs) {
      if (!this.meta.isBlobReferenced(blob)) await this.content.delete(blob);
    }
    this.emit({ type: "delete", id });
    return { untagged, deleted: [id] };
  }

  async inspect(nameOrId: string): Promise<ImageInspect> {
    const { image } = this.resolve(nameOrId);
    const manifestBytes = await this.content.readSmall(image.manifestDigest, MANIFEST_SIZE_LIMIT);
    const manifest = parseManifest(manifestBytes, image.mediaType) as ImageManifest;
    const config = await this.readConfig(image.id);
    const names = this.meta.namesForImage(image.id);
    return {
      Id: image.id,
      RepoTags: names.map((n) => familiarName(n.name)),
      RepoDigests: repoDigests(names),
      Created: image.created,
      Size: image.size,
      Architecture: config.architecture ?? "",
      Os: config.os ?? "",
      ...(config.variant ? { Variant: config.variant } : {}),
      Author: config.author ?? "",
      Config: config.config ?? null,
      RootFS: { Type: config.rootfs?.type ?? "layers", Layers: config.rootfs?.diff_ids ?? [] },
      ManifestDigest: image.manifestDigest,
      MediaType: image.mediaType,
      Manifest: JSON.parse(manifestBytes.toString("utf8")),
      Layers: manifest.layers,
      ImageConfig: config,
    };
  }

  async readConfig(id: Digest): Promise<ImageConfig> {
    return JSON.parse((await this.content.readSmall(id)).toString("utf8")) as ImageConfig;
  }

  /** The stored manifest row for a digest, or undefined. */
  getManifest(digest: string): ManifestRow | undefined {
    return this.meta.getManifest(digest);
  }

  /** True when a stored manifest references the blob or the blob is itself a stored manifest. */
  isBlobReferenced(digest: string): boolean {
    return this.meta.isBlobReferenced(digest);
  }

  /** Manifest digest a full name points to, or undefined. */
  lookupName(fullName: string): Digest | undefined {
    return this.meta.getName(fullName)?.digest;
  }

  /** Full names (`docker.io/library/busybox:local`) that resolve to the image, sorted. */
  namesOf(id: Digest): string[] {
    return this.meta.namesForImage(id).map((n) => n.name);
  }

  /** When a name was last set to the image (ms since epoch); undefined when it has no name. */
  lastTagTime(id: Digest): number | undefined {
    return this.meta.lastTagTime(id);
  }

  /** Tags of a repository given as full name without tag (`docker.io/library/busybox`). */
  tagsOf(repository: string): string[] {
    return this.meta.namesWithPrefix(`${repository}:`).map((n) => n.name.slice(repository.length + 1));
  }

  /**
   * Stores a manifest or index after checking that what it references is present, and registers the image
   * it describes (an index registers its host-platform entry).
   */
  async putManifest(
    bytes: Bytes,
    mediaType: string | undefined,
    opts: { requireAllChildren?: boolean; signal?: AbortSignal } = {},
  ): Promise<PutManifestResult> {
    if (bytes.length > MANIFEST_SIZE_LIMIT) throw new ImageError("invalid_manifest", "manifest too large");
    const parsed = parseManifest(bytes, mediaType);
    const digest = digestOf(bytes);
    const row: ManifestRow = {
      digest,
      mediaType: parsed.mediaType,
      size: bytes.length,
      kind: parsed.kind,
      imageId: null,
    };
    if (parsed.kind === "manifest") {
      for (const d of [parsed.config, ...parsed.layers]) {
        const st = await this.content.stat(d.digest);
        if (!st) throw new ImageError("blob_not_found", `manifest references unknown blob ${d.digest}`);
        if (st.size !== d.size) {
          throw new ImageError(
            "invalid_manifest",
            `blob ${d.digest} is ${st.size} bytes, manifest says ${d.size}`,
          );
        }
      }
      const image = await this.imageRecord(digest, parsed);
      row.imageId = image?.id ?? null;
      await this.content.ingest(bytesSource(bytes), { expectedDigest: digest, signal: opts.signal });
      this.meta.putManifest(
        row,
        [parsed.config.digest, ...parsed.layers.map((l) => l.digest)],
        image ?? undefined,
      );
      return { digest, mediaType: parsed.mediaType, imageId: image?.id };
    }
    const present: Descriptor[] = [];
    for (const child of parsed.manifests) {
      if (this.meta.getManifest(child.digest) && (await this.content.has(child.digest))) present.push(child);
      else if (opts.requireAllChildren !== false) {
        throw new ImageError("blob_not_found", `index references unknown manifest ${child.digest}`);
      }
    }
    const chosen = selectPlatformManifest({ ...parsed, manifests: present });
    row.imageId = chosen ? (this.meta.getManifest(chosen.digest)?.imageId ?? null) : null;
    await this.content.ingest(bytesSource(bytes), { expectedDigest: digest, signal: opts.signal });
    this.meta.putManifest(
      row,
      parsed.manifests.map((m) => m.digest),
    );
    return { digest, mediaType: parsed.mediaType, imageId: row.imageId ?? undefined };
  }

  /** Parsed manifest stored under digest. */
  async readManifest(digest: Digest): Promise<ParsedManifest> {
    const row = this.meta.getManifest(digest);
    if (!row) throw new ImageError("manifest_not_found", `manifest ${digest} not found`);
    return parseManifest(await this.content.readSmall(digest, MANIFEST_SIZE_LIMIT), row.mediaType);
  }

  private imageForDigest(digest: Digest): ImageRow | undefined {
    const m = this.meta.getManifest(digest);
    return m?.imageId ? this.meta.getImage(m.imageId) : undefined;
  }

  /** What each layer takes unpacked (dockerd's sizes); a layer not stored counts as its descriptor says. */
  async unpackedLayerSizes(layers: Descriptor[]): Promise<number[]> {
    const sizes: number[] = [];
    for (const l of layers) sizes.push(await this.content.uncompressedSize(l.digest).catch(() => l.size));
    return sizes;
  }

  /** Image record for a manifest, or null for non-images (BuildKit attestations, artifacts). */
  private async imageRecord(digest: Digest, m: ImageManifest): Promise<Omit<ImageRow, "addedAt"> | null> {
    if (m.config.mediaType !== MediaTypes.ociConfig && m.config.mediaType !== MediaTypes.dockerConfig)
      return null;
    let config: ImageConfig;
    try {
      config = JSON.parse((await this.content.readSmall(m.config.digest)).toString("utf8")) as ImageConfig;
    } catch (err) {
      throw new ImageError("invalid_manifest", `image config ${m.config.digest} is not valid JSON`, {
        cause: err,
      });
    }
    if (!config || typeof config !== "object" || config.os === "unknown") return null;
    return {
      id: m.config.digest,
      manifestDigest: digest,
      mediaType: m.mediaType,
      created: typeof config.created === "string" ? config.created : null,
      size: (await this.unpackedLayerSizes(m.layers)).reduce((a, b) => a + b, 0),
      platform: formatPlatform({
        os: config.os ?? "linux",
        architecture: config.architecture ?? "",
        variant: config.variant,
      }),
    };
  }
}

function repoDigests(names: { name: string; digest: Digest }[]): string[] {
  const set = new Set<string>();
  for (const n of names) {
    const ref = parseReference(n.name);
    set.add(`${familiarRepository(ref)}@${n.digest}`);
  }
  return [...set];
}
