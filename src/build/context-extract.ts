import { chmodSync, utimesSync, writeFileSync } from "node:fs";
import { chmod, link, lstat, lutimes, mkdir, open, rm, symlink, utimes } from "node:fs/promises";
import path from "node:path";
import { type Readable, Transform } from "node:stream";
import tar from "tar-stream";
import { abortReason, errorMessage } from "../util/index.js";
import { decompressedContext } from "./context-decompress.js";
import { BuildError } from "./errors.js";

/** Files up to this size are collected in memory and written with one call (most context files are small). */
const SMALL_FILE = 256 << 10;

export interface ExtractStats {
  entries: number;
  bytes: number;
}

/**
 * A tar entry name as a clean relative path inside the context; "" for the
 * root. Absolute paths and `..` components are refused outright rather than
 * cleaned, so nothing can ever land outside the directory.
 */
export function contextRelativePath(name: string, what = "entry"): string {
  if (name.startsWith("/")) {
    throw new BuildError(
      "invalid_context",
      `invalid build context: ${what} ${JSON.stringify(name)} is an absolute path`,
    );
  }
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) {
    throw new BuildError(
      "invalid_context",
      `invalid build context: ${what} ${JSON.stringify(name)} has a ".." component`,
    );
  }
  return parts.join("/");
}

/**
 * The docker CLI's legacy builder appends the Dockerfile and .dockerignore
 * after the context and ends the archive right after the last file's data: no
 * padding, no end blocks. Go's tar reader accepts that; tar-stream wants whole
 * 512-byte blocks. This pads the end to a block boundary and remembers how
 * many bytes were real, so an entry whose data runs into the padding (a
 * truncated body) is still an error.
 */
class BlockPadder extends Transform {
  realBytes = 0;
  ended = false;
  override _transform(
    chunk: Buffer,
    _enc: BufferEncoding,
    cb: (err?: Error | null, data?: Buffer) => void,
  ): void {
    this.realBytes += chunk.length;
    cb(null, chunk);
  }
  override _flush(cb: (err?: Error | null, data?: Buffer) => void): void {
    this.ended = true;
    const pad = (512 - (this.realBytes % 512)) % 512;
    cb(null, pad ? Buffer.alloc(pad) : undefined);
  }
}

/**
 * Streams a build context (tar, gzip, bzip2 or xz) into `dir`, which must be
 * a fresh directory. Never writes through a symlink: symlink entries are kept
 * as symlinks (they may point anywhere, as in any context), but no later entry
 * may go through one, and hardlinks must point at an earlier entry.
 */
export async function extractContext(
  body: Readable,
  dir: string,
  signal: AbortSignal,
): Promise<ExtractStats> {
  const stats: ExtractStats = { entries: 0, bytes: 0 };
  const symlinks = new Set<string>();
  const madeDirs = new Set<string>([""]);
  // Paths this archive created besides dirs: the temp dir starts empty, so anything else is known absent
  // and needs no lstat (per-entry thread-pool calls made a 20,000-file context take ~25 s to unpack).
  const written = new Set<string>();
  const dirTimes: [string, Date][] = [];
  const extract = tar.extract();
  let feedError: unknown;
  let extractError: unknown;
  const onAbort = () => extract.destroy(abortReason(signal));
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    const tarStream = await decompressedContext(body, signal);
    // pipe, not pipeline: a failed extraction must not destroy the request, its socket carries our 400.
    tarStream.once("error", (err) => {
      feedError = err;
      extract.destroy(err);
    });
    // tar-stream fails the extractor, not the entry being read, when the body ends early: pass it on.
    let current: { destroy(err?: Error): void; readableEnded?: boolean } | undefined;
    extract.on("error", (err) => {
      extractError = err;
      current?.destroy(err);
    });
    const padder = new BlockPadder();
    tarStream.pipe(padder).pipe(extract);

    const throughSymlink = (rel: string) => {
      const parts = rel.split("/");
      for (let i = 1; i < parts.length; i++) if (symlinks.has(parts.slice(0, i).join("/"))) return true;
      return false;
    };
    const ensureDir = async (rel: string): Promise<void> => {
      if (madeDirs.has(rel)) return;
      await ensureDir(path.posix.dirname(rel) === "." ? "" : path.posix.dirname(rel));
      const abs = path.join(dir, rel);
      if (written.has(rel)) {
        await rm(abs, { force: true });
        written.delete(rel);
      }
      await mkdir(abs).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== "EEXIST") throw err;
      });
      symlinks.delete(rel);
      madeDirs.add(rel);
    };
    // A later entry replaces an earlier one at the same path (tar semantics), never writing into it.
    const clearPath = async (rel: string, abs: string) => {
      if (!written.has(rel) && !madeDirs.has(rel)) return;
      written.delete(rel);
      const st = await lstat(abs).catch(() => undefined);
      if (st) await rm(abs, { recursive: true, force: true });
      symlinks.delete(rel);
      madeDirs.delete(rel);
    };

    for await (const entry of extract) {
      current = entry;
      const h = entry.header;
      stats.entries++;
      const rel = contextRelativePath(h.name);
      if (rel !== "" && throughSymlink(rel)) {
        throw new BuildError(
          "invalid_context",
          `invalid build context: entry ${JSON.stringify(h.name)} goes through a symlink in the archive`,
        );
      }
      const abs = path.join(dir, rel);
      const parent = path.posix.dirname(rel) === "." ? "" : path.posix.dirname(rel);
      const mode = (h.mode ?? 0o644) & 0o7777;
      const mtime = h.mtime ?? new Date(0);
      switch (h.type) {
        case "directory":
          if (rel !== "") {
            if (!madeDirs.has(rel) && written.has(rel)) {
              await clearPathUnlessDir(abs, rel, symlinks);
              written.delete(rel);
            }
            await ensureDir(rel);
            await chmod(abs, mode);
            dirTimes.push([abs, mtime]);
          }
          entry.resume();
          break;
        case "file":
        case "contiguous-file": {
          if (rel === "")
            throw new BuildError("invalid_context", "invalid build context: a file entry names the root");
          await ensureDir(parent);
          await clearPath(rel, abs);
          const size = h.size ?? 0;
          if (size <= SMALL_FILE) {
            const chunks: Buffer[] = [];
            for await (const c of entry) chunks.push(c as Buffer);
            const data = Buffer.concat(chunks);
            writeFileSync(abs, data, { flag: "wx", mode });
            stats.bytes += data.length;
          } else {
            // for-await rather than pipeline(): tar-stream's entries are streamx streams.
            const fh = await open(abs, "wx", mode);
            try {
              for await (const c of entry) {
                await fh.write(c as Buffer);
                stats.bytes += (c as Buffer).length;
              }
            } finally {
              await fh.close();
            }
          }
          // tar-stream's entry offset is where its header starts; the data follows it.
          const dataEnd = (entry as unknown as { offset: number }).offset + 512 + size;
          if (padder.ended && dataEnd > padder.realBytes) throw new Error("unexpected EOF");
          // The umask may have dropped bits the archive asked for.
          if (mode & 0o7022) chmodSync(abs, mode);
          // Keep the archive's times: FileSync resends files whose mtime changed.
          utimesSync(abs, mtime, mtime);
          written.add(rel);
          break;
        }
        case "symlink":
          if (rel === "")
            throw new BuildError("invalid_context", "invalid build context: a symlink names the root");
          await ensureDir(parent);
          await clearPath(rel, abs);
          await symlink(h.linkname ?? "", abs);
          written.add(rel);
          await lutimes(abs, mtime, mtime).catch(() => {});
          symlinks.add(rel);
          entry.resume();
          break;
        case "link": {
          const target = contextRelativePath(h.linkname ?? "", "hardlink target");
          if (target === "" || throughSymlink(target)) {
            throw new BuildError(
              "invalid_context",
              `invalid build context: hardlink ${JSON.stringify(h.name)} points outside the context`,
            );
          }
          const targetAbs = path.join(dir, target);
          const st = await lstat(targetAbs).catch(() => undefined);
          if (!st || st.isDirectory()) {
            throw new BuildError(
              "invalid_context",
              `invalid build context: hardlink ${JSON.stringify(h.name)} points at ${JSON.stringify(h.linkname)}, which is not an earlier file in the archive`,
            );
          }
          await ensureDir(parent);
          await clearPath(rel, abs);
          await link(targetAbs, abs);
          written.add(rel);
          if (st.isSymbolicLink()) symlinks.add(rel);
          entry.resume();
          break;
        }
        default:
          // Devices, FIFOs and the like have no place in a build context.
          entry.resume();
      }
    }
    if (feedError) throw feedError;
    // Directory times last: creating their children changed them.
    for (const [abs, t] of dirTimes.reverse()) await utimes(abs, t, t).catch(() => {});
    return stats;
  } catch (err) {
    extract.destroy();
    // Let the rest of the body drain so the connection can carry the error response.
    body.unpipe();
    body.resume();
    if (signal.aborted) throw new BuildError("canceled", "build canceled", { cause: abortReason(signal) });
    if (err instanceof BuildError) throw err;
    const cause = feedError ?? extractError ?? err;
    throw new BuildError("invalid_context", `failed to read build context: ${errorMessage(cause)}`, {
      cause,
    });
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

async function clearPathUnlessDir(abs: string, rel: string, symlinks: Set<string>): Promise<void> {
  const st = await lstat(abs).catch(() => undefined);
  if (st && !st.isDirectory()) {
    await rm(abs, { force: true });
    symlinks.delete(rel);
  }
}
