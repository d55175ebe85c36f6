import http2 from "node:http2";
import { Duplex } from "node:stream";
import { fromBinary } from "@bufbuild/protobuf";
import { BuildKitError } from "../errors.js";
import { BytesMessageSchema } from "../gen/moby/buildkit/v1/control_pb.js";

const SESSION_PATH = "/moby.buildkit.v1.Control/Session";

/**
 * `Control.Session` as a raw byte stream: each write becomes one
 * BytesMessage, each received message's data is pushed as-is (BuildKit
 * treats message boundaries as meaningless). Written by hand on node:http2
 * rather than through connect because the session headers must go out as
 * repeated header fields (`x-docker-expose-session-grpc-method`), which
 * fetch-style Headers would join with ", ".
 */
export function openSessionStream(
  h2: http2.ClientHttp2Session,
  metadata: Record<string, string | string[]>,
): Duplex {
  const req = h2.request({
    ":method": "POST",
    ":path": SESSION_PATH,
    "content-type": "application/grpc",
    te: "trailers",
    ...metadata,
  });
  return new SessionStream(req);
}

class SessionStream extends Duplex {
  readonly #req: http2.ClientHttp2Stream;
  #pending: Buffer[] = [];
  #pendingLen = 0;

  constructor(req: http2.ClientHttp2Stream) {
    super({ allowHalfOpen: true, writableHighWaterMark: 1 << 20 });
    this.#req = req;
    req.on("response", (headers) => this.#checkStatus(headers));
    req.on("trailers", (trailers) => this.#checkStatus(trailers));
    req.on("data", (chunk: Buffer) => this.#onData(chunk));
    req.on("end", () => this.push(null));
    req.on("error", (err) => this.destroy(err));
    req.on("close", () => {
      if (!this.destroyed && !this.readableEnded) this.push(null);
    });
  }

  #checkStatus(headers: http2.IncomingHttpHeaders): void {
    const status = headers["grpc-status"];
    if (status === undefined || status === "0") return;
    const msg = decodeURIComponent(String(headers["grpc-message"] ?? ""));
    this.destroy(
      new BuildKitError("session_failed", `session stream failed (grpc-status ${status}): ${msg}`),
    );
  }

  #onData(chunk: Buffer): void {
    this.#pending.push(chunk);
    this.#pendingLen += chunk.length;
    let buf = this.#pending.length === 1 ? chunk : Buffer.concat(this.#pending, this.#pendingLen);
    let paused = false;
    while (buf.length >= 5) {
      const len = buf.readUInt32BE(1);
      if (buf.length < 5 + len) break;
      const msg = fromBinary(BytesMessageSchema, buf.subarray(5, 5 + len));
      buf = buf.subarray(5 + len);
      if (msg.data.length > 0 && !this.push(msg.data)) paused = true;
    }
    this.#pending = buf.length ? [buf] : [];
    this.#pendingLen = buf.length;
    if (paused) this.#req.pause();
  }

  override _read(): void {
    this.#req.resume();
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    // Coalesce the inner HTTP/2 frames that queued up into one message.
    let len = 0;
    for (const c of chunks) len += c.chunk.length;
    this.#req.write(frameHeader(len));
    for (let i = 0; i < chunks.length - 1; i++) this.#req.write((chunks[i] as { chunk: Buffer }).chunk);
    this.#req.write((chunks[chunks.length - 1] as { chunk: Buffer }).chunk, cb);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this._writev([{ chunk }], cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.#req.end(cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.#req.closed) this.#req.close(http2.constants.NGHTTP2_CANCEL);
    cb(err);
  }
}

/** gRPC frame prefix plus the BytesMessage tag and length for a payload of n bytes. */
function frameHeader(n: number): Buffer {
  const varint: number[] = [];
  let v = n;
  while (v > 0x7f) {
    varint.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  varint.push(v);
  const msgLen = 1 + varint.length + n;
  const out = Buffer.allocUnsafe(5 + 1 + varint.length);
  out[0] = 0;
  out.writeUInt32BE(msgLen, 1);
  out[5] = 0x0a;
  Buffer.from(varint).copy(out, 6);
  return out;
}
