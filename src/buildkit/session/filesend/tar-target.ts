import { randomBytes } from "node:crypto";
import { once } from "node:events";
import type { FileHandle } from "node:fs/promises";
import { open, rename, stat, unlink } from "node:fs/promises";
import path from "node:path";
import type { Writable } from "node:stream";

/**
 * Writes a tarball stream to dest atomically (temp file in the same dir,
 * fsync, rename). A dest that exists and is not a regular file (/dev/null,
 * a FIFO, a terminal) is written in place: renaming over it would replace
 * the device node.
 */
export async function writeTarFile(chunks: AsyncIterable<Uint8Array>, dest: string): Promise<number> {
  const existing = await stat(dest).catch(() => undefined);
  if (existing && !existing.isFile()) {
    if (existing.isDirectory()) throw new Error(`export destination ${dest} is a directory`);
    const fh = await open(dest, "w");
    try {
      return await writeAll(fh, chunks);
    } finally {
      await fh.close();
    }
  }
  const tmp = path.join(
    path.dirname(dest),
    `.${path.basename(dest)}.arca-${randomBytes(6).toString("hex")}.tmp`,
  );
  const fh = await open(tmp, "wx", 0o644);
  let bytes = 0;
  try {
    bytes = await writeAll(fh, chunks);
    await fh.sync();
    await fh.close();
  } catch (err) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw err;
  }
  try {
    await rename(tmp, dest);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  return bytes;
}

/** Writes a tarball stream to a Writable, honouring its backpressure. */
export async function writeTarStream(
  chunks: AsyncIterable<Uint8Array>,
  stream: Writable,
  end: boolean,
): Promise<number> {
  let bytes = 0;
  let failed: unknown;
  const onError = (err: unknown) => {
    failed ??= err;
  };
  stream.on("error", onError);
  try {
    for await (const chunk of chunks) {
      if (failed) throw failed;
      bytes += chunk.length;
      if (!stream.write(chunk)) {
        await Promise.race([once(stream, "drain"), once(stream, "close")]);
        if (failed) throw failed;
        if (stream.destroyed) throw new Error("export stream closed");
      }
    }
    if (end) {
      stream.end();
      if (!stream.writableFinished) await once(stream, "finish");
    }
    if (failed) throw failed;
    return bytes;
  } finally {
    stream.off("error", onError);
  }
}

async function writeAll(fh: FileHandle, chunks: AsyncIterable<Uint8Array>): Promise<number> {
  let bytes = 0;
  for await (const chunk of chunks) {
    let off = 0;
    while (off < chunk.length) {
      const { bytesWritten } = await fh.write(chunk, off, chunk.length - off);
      off += bytesWritten;
    }
    bytes += chunk.length;
  }
  return bytes;
}
