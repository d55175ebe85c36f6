import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { type StatusResponse, StatusResponseSchema, type UsageRecord } from "../buildkit/index.js";
import type { BuildParams } from "./build-params.js";
import type { ContextReuse } from "./context-reuse.js";

/** A classic build's result, and what must still hold for it to be the answer again. */
export interface MemoizedBuild {
  imageId: string;
  manifestDigest: string;
  /**
   * Base images the build resolved (`docker.io/library/busybox:local`, and a `# syntax=` frontend image)
   * with the manifest digest each had.
   */
  bases: { ref: string; digest: string }[];
  /** The build's steps, replayed as a fully cached run. */
  progress: StatusResponse;
}

/** The image store, as the memo checks it. */
export interface MemoImages {
  /** Manifest digest a reference resolves to now. */
  resolve(ref: string): string | undefined;
  hasManifest(digest: string): boolean;
}

type Vertex = StatusResponse["vertexes"][number];

const STEP_RE = /^\[(?:\S+ )?\d+\/\d+\] /;
const METADATA_RE = /^\[internal\] load metadata for (\S+)$/;
/** The `# syntax=` frontend image BuildKit resolved: a base of the build like any FROM image. */
const SYNTAX_RE = /^resolve image config for docker-image:\/\/(\S+)$/;

/**
 * Remembers the image each POST /build produced, keyed by the exact context
 * bytes (sha256 of the uploaded tar) and every parameter that shapes the
 * image, like the classic builder's cache. A repeat of a build whose inputs
 * are unchanged (same bytes, same base image digests, image still present)
 * is answered without a BuildKit round trip: BuildKit would only find every
 * step cached and export the same image again (same ID), yet that costs
 * ~50 ms of solver, session and registry traffic, more than dockerd's whole
 * cached rebuild. Cleared by build cache prunes, so a prune still forces a
 * real rebuild. Bounded LRU; not persisted (a restart just misses once).
 */
export class BuildMemo {
  readonly #entries = new Map<string, MemoizedBuild>();

  /**
   * `contexts`: the last upload of each project, for the next upload to reuse (cleared with the memo: a
   * prune frees its disk too).
   */
  constructor(
    private readonly limit = 256,
    readonly contexts?: ContextReuse,
  ) {}

  /** The key for a build, or undefined when its result must not be reused (no-cache, pull, sessions…). */
  static keyFor(params: BuildParams, contextDigest: string): string | undefined {
    if (params.noCache || params.pull || params.remote !== "" || params.session !== "") return undefined;
    const sorted = (r: Record<string, string>) => Object.entries(r).sort(([a], [b]) => (a < b ? -1 : 1));
    const inputs = [
      contextDigest,
      params.dockerfile,
      sorted(params.buildArgs),
      sorted(params.labels),
      params.target ?? "",
      params.platform ?? "",
      params.network,
      params.extraHosts,
      params.shmSize,
      params.ulimits,
      sorted(params.exporterAttrs),
      params.cacheFrom,
    ];
    return createHash("sha256").update(JSON.stringify(inputs)).digest("hex");
  }

  /** The remembered build, if its image is still stored and its base images still resolve as they did. */
  get(key: string, images: MemoImages): MemoizedBuild | undefined {
    const hit = this.#entries.get(key);
    if (!hit) return undefined;
    if (
      !images.hasManifest(hit.manifestDigest) ||
      hit.bases.some((b) => images.resolve(b.ref) !== b.digest)
    ) {
      this.#entries.delete(key);
      return undefined;
    }
    // Most recently used last.
    this.#entries.delete(key);
    this.#entries.set(key, hit);
    return hit;
  }

  set(key: string, build: MemoizedBuild): void {
    this.#entries.delete(key);
    this.#entries.set(key, build);
    while (this.#entries.size > this.limit) this.#entries.delete(this.#entries.keys().next().value as string);
  }

  /** Forgets every build and frees the kept uploads; returns those as build cache records (a prune's report). */
  clear(): UsageRecord[] {
    this.#entries.clear();
    return this.contexts?.clear() ?? [];
  }
}

/** Collects a build's vertices (latest state of each) to remember its steps and base images. */
export class ProgressRecorder {
  readonly #vertexes = new Map<string, Vertex>();
  /** When each vertex first started (ns): BuildKit reports some twice, restarted. */
  readonly #firstStart = new Map<string, number>();

  add(s: StatusResponse): void {
    for (const v of s.vertexes) {
      this.#vertexes.set(v.digest, v);
      if (v.started && !this.#firstStart.has(v.digest))
        this.#firstStart.set(v.digest, Number(v.started.seconds) * 1e9 + v.started.nanos);
    }
  }

  /** Base image references the frontend resolved. */
  baseRefs(): string[] {
    const refs = new Set<string>();
    for (const v of this.#vertexes.values()) {
      const m = METADATA_RE.exec(v.name) ?? SYNTAX_RE.exec(v.name);
      if (m?.[1]) refs.add(m[1]);
    }
    return [...refs];
  }

  /** The steps as a fully cached run reports them: steps other than FROM cached, nothing running, no logs. */
  cachedRun(): StatusResponse {
    const now = timestampNow();
    const at = (v: Vertex) => this.#firstStart.get(v.digest) ?? Number.MAX_VALUE;
    // In the order they ran, which is the order the classic output numbers steps in.
    const ran = [...this.#vertexes.values()].sort((a, b) => at(a) - at(b));
    return create(StatusResponseSchema, {
      vertexes: ran.map((v) => ({
        digest: v.digest,
        inputs: v.inputs,
        name: v.name,
        cached: STEP_RE.test(v.name) && !/^\[[^\]]*\] FROM /.test(v.name),
        started: now,
        completed: now,
      })),
    });
  }
}
