import { ApiError } from "./errors.js";

/** Parsed `filters` query: key → accepted values. */
export type Filters = Map<string, string[]>;

/**
 * Parses dockerd's `filters` JSON (`{"label":{"a=b":true}}`, or the older `{"label":["a=b"]}`) and
 * rejects keys outside `accepted`, as dockerd's filters.Validate does.
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
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))
    throw new ApiError("invalid_parameter", "invalid filter: expected a JSON object");
  for (const [key, value] of Object.entries(parsed as Record<string, unknown>)) {
    if (!accepted.includes(key)) throw new ApiError("invalid_parameter", `invalid filter '${key}'`);
    const values = Array.isArray(value)
      ? value.map(String)
      : value && typeof value === "object"
        ? Object.entries(value as Record<string, unknown>)
            .filter(([, on]) => on === true)
            .map(([v]) => v)
        : [];
    out.set(key, values);
  }
  return out;
}

/** True when the filter is absent, or any of its values matches. */
export function matchAny(filters: Filters, key: string, test: (value: string) => boolean): boolean {
  const values = filters.get(key);
  return !values?.length || values.some(test);
}

/** `label=key` or `label=key=value` against a label map (every label filter must match, as dockerd). */
export function matchLabels(filters: Filters, labels: Record<string, string>): boolean {
  return (filters.get("label") ?? []).every((f) => {
    const eq = f.indexOf("=");
    if (eq === -1) return Object.hasOwn(labels, f);
    return labels[f.slice(0, eq)] === f.slice(eq + 1);
  });
}

/** dockerd matches `name` filters as regular expressions; an invalid one matches nothing. */
export function regexMatch(pattern: string, value: string): boolean {
  try {
    return new RegExp(pattern).test(value);
  } catch {
    return false;
  }
}
