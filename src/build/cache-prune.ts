import type { ControlClient } from "../buildkit/index.js";
import { BuildError } from "./errors.js";
import { agoNanos } from "./go-duration.js";
import { boolValue, parseGoInt } from "./query-values.js";

/** Cache record fields BuildKit filters on (dockerd's cacheFields); `id` matches by prefix (`~=`). */
const CACHE_FIELDS = ["id", "parent", "type", "description", "inuse", "shared", "private"];
const ACCEPTED = new Set([...CACHE_FIELDS, "until", "unused-for", "label", "label!"]);

export interface PruneOptions {
  all: boolean;
  filter: string[];
  keepDuration: bigint;
  reservedSpace: bigint;
  maxUsedSpace: bigint;
  minFreeSpace: bigint;
}

export interface PruneReport {
  CachesDeleted: string[] | null;
  SpaceReclaimed: number;
}

function atLeast(v: string, min: string): boolean {
  const [a1 = 0, a2 = 0] = v.split(".").map(Number);
  const [b1 = 0, b2 = 0] = min.split(".").map(Number);
  return a1 - b1 > 0 || (a1 === b1 && a2 >= b2);
}

/** Docker filters JSON: `{"k":["v"]}` or the legacy `{"k":{"v":true}}`. */
function parseFilters(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  if (!text) return out;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new BuildError("invalid_parameter", `could not parse filters: ${(err as Error).message}`);
  }
  if (raw === null) return out;
  if (typeof raw !== "object" || Array.isArray(raw)) {
    throw new BuildError("invalid_parameter", "could not parse filters: invalid filter format");
  }
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    if (Array.isArray(v)) out.set(k, v.map(String));
    else if (v && typeof v === "object") {
      out.set(
        k,
        Object.entries(v as Record<string, unknown>)
          .filter(([, on]) => on === true)
          .map(([x]) => x),
      );
    } else throw new BuildError("invalid_parameter", "could not parse filters: invalid filter format");
  }
  return out;
}

function bytesParam(q: URLSearchParams, name: string): bigint | undefined {
  const v = q.get(name);
  if (v === null || v === "") return undefined;
  const n = parseGoInt(v);
  if (n === undefined) {
    throw new BuildError(
      "invalid_parameter",
      `${name} is in bytes and expects an integer, got ${v}: strconv.Atoi: parsing ${JSON.stringify(v)}: invalid syntax`,
    );
  }
  return BigInt(n);
}

/** POST /build/prune's parameters as dockerd's postPrune and toBuildkitPruneInfo read them. */
export function parsePruneParams(q: URLSearchParams, apiVersion: string): PruneOptions {
  const filters = parseFilters(q.get("filters") ?? "");
  for (const k of filters.keys()) {
    if (!ACCEPTED.has(k)) throw new BuildError("invalid_parameter", `invalid filter '${k}'`);
  }
  const until = filters.get("until") ?? [];
  const unusedFor = filters.get("unused-for") ?? [];
  if (until.length && unusedFor.length) {
    throw new BuildError("invalid_parameter", 'conflicting filters: "until" and "unused-for"');
  }
  const key = unusedFor.length ? "unused-for" : "until";
  const age = [...until, ...unusedFor];
  if (age.length > 1) throw new BuildError("invalid_parameter", "filters expect only one value");
  let keepDuration = 0n;
  if (age.length === 1) {
    const d = agoNanos(age[0] as string);
    if (d === undefined) {
      throw new BuildError(
        "invalid_parameter",
        `"${key}" filter expects a duration (e.g., '24h') or a timestamp`,
      );
    }
    keepDuration = d;
  }
  const bk: string[] = [];
  for (const field of CACHE_FIELDS) {
    const values = filters.get(field);
    if (!values) continue;
    if (values.length > 1) throw new BuildError("invalid_parameter", "filters expect only one value");
    if (values.length === 0) bk.push(field);
    else bk.push(`${field}${field === "id" ? "~=" : "=="}${values[0]}`);
  }
  const keepStorage = bytesParam(q, "keep-storage");
  let reservedSpace = keepStorage ?? 0n;
  let maxUsedSpace = 0n;
  let minFreeSpace = 0n;
  if (atLeast(apiVersion, "1.48")) {
    reservedSpace = bytesParam(q, "reserved-space") ?? keepStorage ?? 0n;
    maxUsedSpace = bytesParam(q, "max-used-space") ?? 0n;
    minFreeSpace = bytesParam(q, "min-free-space") ?? 0n;
  }
  return {
    all: boolValue(q, "all"),
    filter: bk.length ? [bk.join(",")] : [],
    keepDuration,
    reservedSpace,
    maxUsedSpace,
    minFreeSpace,
  };
}

/** Control.Prune; the report dockerd returns (CachesDeleted null when nothing went). */
export async function pruneBuildCache(
  client: ControlClient,
  opts: PruneOptions,
  signal: AbortSignal,
): Promise<PruneReport> {
  const deleted: string[] = [];
  let reclaimed = 0;
  for await (const r of client.control.prune(opts, { signal })) {
    deleted.push(r.ID);
    reclaimed += Number(r.Size);
  }
  return { CachesDeleted: deleted.length ? deleted : null, SpaceReclaimed: reclaimed };
}
