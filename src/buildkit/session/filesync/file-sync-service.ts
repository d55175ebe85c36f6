import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { type Packet, Packet_PacketType, type PacketSchema } from "../../gen/fsutil/types/wire_pb.js";
import type { FileSync } from "../../gen/moby/filesync/v1/filesync_pb.js";
import { headerValue, headerValues } from "../request-headers.js";
import { isRegularGoMode } from "./file-mode.js";
import { type FilterOptions, filteredWalk } from "./filtered-walk.js";
import { PacketQueue } from "./packet-queue.js";
import { PatternError } from "./pattern-matcher.js";
import { hostSourceFS, type SourceFS } from "./source-fs.js";
import {
  countTransfer,
  createTransferStats,
  type TransferCounters,
  type TransferStats,
} from "./transfer-stats.js";

/** A host directory, or any tree that can be served like one (e.g. an uploaded archive's index). */
export type LocalDir = { path: string } | { fs: SourceFS };

export interface FileSyncOptions {
  /** Local dirs by the name BuildKit asks for (metadata dir-name), e.g. context, dockerfile. */
  dirs: Record<string, LocalDir>;
  stats?: TransferStats;
  signal?: AbortSignal;
  /** DATA payload size; see DEFAULT_CHUNK_SIZE. */
  chunkSize?: number;
}

type PacketInit = MessageInitShape<typeof PacketSchema>;

/**
 * 1 MiB DATA payloads. Measured over local h2c (200 MiB file, Node peer):
 * 32 KiB (fsutil's size) ~170 MB/s, 256 KiB ~370 MB/s, 1 MiB ~480 MB/s;
 * well under the 4-16 MiB message limits of buildkitd's gRPC client.
 */
export const DEFAULT_CHUNK_SIZE = 1 << 20;
/** Files up to this size are read in one synchronous call. */
const SMALL_FILE = 128 << 10;
/** Bytes of packets waiting for the HTTP/2 stream before producers pause. */
const QUEUE_BYTES = 4 << 20;
/** Files sent concurrently (fsutil uses 4; more hides Node's per-call fs latency for small files). */
const SEND_WORKERS = 8;

/**
 * FileSync (moby.filesync.v1): serves local dirs to buildkitd with fsutil's
 * sender protocol over DiffCopy. TarStream is left out (UNIMPLEMENTED);
 * current daemons only use DiffCopy.
 */
export function createFileSyncService(opts: FileSyncOptions): Partial<ServiceImpl<typeof FileSync>> {
  return {
    async *diffCopy(requests: AsyncIterable<Packet>, ctx: HandlerContext) {
      const dirName = headerValue(ctx, "dir-name") ?? "";
      const dir = Object.hasOwn(opts.dirs, dirName) ? opts.dirs[dirName] : undefined;
      if (!dir) throw new ConnectError(`no access allowed to dir "${dirName}"`, Code.NotFound);
      let root: SourceFS;
      try {
        root = "fs" in dir ? dir.fs : await hostSourceFS(dir.path);
      } catch (err) {
        throw new ConnectError(
          `local dir "${dirName}" is not available: ${(err as Error).message}`,
          Code.NotFound,
        );
      }
      const all = opts.stats ?? createTransferStats();
      const count = (c: keyof TransferCounters, n = 1) => countTransfer(all, dirName, c, n);
      count("calls");
      const filter: FilterOptions = {
        includePatterns: headerValues(ctx, "include-patterns"),
        excludePatterns: headerValues(ctx, "exclude-patterns"),
        followPaths: headerValues(ctx, "followpaths"),
      };
      const signals = [ctx.signal, ...(opts.signal ? [opts.signal] : [])];
      yield* sendDiffCopy(
        requests,
        root,
        filter,
        count,
        AbortSignal.any(signals),
        opts.chunkSize ?? DEFAULT_CHUNK_SIZE,
      );
    },
  };
}

/** fsutil's Send: streams STATs while answering REQs with DATA, ends on FIN. */
async function* sendDiffCopy(
  requests: AsyncIterable<Packet>,
  root: SourceFS,
  filter: FilterOptions,
  count: (c: keyof TransferCounters, n?: number) => void,
  outerSignal: AbortSignal,
  chunkSize: number,
): AsyncGenerator<PacketInit> {
  const ac = new AbortController();
  const signal = AbortSignal.any([outerSignal, ac.signal]);
  const out = new PacketQueue<PacketInit>(QUEUE_BYTES);
  const files = new Map<number, { rel: string; size: number }>();
  const reqs: { id: number; rel: string; size: number }[] = [];
  let reqHead = 0;
  let reqsClosed = false;
  let wakeWorkers: (() => void)[] = [];
  const notifyWorkers = () => {
    const w = wakeWorkers;
    wakeWorkers = [];
    for (const f of w) f();
  };
  const walkAbort = new AbortController();

  const fail = (err: unknown) => {
    out.fail(toConnectError(err));
    ac.abort();
    reqsClosed = true;
    notifyWorkers();
  };

  const walk = (async () => {
    let id = 0;
    try {
      for await (const stat of filteredWalk(root, filter, AbortSignal.any([signal, walkAbort.signal]))) {
        if (isRegularGoMode(stat.mode)) files.set(id, { rel: stat.path, size: Number(stat.size ?? 0) });
        id++;
        await out.push({ type: Packet_PacketType.PACKET_STAT, stat }, stat.path.length + 64);
        count("entriesSent");
      }
      await out.push({ type: Packet_PacketType.PACKET_STAT }, 2);
    } catch (err) {
      if (walkAbort.signal.aborted || !out.isOpen) return;
      const msg = err instanceof PatternError ? `invalid patterns: ${err.message}` : (err as Error).message;
      // Like fsutil: tell the receiver why, then fail the call.
      await out
        .push({ type: Packet_PacketType.PACKET_ERR, data: new TextEncoder().encode(msg) }, msg.length)
        .catch(() => {});
      fail(err instanceof PatternError ? new ConnectError(msg, Code.InvalidArgument) : err);
    }
  })();

  const nextReq = async (): Promise<{ id: number; rel: string; size: number } | undefined> => {
    for (;;) {
      if (reqHead < reqs.length) return reqs[reqHead++];
      if (reqsClosed) return undefined;
      await new Promise<void>((resolve) => wakeWorkers.push(resolve));
    }
  };

  const sendFile = async (id: number, rel: string, size: number) => {
    if (size <= SMALL_FILE) return sendSmallFile(id, rel);
    // Like fsutil, a file that can no longer be opened is sent as empty.
    const fh = await root.open(rel).catch(() => undefined);
    if (fh) {
      try {
        // Size the first buffer from the walk's stat (+1 so one short read shows EOF):
        // small files then cost one read and no 256 KiB allocation.
        let want = Math.min(chunkSize, size + 1);
        for (;;) {
          if (signal.aborted) throw signal.reason;
          const buf = Buffer.allocUnsafe(want);
          const bytesRead = await fh.read(buf, 0, want);
          if (bytesRead > 0) {
            await out.push(
              { type: Packet_PacketType.PACKET_DATA, ID: id, data: buf.subarray(0, bytesRead) },
              bytesRead,
            );
            count("bytesSent", bytesRead);
          }
          // A short read of a regular file is its end.
          if (bytesRead < want) break;
          want = chunkSize;
        }
      } finally {
        await fh.close();
      }
    }
    await out.push({ type: Packet_PacketType.PACKET_DATA, ID: id }, 8);
    count("filesSent");
  };

  /**
   * Small files are read synchronously in one call: three thread-pool round
   * trips (open, read, close) per file dominated contexts of many small files.
   */
  const sendSmallFile = async (id: number, rel: string) => {
    let data: Buffer | undefined;
    try {
      data = root.readFile(rel);
    } catch {
      data = undefined; // Like fsutil, a file that can no longer be read is sent as empty.
    }
    if (data && data.length > chunkSize) {
      // Grew since the walk: fall back to chunks.
      for (let off = 0; off < data.length; off += chunkSize) {
        const part = data.subarray(off, off + chunkSize);
        await out.push({ type: Packet_PacketType.PACKET_DATA, ID: id, data: part }, part.length);
      }
    } else if (data?.length) {
      await out.push({ type: Packet_PacketType.PACKET_DATA, ID: id, data }, data.length);
    }
    count("bytesSent", data?.length ?? 0);
    await out.push({ type: Packet_PacketType.PACKET_DATA, ID: id }, 8);
    count("filesSent");
  };

  const workers = Array.from({ length: SEND_WORKERS }, async () => {
    for (let r = await nextReq(); r !== undefined; r = await nextReq()) await sendFile(r.id, r.rel, r.size);
  });

  const reader = (async (): Promise<"fin" | "eof"> => {
    for await (const p of requests) {
      switch (p.type) {
        case Packet_PacketType.PACKET_REQ: {
          // Each file can be requested once (fsutil forgets the id when queueing).
          const f = files.get(p.ID);
          if (f === undefined) throw new ConnectError(`invalid file id ${p.ID}`, Code.InvalidArgument);
          files.delete(p.ID);
          count("filesRequested");
          reqs.push({ id: p.ID, ...f });
          if (reqHead > 4096) {
            reqs.splice(0, reqHead);
            reqHead = 0;
          }
          notifyWorkers();
          break;
        }
        case Packet_PacketType.PACKET_ERR:
          throw new ConnectError(`error from receiver: ${new TextDecoder().decode(p.data)}`, Code.Aborted);
        case Packet_PacketType.PACKET_FIN:
          return "fin";
      }
    }
    return "eof";
  })();

  const main = (async () => {
    try {
      const end = await reader;
      // The receiver has everything it wants: stop walking, finish queued files.
      walkAbort.abort();
      reqsClosed = true;
      notifyWorkers();
      await Promise.all(workers);
      await walk;
      if (end === "fin") await out.push({ type: Packet_PacketType.PACKET_FIN }, 2);
      out.close();
    } catch (err) {
      fail(err);
    }
  })();
  for (const w of workers) w.catch(fail);
  const onAbort = () => fail(new ConnectError("transfer canceled", Code.Canceled));
  outerSignal.addEventListener("abort", onAbort, { once: true });

  try {
    yield* out.drain();
  } finally {
    outerSignal.removeEventListener("abort", onAbort);
    ac.abort();
    walkAbort.abort();
    reqsClosed = true;
    notifyWorkers();
    // Not awaited: the reader may still be parked on a request stream the peer keeps open.
    void main;
  }
}

function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e?.name === "AbortError")
    return new ConnectError("transfer canceled", Code.Canceled, undefined, undefined, err);
  return new ConnectError(e?.message ?? String(err), Code.Unknown, undefined, undefined, err);
}
