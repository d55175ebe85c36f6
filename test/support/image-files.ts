import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import tar from "tar-stream";
import type { ImageStore } from "../../src/images/index.js";

export interface FileEntry {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  content?: string;
  linkname?: string;
}

/** Flattens an image's layers from the store into path → entry (whiteouts applied), reading small files' text. */
export async function imageFiles(store: ImageStore, name: string): Promise<Map<string, FileEntry>> {
  const info = await store.inspect(name);
  const files = new Map<string, FileEntry>();
  for (const layer of info.Layers) {
    const extract = tar.extract();
    const done = new Promise<void>((resolve, reject) => {
      extract.on("entry", (h, stream, next) => {
        const p = h.name.replace(/^\.?\//, "").replace(/\/$/, "");
        const base = p.split("/").pop() ?? "";
        const chunks: Buffer[] = [];
        stream.on("data", (c: unknown) => {
          if (chunks.length < 64) chunks.push(c as Buffer);
        });
        stream.on("end", () => {
          if (base.startsWith(".wh.")) {
            const target = p.slice(0, p.length - base.length) + base.slice(4);
            for (const k of [...files.keys()])
              if (k === target || k.startsWith(`${target}/`)) files.delete(k);
          } else {
            files.set(p, {
              type: h.type ?? "file",
              mode: (h.mode ?? 0) & 0o7777,
              uid: h.uid ?? 0,
              gid: h.gid ?? 0,
              content:
                h.type === "file" && (h.size ?? 0) < 65536 ? Buffer.concat(chunks).toString() : undefined,
              linkname: h.linkname ?? undefined,
            });
          }
          next();
        });
        stream.resume();
      });
      extract.on("finish", resolve);
      extract.on("error", reject);
    });
    const src = store.content.createReadStream(layer.digest);
    const gz = layer.mediaType.endsWith("gzip");
    await Promise.all([gz ? pipeline(src, createGunzip(), extract) : pipeline(src, extract), done]);
  }
  return files;
}

/** A Writable that collects text (for in-process CLI runs). */
export function textSink(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  return {
    stream: new Writable({
      write(c, _e, cb) {
        chunks.push(String(c));
        cb();
      },
    }),
    text: () => chunks.join(""),
  };
}
