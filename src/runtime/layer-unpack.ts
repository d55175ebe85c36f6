import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, rename, rm, stat, statfs } from "node:fs/promises";
import { join, posix } from "node:path";
import { PassThrough, type Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import tar, { type Header } from "tar-stream";

type OutHeader = Partial<Header> & { name: string; pax?: Record<string, string> };

import { throwIfAborted } from "../util/index.js";
import { RuntimeError } from "./errors.js";
import type { UsernsMapping } from "./types.js";

export interface LayerSource {
  /** Compressed blob digest (what the content store holds). */
  digest: string;
  mediaType: string;
  /** Uncompressed digest from the image config's rootfs.diff_ids. */
  diffId: string;
  open(): Readable;
}

const HEX_RE = /^sha256:([a-f0-9]{64})$/;
const inflight = new Map<string, Promise<string>>();

/**
 * Unpacks a layer once to `<layersRoot>/sha256/<diffid hex>` (shared, read-only lower dir for overlayfs)
 * and returns that path. Unpacks into a temp dir and renames it into place, so a crash never leaves a
 * half-unpacked layer where a later start would trust it.
 */
export async function ensureLayer(
  layersRoot: string,
  layer: LayerSource,
  signal?: AbortSignal,
  ids?: UsernsMapping,
): Promise<string> {
  const hex = HEX_RE.exec(layer.diffId)?.[1];
  if (!hex)
    throw new RuntimeError("invalid_spec", `unsupported layer diff ID ${JSON.stringify(layer.diffId)}`);
  const dest = join(layersRoot, "sha256", hex);
  const running = inflight.get(dest);
  if (running) return running;
  const p = (async () => {
    if (await exists(dest)) return dest;
    const tmp = join(layersRoot, "tmp", `${hex}-${randomBytes(4).toString("hex")}`);
    await mkdir(tmp, { recursive: true, mode: 0o755 });
    await mkdir(join(layersRoot, "sha256"), { recursive: true });
    try {
      await unpackLayer(layer.open(), layer.mediaType, tmp, layer.diffId, signal, ids);
      await rename(tmp, dest).catch(async (err: NodeJS.ErrnoException) => {
        // Another process won the race: its copy is identical.
        if (err.code !== "ENOTEMPTY" && err.code !== "EEXIST") throw err;
        await rm(tmp, { recursive: true, force: true });
      });
    } catch (err) {
      await rm(tmp, { recursive: true, force: true }).catch(() => {});
      throw err;
    }
    return dest;
  })().finally(() => inflight.delete(dest));
  inflight.set(dest, p);
  return p;
}

/**
 * Streams a layer blob into dir, verifying its diff ID. OCI whiteouts become overlayfs whiteouts
 * (`.wh.name` -> char device 0/0; `.wh..wh..opq` -> `trusted.overlay.opaque=y` on the directory) so the
 * unpacked layers stack correctly as overlay lower dirs.
 *
 * The tar is parsed with tar-stream only to validate names and rewrite whiteouts; GNU tar does the actual
 * extraction because Node cannot create device nodes or set xattrs, and it already handles ownership,
 * hard links, modes and hostile symlinks (it defers links that point outside the tree).
 *
 * With `ids`, owners are shifted into that user namespace mapping (uid u becomes hostId + u), so the
 * namespace's root owns what the image's root owns; an owner outside the mapping fails the unpack.
 */
export async function unpackLayer(
  blob: Readable,
  mediaType: string,
  dir: string,
  diffId: string,
  signal?: AbortSignal,
  ids?: UsernsMapping,
): Promise<void> {
  throwIfAborted(signal);
  if (mediaType.includes("zstd")) {
    blob.destroy();
    throw new RuntimeError("rootfs_failed", `unsupported layer compression: ${mediaType}`);
  }
  const decompress = mediaType.endsWith("gzip") ? createGunzip() : new PassThrough();
  const hash = createHash("sha256");
  const hasher = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  const extract = tar.extract();
  const pack = tar.pack();
  const child = spawn(
    "tar",
    [
      "-x",
      "-f",
      "-",
      "-C",
      dir,
      "--numeric-owner",
      "--same-owner",
      "--same-permissions",
      "--xattrs",
      "--xattrs-include=*",
    ],
    { stdio: ["pipe", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (d: string) => {
    if (stderr.length < 4096) stderr += d;
  });
  const exited = new Promise<number>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => resolve(code ?? 1));
  });
  const dirHeaders = new Map<string, OutHeader>();

  extract.on("entry", (header, stream, next) => {
    // Failures surface through extract (and so the pipeline); the entry stream just shares them.
    stream.on("error", () => {});
    try {
      const rewritten = rewriteEntry(header, dirHeaders);
      const out = rewritten && ids ? shiftOwner(rewritten, ids) : rewritten;
      if (!out || out.type === "character-device" || out.pax?.["SCHILY.xattr.trusted.overlay.opaque"]) {
        stream.resume();
        stream.once("end", () => {
          if (out) pack.entry(out);
          next();
        });
        return;
      }
      const entry = pack.entry(out, (err) => (err ? extract.destroy(err) : next()));
      stream.pipe(entry);
    } catch (err) {
      extract.destroy(err as Error);
    }
  });
  extract.once("finish", () => pack.finalize());

  try {
    await Promise.all([
      pipeline(blob, decompress, hasher, extract, { signal }),
      pipeline(pack, child.stdin, { signal }),
    ]);
    const code = await exited;
    if (code !== 0) throw new RuntimeError("rootfs_failed", `tar exited with ${code}: ${stderr.trim()}`);
  } catch (err) {
    child.kill("SIGKILL");
    // A full disk shows up as tar's short writes or ENOSPC: name the place, not the tool.
    if (
      (err as NodeJS.ErrnoException).code === "ENOSPC" ||
      /No space left on device|Wrote only \d+ of \d+ bytes/.test(stderr) ||
      (await nearlyFull(dir))
    ) {
      throw new RuntimeError("rootfs_failed", `no space left on ${dir}: unpacking layer ${diffId} failed`, {
        cause: err,
      });
    }
    if (err instanceof RuntimeError) throw err;
    throw new RuntimeError("rootfs_failed", `unpacking layer ${diffId}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const actual = `sha256:${hash.digest("hex")}`;
  if (actual !== diffId)
    throw new RuntimeError("rootfs_failed", `layer diff ID mismatch: expected ${diffId}, got ${actual}`);
}

/** Less than 1 MiB left for unprivileged writes where dir lives (tar's errors do not always say ENOSPC). */
async function nearlyFull(dir: string): Promise<boolean> {
  try {
    const st = await statfs(dir);
    return st.bavail * st.bsize < 1 << 20;
  } catch {
    return false;
  }
}

function safeName(name: string, what: string): string {
  if (name.includes("\0") || name.startsWith("/"))
    throw new RuntimeError("rootfs_failed", `refusing layer ${what} ${JSON.stringify(name)}: absolute path`);
  const norm = posix.normalize(name);
  if (norm === ".." || norm.startsWith("../"))
    throw new RuntimeError(
      "rootfs_failed",
      `refusing layer ${what} ${JSON.stringify(name)}: escapes the layer`,
    );
  return norm.replace(/\/$/, "");
}

/** Returns the entry to hand to GNU tar (rewritten for whiteouts), or undefined to drop it. */
function rewriteEntry(header: Header, dirHeaders: Map<string, OutHeader>): OutHeader | undefined {
  const name = safeName(header.name, "entry");
  if (name === ".") return { ...header, name: "./", pax: undefined };
  const base = posix.basename(name);
  const parent = posix.dirname(name);
  const mtime = header.mtime ?? new Date(0);
  if (base === ".wh..wh..opq") {
    if (parent === ".") return undefined;
    const d = dirHeaders.get(parent);
    return {
      name: `${parent}/`,
      type: "directory",
      size: 0,
      mode: d?.mode ?? 0o755,
      uid: d?.uid ?? 0,
      gid: d?.gid ?? 0,
      mtime: d?.mtime ?? mtime,
      pax: { "SCHILY.xattr.trusted.overlay.opaque": "y" },
    };
  }
  if (base.startsWith(".wh.")) {
    const target = posix.join(parent, base.slice(4));
    return {
      name: target,
      type: "character-device",
      size: 0,
      devmajor: 0,
      devminor: 0,
      mode: 0o600,
      uid: 0,
      gid: 0,
      mtime,
    };
  }
  if (header.type === "link" && header.linkname)
    header.linkname = safeName(header.linkname, "hard link target");
  const pax = xattrsOnly(header.pax as Record<string, string> | null | undefined);
  const out: OutHeader = { ...header, name, pax };
  if (header.type === "directory") dirHeaders.set(name, out);
  return out;
}

/** A copy of the header owned by the mapped ids (dirHeaders keep the image's own ids). */
function shiftOwner(h: OutHeader, ids: UsernsMapping): OutHeader {
  const shift = (id: number | undefined, what: string): number => {
    const v = id ?? 0;
    if (v >= ids.size)
      throw new RuntimeError(
        "rootfs_failed",
        `layer entry ${JSON.stringify(h.name)}: ${what} ${v} cannot be mapped into the container's user namespace (size ${ids.size})`,
      );
    return ids.hostId + v;
  };
  return { ...h, uid: shift(h.uid, "uid"), gid: shift(h.gid, "gid") };
}

/** Keeps only xattr records that survived tar-stream's UTF-8 decoding (binary values would be corrupt). */
function xattrsOnly(pax: Record<string, string> | null | undefined): Record<string, string> | undefined {
  if (!pax) return undefined;
  const out: Record<string, string> = {};
  let any = false;
  for (const [k, v] of Object.entries(pax)) {
    if (k.startsWith("SCHILY.xattr.") && !v.includes("\uFFFD")) {
      out[k] = v;
      any = true;
    }
  }
  return any ? out : undefined;
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}
