/** RFC 3339 timestamp with nanosecond digits (Docker's json-file `time`); sub-ms digits come from hrtime. */
export function rfc3339Nano(): string {
  const ms = performance.timeOrigin + performance.now();
  const whole = Math.floor(ms);
  const nanos = Math.floor((ms - whole) * 1e6)
    .toString()
    .padStart(6, "0");
  return new Date(whole).toISOString().replace("Z", `${nanos}Z`);
}

/** Parses an RFC 3339 timestamp with any number of fractional digits to nanoseconds since the epoch. */
export function timeToNanos(t: string): bigint {
  const m = /^(.*?)(?:\.(\d+))?Z$/.exec(t);
  if (!m?.[1]) return 0n;
  const secs = BigInt(Math.floor(Date.parse(`${m[1]}Z`) / 1000));
  const frac = (m[2] ?? "").padEnd(9, "0").slice(0, 9);
  return secs * 1_000_000_000n + BigInt(frac);
}
