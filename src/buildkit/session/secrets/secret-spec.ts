import path from "node:path";
import { BuildKitError } from "../../errors.js";

/** Where a build secret comes from; exactly one of file, env, value is used (in that order of precedence: value, env, file). */
export interface SecretSource {
  file?: string;
  env?: string;
  value?: Uint8Array;
}

/**
 * Parses a `docker build --secret` spec as buildx does: CSV of
 * `id=`, `src=`/`source=`, `env=`, `type=file|env`. `id` defaults to the
 * basename of src; with neither src nor env, an env var named like the id is
 * used if set, else a file of that name (BuildKit's secretsprovider).
 */
export function parseSecretSpec(spec: string): { id: string; source: SecretSource } {
  let id = "";
  let src = "";
  let env = "";
  let type = "";
  for (const field of splitCsv(spec)) {
    const eq = field.indexOf("=");
    if (eq < 0)
      throw new BuildKitError("invalid_option", `invalid secret field '${field}': must be a key=value pair`);
    const key = field.slice(0, eq).toLowerCase();
    const value = field.slice(eq + 1);
    switch (key) {
      case "type":
        if (value !== "file" && value !== "env")
          throw new BuildKitError("invalid_option", `unsupported secret type "${value}"`);
        type = value;
        break;
      case "id":
        id = value;
        break;
      case "source":
      case "src":
        src = value;
        break;
      case "env":
        env = value;
        break;
      default:
        throw new BuildKitError("invalid_option", `unexpected key '${key}' in secret field '${field}'`);
    }
  }
  if (type === "env" && env === "") {
    env = src;
    src = "";
  }
  if (id === "" && src !== "") id = path.basename(src);
  if (id === "") throw new BuildKitError("invalid_option", `secret ${JSON.stringify(spec)} has no id`);
  if (env === "" && src === "") {
    if (process.env[id] !== undefined) env = id;
    else src = id;
  }
  return { id, source: env !== "" ? { env } : { file: src } };
}

/** One record of Go's encoding/csv (strict quotes): commas separate, quoted fields may hold commas and "". */
function splitCsv(s: string): string[] {
  const bad = () => new BuildKitError("invalid_option", `invalid CSV in ${JSON.stringify(s)}`);
  const out: string[] = [];
  let i = 0;
  for (;;) {
    let field = "";
    if (s[i] === '"') {
      i++;
      for (;;) {
        if (i >= s.length) throw bad();
        if (s[i] === '"') {
          if (s[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += s[i++];
      }
      if (i < s.length && s[i] !== ",") throw bad();
    } else {
      const end = s.indexOf(",", i);
      field = end < 0 ? s.slice(i) : s.slice(i, end);
      if (field.includes('"')) throw bad();
      i = end < 0 ? s.length : end;
    }
    out.push(field);
    if (i >= s.length) return out;
    i++; // the comma
  }
}
