import { fromBinary, fromJson, type JsonValue } from "@bufbuild/protobuf";
import type { ConnectError } from "@connectrpc/connect";
import { type Source, SourceSchema } from "../gen/errdefs/errdefs_pb.js";

/**
 * BuildKit's errdefs.Source details; current daemons send them as protojson
 * with a "+json" type suffix, older ones as binary protobuf.
 */
function sourceDetails(err: ConnectError): Source[] {
  const out: Source[] = [];
  for (const d of err.details) {
    if (!("type" in d) || !d.type.startsWith("errdefs.Source")) continue;
    try {
      out.push(
        d.type.endsWith("+json")
          ? fromJson(SourceSchema, JSON.parse(new TextDecoder().decode(d.value)) as JsonValue, {
              ignoreUnknownFields: true,
            })
          : fromBinary(SourceSchema, d.value),
      );
    } catch {
      // A detail we cannot read only costs the Dockerfile excerpt.
    }
  }
  return out;
}

/**
 * A Solve failure as text: the Dockerfile excerpt of the failing step (as
 * buildx prints it, from BuildKit's errdefs.Source detail) and the message.
 */
export function describeSolveError(err: ConnectError): string {
  const snippets = sourceDetails(err)
    .map(renderSource)
    .filter((s) => s.length > 0);
  const message = err.rawMessage || err.message;
  return snippets.length ? `${snippets.join("")}${message}` : message;
}

/** First Dockerfile line a failure points at, if BuildKit said. */
export function solveErrorLine(err: ConnectError): { file: string; line: number } | undefined {
  for (const s of sourceDetails(err)) {
    const start = s.ranges[0]?.start?.line;
    if (s.info && start) return { file: s.info.filename, line: start };
  }
  return undefined;
}

function renderSource(s: Source): string {
  if (!s.info || s.ranges.length === 0) return "";
  const lines = new TextDecoder().decode(s.info.data).replace(/\n$/, "").split("\n");
  const marked = new Set<number>();
  let first = Number.POSITIVE_INFINITY;
  let last = 0;
  for (const r of s.ranges) {
    const a = r.start?.line ?? 0;
    const b = Math.max(r.end?.line ?? 0, a);
    for (let i = a; i <= b; i++) marked.add(i);
    first = Math.min(first, a);
    last = Math.max(last, b);
  }
  if (first < 1 || first > lines.length) return "";
  // Context around the failing lines, as BuildKit's Source.Print does.
  const from = Math.max(1, first - 2);
  const to = Math.min(lines.length, last + 2);
  let out = `${s.info.filename}:${first}\n--------------------\n`;
  for (let i = from; i <= to; i++) {
    out += ` ${String(i).padStart(3)} | ${marked.has(i) ? ">>>" : "   "} ${lines[i - 1]}\n`;
  }
  return `${out}--------------------\n`;
}
