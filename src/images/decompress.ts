import { once } from "node:events";
import type { Readable } from "node:stream";
import { createGunzip } from "node:zlib";

/**
 * Peeks at the first bytes of input (without consuming them) and returns the transform stages needed to
 * read it as plain bytes: a gunzip stage for gzip (magic 1f 8b), nothing otherwise.
 */
export async function decompressStages(input: Readable): Promise<NodeJS.ReadWriteStream[]> {
  const head = await peek(input);
  return head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b ? [createGunzip()] : [];
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
