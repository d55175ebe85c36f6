import { lstat, readdir, readlink } from "node:fs/promises";
import path from "node:path";
import { goGlobMatch } from "./go-glob.js";
import { basePath, cleanPath, compareGoStrings, dirPath, joinPath } from "./go-path.js";

/**
 * fsutil's FollowLinks: resolves followpaths into include paths, adding both
 * every symlink met along a path and the paths it points to (relative to the
 * root, also for absolute targets). Returns null when one of them is the
 * root itself, which means "no filter" (Go's nil).
 */
export async function followLinks(root: string, paths: readonly string[]): Promise<string[] | null> {
  const resolved = new Set<string>();

  async function append(input: string): Promise<void> {
    let p = joinPath(".", input);
    let current = ".";
    for (;;) {
      const slash = p.indexOf("/");
      const first = slash < 0 ? p : p.slice(0, slash);
      current = joinPath(current, first);
      const targets = await readSymlink(current, true);
      p = slash < 0 ? "" : p.slice(slash + 1);
      if ((p === "" || targets !== null) && resolved.has(current)) return;
      if (targets !== null) {
        resolved.add(current);
        for (const t of targets) await append(joinPath(t, p));
        return;
      }
      if (p === "") {
        resolved.add(current);
        return;
      }
    }
  }

  async function readSymlink(p: string, allowWildcard: boolean): Promise<string[] | null> {
    const base = basePath(p);
    if (allowWildcard && containsWildcards(base)) {
      const names = await readNames(dirPath(p));
      const out: string[] = [];
      for (const name of names) {
        if (!goGlobMatch(base, name)) continue;
        const res = await readSymlink(joinPath(dirPath(p), name), false);
        if (res) out.push(...res);
      }
      return out.length > 0 ? out : null;
    }
    if (p === "." || p === "/" || p === ".." || p.startsWith("../")) return null;
    const abs = path.join(root, p);
    try {
      const st = await lstat(abs);
      if (!st.isSymbolicLink()) return null;
      const link = cleanPath(await readlink(abs));
      if (link.startsWith("/")) return [link];
      return [joinPath("/", joinPath(dirPath(p), link))];
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async function readNames(dir: string): Promise<string[]> {
    if (dir === ".." || dir.startsWith("../")) return [];
    try {
      return await readdir(path.join(root, dir === "/" ? "." : dir));
    } catch (err) {
      if (isNotFound(err)) return [];
      throw err;
    }
  }

  for (const p of paths) await append(p);
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
