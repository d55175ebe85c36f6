import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import type { ContentStore, Digest } from "../images/index.js";

export interface CompressedLayer {
  digest: Digest;
  size: number;
  file: string;
}

/**
 * Layers stored uncompressed (local builds) are pushed gzip-compressed. The
 * compressed blob is made once per layer and kept here with the mapping
 * (uncompressed digest → compressed digest and size), so a second push, to
 * any registry, neither compresses again nor changes the pushed digest.
 */
export class PushLayerCache {
  private readonly inflight = new Map<string, Promise<CompressedLayer>>();

  constructor(private readonly dir: string) {}

  compressed(content: ContentStore, digest: Digest, signal?: AbortSignal): Promise<CompressedLayer> {
    let p = this.inflight.get(digest);
    if (!p) {
      p = this.make(content, digest, signal).finally(() => this.inflight.delete(digest));
      this.inflight.set(digest, p);
    }
    return p;
  }

  private async make(content: ContentStore, digest: Digest, signal?: AbortSignal): Promise<CompressedLayer> {
    const key = digest.replace(":", "-");
    const mapFile = path.join(this.dir, `${key}.json`);
    try {
      const m = JSON.parse(await readFile(mapFile, "utf8")) as { digest: Digest; size: number };
      const file = path.join(this.dir, `${m.digest.replace(":", "-")}.gz`);
      if ((await stat(file)).size === m.size) return { digest: m.digest, size: m.size, file };
    } catch {}
    await mkdir(this.dir, { recursive: true });
    const tmp = path.join(this.dir, `${key}.${process.pid}.${Date.now()}.tmp`);
    const hash = createHash("sha256");
    let size = 0;
    try {
      await pipeline(
        content.createReadStream(digest),
        zlib.createGzip({ level: zlib.constants.Z_DEFAULT_COMPRESSION, chunkSize: 1024 * 1024 }),
        new Transform({
          transform(chunk: Buffer, _e, cb) {
            hash.update(chunk);
            size += chunk.length;
            cb(null, chunk);
          },
        }),
        createWriteStream(tmp, { highWaterMark: 1024 * 1024 }),
        ...(signal ? [{ signal }] : []),
      );
      const out = `sha256:${hash.digest("hex")}` as Digest;
      const file = path.join(this.dir, `${out.replace(":", "-")}.gz`);
      await rename(tmp, file);
      await writeFile(mapFile, JSON.stringify({ digest: out, size }));
      return { digest: out, size, file };
    } finally {
      await rm(tmp, { force: true });
    }
  }

  open(layer: CompressedLayer, start = 0, end?: number) {
    return createReadStream(layer.file, {
      start,
      ...(end === undefined ? {} : { end }),
      highWaterMark: 1024 * 1024,
    });
  }
}
