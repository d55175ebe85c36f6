import type { Filters } from "./query-params.js";

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
