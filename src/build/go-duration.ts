/** Go's time.ParseDuration, in nanoseconds; undefined when it would fail. Hand-written: no package parses Go durations. */
export function parseGoDuration(s: string): bigint | undefined {
  const UNITS: Record<string, number> = {
    ns: 1,
    us: 1e3,
    µs: 1e3,
    μs: 1e3,
    ms: 1e6,
    s: 1e9,
    m: 60e9,
    h: 3600e9,
  };
  let rest = s;
  let sign = 1;
  if (rest.startsWith("-") || rest.startsWith("+")) {
    if (rest[0] === "-") sign = -1;
    rest = rest.slice(1);
  }
  if (rest === "0") return 0n;
  if (rest === "") return undefined;
  let total = 0;
  const re = /^(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/;
  while (rest.length) {
    const m = re.exec(rest);
    if (!m) return undefined;
    total += Number(m[1]) * (UNITS[m[2] as string] as number);
    rest = rest.slice(m[0].length);
  }
  return BigInt(Math.round(sign * total));
}

/**
 * docker's timetypes.GetTimestamp for `until`-style filters: a Go duration
 * (relative to now) or an absolute time (unix seconds or RFC 3339); returns
 * how long ago that is, in nanoseconds.
 */
export function agoNanos(value: string, nowMs = Date.now()): bigint | undefined {
  const d = parseGoDuration(value);
  if (d !== undefined) return d;
  let ms: number;
  if (/^\d+(\.\d+)?$/.test(value)) ms = Number(value) * 1000;
  else {
    ms = Date.parse(value);
    if (Number.isNaN(ms)) return undefined;
  }
  return BigInt(Math.round(nowMs - ms)) * 1_000_000n;
}
