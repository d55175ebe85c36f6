import type http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  ConnectError,
  type ConnectRouter,
  createContextValues,
  createHandlerContext,
  type ServiceImpl,
} from "@connectrpc/connect";
import { type Packet, Packet_PacketType, PacketSchema } from "../gen/fsutil/types/wire_pb.js";
import { FileSync } from "../gen/moby/filesync/v1/filesync_pb.js";
import type { Attachable } from "./attachable.js";
import { rawHeadersKey } from "./request-headers.js";

/** A gRPC method served straight on the HTTP/2 stream, bypassing connect. */
export type RawRoute = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void;

const DIFF_COPY = FileSync.method.diffCopy;
const DIFF_COPY_PATH = `/${FileSync.typeName}/${DIFF_COPY.name}`;

/**
 * FileSync.DiffCopy on a hand-framed gRPC stream. The service logic is the
 * same connect ServiceImpl; only the framing differs: DATA packets are
 * written as a few header bytes followed by the file bytes themselves,
 * where protobuf encoding plus connect's envelope copied every byte of the
 * context twice (about a third of the CPU of a 512 MiB transfer).
 */
export function rawFileSyncAttachable(impl: Partial<ServiceImpl<typeof FileSync>>): Attachable {
  const diffCopy = impl.diffCopy;
  if (!diffCopy) throw new Error("FileSync implementation lacks diffCopy");
  const route: RawRoute = (req, res) => void serve(diffCopy, req, res);
  return {
    methods: [DIFF_COPY_PATH],
    register: (_router: ConnectRouter) => {},
    rawRoutes: new Map([[DIFF_COPY_PATH, route]]),
  };
}

async function serve(
  diffCopy: NonNullable<Partial<ServiceImpl<typeof FileSync>>["diffCopy"]>,
  req: http2.Http2ServerRequest,
  res: http2.Http2ServerResponse,
): Promise<void> {
  const ctx = createHandlerContext({
    service: FileSync,
    method: DIFF_COPY,
    protocolName: "grpc",
    requestMethod: "POST",
    url: DIFF_COPY_PATH,
    contextValues: createContextValues().set(rawHeadersKey, req.rawHeaders),
  });
  res.on("close", () => ctx.abort());
  res.writeHead(200, { "content-type": "application/grpc" });
  let status = 0;
  let message = "";
  try {
    for await (const p of diffCopy(readPackets(req), ctx)) {
      if (res.destroyed) break;
      if (!writePacket(res, p)) await drained(res);
    }
  } catch (err) {
    const ce = ConnectError.from(err);
    status = ce.code;
    message = ce.rawMessage;
  }
  if (res.destroyed) return;
  const trailers: http2.OutgoingHttpHeaders = { "grpc-status": String(status) };
  if (message) trailers["grpc-message"] = encodeURIComponent(message);
  res.addTrailers(trailers);
  res.end();
}

/** Length-prefixed gRPC messages of the request stream, decoded as Packets. */
async function* readPackets(stream: AsyncIterable<Buffer>): AsyncGenerator<Packet> {
  let buf: Buffer = Buffer.alloc(0);
  for await (const chunk of stream) {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    while (buf.length >= 5) {
      const len = buf.readUInt32BE(1);
      if (buf.length < 5 + len) break;
      if (buf[0] !== 0) throw new ConnectError("compressed messages are not accepted", 12);
      yield fromBinary(PacketSchema, buf.subarray(5, 5 + len));
      buf = buf.subarray(5 + len);
    }
  }
}

type PacketInit = Parameters<typeof create<typeof PacketSchema>>[1];

/** Writes one framed Packet; DATA payloads go out without being copied. Returns false on backpressure. */
function writePacket(stream: http2.Http2ServerResponse, p: PacketInit): boolean {
  const data = p?.data;
  if (p?.type === Packet_PacketType.PACKET_DATA && data && data.length > 0 && !p.stat) {
    const head: number[] = [0x08, Packet_PacketType.PACKET_DATA];
    if (p.ID) head.push(0x18, ...varint(p.ID));
    head.push(0x22, ...varint(data.length));
    const prefix = Buffer.alloc(5 + head.length);
    prefix.writeUInt32BE(head.length + data.length, 1);
    prefix.set(head, 5);
    stream.write(prefix);
    return stream.write(data);
  }
  const msg = toBinary(PacketSchema, create(PacketSchema, p));
  const frame = Buffer.alloc(5 + msg.length);
  frame.writeUInt32BE(msg.length, 1);
  frame.set(msg, 5);
  return stream.write(frame);
}

function varint(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

/** Resolves on drain or close, leaving no listener behind (once() + race leaked one per wait). */
function drained(res: http2.Http2ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}
