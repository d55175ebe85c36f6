import { readSync } from "node:fs";
import { type FileHandle, rename, rm } from "node:fs/promises";

/**
 * One spool file on disk, shared by every context archive whose entries point
 * into it (an upload that repeats the previous one's big files reads them from
 * that upload's spool instead of writing them again). The last release closes
 * and deletes it.
 */
export class SpoolFile {
  #refs = 1;
  #closing: Promise<void> | undefined;
  constructor(
    readonly fh: FileHandle,
    public path: string,
  ) {}

  /** Bytes in the file (what keeping it costs on disk). */
  size = 0;

  ref(): void {
    if (this.#refs === 0) throw new Error("spool file already released");
    this.#refs++;
  }

  /** Drops one reference; the last one closes and deletes the file. */
  release(): Promise<void> {
    if (this.#refs === 0) return this.#closing ?? Promise.resolve();
    if (--this.#refs > 0) return Promise.resolve();
    this.#closing = (async () => {
      await this.fh.close().catch(() => {});
      await rm(this.path, { force: true });
    })();
    return this.#closing;
  }

  /** Moves the file (open handles stay valid): kept spools leave the temp directory. */
  async moveTo(dest: string): Promise<void> {
    await rename(this.path, dest);
    this.path = dest;
  }

  readSync(buf: Buffer, offset: number, length: number, position: number): number {
    return readSync(this.fh.fd, buf, offset, length, position);
  }

  async read(buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    return (await this.fh.read(buf, offset, length, position)).bytesRead;
  }
}
