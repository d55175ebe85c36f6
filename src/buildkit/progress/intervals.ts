/** A [start, stop) span in epoch nanoseconds; stop is unset while running. */
export interface Interval {
  start: bigint;
  stop: bigint | undefined;
}

export function compareBigint(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Overlapping spans merged into one, sorted by start; an open span (no stop)
 * swallows everything after it. A vertex that runs again (a cache hit after
 * the resolve, a pull after the resolve) gets a second span.
 */
export function mergeIntervals(intervals: Iterable<Interval>): Interval[] {
  const sorted = [...intervals].sort((a, b) => compareBigint(a.start, b.start));
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
