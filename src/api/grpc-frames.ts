import http2 from "node:http2";
import { Transform } from "node:stream";
import { type ErrorKind, errorMessage, findArcaError } from "../util/index.js";
import { ApiError, CALL_CLOSED } from "./errors.js";

/** gRPC status codes Arca answers with itself (google.golang.org/grpc/codes). */
const GRPC_CODE: Record<ErrorKind, number> = {
  canceled: 1,
  invalid_argument: 3,
  not_found: 5,
  conflict: 6,
  failed_precondition: 9,
  unimplemented: 12,
  internal: 13,
  unavailable: 14,
  unauthenticated: 16,
};

/** The gRPC status for an error, by its kind (as httpStatusFor does for HTTP). */
export function grpcCodeFor(err: unknown): number {
  const e = findArcaError(err);
  return e ? GRPC_CODE[e.kind] : GRPC_CODE.internal;
}

/** One length-prefixed, uncompressed gRPC message. */
export function grpcFrame(msg: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + msg.length);
  out[0] = 0;
  out.writeUInt32BE(msg.length, 1);
  out.set(msg, 5);
  return out;
}

/** The single message of a unary request or response body. */
export function unaryMessage(body: Buffer): Uint8Array {
  if (body.length < 5) throw new ApiError("invalid_parameter", "gRPC body holds no message");
  if (body[0] !== 0) throw new ApiError("unsupported", "compressed gRPC messages are not supported");
  const len = body.readUInt32BE(1);
  if (body.length !== 5 + len) throw new ApiError("invalid_parameter", "gRPC body is not one message");
  return body.subarray(5);
}

/** gRPC status trailers for an error. */
export function grpcErrorTrailers(err: unknown): http2.OutgoingHttpHeaders {
  return { "grpc-status": String(grpcCodeFor(err)), "grpc-message": encodeURIComponent(errorMessage(err)) };
}

/** The trailers of a call that succeeded. */
export const OK_TRAILERS = { "grpc-status": "0" };

/** Answers a call with one message and status OK (a unary call the daemon answers itself). */
export function respondGrpcMessage(stream: http2.ServerHttp2Stream, msg: Uint8Array): void {
  stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
  stream.once("wantTrailers", () => stream.sendTrailers(OK_TRAILERS));
  stream.end(grpcFrame(msg));
}

/** Aborts when the call's stream closes or its connection's signal does. */
export function callSignal(stream: http2.ServerHttp2Stream, connection: AbortSignal): AbortSignal {
  const ended = new AbortController();
  stream.once("close", () => ended.abort(CALL_CLOSED));
  return AbortSignal.any([connection, ended.signal]);
}

/** Ends a call that has not responded yet with a trailers-only gRPC error. */
export function respondGrpcError(stream: http2.ServerHttp2Stream, err: unknown): void {
  if (stream.destroyed || stream.closed) return;
  if (stream.headersSent) {
    stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    return;
  }
  stream.respond(
    { ":status": 200, "content-type": "application/grpc", ...grpcErrorTrailers(err) },
    { endStream: true },
  );
}

/**
 * Rewrites each message of a gRPC message stream (a server-streaming
 * response) with `map`, keeping the framing; compressed messages pass
 * through untouched.
 */
export class GrpcMessageMapper extends Transform {
  #buf: Buffer = Buffer.alloc(0);
  readonly #map: (msg: Uint8Array) => Uint8Array;

  constructor(map: (msg: Uint8Array) => Uint8Array) {
    super();
    this.#map = map;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
    try {
      while (this.#buf.length >= 5) {
        const len = this.#buf.readUInt32BE(1);
        if (this.#buf.length < 5 + len) break;
        const frame = this.#buf.subarray(0, 5 + len);
        this.#buf = this.#buf.subarray(5 + len);
        this.push(frame[0] === 0 ? grpcFrame(this.#map(frame.subarray(5))) : frame);
      }
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _flush(cb: (err?: Error | null) => void): void {
    // A partial frame at the end is the upstream's problem to report; pass it on as it is.
    if (this.#buf.length) this.push(this.#buf);
    cb();
  }
}
