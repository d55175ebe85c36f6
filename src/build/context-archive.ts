import { createHash } from "node:crypto";
import { type FileHandle, open } from "node:fs/promises";
import { type Readable, Transform } from "node:stream";
import tar from "tar-stream";
import type { SourceDirent, SourceFile, SourceFS, SourceStat } from "../buildkit/index.js";
import { abortReason, errorMessage, noSpaceMessage, OffloadedSha256 } from "../util/index.js";
import { decompressedContext } from "./context-decompress.js";
import { BuildError } from "./errors.js";
import { SpoolFile } from "./spool-file.js";
import { type StoredBytes, StoredMatch } from "./stored-match.js";

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

/** Entries up to this size are gathered in memory and appended to the spool in batches. */
const SMALL_ENTRY = 256 << 10;
/** Batched spool writes. */
const SPOOL_BATCH = 1 << 20;
/** Most buffers in one write: a client sending tiny pieces must not grow the list unbounded. */
const SPOOL_BATCH_BUFFERS = 512;
/** Most bytes the spool's writes may hold before the reader waits for them. */
const SPOOL_IN_FLIGHT = 8 << 20;
/** Most spool writes in flight. */
const SPOOL_IN_FLIGHT_WRITES = 16;

interface Node {
  /** POSIX st_mode: type and permission bits. */
  mode: number;
  mtimeNs: bigint;
  size: number;
  linkname: string;
  /** Shared by hardlinks to the same file. */
  ino: number;
  /** Where the file's bytes are in the spool. */
  offset: number;
  /** The spool holding them when not this upload's own (an earlier upload's, reused). */
  file?: SpoolFile;
  children?: Map<string, Node>;
}

const S_IFIFO = 0o010000;

export interface ContextArchive {
  /** The context as a tree FileSync can serve; file bytes are read from the spool. */
  readonly fs: SourceFS;
  readonly entries: number;
  readonly bytes: number;
  /** sha256 over every entry's header fields and content: same digest, same context. */
  readonly digest: string;
  /** Whether `rel` names an entry (not following a final symlink). */
  has(rel: string): boolean;
  /** Device nodes the archive had, which a build cannot create (see spoolContext). */
  readonly skippedDevices: string[];
  /** Where a big regular file's bytes are, for the next upload of the same project to reuse. */
  stored(rel: string): StoredBytes | undefined;
  /** Whether keeping the archive can save the next upload a write: it has a big file. */
  readonly reusable: boolean;
  /** The spool files its entries read from (its own, and earlier uploads' it reused). */
  readonly files: readonly SpoolFile[];
  /** Releases its spool files: the last archive using a file deletes it. */
  close(): Promise<void>;
}

/**
 * A tar entry name as a clean relative path inside the context; "" for the
 * root. Absolute paths and `..` components are refused outright rather than
 * cleaned, so nothing can ever resolve outside the context.
 */
export function contextRelativePath(name: string, what = "entry"): string {
  if (name.startsWith("/")) {
    throw new BuildError(
      "invalid_context",
      `invalid build context: ${what} ${JSON.stringify(name)} is an absolute path`,
    );
  }
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) {
    throw new BuildError(
      "invalid_context",
      `invalid build context: ${what} ${JSON.stringify(name)} has a ".." component`,
    );
  }
  return parts.join("/");
}

/**
 * The docker CLI's legacy builder appends the Dockerfile and .dockerignore
 * after the context and ends the archive right after the last file's data: no
 * padding, no end blocks. Go's tar reader accepts that; tar-stream wants whole
 * 512-byte blocks. This pads the end to a block boundary and remembers how
 * many bytes were real, so an entry whose data runs into the padding (a
 * truncated body) is still an error.
 */
class BlockPadder extends Transform {
  realBytes = 0;
  ended = false;
  override _transform(
    chunk: Buffer,
    _enc: BufferEncoding,
    cb: (err?: Error | null, data?: Buffer) => void,
  ): void {
    this.realBytes += chunk.length;
    cb(null, chunk);
  }
  override _flush(cb: (err?: Error | null, data?: Buffer) => void): void {
    this.ended = true;
    const pad = (512 - (this.realBytes % 512)) % 512;
    cb(null, pad ? Buffer.alloc(pad) : undefined);
  }
}

/**
 * Reads a build context (tar, gzip, bzip2 or xz) into an index of its
 * entries and one spool file holding the file bytes back to back, instead of
 * unpacking it. Creating files is what costs on a real disk (GNU tar needs
 * ~13 s for 20,000 small files on this kind of machine, dockerd the same);
 * appending their bytes to one file costs next to nothing, and FileSync
 * serves the tree straight from the index. Nothing is ever written but the
 * spool, so hostile names cannot reach the filesystem; they are still
 * refused (absolute, `..`, through a symlink, hardlinks to no earlier file)
 * so the tree means what an unpacked context would.
 */
export async function spoolContext(
  body: Readable,
  spoolPath: string,
  signal: AbortSignal,
  opts: {
    maxBytes?: number;
    /**
     * An earlier upload of the same project: a big file whose bytes equal the same path's there is
     * not written again, the new archive reads it from that upload's spool.
     */
    base?: ContextArchive;
  } = {},
): Promise<ContextArchive> {
  const own = new SpoolFile(await open(spoolPath, "wx+", 0o600), spoolPath);
  const spool = new Spool(own.fh);
  const reused = new Set<SpoolFile>();
  const release = () => Promise.all([own, ...reused].map((f) => f.release()));
  let reusable = false;
  const tree = new Tree();
  const extract = tar.extract();
  let entries = 0;
  let bytes = 0;
  const skippedDevices: string[] = [];
  let feedError: unknown;
  let extractError: unknown;
  const onAbort = () => extract.destroy(abortReason(signal));
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    const tarStream = await decompressedContext(body, signal);
    // A small compressed body can inflate to terabytes: the cap holds on what decompression yields.
    const maxBytes = opts.maxBytes;
    if (maxBytes !== undefined) {
      let inflated = 0;
      tarStream.on("data", (c: Buffer) => {
        inflated += c.length;
        if (inflated > maxBytes) tarStream.destroy(contextTooLarge(maxBytes));
      });
    }
    // pipe, not pipeline: a failed read must not destroy the request, its socket carries our 400.
    tarStream.once("error", (err) => {
      feedError = err;
      extract.destroy(err);
    });
    // tar-stream fails the extractor, not the entry being read, when the body ends early: pass it on.
    let current: { destroy(err?: Error): void } | undefined;
    extract.on("error", (err) => {
      extractError = err;
      current?.destroy(err);
    });
    const padder = new BlockPadder();
    tarStream.pipe(padder).pipe(extract);
    const contextHash = createHash("sha256");

    for await (const entry of extract) {
      current = entry;
      const h = entry.header;
      entries++;
      const rel = contextRelativePath(h.name);
      const mode = (h.mode ?? 0o644) & 0o7777;
      let mtimeNs = BigInt(h.mtime?.getTime() ?? 0) * 1_000_000n;
      let content = "";
      switch (h.type) {
        case "directory":
          tree.dir(rel, mode, mtimeNs);
          entry.resume();
          break;
        case "file":
        case "contiguous-file": {
          if (rel === "")
            throw new BuildError("invalid_context", "invalid build context: a file entry names the root");
          const size = h.size ?? 0;
          const offset = spool.size;
          /** Set when the bytes are an earlier upload's, unchanged. */
          let kept: StoredBytes | undefined;
          let sum: Buffer;
          if (size <= SMALL_ENTRY) {
            const fileHash = createHash("sha256");
            const chunks: Buffer[] = [];
            let got = 0;
            for await (const c of entry) {
              fileHash.update(c as Buffer);
              chunks.push(c as Buffer);
              got += (c as Buffer).length;
            }
            await spool.appendCopy(chunks, got);
            sum = fileHash.digest();
          } else {
            reusable = true;
            const stored = opts.base?.stored(rel);
            let match = stored?.size === size ? new StoredMatch(stored) : undefined;
            // Hashed on the worker thread while this thread extracts and spools (0.3 s per 512 MiB).
            const fileHash = new OffloadedSha256();
            try {
              // for-await rather than pipeline(): tar-stream's entries are streamx streams.
              for await (const c of entry) {
                const taken = fileHash.update(c as Buffer);
                if (taken) await taken;
                if (match) {
                  if (await match.next(c as Buffer)) continue;
                  // Different after all: what matched goes into this spool, then the rest.
                  await match.copyMatched((b) => spool.append(b));
                  match = undefined;
                }
                await spool.append(c as Buffer);
              }
              sum = Buffer.from(await fileHash.digest(), "hex");
            } finally {
              fileHash.dispose();
            }
            if (match && match.matched === size) {
              if (!reused.has(match.stored.file)) {
                match.stored.file.ref();
                reused.add(match.stored.file);
              }
              kept = match.stored;
            }
          }
          content = sum.toString("hex");
          mtimeNs = withContentStamp(mtimeNs, sum);
          const written = kept ? kept.size : spool.size - offset;
          // tar-stream's entry offset is where its header starts; the data follows it.
          const dataEnd = (entry as unknown as { offset: number }).offset + 512 + size;
          if (written !== size || (padder.ended && dataEnd > padder.realBytes))
            throw new Error("unexpected EOF");
          bytes += size;
          tree.put(rel, {
            mode: S_IFREG | mode,
            mtimeNs,
            size,
            linkname: "",
            ino: 0,
            offset: kept ? kept.offset : offset,
            ...(kept && { file: kept.file }),
          });
          break;
        }
        case "symlink":
          if (rel === "")
            throw new BuildError("invalid_context", "invalid build context: a symlink names the root");
          tree.put(rel, {
            mode: S_IFLNK | 0o777,
            mtimeNs,
            size: 0,
            linkname: h.linkname ?? "",
            ino: 0,
            offset: 0,
          });
          entry.resume();
          break;
        case "link":
          tree.hardlink(
            rel,
            contextRelativePath(h.linkname ?? "", "hardlink target"),
            h.name,
            h.linkname ?? "",
          );
          entry.resume();
          break;
        case "fifo":
          if (rel === "")
            throw new BuildError("invalid_context", "invalid build context: a FIFO names the root");
          // Kept as dockerd keeps it (COPY brings it into the image); it carries no data.
          tree.put(rel, { mode: S_IFIFO | mode, mtimeNs, size: 0, linkname: "", ino: 0, offset: 0 });
          entry.resume();
          break;
        case "character-device":
        case "block-device":
          // The build sandbox is a user namespace, where no device node can be created (mknod is
          // EPERM there; dockerd in a user namespace skips them too). Left out, and said so.
          skippedDevices.push(rel);
          entry.resume();
          break;
        default:
          // Sockets and unknown types cannot be archived by tar writers anyway.
          entry.resume();
      }
      contextHash.update(
        `${JSON.stringify([h.name, h.type, mode, String(mtimeNs), h.linkname ?? "", h.size ?? 0, content])}\n`,
      );
    }
    if (feedError) throw feedError;
    await spool.flush();
    own.size = spool.size;
    let closed: Promise<unknown> | undefined;
    return {
      fs: tree.sourceFS(own),
      entries,
      bytes,
      digest: `sha256:${contextHash.digest("hex")}`,
      has: (rel) => tree.find(rel) !== undefined,
      skippedDevices,
      stored: (rel) => {
        const n = tree.find(rel);
        if (!n || (n.mode & 0o170000) !== S_IFREG || n.size <= SMALL_ENTRY) return undefined;
        return { file: n.file ?? own, offset: n.offset, size: n.size };
      },
      reusable,
      files: [own, ...reused],
      close: async () => {
        closed ??= release();
        await closed;
      },
    };
  } catch (err) {
    extract.destroy();
    // The upload's error is the answer, whatever deleting its spool says.
    await release().catch(() => {});
    // Let the rest of the body drain so the connection can carry the error response.
    body.unpipe();
    body.resume();
    if (signal.aborted) throw new BuildError("canceled", "build canceled", { cause: abortReason(signal) });
    if (err instanceof BuildError) throw err;
    const cause = feedError ?? extractError ?? err;
    throw new BuildError("invalid_context", `failed to read build context: ${errorMessage(cause)}`, {
      cause,
    });
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

function contextTooLarge(maxBytes: number): BuildError {
  return new BuildError(
    "invalid_context",
    `build context is larger than ${maxBytes} bytes once decompressed (the daemon's --max-context-size): make it smaller with .dockerignore`,
  );
}

/**
 * Archive mtimes are whole seconds (the docker CLI writes ustar headers), so
 * a file rewritten within the same second at the same size looks unchanged
 * to FileSync, which compares metadata only: BuildKit would build the old
 * bytes. Whole-second mtimes get a fingerprint of the content in their
 * (otherwise zero) nanoseconds, so any content change reaches BuildKit.
 * Image layers keep whole seconds (BuildKit truncates layer mtimes), and
 * cache keys ignore mtimes, so nothing else changes.
 */
function withContentStamp(mtimeNs: bigint, sum: Buffer): bigint {
  if (mtimeNs % 1_000_000_000n !== 0n) return mtimeNs;
  return mtimeNs + BigInt(sum.readUInt32BE(0) % 1_000_000_000);
}

/**
 * Append-only file of the context's bytes, written in batches at known
 * positions without waiting for each write: parsing and hashing go on while
 * the threadpool writes (waiting on every write made the upload of a 512 MiB
 * context take the sum of both instead of the larger).
 */
export class Spool {
  size = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Small entries are copied here: a slice of a socket chunk would hold the whole chunk. */
  private batch: Buffer | undefined;
  /** batch[batchStart, batchUsed) is pending but not yet in `pending`. */
  private batchStart = 0;
  private batchUsed = 0;
  private written = 0;
  private readonly inFlight: { done: Promise<void>; settled: boolean }[] = [];
  private inFlightBytes = 0;
  private inFlightWrites = 0;
  private failure: unknown;
  constructor(readonly fh: FileHandle) {}

  /** Appends a large entry's chunk as it is (its bytes are nearly all file data). */
  async append(data: Buffer): Promise<void> {
    if (data.length === 0) return;
    this.seal();
    this.size += data.length;
    this.pending.push(data);
    this.pendingBytes += data.length;
    await this.maybeWrite();
  }

  /** Appends a small entry's bytes by copying them into the current batch. */
  async appendCopy(chunks: Buffer[], bytes: number): Promise<void> {
    if (bytes === 0) return;
    if (!this.batch || this.batch.length - this.batchUsed < bytes) {
      this.seal();
      this.batch = Buffer.allocUnsafeSlow(Math.max(SPOOL_BATCH, bytes));
      this.batchStart = 0;
      this.batchUsed = 0;
    }
    for (const c of chunks) this.batchUsed += c.copy(this.batch, this.batchUsed);
    this.size += bytes;
    this.pendingBytes += bytes;
    await this.maybeWrite();
  }

  private async maybeWrite(): Promise<void> {
    if (this.pendingBytes >= SPOOL_BATCH || this.pending.length >= SPOOL_BATCH_BUFFERS) {
      this.writePending();
      await this.throttle();
    }
  }

  /** Moves the batch's unsent bytes into `pending`; the rest of the batch stays free for more. */
  private seal(): void {
    if (!this.batch || this.batchUsed === this.batchStart) return;
    this.pending.push(this.batch.subarray(this.batchStart, this.batchUsed));
    this.batchStart = this.batchUsed;
  }

  /** Writes what is pending and waits for every write; nothing is appended after. */
  async flush(): Promise<void> {
    this.writePending();
    while (this.inFlight.length) await this.inFlight.shift()?.done;
    // The archive's closures keep this spool reachable while the upload is kept: not its 1 MiB batch.
    this.batch = undefined;
    if (this.failure) throw this.failure;
  }

  /** One writev of the pending buffers: large entries' chunks are not copied, which cost GC time on big contexts. */
  private writePending(): void {
    this.seal();
    if (this.pendingBytes === 0) return;
    const buffers = this.pending;
    const bytes = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    const position = this.written;
    this.written += bytes;
    this.inFlightBytes += bytes;
    this.inFlightWrites++;
    const entry = { done: Promise.resolve(), settled: false };
    const settle = () => {
      this.inFlightBytes -= bytes;
      this.inFlightWrites--;
      entry.settled = true;
    };
    entry.done = writeAll(this.fh, buffers, bytes, position).then(settle, (err: unknown) => {
      settle();
      this.failure ??= new BuildError(
        "spool_failed",
        `cannot store the build context: ${noSpaceMessage(err) ?? errorMessage(err)}`,
        { cause: err },
      );
    });
    while (this.inFlight[0]?.settled) this.inFlight.shift();
    this.inFlight.push(entry);
  }

  /** Bounds the bytes and the writes in flight (the threadpool serves others too); surfaces a failed write. */
  private async throttle(): Promise<void> {
    while (
      (this.inFlightBytes > SPOOL_IN_FLIGHT || this.inFlightWrites > SPOOL_IN_FLIGHT_WRITES) &&
      this.inFlight.length
    )
      await this.inFlight.shift()?.done;
    if (this.failure) throw this.failure;
  }
}

/**
 * writev until every byte is written. libuv already resumes partial writes; it returns a short
 * count when a later write failed, and writing the rest again surfaces that error (ENOSPC).
 */
async function writeAll(fh: FileHandle, buffers: Buffer[], bytes: number, position: number): Promise<void> {
  let done = 0;
  let rest = buffers;
  while (done < bytes) {
    const { bytesWritten } = await fh.writev(rest, position + done);
    if (bytesWritten === 0) throw new Error("short write to the context spool");
    done += bytesWritten;
    if (done < bytes) rest = remainingBuffers(rest, bytesWritten);
  }
}

function remainingBuffers(buffers: Buffer[], skip: number): Buffer[] {
  const out: Buffer[] = [];
  let left = skip;
  for (const b of buffers) {
    if (left >= b.length) {
      left -= b.length;
      continue;
    }
    out.push(left ? b.subarray(left) : b);
    left = 0;
  }
  return out;
}

/** The entries of the archive by path, with tar's later-entry-wins semantics. */
class Tree {
  private readonly root: Node = dirNode(0o755, 0n);
  private readonly links = new Map<number, number>();
  private nextIno = 1;

  find(rel: string): Node | undefined {
    if (rel === "") return this.root;
    let n: Node | undefined = this.root;
    for (const part of rel.split("/")) {
      n = n.children?.get(part);
      if (!n) return undefined;
    }
    return n;
  }

  dir(rel: string, mode: number, mtimeNs: bigint): void {
    const existing = this.find(rel);
    if (existing?.children) {
      existing.mode = S_IFDIR | mode;
      existing.mtimeNs = mtimeNs;
      return;
    }
    this.put(rel, dirNode(mode, mtimeNs));
  }

  put(rel: string, node: Node): void {
    const { parent, name } = this.parentOf(rel);
    const old = parent.children?.get(name);
    if (old) this.release(old);
    if (!node.children) {
      if (node.ino === 0) node.ino = this.nextIno++;
      this.links.set(node.ino, (this.links.get(node.ino) ?? 0) + 1);
    }
    parent.children?.set(name, node);
  }

  hardlink(rel: string, target: string, name: string, linkname: string): void {
    const t = target === "" || this.throughSymlink(target) ? undefined : this.find(target);
    if (target === "" || this.throughSymlink(target)) {
      throw new BuildError(
        "invalid_context",
        `invalid build context: hardlink ${JSON.stringify(name)} points outside the context`,
      );
    }
    if (!t || t.children) {
      throw new BuildError(
        "invalid_context",
        `invalid build context: hardlink ${JSON.stringify(name)} points at ${JSON.stringify(linkname)}, which is not an earlier file in the archive`,
      );
    }
    this.put(rel, { ...t });
  }

  /** The parent directory of `rel`, created (mode 0755) where the archive implies it. */
  private parentOf(rel: string): { parent: Node; name: string } {
    const parts = rel.split("/");
    const name = parts.pop() as string;
    let dir = this.root;
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i] as string;
      let next = dir.children?.get(part);
      if (next && (next.mode & 0o170000) === S_IFLNK) {
        throw new BuildError(
          "invalid_context",
          `invalid build context: entry ${JSON.stringify(rel)} goes through a symlink in the archive`,
        );
      }
      if (!next?.children) {
        // Like unpacking: a file in the way is replaced by the directory.
        if (next) this.release(next);
        next = dirNode(0o755, BigInt(Date.now()) * 1_000_000n);
        dir.children?.set(part, next);
      }
      dir = next;
    }
    return { parent: dir, name };
  }

  private throughSymlink(rel: string): boolean {
    let n: Node | undefined = this.root;
    const parts = rel.split("/");
    for (let i = 0; i < parts.length - 1; i++) {
      n = n.children?.get(parts[i] as string);
      if (!n) return false;
      if ((n.mode & 0o170000) === S_IFLNK) return true;
    }
    return false;
  }

  private release(n: Node): void {
    if (n.children) {
      for (const c of n.children.values()) this.release(c);
      return;
    }
    this.links.set(n.ino, (this.links.get(n.ino) ?? 1) - 1);
  }

  sourceFS(own: SpoolFile): SourceFS {
    const get = (rel: string): Node => {
      const n = this.find(rel);
      if (!n)
        throw Object.assign(new Error(`ENOENT: no such file or directory, '${rel}'`), { code: "ENOENT" });
      return n;
    };
    const file = (rel: string): Node => {
      const n = get(rel);
      if ((n.mode & 0o170000) !== S_IFREG)
        throw Object.assign(new Error(`not a file: '${rel}'`), { code: "EISDIR" });
      return n;
    };
    return {
      lstat: (rel): SourceStat => {
        const n = get(rel);
        return {
          mode: n.mode,
          // Owned by root, as unpacked by a root daemon (and as BuildKit's client resets local files).
          uid: 0,
          gid: 0,
          size: BigInt(
            n.children ? 4096 : (n.mode & 0o170000) === S_IFLNK ? Buffer.byteLength(n.linkname) : n.size,
          ),
          mtimeNs: n.mtimeNs,
          ino: BigInt(n.ino),
          nlink: BigInt(n.children ? 2 : (this.links.get(n.ino) ?? 1)),
          rdev: 0n,
        };
      },
      readdir: (rel): SourceDirent[] => {
        const n = get(rel);
        if (!n.children)
          throw Object.assign(new Error(`ENOTDIR: not a directory, '${rel}'`), { code: "ENOTDIR" });
        return [...n.children].map(([name, c]) => ({ name, isDir: c.children !== undefined }));
      },
      readlink: (rel) => {
        const n = get(rel);
        if ((n.mode & 0o170000) !== S_IFLNK)
          throw Object.assign(new Error(`EINVAL: not a symlink, '${rel}'`), { code: "EINVAL" });
        return n.linkname;
      },
      readFile: (rel) => {
        const n = file(rel);
        const buf = Buffer.allocUnsafe(n.size);
        let done = 0;
        while (done < n.size) {
          const got = (n.file ?? own).readSync(buf, done, n.size - done, n.offset + done);
          if (got === 0) break;
          done += got;
        }
        return buf.subarray(0, done);
      },
      open: async (rel): Promise<SourceFile> => {
        const n = file(rel);
        let pos = 0;
        return {
          read: async (buf, offset, length) => {
            const want = Math.min(length, n.size - pos);
            if (want <= 0) return 0;
            const got = await (n.file ?? own).read(buf, offset, want, n.offset + pos);
            pos += got;
            return got;
          },
          close: async () => {},
        };
      },
    };
  }
}

function dirNode(mode: number, mtimeNs: bigint): Node {
  return { mode: S_IFDIR | mode, mtimeNs, size: 0, linkname: "", ino: 0, offset: 0, children: new Map() };
}
