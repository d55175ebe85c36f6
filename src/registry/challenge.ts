/** One `WWW-Authenticate` challenge: `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`. */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parses a WWW-Authenticate header (RFC 7235: several challenges, quoted or
 * token parameter values with backslash escapes). Schemes are lower-cased.
 */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  const text = Array.isArray(header) ? header.join(", ") : (header ?? "");
  const out: Challenge[] = [];
  const re = /\s*,?\s*([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)(?:\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*))?/gy;
  let current: Challenge | undefined;
  let m: RegExpExecArray | null;
  re.lastIndex = 0;
  // biome-ignore lint/suspicious/noAssignInExpressions: a sticky regex walks the header
  while ((m = re.exec(text)) !== null && m[0] !== "") {
    const name = m[1] as string;
    const raw = m[2];
    if (raw === undefined) {
      // A bare token starts a new challenge (the scheme); a following token68 is not used by registries.
      current = { scheme: name.toLowerCase(), params: {} };
      out.push(current);
      continue;
    }
    const value = raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, "$1") : raw;
    if (current) current.params[name.toLowerCase()] = value;
  }
  return out;
}
