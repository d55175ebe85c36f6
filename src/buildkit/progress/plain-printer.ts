import type { StatusResponse, Vertex, VertexStatus } from "../gen/moby/buildkit/v1/control_pb.js";
import { formatBytes, toFixedGo } from "./go-format.js";
import { spanSeconds, tsNanos } from "./timestamps.js";

/** buildx prints a running status again only after 5% more progress or 5 s. */
const MIN_PROGRESS_DELTA = 0.05;
const MIN_TIME_DELTA_NS = 5_000_000_000n;
/** buildx keeps this many printed log lines per step for the failure summary. */
const ERROR_LOG_LINES = 10;
const CANCELED_SUFFIX = "context canceled";

export interface PlainProgressOptions {
  /** At finish(), print the "------ / > step: / last lines / ------" block for failed steps (default true). */
  errorLogs?: boolean;
  /** At finish(), print buildx's "N warnings found" list (default true). */
  warningsSummary?: boolean;
}

interface Interval {
  start: bigint;
  stop: bigint | undefined;
}

/** What the printer knows about one vertex (or one progress group shown as a vertex). */
class VertexView {
  index = 0;
  name = "";
  cached = false;
  error = "";
  /** Last started message, to decide whether a repeat changes anything. */
  prev: { name: string; started?: bigint; completed?: bigint; cached: boolean; error: string } | undefined;
  readonly intervals = new Map<bigint, Interval>();
  readonly statusOrder: string[] = [];
  readonly statuses = new Map<string, VertexStatus>();
  readonly statusUpdates = new Set<string>();
  /** Complete "<seconds> <text>" log lines not printed yet. */
  lines: string[] = [];
  /** A log line still waiting for its newline. */
  partial: { time: string; text: string } | undefined;
  readonly decoder = new TextDecoder();
  readonly tail: string[] = [];
  readonly warnings: string[] = [];
  warningIdx = 0;
  /** Set for progress groups: member vertexes by digest. */
  readonly members: Map<string, Vertex> | undefined;
  hidden = false;

  constructor(
    readonly key: string,
    group?: { name: string },
  ) {
    if (group) {
      this.name = group.name;
      this.members = new Map();
      this.hidden = true;
    }
  }

  merged(): Interval[] {
    return mergeIntervals([...this.intervals.values()]);
  }

  isStarted(): boolean {
    return this.intervals.size > 0;
  }

  isCompleted(): boolean {
    const m = this.merged();
    return m.length > 0 && (m[m.length - 1] as Interval).stop !== undefined;
  }

  mostRecentStart(): bigint | undefined {
    const m = this.merged();
    return m.length > 0 ? (m[m.length - 1] as Interval).start : undefined;
  }
}

/**
 * Renders a BuildKit status stream the way `docker buildx build
 * --progress=plain` does (BuildKit util/progress/progressui, textMux).
 * Differences, on purpose: output is produced synchronously per update with
 * no wall-clock scheduling (after the current vertex, every other updated
 * vertex is printed, with "#N ..." and a repeated header on each switch);
 * partial log lines are held until their newline or the vertex's end instead
 * of being printed half; no ANSI colour.
 */
export class PlainProgressPrinter {
  readonly #out: { write(s: string): unknown };
  readonly #opts: PlainProgressOptions;
  readonly #byDigest = new Map<string, VertexView>();
  readonly #groups = new Map<string, VertexView>();
  /** Vertexes in the order they first started (buildx's t.vertexes). */
  readonly #started: VertexView[] = [];
  readonly #updates = new Set<VertexView>();
  readonly #lastStatus = new Map<string, { current: bigint; timestamp: bigint }>();
  readonly #warnings: string[] = [];
  #current: VertexView | undefined;
  #notFirst = false;
  #nextIndex = 0;
  #finished = false;
  #buf: string[] = [];

  constructor(out: { write(s: string): unknown }, opts: PlainProgressOptions = {}) {
    this.#out = out;
    this.#opts = opts;
  }

  update(resp: StatusResponse): void {
    if (this.#finished) return;
    this.#apply(resp);
    this.#print();
    this.#flush();
  }

  /** Prints what is still held back, failed steps' last output and the warnings list. */
  finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    for (const v of this.#started) {
      if (!v.partial) continue;
      v.lines.push(`${v.partial.time} ${v.partial.text}`);
      v.partial = undefined;
      this.#updates.add(v);
    }
    this.#print();
    if (this.#opts.errorLogs !== false) {
      for (const v of this.#started) {
        if (!v.error || v.error.endsWith(CANCELED_SUFFIX)) continue;
        this.#line("------");
        this.#line(` > ${v.name}:`);
        for (const l of v.tail) this.#line(l);
        this.#line("------");
      }
    }
    if (this.#opts.warningsSummary !== false && this.#warnings.length > 0) {
      const n = this.#warnings.length;
      this.#buf.push(
        `\n ${n === 1 ? "1 warning found" : `${n} warnings found`} (use docker --debug to expand):\n`,
      );
      for (const w of this.#warnings) this.#line(` - ${w}`);
    }
    this.#flush();
  }

  #apply(resp: StatusResponse): void {
    const touchedGroups: VertexView[] = [];
    for (const v of resp.vertexes) {
      if (v.progressGroup) {
        const id = v.progressGroup.id;
        let g = this.#groups.get(id);
        if (!g) {
          g = new VertexView(id, { name: v.progressGroup.name });
          this.#groups.set(id, g);
        }
        if (!touchedGroups.includes(g)) touchedGroups.push(g);
        g.members?.set(v.digest, v);
        this.#byDigest.set(v.digest, g);
        continue;
      }
      this.#applyVertex(v);
    }
    for (const g of touchedGroups) this.#refreshGroup(g);

    for (const s of resp.statuses) {
      const v = this.#byDigest.get(s.vertex);
      if (!v) continue;
      const prev = v.statuses.get(s.ID);
      if (s.started && !prev?.started) v.statusOrder.push(s.ID);
      v.statuses.set(s.ID, s);
      v.statusUpdates.add(s.ID);
      this.#updates.add(v);
    }

    const text = new TextDecoder();
    for (const w of resp.warnings) {
      const short = text.decode(w.short);
      this.#warnings.push(short);
      // Like buildx, a warning is shown with the vertex's next output.
      this.#byDigest.get(w.vertex)?.warnings.push(short);
    }

    for (const l of resp.logs) {
      const v = this.#byDigest.get(l.vertex);
      if (!v) continue;
      if (this.#appendLog(v, v.decoder.decode(l.msg, { stream: true }), tsNanos(l.timestamp))) {
        this.#updates.add(v);
      }
    }
  }

  #applyVertex(v: Vertex): void {
    let view = this.#byDigest.get(v.digest);
    const wasStarted = view?.isStarted() ?? false;
    if (!view) {
      view = new VertexView(v.digest);
      this.#byDigest.set(v.digest, view);
    }
    const started = tsNanos(v.started);
    const completed = tsNanos(v.completed);
    if (started !== undefined) {
      const old = view.prev;
      const changed =
        !old ||
        old.name !== v.name ||
        old.started !== started ||
        (completed !== undefined && old.completed !== completed) ||
        old.cached !== v.cached ||
        old.error !== v.error;
      if (changed) this.#updates.add(view);
      view.prev = { name: v.name, started, cached: v.cached, error: v.error };
      if (completed !== undefined) view.prev.completed = completed;
      if (!wasStarted) this.#started.push(view);
    }
    // A repeated not-yet-started announcement must not reset a running vertex.
    if (!wasStarted || started !== undefined) {
      view.name = v.name;
      view.cached = v.cached;
      view.error = v.error;
    }
    if (started !== undefined) view.intervals.set(started, { start: started, stop: completed });
  }

  /** A group is cached iff all members are, fails with the first member error, shows once a non-weak member starts. */
  #refreshGroup(g: VertexView): void {
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
    if (g.hidden) return;
    if (wasHidden) {
      changed = true;
      this.#started.push(g);
    }
    if (changed) this.#updates.add(g);
  }

  /** Splits a chunk into timestamped lines; returns whether a line completed. */
  #appendLog(v: VertexView, chunk: string, at: bigint | undefined): boolean {
    if (chunk === "") return false;
    const segments = chunk.split("\n");
    const last = segments.pop() as string;
    for (const seg of segments) {
      if (v.partial) {
        v.lines.push(`${v.partial.time} ${v.partial.text}${seg}`);
        v.partial = undefined;
      } else {
        v.lines.push(`${logTime(v, at)} ${seg}`);
      }
    }
    if (last !== "") {
      if (v.partial) v.partial.text += last;
      else v.partial = { time: logTime(v, at), text: last };
    }
    return segments.length > 0;
  }

  #print(): void {
    const completed: VertexView[] = [];
    const rest: VertexView[] = [];
    for (const v of this.#updates) {
      if (v.hidden) continue;
      (v.isCompleted() ? completed : rest).push(v);
    }
    const current = this.#current;
    // Finished vertexes are printed first, the current one before the others.
    if (current && completed.includes(current)) this.#printVtx(current);
    completed.sort((a, b) => cmp(lastStop(a), lastStop(b)));
    for (const v of completed) if (v !== current) this.#printVtx(v);

    if (rest.length === 0) {
      if (current?.isStarted() && !current.isCompleted()) return;
      // Make some open vertex the current one, as buildx does.
      const open = this.#started.find((v) => v.isStarted() && !v.isCompleted() && !v.hidden);
      if (open) this.#printVtx(open);
      return;
    }
    if (current && rest.includes(current)) this.#printVtx(current);
    for (const v of rest) if (v !== current) this.#printVtx(v);
  }

  #printVtx(v: VertexView): void {
    if (v.index === 0) v.index = ++this.#nextIndex;
    const n = v.index;
    if (v !== this.#current) {
      if (this.#current) this.#line(`#${this.#current.index} ...`);
      if (this.#notFirst) this.#line("");
      this.#notFirst = true;
      this.#line(`#${n} ${v.name}`);
    }

    let openStatus = false; // a status may still run after its vertex completed (remote cache loading)
    for (const id of v.statusOrder) {
      if (!v.statusUpdates.has(id)) continue;
      const s = v.statuses.get(id) as VertexStatus;
      const timestamp = tsNanos(s.timestamp);
      const completed = tsNanos(s.completed);
      const started = tsNanos(s.started);
      const key = `${v.key}\0${id}`;
      const last = this.#lastStatus.get(key);
      if (last && completed === undefined) {
        const progress = s.total > 0n ? Number(s.current - last.current) / Number(s.total) : 0;
        const elapsed = (timestamp ?? 0n) - last.timestamp;
        if (progress < MIN_PROGRESS_DELTA && elapsed < MIN_TIME_DELTA_NS) continue;
      }
      this.#lastStatus.set(key, { current: s.current, timestamp: timestamp ?? 0n });
      let bytes = "";
      if (s.total !== 0n) bytes = ` ${formatBytes(Number(s.current))} / ${formatBytes(Number(s.total))}`;
      else if (s.current !== 0n) bytes = ` ${formatBytes(Number(s.current))}`;
      let tm = "";
      const end = completed ?? timestamp;
      if (started !== undefined && end !== undefined) {
        const diff = spanSeconds(end - started);
        if (diff > 0.01) tm = ` ${toFixedGo(diff, 1)}s`;
      }
      if (completed !== undefined) tm += " done";
      else openStatus = true;
      this.#line(`#${n} ${id}${bytes}${tm}`);
    }
    v.statusUpdates.clear();

    for (const w of v.warnings.slice(v.warningIdx)) this.#line(`#${n} WARN: ${w}`);
    v.warningIdx = v.warnings.length;

    this.#printLines(v, v.lines);
    v.lines = [];

    this.#current = v;
    if (v.isCompleted() && !openStatus) {
      this.#current = undefined;
      if (v.partial) {
        this.#printLines(v, [`${v.partial.time} ${v.partial.text}`]);
        v.partial = undefined;
      }
      if (v.error) {
        this.#line(v.error.endsWith(CANCELED_SUFFIX) ? `#${n} CANCELED` : `#${n} ERROR: ${v.error}`);
      } else if (v.cached) {
        this.#line(`#${n} CACHED`);
      } else {
        let ns = 0n;
        for (const i of v.merged()) ns += (i.stop ?? i.start) - i.start;
        this.#line(`#${n} DONE ${toFixedGo(spanSeconds(ns), 1)}s`);
      }
    }
    this.#updates.delete(v);
  }

  #printLines(v: VertexView, lines: string[]): void {
    for (const l of lines) {
      this.#line(`#${v.index} ${l}`);
      v.tail.push(l);
      if (v.tail.length > ERROR_LOG_LINES) v.tail.shift();
    }
  }

  #line(s: string): void {
    this.#buf.push(`${s}\n`);
  }

  #flush(): void {
    if (this.#buf.length === 0) return;
    const text = this.#buf.join("");
    this.#buf = [];
    this.#out.write(text);
  }
}

/** "<seconds since the vertex started>" with buildx's precision: 3 decimals below 10 s, 2 below 100 s, else 1. */
function logTime(v: VertexView, at: bigint | undefined): string {
  const start = v.mostRecentStart();
  const sec = start !== undefined && at !== undefined ? spanSeconds(at - start) : 0;
  const prec = sec < 10 ? 3 : sec < 100 ? 2 : 1;
  return toFixedGo(sec, prec);
}

function lastStop(v: VertexView): bigint {
  const m = v.merged();
  return (m[m.length - 1] as Interval).stop ?? 0n;
}

function cmp(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Overlapping [start, stop) spans merged into one, sorted by start; an open
 * span (no stop) swallows everything after it.
 */
export function mergeIntervals(intervals: Interval[]): Interval[] {
  const sorted = [...intervals].sort((a, b) => cmp(a.start, b.start));
  const out: Interval[] = [];
  let cur = sorted[0];
  if (!cur) return out;
  for (const next of sorted.slice(1)) {
    if (cur.stop === undefined) break;
    if (cur.stop < next.start) {
      out.push(cur);
      cur = next;
      continue;
    }
    if (next.stop === undefined) {
      cur = { start: cur.start, stop: undefined };
      break;
    }
    if (cur.stop >= next.stop) continue;
    cur = { start: cur.start, stop: next.stop };
  }
  out.push(cur);
  return out;
}
