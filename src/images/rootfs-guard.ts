import { once } from "node:events";
import { Transform, type TransformCallback } from "node:stream";
import tar from "tar-stream";
import { ImageError } from "./errors.js";

function refuse(name: string, why: string): ImageError {
  return new ImageError("invalid_archive", `invalid rootfs archive: entry ${JSON.stringify(name)} ${why}`);
}

/** The entry's path inside the rootfs ("" for the root), refusing what could land outside it. */
function rootfsPath(name: string, what = "entry"): string {
  if (name.includes("\0")) throw refuse(name, `has a NUL byte in its ${what}`);
  if (name.startsWith("/")) throw refuse(name, `is an absolute ${what === "entry" ? "path" : what}`);
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes(".."))
    throw refuse(name, `has a ".." component${what === "entry" ? "" : ` in its ${what}`}`);
  return parts.join("/");
}

/**
 * Passes a rootfs tar through unchanged while checking it as the build context's are checked: no
 * absolute or `..` names, nothing written through a symlink the archive made, hard links only to
 * earlier entries inside it (so no link to the host's /etc/shadow when the layer is unpacked), and a
 * well-formed archive. Symlink targets stay as they are: absolute ones are normal in a rootfs and
 * resolve inside it.
 */
export class RootfsGuard extends Transform {
  readonly #extract = tar.extract();
  readonly #entries = new Set<string>();
  readonly #symlinks = new Set<string>();
  #error: Error | undefined;

  constructor() {
    super();
    this.#extract.on("entry", (header, stream, next) => {
      try {
        this.#check(header);
      } catch (err) {
        this.#error ??= err as Error;
      }
      // A truncated entry fails the extractor too, which is where it is reported.
      stream.on("error", () => {});
      stream.on("end", () => next());
      stream.resume();
    });
    this.#extract.on("error", (err: Error) => {
      this.#error ??= new ImageError("invalid_archive", `invalid rootfs archive: ${err.message}`, {
        cause: err,
      });
    });
  }

  #check(h: tar.Header): void {
    const rel = rootfsPath(h.name);
    const parts = rel.split("/");
    for (let i = 1; i < parts.length; i++) {
      if (this.#symlinks.has(parts.slice(0, i).join("/"))) throw refuse(h.name, "goes through a symlink");
    }
    if (h.type === "link") {
      const target = rootfsPath(h.linkname ?? "", "link target");
      if (!this.#entries.has(target) || this.#symlinks.has(target))
        throw refuse(h.name, `is a hard link to ${JSON.stringify(h.linkname)}, not an earlier file`);
    }
    if (h.type === "symlink") this.#symlinks.add(rel);
    else this.#symlinks.delete(rel);
    this.#entries.add(rel);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.#error) {
      cb(this.#error);
      return;
    }
    this.push(chunk);
    if (this.#extract.write(chunk)) cb(this.#error);
    else this.#extract.once("drain", () => cb(this.#error));
  }

  override _flush(cb: TransformCallback): void {
    if (this.#error) {
      cb(this.#error);
      return;
    }
    const done = Promise.race([once(this.#extract, "finish"), once(this.#extract, "close")]);
    // streamx's end() takes an optional last chunk (the typings insist on one).
    (this.#extract as unknown as { end(): void }).end();
    done.then(
      () => cb(this.#error),
      (err: Error) => cb(this.#error ?? err),
    );
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    this.#extract.destroy();
    cb(err);
  }
}
