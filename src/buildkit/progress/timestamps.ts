import type { Timestamp } from "@bufbuild/protobuf/wkt";

/** Nanoseconds since the epoch, exact; undefined for an unset field. */
export function tsNanos(ts: Timestamp | undefined): bigint | undefined {
  return ts ? ts.seconds * 1_000_000_000n + BigInt(ts.nanos) : undefined;
}

/** Milliseconds since the epoch (what the API layer re-encodes). */
export function tsMillis(ts: Timestamp | undefined): number | undefined {
  return ts ? Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1_000_000) : undefined;
}

/** A nanosecond span in seconds, computed the way Go's Duration.Seconds() does. */
export function spanSeconds(ns: bigint): number {
  return Number(ns / 1_000_000_000n) + Number(ns % 1_000_000_000n) / 1e9;
}
