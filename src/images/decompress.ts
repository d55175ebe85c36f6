import { once } from "node:events";
import { PassThrough, type Readable, type Transform } from "node:stream";
import { createGunzip } from "node:zlib";

/**
 * Peeks at the first bytes of input (without consuming them) and returns the stage that turns it into
 * plain bytes: gunzip for gzip (magic 1f 8b), a pass-through otherwise.
 */
export async function decompressor(input: Readable): Promise<Transform> {
  const head = await peek(input);
  return head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b ? createGunzip() : new PassThrough();
}

async function peek(input: Readable): Promise<Buffer> {
  for (;;) {
    const chunk = input.read() as Buffer | string | null;
    if (chunk !== null) {
      const buf = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      input.unshift(buf);
      return buf;
    }
    if (input.readableEnded || input.destroyed) return Buffer.alloc(0);
    // once() rejects if input emits 'error' first.
    await Promise.race([once(input, "readable"), once(input, "end")]);
  }
}
