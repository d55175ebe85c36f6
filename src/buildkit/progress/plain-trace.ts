import type { StatusResponse, Vertex, VertexStatus } from "../gen/moby/buildkit/v1/control_pb.js";
import { toFixedGo } from "./go-format.js";
import { type Interval, mergeIntervals } from "./intervals.js";
import { spanSeconds, tsNanos } from "./timestamps.js";

/** buildctl keeps this many printed log lines per step for the failure summary. */
const LOG_RING_SIZE = 10;

/**
 * What the plain printer knows about one vertex (or one progress group shown
 * as a vertex). Mirrors BuildKit progressui's `vertex`.
 */
export class TraceVertex {
  /** The "#N" number, given when first printed. */
  index = 0;
  name = "";
  cached = false;
  error = "";
  /** Last started message, to decide whether a repeat changes anything. */
  prev: { name: string; started: bigint; cached: boolean; error: string } | undefined;
  readonly intervals = new Map<bigint, Interval>();
  merged: Interval[] = [];
  /** IDs of statuses that have started, in the order they started (others are never printed). */
  readonly statusOrder: string[] = [];
  readonly statusById = new Map<string, VertexStatus>();
  readonly statusUpdates = new Set<string>();
  /** "<seconds> <text>" log lines not printed yet; the last may be partial. */
  logs: string[] = [];
  logsPartial = false;
  /** How much of logs[0] is already printed (a partial line continued later). */
  logsOffset = 0;
  /** Last printed log fragments, for the failure summary (a ring, as buildctl's). */
  readonly logRing: (string | undefined)[] = new Array(LOG_RING_SIZE).fill(undefined);
  logRingPos = 0;
  readonly decoder = new TextDecoder();
  readonly warnings: string[] = [];
  warningIdx = 0;
  /** Messages since this vertex was last the printed one, and when the first came (ms). */
  count = 0;
  lastBlockTime: number | undefined;
  /** Set for progress groups: member vertexes by digest. */
  readonly members: Map<string, Vertex> | undefined;
  /** A progress group stays hidden until a non-weak member starts. */
  hidden = false;

  constructor(group?: { name: string }) {
    if (group) {
      this.name = group.name;
      this.members = new Map();
      this.hidden = true;
    }
  }

  touch(now: number): void {
    if (this.count === 0) this.lastBlockTime = now;
    this.count++;
  }

  isStarted(): boolean {
    return this.merged.length > 0;
  }

  isCompleted(): boolean {
    return this.mostRecent()?.stop !== undefined;
  }

  mostRecent(): Interval | undefined {
    return this.merged[this.merged.length - 1];
  }

  setInterval(start: bigint, stop: bigint | undefined): void {
    this.intervals.set(start, { start, stop });
    this.merged = mergeIntervals(this.intervals.values());
  }
}

/**
 * Folds StatusResponses into per-vertex state and records which vertexes
 * have something new to print. Mirrors BuildKit progressui's `trace`.
 */
export class PlainTrace {
  readonly byDigest = new Map<string, TraceVertex>();
  readonly #groups = new Map<string, TraceVertex>();
  /** Vertexes in the order they first started. */
  readonly started: TraceVertex[] = [];
  /** Vertexes with changes not printed yet, in the order they changed. */
  readonly updates = new Set<TraceVertex>();
  /** Every warning's short text, in arrival order. */
  readonly warnings: string[] = [];

  update(resp: StatusResponse, now: number): void {
    const touchedGroups: TraceVertex[] = [];
    for (const v of resp.vertexes) {
      if (v.progressGroup) {
        const id = v.progressGroup.id;
        let g = this.#groups.get(id);
        if (!g) {
          g = new TraceVertex({ name: v.progressGroup.name });
          this.#groups.set(id, g);
        }
        if (!touchedGroups.includes(g)) touchedGroups.push(g);
        g.members?.set(v.digest, v);
        this.byDigest.set(v.digest, g);
        continue;
      }
      this.#applyVertex(v, now);
    }
    for (const g of touchedGroups) this.#refreshGroup(g, now);

    for (const s of resp.statuses) {
      const v = this.byDigest.get(s.vertex);
      if (!v) continue;
      const prev = v.statusById.get(s.ID);
      v.statusById.set(s.ID, s);
      if (s.started && !prev?.started) v.statusOrder.push(s.ID);
      v.statusUpdates.add(s.ID);
      this.updates.add(v);
      v.touch(now);
    }

    const text = new TextDecoder();
    for (const w of resp.warnings) {
      const short = text.decode(w.short);
      this.warnings.push(short);
      const v = this.byDigest.get(w.vertex);
      if (!v) continue;
      // Not an update of its own: shown with the vertex's next output.
      v.warnings.push(short);
      v.touch(now);
    }

    for (const l of resp.logs) {
      const v = this.byDigest.get(l.vertex);
      if (!v) continue;
      const chunk = v.decoder.decode(l.msg, { stream: true });
      // Only part of a UTF-8 sequence: nothing to show until the rest comes.
      if (chunk === "" && l.msg.length > 0) continue;
      appendLog(v, chunk, tsNanos(l.timestamp));
      this.updates.add(v);
      v.touch(now);
    }
  }

  #applyVertex(v: Vertex, now: number): void {
    let view = this.byDigest.get(v.digest);
    const wasStarted = view?.isStarted() ?? false;
    if (!view) {
      view = new TraceVertex();
      this.byDigest.set(v.digest, view);
    }
    const started = tsNanos(v.started);
    const completed = tsNanos(v.completed);
    if (started !== undefined) {
      const old = view.prev;
      // Any message carrying a completion counts as a change, as in buildctl.
      const changed =
        !old ||
        completed !== undefined ||
        old.name !== v.name ||
        old.started !== started ||
        old.cached !== v.cached ||
        old.error !== v.error;
      if (changed) {
        view.touch(now);
        this.updates.add(view);
      }
      view.prev = { name: v.name, started, cached: v.cached, error: v.error };
      if (!wasStarted) this.started.push(view);
    }
    // A repeated not-yet-started announcement must not reset a running vertex.
    if (!wasStarted || started !== undefined) {
      view.name = v.name;
      view.cached = v.cached;
      view.error = v.error;
    }
    if (started !== undefined) view.setInterval(started, completed);
  }

  /** A group is cached iff all members are, fails with the first member error, shows once a non-weak member starts. */
  #refreshGroup(g: TraceVertex, now: number): void {
    const wasHidden = g.hidden;
    let changed = false;
    let cached = true;
    let error = "";
    for (const m of g.members?.values() ?? []) {
      const start = tsNanos(m.started);
      if (start !== undefined) {
        const stop = tsNanos(m.completed);
        const prev = g.intervals.get(start);
        if (!prev || prev.stop !== stop) changed = true;
        g.intervals.set(start, { start, stop });
        if (!m.progressGroup?.weak) g.hidden = false;
      }
      cached = cached && m.cached;
      if (!error) error = m.error;
      else g.hidden = false;
    }
    if (g.cached !== cached || g.error !== error) changed = true;
    g.cached = cached;
    g.error = error;
    g.merged = mergeIntervals(g.intervals.values());
    if (g.hidden) return;
    if (wasHidden) {
      changed = true;
      this.started.push(g);
    }
    if (changed) {
      g.touch(now);
      this.updates.add(g);
    }
  }
}

/**
 * Splits a chunk into "<seconds> <text>" lines; a chunk without a trailing
 * newline leaves its last line open for the next chunk to continue.
 */
function appendLog(v: TraceVertex, chunk: string, at: bigint | undefined): void {
  if (chunk === "") {
    v.logsPartial = false;
    return;
  }
  const segments = chunk.split("\n");
  const complete = segments[segments.length - 1] === "";
  if (complete) segments.pop();
  segments.forEach((seg, i) => {
    if (i === 0 && v.logsPartial && v.logs.length > 0) {
      v.logs[v.logs.length - 1] += seg;
    } else {
      v.logs.push(`${logTime(v, at)} ${seg}`);
    }
  });
  v.logsPartial = !complete;
}

/** Seconds since the vertex (last) started: 3 decimals below 10 s, 2 below 100 s, else 1. */
function logTime(v: TraceVertex, at: bigint | undefined): string {
  const start = v.mostRecent()?.start;
  const sec = start !== undefined && at !== undefined ? spanSeconds(at - start) : 0;
  const prec = sec < 10 ? 3 : sec < 100 ? 2 : 1;
  return toFixedGo(sec, prec);
}
