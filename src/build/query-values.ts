import { BuildError } from "./errors.js";

/** dockerd's httputils.BoolValue: "", 0, no, false and none are false; anything else is true. */
export function boolValue(q: URLSearchParams, key: string): boolean {
  const v = (q.get(key) ?? "").trim().toLowerCase();
  return !(v === "" || v === "0" || v === "no" || v === "false" || v === "none");
}

/** Go's strconv.ParseInt(s, 10, 64) as a number, or undefined when it would fail. */
export function parseGoInt(s: string): number | undefined {
  if (!/^[+-]?\d+$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Go's json.Unmarshal error wording for a value of the wrong JSON type. */
function jsonType(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v === "object" ? "object" : typeof v === "boolean" ? "bool" : typeof v;
}

/**
 * Parses a JSON parameter as dockerd does (json.Unmarshal into a Go type),
 * failing with `<what>: <reason>` and the given error code.
 */
export function parseJsonParam<T>(
  text: string,
  what: string,
  check: (v: unknown) => string | undefined,
  code: "invalid_parameter" | "rejected" = "invalid_parameter",
): T {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new BuildError(code, `${what}: ${(err as Error).message}`);
  }
  const problem = check(v);
  if (problem) throw new BuildError(code, `${what}: ${problem}`);
  return v as T;
}

/** Checkers for parseJsonParam, worded like Go's UnmarshalTypeError. */
export const jsonShapes = {
  stringMap(nullable: boolean) {
    const goType = nullable ? "map[string]*string" : "map[string]string";
    return (v: unknown): string | undefined => {
      if (v === null) return undefined;
      if (jsonType(v) !== "object")
        return `json: cannot unmarshal ${jsonType(v)} into Go value of type ${goType}`;
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
        // Go leaves a string untouched for a JSON null: no error either way.
        if (typeof x === "string" || x === null) continue;
        return `json: cannot unmarshal ${jsonType(x)} into Go value of type string (key ${JSON.stringify(k)})`;
      }
      return undefined;
    };
  },
  stringList(v: unknown): string | undefined {
    if (v === null) return undefined;
    if (!Array.isArray(v)) return `json: cannot unmarshal ${jsonType(v)} into Go value of type []string`;
    const bad = v.find((x) => typeof x !== "string");
    return bad === undefined
      ? undefined
      : `json: cannot unmarshal ${jsonType(bad)} into Go value of type string`;
  },
  objectList(goType: string) {
    return (v: unknown): string | undefined => {
      if (v === null) return undefined;
      if (!Array.isArray(v)) return `json: cannot unmarshal ${jsonType(v)} into Go value of type ${goType}`;
      const bad = v.find((x) => x !== null && jsonType(x) !== "object");
      return bad === undefined
        ? undefined
        : `json: cannot unmarshal ${jsonType(bad)} into Go value of type ${goType}`;
    };
  },
};

/** A field of a decoded JSON object, matched case-insensitively as Go's encoding/json does. */
export function goField(obj: Record<string, unknown>, name: string): unknown {
  if (name in obj) return obj[name];
  const lower = name.toLowerCase();
  for (const [k, v] of Object.entries(obj)) if (k.toLowerCase() === lower) return v;
  return undefined;
}
