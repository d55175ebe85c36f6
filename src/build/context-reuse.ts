import { mkdir } from "node:fs/promises";
import path from "node:path";
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
    return a;
  }

  /** Keeps `archive` (now owned here) as `key`'s last upload, or closes it when keeping it saves nothing. */
  async keep(key: string, archive: ContextArchive): Promise<void> {
    const pinned = bytesOf(archive.files);
    if (
      !archive.reusable ||
      pinned > 2 * archive.bytes + PINNED_SLACK ||
      pinned > this.limits.bytes ||
      archive.entries > this.limits.entries
    ) {
      await archive.close();
      return;
    }
    const generation = this.#generation;
    try {
      // The temp directory holds uploads in flight only.
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      for (const f of archive.files)
        if (path.dirname(f.path) !== this.dir) await f.moveTo(path.join(this.dir, path.basename(f.path)));
    } catch {
      await archive.close();
      return;
    }
    if (generation !== this.#generation) {
      await archive.close();
      return;
    }
    const old = this.#kept.get(key);
    this.#kept.delete(key);
    this.#kept.set(key, archive);
    if (old) void old.close().catch(() => {});
    this.#evict();
  }

  /** Bytes of the distinct spool files kept. */
  keptBytes(): number {
    return bytesOf([...this.#kept.values()].flatMap((a) => a.files));
  }

  /** Closes every kept upload (a build cache prune). */
  clear(): void {
    this.#generation++;
    for (const a of this.#kept.values()) void a.close().catch(() => {});
    this.#kept.clear();
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
      void oldest.close().catch(() => {});
    }
  }
}

function bytesOf(files: readonly SpoolFile[]): number {
  let n = 0;
  for (const f of new Set(files)) n += f.size;
  return n;
}
