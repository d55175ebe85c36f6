import type { Readable, Writable } from "node:stream";
import { versionAtLeast } from "./version.js";

export type StdStream = 1 | 2;
export const STDOUT: StdStream = 1;
export const STDERR: StdStream = 2;

/**
 * Docker's stdcopy frame: stream type, three zero bytes, big-endian uint32 length, payload.
 * Written by hand because no installed library speaks this format.
 */
export function frame(stream: StdStream, payload: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

/** As dockerd: multiplexed output is announced as such from API 1.42 on; TTY output is always raw. */
export function streamContentType(tty: boolean, apiVersion: string): string {
  return !tty && versionAtLeast(apiVersion, "1.42")
    ? "application/vnd.docker.multiplexed-stream"
    : "application/vnd.docker.raw-stream";
}

/** Writes one chunk and waits for the destination to drain if it is full (or gone). */
export function writeWithBackpressure(dest: Writable, data: Buffer): Promise<void> {
  if (dest.destroyed || dest.writableEnded) return Promise.resolve();
  if (dest.write(data)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      dest.off("drain", done);
      dest.off("close", done);
      resolve();
    };
    dest.once("drain", done);
    dest.once("close", done);
  });
}

/**
 * Copies `src` into `dest` (without ending it), each chunk framed for `stream`, or raw when stream is
 * null (TTY). Several sources may share one destination: frames are written whole, so they never
 * interleave. Resolves when `src` ends or fails.
 */
export async function copyFramed(src: Readable, dest: Writable, stream: StdStream | null): Promise<void> {
  try {
    for await (const chunk of src) {
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
      if (buf.length === 0) continue;
      await writeWithBackpressure(dest, stream === null ? buf : frame(stream, buf));
    }
  } catch {
    // The process side went away; what was copied stays copied.
  }
}
