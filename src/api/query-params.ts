import { ApiError } from "./errors.js";

/** dockerd's httputils.BoolValue: "", 0, no, false and none are false; anything else is true. */
export function boolValue(query: URLSearchParams, key: string): boolean {
  const v = (query.get(key) ?? "").trim().toLowerCase();
  return !(v === "" || v === "0" || v === "no" || v === "false" || v === "none");
}

/** dockerd's BoolValueOrDefault: the default when the parameter is absent. */
export function boolValueOr(query: URLSearchParams, key: string, dflt: boolean): boolean {
  return query.has(key) ? boolValue(query, key) : dflt;
}

/** Parsed `filters` parameter: key -> values. */
export type Filters = Map<string, string[]>;

/**
 * Parses the `filters` JSON as dockerd's filters.FromJSON does: `{"key":{"value":true}}`, or the legacy
 * `{"key":["value"]}`; then rejects keys not in `accepted` with dockerd's `invalid filter 'key'`.
 */
export function parseFilters(raw: string | null, accepted: readonly string[]): Filters {
  const out: Filters = new Map();
  if (!raw) return out;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new ApiError("invalid_parameter", `invalid filter: ${(err as Error).message}`);
  }
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new ApiError("invalid_parameter", "invalid filter: filters must be a JSON object");
  }
  for (const [key, value] of Object.entries(parsed as Record<string, unknown>)) {
    let values: string[];
    if (Array.isArray(value) && value.every((v) => typeof v === "string")) values = value;
    else if (value && typeof value === "object" && !Array.isArray(value))
      values = Object.entries(value as Record<string, unknown>)
        .filter(([, on]) => on === true)
        .map(([v]) => v);
    else throw new ApiError("invalid_parameter", `invalid filter '${key}'`);
    if (!accepted.includes(key)) throw new ApiError("invalid_parameter", `invalid filter '${key}'`);
    if (values.length > 0) out.set(key, values);
  }
  return out;
}

/** A boolean filter (`dangling`): true/1 or false/0, else dockerd's `invalid filter 'k=v'`. */
export function boolFilter(filters: Filters, key: string): boolean | undefined {
  const values = filters.get(key);
  if (!values) return undefined;
  const lower = values.map((v) => v.toLowerCase());
  const on = lower.some((v) => v === "true" || v === "1");
  const off = lower.some((v) => v === "false" || v === "0");
  if (on === off || lower.some((v) => !["true", "1", "false", "0"].includes(v))) {
    throw new ApiError("invalid_parameter", `invalid filter '${key}=${values.join(",")}'`);
  }
  return on;
}
