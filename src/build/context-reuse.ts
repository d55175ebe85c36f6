import { createHash } from "node:crypto";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type UsageRecord, UsageRecordSchema } from "../buildkit/index.js";
import type { ContextArchive } from "./context-archive.js";
import type { SpoolFile } from "./spool-file.js";

export interface ContextReuseLimits {
  /** Most bytes of spool files kept, all projects together. */
  bytes: number;
  /** Most projects whose last upload is kept. */
  projects: number;
  /** Most entries in the kept indexes, all projects together (each costs ~200 bytes of heap). */
  entries: number;
}

// 2 GiB (`2 << 30` would overflow int32); 200,000 entries are ~40 MB of heap.
const DEFAULT_LIMITS: ContextReuseLimits = { bytes: 2 * 2 ** 30, projects: 8, entries: 200_000 };
/** A kept archive may pin this much more than its own bytes (files of earlier uploads it reuses in part). */
const PINNED_SLACK = 64 << 20;

/**
 * The last classic upload of each project (tags, Dockerfile, target), kept so
 * the next upload of it writes only the big files that changed: `docker build
 * --no-cache` of a 512 MiB context then writes its bytes once instead of twice
 * (dockerd unpacks them every time). Bounded by bytes and projects, least
 * recently kept first out; cleared by build cache prunes; what a killed daemon
 * kept is swept at the next start (the names carry its pid).
 */
export class ContextReuse {
  readonly #kept = new Map<string, ContextArchive>();
  /** What build cache usage says of each project's kept upload; outlives a take() until the next keep(). */
  readonly #records = new Map<string, KeptRecord>();
  /** Bumped by clear(): a keep() that was moving files meanwhile must not bring its upload back. */
  #generation = 0;

  constructor(
    readonly dir: string,
    private readonly limits = DEFAULT_LIMITS,
  ) {}

  /** The kept upload of `key`, now the caller's to close; the next keep() puts a newer one back. */
  take(key: string): ContextArchive | undefined {
    const a = this.#kept.get(key);
    this.#kept.delete(key);
    const record = this.#records.get(key);
    if (a && record) {
      record.usageCount++;
      record.lastUsedAt = new Date();
    }
    return a;
  }

  /**
   * Keeps `archive` (now owned here) as `key`'s last upload, or closes it when keeping it saves nothing.
   * `label` names the project in build cache usage (`docker system df -v`, `buildx du --verbose`).
   */
  async keep(key: string, archive: ContextArchive, label = ""): Promise<void> {
    const pinned = bytesOf(archive.files);
    if (
      !archive.reusable ||
      pinned > 2 * archive.bytes + PINNED_SLACK ||
      pinned > this.limits.bytes ||
      archive.entries > this.limits.entries
    )
      return this.#drop(key, archive);
    const generation = this.#generation;
    try {
      // The temp directory holds uploads in flight only.
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      for (const f of archive.files)
        if (path.dirname(f.path) !== this.dir) await f.moveTo(path.join(this.dir, path.basename(f.path)));
    } catch {
      return this.#drop(key, archive);
    }
    if (generation !== this.#generation) return this.#drop(key, archive);
    const old = this.#kept.get(key);
    this.#kept.delete(key);
    this.#kept.set(key, archive);
    const now = new Date();
    const record = this.#records.get(key);
    if (record) {
      record.lastUsedAt = now;
      record.label = label;
    } else this.#records.set(key, { label, createdAt: now, lastUsedAt: now, usageCount: 0 });
    if (old) void old.close().catch(() => {});
    this.#evict();
  }

  /**
   * The kept uploads as build cache records (BuildKit's "source.local", which its own context copies
   * are): they are disk the build cache holds, and a prune frees them. A spool file kept for several
   * projects counts once, in the first, and marks each of them shared.
   */
  usage(): UsageRecord[] {
    const holders = new Map<SpoolFile, number>();
    for (const a of this.#kept.values())
      for (const f of new Set(a.files)) holders.set(f, (holders.get(f) ?? 0) + 1);
    const counted = new Set<SpoolFile>();
    const out: UsageRecord[] = [];
    for (const [key, a] of this.#kept) {
      const files = [...new Set(a.files)];
      const own = files.filter((f) => !counted.has(f));
      for (const f of own) counted.add(f);
      const r = this.#records.get(key);
      out.push(
        create(UsageRecordSchema, {
          ID: keptRecordId(key),
          RecordType: "source.local",
          Description: `kept upload of a classic build context${r?.label ? `: ${r.label}` : ""}`,
          Size: BigInt(bytesOf(own)),
          Shared: files.some((f) => (holders.get(f) ?? 0) > 1),
          CreatedAt: r && timestampFromDate(r.createdAt),
          LastUsedAt: r && timestampFromDate(r.lastUsedAt),
          UsageCount: BigInt(r?.usageCount ?? 0),
        }),
      );
    }
    return out;
  }

  /** Closes an upload not kept; the project's record goes too unless an earlier upload of it is still kept. */
  async #drop(key: string, archive: ContextArchive): Promise<void> {
    if (!this.#kept.has(key)) this.#records.delete(key);
    await archive.close();
  }

  /** Bytes of the distinct spool files kept. */
  keptBytes(): number {
    return bytesOf([...this.#kept.values()].flatMap((a) => a.files));
  }

  /** Closes every kept upload (a build cache prune); returns them as usage() listed them. */
  clear(): UsageRecord[] {
    const released = this.usage();
    this.#generation++;
    for (const a of this.#kept.values()) void a.close().catch(() => {});
    this.#kept.clear();
    this.#records.clear();
    return released;
  }

  #evict(): void {
    const entries = () => [...this.#kept.values()].reduce((n, a) => n + a.entries, 0);
    while (
      this.#kept.size > this.limits.projects ||
      this.keptBytes() > this.limits.bytes ||
      entries() > this.limits.entries
    ) {
      const [key, oldest] = this.#kept.entries().next().value as [string, ContextArchive];
      this.#kept.delete(key);
      this.#records.delete(key);
      void oldest.close().catch(() => {});
    }
  }
}

interface KeptRecord {
  label: string;
  createdAt: Date;
  lastUsedAt: Date;
  /** Uploads that reused it. */
  usageCount: number;
}

/** Stable per project, shaped like BuildKit's record IDs (25 characters). */
function keptRecordId(key: string): string {
  return createHash("sha256").update(`arca kept context\0${key}`).digest("hex").slice(0, 25);
}

function bytesOf(files: readonly SpoolFile[]): number {
  let n = 0;
  for (const f of new Set(files)) n += f.size;
  return n;
}
