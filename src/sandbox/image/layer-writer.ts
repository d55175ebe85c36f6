import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { constants, createGzip } from "node:zlib";
import tar from "tar-stream";
import { throwIfAborted } from "../../util/index.js";
import type { RootfsEntry } from "./rootfs-plan.js";

export interface LayerResult {
  /** sha256 of the uncompressed tar (the image config's diff_id). */
  diffId: string;
  /** sha256 of the gzip blob. */
  digest: string;
  size: number;
  uncompressedSize: number;
}

export interface WriteLayerOptions {
  /** Every entry gets this mtime (seconds since the epoch). */
  mtime: number;
  gzipLevel: number;
  signal?: AbortSignal;
}

/** 1 MiB chunks: the blob is ~100 MB and small chunks cost measurable time in hashing and gzip calls. */
const CHUNK = 1024 * 1024;
/** gzip header OS byte: 255 = unknown, what Go's compress/gzip writes; zlib writes the build OS. */
const GZIP_OS_UNKNOWN = 0xff;

/**
 * Streams the entries as a tar through gzip into outFile, hashing both sides on the way; nothing is
 * buffered beyond one chunk. Deterministic: fixed mtime, uid/gid 0, no user/group names, fixed gzip level
 * and header (zlib already writes MTIME 0; the OS byte is pinned here).
 */
export async function writeLayer(
  entries: RootfsEntry[],
  outFile: string,
  opts: WriteLayerOptions,
): Promise<LayerResult> {
  const pack = tar.pack();
  const mtime = new Date(opts.mtime * 1000);
  const producing = (async () => {
    try {
      for (const e of entries) {
        throwIfAborted(opts.signal);
        const base = { name: e.path, mtime, uid: 0, gid: 0 };
        if (e.type === "directory") {
          pack.entry({ ...base, type: "directory", mode: e.mode });
        } else if (e.type === "symlink") {
          pack.entry({ ...base, type: "symlink", linkname: e.target, mode: 0o777 });
        } else if ("content" in e) {
          pack.entry({ ...base, type: "file", mode: e.mode, size: e.content.length }, e.content);
        } else {
          const sink = pack.entry({ ...base, type: "file", mode: e.mode, size: e.size });
          await pipeline(createReadStream(e.source, { highWaterMark: CHUNK }), sink, { signal: opts.signal });
        }
      }
      pack.finalize();
    } catch (err) {
      pack.destroy(err as Error);
      throw err;
    }
  })();

  const diff = hashing();
  const blob = hashing();
  const writing = pipeline(
    pack,
    diff.stream,
    createGzip({ level: opts.gzipLevel, chunkSize: CHUNK, strategy: constants.Z_DEFAULT_STRATEGY }),
    pinGzipOsByte(),
    blob.stream,
    createWriteStream(outFile, { highWaterMark: CHUNK }),
    { signal: opts.signal },
  );
  const [produced, written] = await Promise.allSettled([producing, writing]);
  if (produced.status === "rejected") throw produced.reason;
  if (written.status === "rejected") throw written.reason;
  return {
    diffId: diff.digest(),
    digest: blob.digest(),
    size: blob.size(),
    uncompressedSize: diff.size(),
  };
}

function hashing(): { stream: Transform; digest: () => string; size: () => number } {
  const hash = createHash("sha256");
  let size = 0;
  const stream = new Transform({
    highWaterMark: CHUNK,
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  return { stream, digest: () => `sha256:${hash.digest("hex")}`, size: () => size };
}

function pinGzipOsByte(): Transform {
  let offset = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      let out = chunk;
      if (offset <= 9 && offset + chunk.length > 9) {
        out = Buffer.from(chunk);
        out[9 - offset] = GZIP_OS_UNKNOWN;
      }
      offset += chunk.length;
      cb(null, out);
    },
  });
}
