import type { Writable } from "node:stream";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { type Packet, PacketSchema } from "../../gen/fsutil/types/wire_pb.js";
import { rawHeadersKey } from "../request-headers.js";
import { type LocalExportResult, receiveLocal } from "./local-receiver.js";
import {
  bytesMessageData,
  type FileSendRaw,
  type RawMessage,
  RawMessageSchema,
  rawBytes,
} from "./raw-message.js";
import { writeTarFile, writeTarStream } from "./tar-target.js";

/**
 * Where one client-side exporter's output goes. `tar` receives the raw
 * tarball (exporters tar, oci, docker); `local` receives an fsutil stream.
 */
export type ExportTarget =
  | { kind: "tar"; dest: string }
  | { kind: "tar"; stream: Writable /** end the stream when done (default true) */; end?: boolean }
  | { kind: "local"; dest: string };

export interface ExportResult {
  /** Index in SolveRequest.Exporters (metadata buildkit-attachable-exporter-id). */
  exporterId: number;
  kind: "tar" | "local";
  /** exporter-md-* metadata, e.g. containerimage.digest, image.name. */
  metadata: Record<string, string>;
  /** Bytes written (tarball size, or file contents for local). */
  bytes: number;
  local?: LocalExportResult;
}

export interface FileSendOptions {
  /** By exporter index; undefined for exporters whose output stays in the daemon. */
  targets: readonly (ExportTarget | undefined)[];
  /** Called when an export has been fully written. */
  onResult?: (result: ExportResult) => void;
  signal?: AbortSignal;
}

const META_PREFIX = "exporter-md-";

/**
 * FileSend (moby.filesync.v1): receives exporter output. Register it with
 * FileSendRaw (same RPC path), not the generated FileSend, because the
 * payload type depends on the target.
 */
export function createFileSendService(opts: FileSendOptions): Partial<ServiceImpl<typeof FileSendRaw>> {
  return {
    async *diffCopy(requests: AsyncIterable<RawMessage>, ctx: HandlerContext) {
      const { id, metadata } = readMetadata(ctx);
      const target = opts.targets[id];
      if (!target) throw new ConnectError(`no client-side export target for exporter ${id}`, Code.NotFound);
      const signal = AbortSignal.any([ctx.signal, ...(opts.signal ? [opts.signal] : [])]);
      if (target.kind === "tar") {
        const chunks = mapIter(requests, bytesMessageData);
        const bytes =
          "stream" in target
            ? await writeTarStream(chunks, target.stream, target.end ?? true)
            : await writeTarFile(chunks, target.dest);
        opts.onResult?.({ exporterId: id, kind: "tar", metadata, bytes });
        return;
      }
      const packets = mapIter(requests, (m): Packet => fromBinary(PacketSchema, rawBytes(m)));
      const rx = receiveLocal(packets, target.dest, signal);
      for await (const p of rx.packets) {
        yield fromBinary(RawMessageSchema, toBinary(PacketSchema, create(PacketSchema, p)));
      }
      const local = await rx.result;
      opts.onResult?.({ exporterId: id, kind: "local", metadata, bytes: local.bytes, local });
    },
  };
}

function readMetadata(ctx: HandlerContext): { id: number; metadata: Record<string, string> } {
  const raw = ctx.values.get(rawHeadersKey);
  let idText: string | undefined;
  const md = new Map<string, string[]>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const k = (raw[i] as string).toLowerCase();
    const v = raw[i + 1] as string;
    if (k === "buildkit-attachable-exporter-id") idText ??= v;
    else if (k.startsWith(META_PREFIX)) {
      const key = k.slice(META_PREFIX.length);
      md.set(key, [...(md.get(key) ?? []), v]);
    }
  }
  const id = idText === undefined ? 0 : Number(idText);
  if (!Number.isSafeInteger(id) || id < 0) {
    throw new ConnectError(
      `invalid buildkit-attachable-exporter-id ${JSON.stringify(idText)}`,
      Code.InvalidArgument,
    );
  }
  // Like BuildKit's fsSyncTarget, repeated values are joined with ",".
  const metadata: Record<string, string> = Object.create(null);
  for (const [k, v] of md) metadata[k] = v.join(",");
  return { id, metadata };
}

async function* mapIter<T, U>(it: AsyncIterable<T>, fn: (t: T) => U): AsyncGenerator<U> {
  for await (const t of it) yield fn(t);
}
