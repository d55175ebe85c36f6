import type { ControlClient, UsageRecord } from "../buildkit/index.js";

/** A build cache record as GET /system/df shows it (moby api/types/build.CacheRecord). */
export interface CacheRecord {
  ID: string;
  Parent?: string;
  Parents?: string[];
  Type: string;
  Description: string;
  InUse: boolean;
  Shared: boolean;
  Size: number;
  CreatedAt: string;
  LastUsedAt: string | null;
  UsageCount: number;
  [key: string]: unknown;
}

interface Ts {
  seconds: bigint;
  nanos: number;
}

/** Go's time.Time JSON (RFC 3339 with trailing-zero-trimmed nanoseconds). */
export function goTime(ts: Ts | undefined): string {
  if (!ts) return "0001-01-01T00:00:00Z";
  const base = new Date(Number(ts.seconds) * 1000).toISOString().slice(0, 19);
  const frac = ts.nanos ? `.${String(ts.nanos).padStart(9, "0").replace(/0+$/, "")}` : "";
  return `${base}${frac}Z`;
}

function atLeast(v: string, min: string): boolean {
  const [a1 = 0, a2 = 0] = v.split(".").map(Number);
  const [b1 = 0, b2 = 0] = min.split(".").map(Number);
  return a1 - b1 > 0 || (a1 === b1 && a2 >= b2);
}

/** Control.DiskUsage mapped as dockerd's builder-next DiskUsage does, for the client's API version. */
export async function buildCacheUsage(
  client: ControlClient,
  apiVersion: string,
  signal: AbortSignal,
): Promise<CacheRecord[]> {
  const res = await client.control.diskUsage({}, { signal });
  return res.record.map((r) => cacheRecord(r, apiVersion));
}

/** One BuildKit usage record as dockerd's /system/df shows it to a client of `apiVersion`. */
export function cacheRecord(r: UsageRecord, apiVersion: string): CacheRecord {
  const rec: CacheRecord = {
    ID: r.ID,
    Type: r.RecordType,
    Description: r.Description,
    InUse: r.InUse,
    Shared: r.Shared,
    Size: Number(r.Size),
    CreatedAt: goTime(r.CreatedAt),
    LastUsedAt: r.LastUsedAt ? goTime(r.LastUsedAt) : null,
    UsageCount: Number(r.UsageCount),
  };
  if (!atLeast(apiVersion, "1.42")) rec.Parent = r.Parent || r.Parents[0] || "";
  else if (r.Parents.length) {
    rec.Parents = [...r.Parents];
    // moby's struct tag is `json:" Parents,omitempty"`: the docker CLI decodes that key.
    rec[" Parents"] = [...r.Parents];
  }
  return rec;
}
