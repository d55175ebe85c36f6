import { ApiError } from "./errors.js";
import type { Filters } from "./query-params.js";

/**
 * Go's path.Match as a RegExp (`*` and `?` stop at `/`, `[...]` classes with `^` negation, `\` escapes),
 * which dockerd's `reference` filter uses; written here because no installed package has Go's semantics.
 */
export function globToRegExp(pattern: string): RegExp {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "\\") {
      i++;
      if (i >= pattern.length) throw badPattern(pattern);
      re += escapeChar(pattern[i] as string);
    } else if (c === "[") {
      const end = pattern.indexOf("]", i + 2);
      if (end < 0) throw badPattern(pattern);
      let body = pattern.slice(i + 1, end);
      const negate = body.startsWith("^");
      if (negate) body = body.slice(1);
      if (body === "") throw badPattern(pattern);
      re += `[${negate ? "^" : ""}${body.replace(/[\]\\]/g, "\\$&")}]`;
      i = end;
    } else re += escapeChar(c);
  }
  return new RegExp(`^${re}$`);
}

const escapeChar = (c: string): string => c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
const badPattern = (p: string) => new ApiError("invalid_parameter", `syntax error in pattern: ${p}`);

/**
 * dockerd's reference.FamiliarMatch: the pattern matches the familiar reference (`busybox:local`,
 * `busybox@sha256:…`) or its name alone (`busybox`).
 */
export function referenceMatches(patterns: RegExp[], familiarRef: string): boolean {
  const name = familiarRef.replace(/@.*$/, "").replace(/:[^/:]*$/, "");
  return patterns.some((p) => p.test(familiarRef) || p.test(name));
}

/** dockerd's MatchKVList: every `key` or `key=value` must be present in labels. */
export function labelsMatch(wanted: string[] | undefined, labels: Record<string, string> | null): boolean {
  if (!wanted || wanted.length === 0) return true;
  if (!labels) return false;
  return wanted.every((w) => {
    const eq = w.indexOf("=");
    if (eq < 0) return Object.hasOwn(labels, w);
    const key = w.slice(0, eq);
    return Object.hasOwn(labels, key) && labels[key] === w.slice(eq + 1);
  });
}

/** `label!` (prune): none of the given `key` / `key=value` may match. */
export function labelsExclude(
  unwanted: string[] | undefined,
  labels: Record<string, string> | null,
): boolean {
  if (!unwanted || unwanted.length === 0) return true;
  return !unwanted.some((u) => labelsMatch([u], labels));
}

const GO_DURATION_RE = /^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$/;
const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * A `until`/`since` time as dockerd's timetypes.GetTimestamp reads it: a Go duration back from now
 * (`10m`, `1h30m`), Unix seconds (fractional allowed) or an RFC 3339 date. Returns ms since the epoch.
 */
export function parseTimeFilter(value: string, now = Date.now()): number {
  if (GO_DURATION_RE.test(value)) {
    let ms = 0;
    for (const m of value.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g))
      ms += Number(m[1]) * (UNIT_MS[m[2] as string] ?? 0);
    return now - ms;
  }
  if (/^\d+(?:\.\d+)?$/.test(value)) return Number(value) * 1000;
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw new ApiError("invalid_parameter", `invalid filter 'until=${value}'`);
  return t;
}

/** The latest (most restrictive) `until` in the filters, in ms, or undefined. */
export function untilOf(filters: Filters): number | undefined {
  const values = filters.get("until");
  if (!values) return undefined;
  return Math.min(...values.map((v) => parseTimeFilter(v)));
}
