import { posix } from "node:path";
import { ImageError } from "./errors.js";

function hostile(name: string, why: string): ImageError {
  return new ImageError("invalid_archive", `refusing archive entry ${JSON.stringify(name)}: ${why}`);
}

/**
 * Normalizes a tar entry name to a relative path inside the archive, refusing absolute paths, `..`
 * components and NUL bytes (nothing is ever extracted to disk, but names select what is read as what).
 */
export function archivePath(name: string): string {
  if (name.includes("\0")) throw hostile(name, "NUL in name");
  if (name.startsWith("/")) throw hostile(name, "absolute path");
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw hostile(name, "path escapes the archive");
  return parts.join("/");
}

/** Resolves a link target (symlinks relative to the entry's directory, hard links to the root). */
export function linkTarget(entry: string, linkname: string, kind: "symlink" | "link"): string {
  if (linkname.startsWith("/")) throw hostile(`${entry} -> ${linkname}`, "absolute link target");
  const base = kind === "symlink" ? posix.dirname(entry) : ".";
  const joined = posix.normalize(posix.join(base, linkname));
  if (joined === ".." || joined.startsWith("../"))
    throw hostile(`${entry} -> ${linkname}`, "link escapes the archive");
  return joined;
}
