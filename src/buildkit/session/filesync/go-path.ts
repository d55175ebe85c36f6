/**
 * Go's path.Clean for '/'-separated paths. fsutil and moby/patternmatcher
 * normalise patterns and follow paths with it, so matching results depend on
 * its exact rules (no Node equivalent: path.posix.normalize keeps trailing
 * slashes and treats ".." at the root differently).
 */
export function cleanPath(p: string): string {
  if (p === "") return ".";
  const rooted = p.startsWith("/");
  const out: string[] = [];
  for (const part of p.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
      else if (!rooted) out.push("..");
      continue;
    }
    out.push(part);
  }
  const joined = out.join("/");
  if (rooted) return `/${joined}`;
  return joined === "" ? "." : joined;
}

/** Go's path.Join: joins non-empty elements and cleans the result. */
export function joinPath(...elems: string[]): string {
  const nonEmpty = elems.filter((e) => e !== "");
  return nonEmpty.length === 0 ? "" : cleanPath(nonEmpty.join("/"));
}

/** Go's path.Dir. */
export function dirPath(p: string): string {
  const i = p.lastIndexOf("/");
  return cleanPath(p.slice(0, i + 1));
}

/** Go's path.Base. */
export function basePath(p: string): string {
  if (p === "") return ".";
  let s = p;
  while (s.length > 1 && s.endsWith("/")) s = s.slice(0, -1);
  if (s === "/") return "/";
  return s.slice(s.lastIndexOf("/") + 1);
}

/**
 * Orders strings as Go's sort.Strings does: by UTF-8 bytes, which equals
 * Unicode code point order. JS `<` compares UTF-16 code units and puts
 * astral characters (surrogates, 0xD800-0xDFFF) before U+E000-U+FFFF.
 */
export function compareGoStrings(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Only when one side is a surrogate does code unit order differ from code point order.
    if ((x >= 0xd800 && x <= 0xdfff) || (y >= 0xd800 && y <= 0xdfff)) {
      return (a.codePointAt(i) as number) - (b.codePointAt(i) as number);
    }
    return x - y;
  }
  return a.length - b.length;
}
