import { BuildKitError } from "../errors.js";

/** One `--output` as the user wrote it: `type=local,dest=out` (buildx CSV syntax). */
export interface OutputSpec {
  type: string;
  attrs: Record<string, string>;
}

/** Parses `type=oci,dest=out.tar` (or a bare path, meaning `type=local,dest=path`, like buildx). */
export function parseOutputSpec(spec: string): OutputSpec {
  if (!spec.includes("=")) return { type: "local", attrs: { dest: spec } };
  const attrs: Record<string, string> = {};
  for (const field of splitCsv(spec)) {
    const eq = field.indexOf("=");
    if (eq <= 0) throw new BuildKitError("invalid_option", `invalid output field "${field}" in "${spec}"`);
    attrs[field.slice(0, eq).trim().toLowerCase()] = field.slice(eq + 1);
  }
  const type = attrs.type;
  if (!type) throw new BuildKitError("invalid_option", `output "${spec}" has no type`);
  delete attrs.type;
  return { type, attrs };
}

/** CSV fields with double-quote support (a field may hold commas, e.g. a list of names). */
function splitCsv(s: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (const ch of s) {
    if (ch === '"') quoted = !quoted;
    else if (ch === "," && !quoted) {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  if (quoted) throw new BuildKitError("invalid_option", `unterminated quote in "${s}"`);
  out.push(cur);
  return out.filter((f) => f.length > 0);
}

/** Exporter types whose result streams back to the client through FileSend. */
export function isClientExporter(o: OutputSpec): boolean {
  if (o.type === "local" || o.type === "tar") return true;
  if (o.type === "oci" || o.type === "docker") return o.attrs.tar !== "false";
  return false;
}
