import type { VertexStatus } from "../gen/moby/buildkit/v1/control_pb.js";
import { formatBytes, toFixedGo } from "./go-format.js";
import { compareBigint } from "./intervals.js";
import type { PlainTrace, TraceVertex } from "./plain-trace.js";
import { spanSeconds, tsNanos } from "./timestamps.js";

/** Switch away from a busy current vertex only after it had this long (scaled by its share). */
const ANTI_FLICKER_MS = 5_000;
/** A vertex waiting longer than this to be shown gets shown. */
const MAX_DELAY_MS = 10_000;
/** A running status is printed again only after 5% more progress or 5 s. */
const MIN_PROGRESS_DELTA = 0.05;
const MIN_TIME_DELTA_NS = 5_000_000_000n;
const CANCELED_SUFFIX = "context canceled";

interface Stat {
  blockTime: number;
  speed: number;
  share: number;
  overLimit: boolean;
}

/**
 * Turns a PlainTrace's pending updates into `#N ...` text, one vertex at a
 * time, the way BuildKit progressui's textMux does: finished vertexes first
 * (in finishing order), then at most one running vertex, switching between
 * running vertexes only when one is much busier or waited too long.
 */
export class TextMux {
  readonly #line: (s: string) => void;
  readonly #raw: (s: string) => void;
  readonly #lastStatus = new Map<string, { current: bigint; timestamp: bigint }>();
  #current: TraceVertex | undefined;
  #notFirst = false;
  #nextIndex = 0;

  constructor(write: (s: string) => void) {
    this.#raw = write;
    this.#line = (s) => write(`${s}\n`);
  }

  print(t: PlainTrace, now: number): void {
    const completed: TraceVertex[] = [];
    const rest: TraceVertex[] = [];
    for (const v of t.updates) {
      if (v.hidden) continue;
      (v.isCompleted() ? completed : rest).push(v);
    }
    const current = this.#current;
    if (current && completed.includes(current)) this.#printVtx(t, current);
    completed.sort((a, b) => compareBigint(a.mostRecent()?.stop ?? 0n, b.mostRecent()?.stop ?? 0n));
    for (const v of completed) if (v !== current) this.#printVtx(t, v);

    if (rest.length === 0) {
      if (current?.isStarted() && !current.isCompleted()) return;
      // Make some open vertex the current one.
      const open = t.started.find((v) => v.isStarted() && !v.isCompleted() && !v.hidden);
      if (open) this.#printVtx(t, open);
      return;
    }

    if (current && rest.includes(current)) this.#printVtx(t, current);

    const stats = new Map<TraceVertex, Stat>();
    let sum = 0;
    let max: TraceVertex | undefined;
    const candidates = current && !rest.includes(current) ? [...rest, current] : rest;
    for (const v of candidates) {
      if (v.lastBlockTime === undefined) continue;
      const blockTime = now - v.lastBlockTime;
      // Float division as in Go: a zero wait gives Infinity (or NaN), never an exception.
      const speed = v.count / (blockTime / 1000);
      const overLimit = blockTime > MAX_DELAY_MS && v !== current;
      stats.set(v, { blockTime, speed, share: 0, overLimit });
      sum += speed;
      if (overLimit || !max || (stats.get(max) as Stat).speed < speed) max = v;
    }
    for (const s of stats.values()) s.share = s.speed / sum;

    if (!current || completed.includes(current)) {
      if (max) this.#printVtx(t, max);
      return;
    }
    for (const v of rest) {
      if (stats.get(v)?.overLimit) {
        this.#printVtx(t, v);
        return;
      }
    }
    const cur = stats.get(current);
    if (cur && max && (1 / (1 - cur.share)) * ANTI_FLICKER_MS < cur.blockTime) this.#printVtx(t, max);
  }

  #printVtx(t: PlainTrace, v: TraceVertex): void {
    if (v.index === 0) v.index = ++this.#nextIndex;
    const n = v.index;
    if (v !== this.#current) {
      const old = this.#current;
      if (old) {
        if (old.logsPartial) this.#raw("\n");
        old.logsOffset = 0;
        old.count = 0;
        this.#line(`#${old.index} ...`);
      }
      if (this.#notFirst) this.#line("");
      this.#notFirst = true;
      this.#line(`#${n} ${limitName(v.name)}`);
    }

    // A status may still run after its vertex completed (remote cache loading).
    let openStatus = false;
    for (const id of v.statusOrder) {
      if (!v.statusUpdates.has(id)) continue;
      const line = this.#statusLine(v.statusById.get(id) as VertexStatus);
      if (line === undefined) continue;
      if (!line.done) openStatus = true;
      this.#line(`#${n} ${line.text}`);
    }
    v.statusUpdates.clear();

    for (const w of v.warnings.slice(v.warningIdx)) this.#line(`#${n} WARN: ${w}`);
    v.warningIdx = v.warnings.length;

    this.#printLogs(v);

    this.#current = v;
    if (v.isCompleted() && !openStatus) {
      this.#current = undefined;
      v.count = 0;
      if (v.logsPartial) this.#raw("\n");
      if (v.error) {
        this.#line(v.error.endsWith(CANCELED_SUFFIX) ? `#${n} CANCELED` : `#${n} ERROR: ${v.error}`);
      } else if (v.cached) {
        this.#line(`#${n} CACHED`);
      } else {
        let ns = 0n;
        for (const i of v.merged) ns += (i.stop ?? i.start) - i.start;
        this.#line(`#${n} DONE ${toFixedGo(spanSeconds(ns), 1)}s`);
      }
    }
    t.updates.delete(v);
  }

  /** "<id>[ <bytes>][ <secs>s][ done]", or undefined when too little changed since it was last printed. */
  #statusLine(s: VertexStatus): { text: string; done: boolean } | undefined {
    const timestamp = tsNanos(s.timestamp) ?? 0n;
    const completed = tsNanos(s.completed);
    const started = tsNanos(s.started);
    // Keyed by ID alone, as buildctl does: the same ID on two vertexes shares throttling.
    const last = this.#lastStatus.get(s.ID);
    if (last && completed === undefined) {
      const progress = s.total > 0n ? Number(s.current - last.current) / Number(s.total) : 0;
      if (progress < MIN_PROGRESS_DELTA && timestamp - last.timestamp < MIN_TIME_DELTA_NS) return undefined;
    }
    this.#lastStatus.set(s.ID, { current: s.current, timestamp });
    let bytes = "";
    if (s.total !== 0n) bytes = ` ${formatBytes(Number(s.current))} / ${formatBytes(Number(s.total))}`;
    else if (s.current !== 0n) bytes = ` ${formatBytes(Number(s.current))}`;
    let tm = "";
    const end = completed ?? timestamp;
    if (started !== undefined) {
      const diff = spanSeconds(end - started);
      if (diff > 0.01) tm = ` ${toFixedGo(diff, 1)}s`;
    }
    if (completed !== undefined) tm += " done";
    return { text: `${s.ID}${bytes}${tm}`, done: completed !== undefined };
  }

  /** Prints pending log lines; a partial last line is printed now and continued in place later. */
  #printLogs(v: TraceVertex): void {
    v.logs.forEach((l, i) => {
      let shown = l;
      if (i === 0 && v.logsOffset !== 0) {
        shown = l.slice(v.logsOffset);
        this.#raw(shown);
      } else {
        this.#raw(`#${v.index} ${l}`);
      }
      const last = i === v.logs.length - 1;
      if (!last || !v.logsPartial) this.#raw("\n");
      v.logRing[v.logRingPos] = shown;
      // As buildctl: while the last line is open, the ring does not advance.
      if (!v.logsPartial) v.logRingPos = (v.logRingPos + 1) % v.logRing.length;
    });
    if (v.logs.length === 0) return;
    if (v.logsPartial) {
      v.logs = v.logs.slice(-1);
      v.logsOffset = (v.logs[0] as string).length;
    } else {
      v.logs = [];
      v.logsOffset = 0;
    }
  }
}

/** buildctl shortens vertex names to 72 bytes only when PROGRESS_NO_TRUNC=0. */
function limitName(name: string): string {
  if (process.env.PROGRESS_NO_TRUNC === "0" && name.length > 72) return `${name.slice(0, 72)}...`;
  return name;
}
