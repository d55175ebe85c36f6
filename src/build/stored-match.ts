import type { SpoolFile } from "./spool-file.js";

/** Read-ahead when comparing with stored bytes. */
const MATCH_BLOCK = 1 << 20;

/** Where a file's bytes already are: in a spool kept from an earlier upload. */
export interface StoredBytes {
  file: SpoolFile;
  offset: number;
  size: number;
}

/**
 * Compares an entry's incoming bytes with the same path's bytes in an earlier
 * upload's spool, so an unchanged big file costs a read from the page cache
 * instead of a write to disk (on this kind of machine every newly written page
 * costs ~2.5 ms/MiB of fresh guest memory, more than the disk).
 */
export class StoredMatch {
  #matched = 0;
  readonly #buf = Buffer.allocUnsafe(MATCH_BLOCK);
  /** #buf holds stored bytes [#bufAt, #bufAt + #bufLen) of the file. */
  #bufAt = 0;
  #bufLen = 0;

  constructor(readonly stored: StoredBytes) {}

  /** Bytes that matched, from the file's start. */
  get matched(): number {
    return this.#matched;
  }

  /** Whether `chunk` is what the stored file has next; a chunk that differs leaves `matched` as it was. */
  async next(chunk: Buffer): Promise<boolean> {
    let at = this.#matched;
    let off = 0;
    if (at + chunk.length > this.stored.size) return false;
    while (off < chunk.length) {
      if (at >= this.#bufAt + this.#bufLen) {
        const want = Math.min(MATCH_BLOCK, this.stored.size - at);
        this.#bufLen = await this.stored.file.read(this.#buf, 0, want, this.stored.offset + at);
        this.#bufAt = at;
        if (this.#bufLen === 0) return false;
      }
      const from = at - this.#bufAt;
      const n = Math.min(chunk.length - off, this.#bufLen - from);
      if (chunk.compare(this.#buf, from, from + n, off, off + n) !== 0) return false;
      off += n;
      at += n;
    }
    this.#matched = at;
    return true;
  }

  /**
   * Appends the bytes that matched to `append` (the entry turned out different: its bytes must
   * lie back to back in the new spool).
   */
  async copyMatched(append: (b: Buffer) => Promise<void>): Promise<void> {
    for (let done = 0; done < this.#matched; ) {
      // A fresh buffer each time: the spool holds it until written.
      const b = Buffer.allocUnsafe(Math.min(MATCH_BLOCK, this.#matched - done));
      const got = await this.stored.file.read(b, 0, b.length, this.stored.offset + done);
      if (got === 0) throw new Error("the kept context spool is shorter than its index");
      await append(got === b.length ? b : b.subarray(0, got));
      done += got;
    }
  }
}
