import { goGlobMatch } from "./go-glob.js";
import { basePath, cleanPath, compareGoStrings, dirPath, joinPath } from "./go-path.js";
import { isSymlinkMode, type SourceFS } from "./source-fs.js";

/**
 * fsutil's FollowLinks: resolves followpaths into include paths, adding both
 * every symlink met along a path and the paths it points to (relative to the
 * root, also for absolute targets). Returns null when one of them is the
 * root itself, which means "no filter" (Go's nil).
 */
export function followLinks(fs: SourceFS, paths: readonly string[]): string[] | null {
  const resolved = new Set<string>();

  function append(input: string): void {
    let p = joinPath(".", input);
    let current = ".";
    for (;;) {
      const slash = p.indexOf("/");
      const first = slash < 0 ? p : p.slice(0, slash);
      current = joinPath(current, first);
      const targets = readSymlink(current, true);
      p = slash < 0 ? "" : p.slice(slash + 1);
      if ((p === "" || targets !== null) && resolved.has(current)) return;
      if (targets !== null) {
        resolved.add(current);
        for (const t of targets) append(joinPath(t, p));
        return;
      }
      if (p === "") {
        resolved.add(current);
        return;
      }
    }
  }

  function readSymlink(p: string, allowWildcard: boolean): string[] | null {
    const base = basePath(p);
    if (allowWildcard && containsWildcards(base)) {
      const names = readNames(dirPath(p));
      const out: string[] = [];
      for (const name of names) {
        if (!goGlobMatch(base, name)) continue;
        const res = readSymlink(joinPath(dirPath(p), name), false);
        if (res) out.push(...res);
      }
      return out.length > 0 ? out : null;
    }
    if (p === "." || p === "/" || p === ".." || p.startsWith("../")) return null;
    // Relative to the root: joinPath may have made p absolute ("/x").
    const rel = p.replace(/^\/+/, "");
    try {
      if (!isSymlinkMode(fs.lstat(rel).mode)) return null;
      const link = cleanPath(fs.readlink(rel));
      if (link.startsWith("/")) return [link];
      return [joinPath("/", joinPath(dirPath(p), link))];
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  function readNames(dir: string): string[] {
    if (dir === ".." || dir.startsWith("../")) return [];
    try {
      const rel = dir === "/" || dir === "." ? "" : dir.replace(/^\/+/, "");
      return fs.readdir(rel).map((d) => d.name);
    } catch (err) {
      if (isNotFound(err)) return [];
      throw err;
    }
  }

  for (const p of paths) append(p);
  return dedupePaths([...resolved].sort(compareGoStrings));
}

function containsWildcards(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const ch = name[i];
    if (ch === "\\") i++;
    else if (ch === "*" || ch === "?" || ch === "[") return true;
  }
  return false;
}

/** fsutil's dedupePaths: drops paths under an earlier one; "." means no filter (null). */
export function dedupePaths(input: readonly string[]): string[] | null {
  const out: string[] = [];
  let last = "";
  for (const s of input) {
    if (s === ".") return null;
    if (s.startsWith(`${last}/`)) continue;
    out.push(s);
    last = s;
  }
  return out;
}

export function isNotFound(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === "ENOENT" || code === "ENOTDIR";
}
