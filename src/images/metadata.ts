import Database from "better-sqlite3";
import type { Digest } from "./digest.js";

export interface ImageRow {
  /** Config digest, Docker's image ID. */
  id: Digest;
  manifestDigest: Digest;
  mediaType: string;
  created: string | null;
  size: number;
  platform: string;
  addedAt: number;
}

export interface ManifestRow {
  digest: Digest;
  mediaType: string;
  size: number;
  kind: "manifest" | "index";
  /** For a manifest: its config digest when it is an image; for an index: the selected platform's image. */
  imageId: Digest | null;
}

export interface NameRow {
  name: string;
  digest: Digest;
}

/** Outcome of removing an image: the blobs no remaining manifest references. */
export interface RemovedImage {
  names: string[];
  blobs: Digest[];
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS images (
  id TEXT PRIMARY KEY,
  manifest_digest TEXT NOT NULL,
  media_type TEXT NOT NULL,
  created TEXT,
  size INTEGER NOT NULL,
  platform TEXT NOT NULL,
  added_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS manifests (
  digest TEXT PRIMARY KEY,
  media_type TEXT NOT NULL,
  size INTEGER NOT NULL,
  kind TEXT NOT NULL,
  image_id TEXT
);
CREATE INDEX IF NOT EXISTS manifests_image ON manifests(image_id);
CREATE TABLE IF NOT EXISTS manifest_refs (
  manifest TEXT NOT NULL,
  blob TEXT NOT NULL,
  PRIMARY KEY (manifest, blob)
);
CREATE INDEX IF NOT EXISTS manifest_refs_blob ON manifest_refs(blob);
CREATE TABLE IF NOT EXISTS names (
  name TEXT PRIMARY KEY,
  digest TEXT NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS names_digest ON names(digest);
`;

type Raw = Record<string, unknown>;

const imageFrom = (r: Raw): ImageRow => ({
  id: r.id as Digest,
  manifestDigest: r.manifest_digest as Digest,
  mediaType: r.media_type as string,
  created: (r.created as string | null) ?? null,
  size: r.size as number,
  platform: r.platform as string,
  addedAt: r.added_at as number,
});

const manifestFrom = (r: Raw): ManifestRow => ({
  digest: r.digest as Digest,
  mediaType: r.media_type as string,
  size: r.size as number,
  kind: r.kind as "manifest" | "index",
  imageId: (r.image_id as Digest | null) ?? null,
});

/**
 * Image metadata in SQLite. WAL and a busy timeout because a CLI and a daemon may open one data root at
 * the same time; multi-statement changes run in IMMEDIATE transactions so they serialize cleanly.
 */
export class Metadata {
  private readonly db: Database.Database;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("busy_timeout = 10000");
    this.db.pragma("synchronous = NORMAL");
    this.db.exec(SCHEMA);
  }

  close(): void {
    this.db.close();
  }

  getManifest(digest: string): ManifestRow | undefined {
    const r = this.db.prepare("SELECT * FROM manifests WHERE digest = ?").get(digest) as Raw | undefined;
    return r && manifestFrom(r);
  }

  /** Records a manifest, its references, and (optionally) the image it describes, atomically. */
  putManifest(row: ManifestRow, refs: Digest[], image?: Omit<ImageRow, "addedAt">): void {
    this.db
      .transaction(() => {
        this.db
          .prepare(
            `INSERT INTO manifests (digest, media_type, size, kind, image_id) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT(digest) DO UPDATE SET image_id = excluded.image_id`,
          )
          .run(row.digest, row.mediaType, row.size, row.kind, row.imageId);
        const ref = this.db.prepare("INSERT OR IGNORE INTO manifest_refs (manifest, blob) VALUES (?, ?)");
        for (const b of refs) ref.run(row.digest, b);
        if (image) {
          // Keep the first manifest an image was registered with unless it is gone: IDs are stable.
          this.db
            .prepare(
              `INSERT INTO images (id, manifest_digest, media_type, created, size, platform, added_at)
               VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING`,
            )
            .run(
              image.id,
              image.manifestDigest,
              image.mediaType,
              image.created,
              image.size,
              image.platform,
              Date.now(),
            );
        }
      })
      .immediate();
  }

  getImage(id: string): ImageRow | undefined {
    const r = this.db.prepare("SELECT * FROM images WHERE id = ?").get(id) as Raw | undefined;
    return r && imageFrom(r);
  }

  /** Images whose ID hex starts with prefix (prefix without `sha256:`). */
  findImagesByPrefix(hexPrefix: string): ImageRow[] {
    const rows = this.db
      .prepare("SELECT * FROM images WHERE substr(id, 8, ?) = ? LIMIT 2")
      .all(hexPrefix.length, hexPrefix) as Raw[];
    return rows.map(imageFrom);
  }

  listImages(): ImageRow[] {
    return (this.db.prepare("SELECT * FROM images ORDER BY added_at DESC").all() as Raw[]).map(imageFrom);
  }

  /** Digests referenced by an index (its platform children), which are not listed as dangling images. */
  indexChildren(): Set<string> {
    const rows = this.db
      .prepare(
        "SELECT r.blob AS blob FROM manifest_refs r JOIN manifests m ON m.digest = r.manifest WHERE m.kind = 'index'",
      )
      .all() as { blob: string }[];
    return new Set(rows.map((r) => r.blob));
  }

  getName(name: string): NameRow | undefined {
    return this.db.prepare("SELECT name, digest FROM names WHERE name = ?").get(name) as NameRow | undefined;
  }

  /** Sets name -> digest; returns the digest it pointed to before, if any. */
  setName(name: string, digest: Digest): Digest | undefined {
    return this.db
      .transaction(() => {
        const prev = this.getName(name);
        this.db
          .prepare(
            `INSERT INTO names (name, digest, updated_at) VALUES (?, ?, ?)
             ON CONFLICT(name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at`,
          )
          .run(name, digest, Date.now());
        return prev?.digest;
      })
      .immediate();
  }

  deleteName(name: string): boolean {
    return this.db.prepare("DELETE FROM names WHERE name = ?").run(name).changes > 0;
  }

  listNames(): NameRow[] {
    return this.db.prepare("SELECT name, digest FROM names ORDER BY name").all() as NameRow[];
  }

  /** Names whose target (manifest or index) resolves to the image. */
  namesForImage(id: string): NameRow[] {
    return this.db
      .prepare(
        `SELECT n.name AS name, n.digest AS digest FROM names n JOIN manifests m ON m.digest = n.digest
         WHERE m.image_id = ? ORDER BY n.name`,
      )
      .all(id) as NameRow[];
  }

  /** When a name last pointed at the image (ms since epoch), or undefined for an untagged image. */
  lastTagTime(id: string): number | undefined {
    const r = this.db
      .prepare(
        `SELECT MAX(n.updated_at) AS t FROM names n JOIN manifests m ON m.digest = n.digest WHERE m.image_id = ?`,
      )
      .get(id) as { t: number | null } | undefined;
    return r?.t ?? undefined;
  }

  namesWithPrefix(prefix: string): NameRow[] {
    return this.db
      .prepare("SELECT name, digest FROM names WHERE substr(name, 1, ?) = ? ORDER BY name")
      .all(prefix.length, prefix) as NameRow[];
  }

  /**
   * Removes an image, every name resolving to it, the manifests describing it (and children of those
   * that are indexes) unless still reachable, and reports blobs nothing references any more.
   */
  removeImage(id: Digest): RemovedImage {
    return this.db
      .transaction((): RemovedImage => {
        const names = this.namesForImage(id).map((n) => n.name);
        const delName = this.db.prepare("DELETE FROM names WHERE name = ?");
        for (const n of names) delName.run(n);
        this.db.prepare("DELETE FROM images WHERE id = ?").run(id);
        const image = this.db.prepare("SELECT digest FROM manifests WHERE image_id = ?").all(id) as {
          digest: Digest;
        }[];
        const candidates = new Set<Digest>(image.map((r) => r.digest));
        const refsOf = this.db.prepare("SELECT blob FROM manifest_refs WHERE manifest = ?");
        for (const d of [...candidates]) {
          if (this.getManifest(d)?.kind !== "index") continue;
          for (const { blob } of refsOf.all(d) as { blob: Digest }[]) {
            const child = this.getManifest(blob);
            if (!child) continue;
            candidates.add(blob);
            // A sibling platform's image with no name of its own goes with its index.
            if (child.imageId && this.namesForImage(child.imageId).length === 0) {
              const img = this.getImage(child.imageId);
              if (img?.manifestDigest === blob)
                this.db.prepare("DELETE FROM images WHERE id = ?").run(img.id);
            }
          }
        }
        const live = this.liveManifests();
        const blobs = new Set<Digest>();
        for (const d of candidates) {
          if (live.has(d)) continue;
          for (const { blob } of refsOf.all(d) as { blob: Digest }[]) blobs.add(blob);
          blobs.add(d);
          this.db.prepare("DELETE FROM manifest_refs WHERE manifest = ?").run(d);
          this.db.prepare("DELETE FROM manifests WHERE digest = ?").run(d);
        }
        const stillUsed = this.db.prepare(
          "SELECT 1 FROM manifest_refs WHERE blob = ? UNION ALL SELECT 1 FROM manifests WHERE digest = ? LIMIT 1",
        );
        const orphaned = [...blobs].filter((b) => stillUsed.get(b, b) === undefined);
        return { names, blobs: orphaned };
      })
      .immediate();
  }

  /** Manifests reachable from a name or an image record. */
  private liveManifests(): Set<string> {
    const rows = this.db
      .prepare(
        `WITH RECURSIVE live(d) AS (
           SELECT digest FROM names UNION SELECT manifest_digest FROM images
           UNION SELECT r.blob FROM manifest_refs r JOIN live ON r.manifest = live.d
         ) SELECT d FROM live`,
      )
      .all() as { d: string }[];
    return new Set(rows.map((r) => r.d));
  }

  /** True when any manifest references the blob (used to avoid deleting shared blobs). */
  isBlobReferenced(digest: string): boolean {
    return (
      this.db
        .prepare(
          "SELECT 1 FROM manifest_refs WHERE blob = ? UNION ALL SELECT 1 FROM manifests WHERE digest = ? LIMIT 1",
        )
        .get(digest, digest) !== undefined
    );
  }
}
