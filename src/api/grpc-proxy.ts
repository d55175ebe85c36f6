import http2 from "node:http2";
import { Transform } from "node:stream";
import { LOST_BUILDKIT } from "../buildkit/index.js";
import { ApiError, CALL_CLOSED } from "./errors.js";
import {
  GrpcMessageMapper,
  grpcErrorTrailers,
  grpcFrame,
  respondGrpcError,
  unaryMessage,
} from "./grpc-frames.js";

const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR, NGHTTP2_INTERNAL_ERROR, NGHTTP2_FLAG_END_STREAM } = http2.constants;

/** Connection-level headers HTTP/2 forbids forwarding (and Node refuses to send). */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "http2-settings",
  "host",
]);

/** A unary call's messages, rewritten on the way through (one instance per call: it may keep state). */
export interface UnaryRewrite {
  /** The request message as sent upstream; throwing answers the call with that error instead. */
  request(msg: Uint8Array): Uint8Array | Promise<Uint8Array>;
  /** The successful (grpc-status 0) response message as sent back; without it, the response streams through. */
  response?(msg: Uint8Array): Uint8Array | Promise<Uint8Array>;
}

/** Rewrites every message of a server-streaming response (e.g. Control.Status). */
export interface ResponseStreamRewrite {
  responseMessage(msg: Uint8Array): Uint8Array;
  /** Sees (never changes) the request's messages. */
  requestMessage?(msg: Uint8Array): void;
  /** Messages added after the upstream's last one (before its trailers). */
  endMessages?(): Uint8Array[];
}

/** A unary request is buffered to be rewritten; gRPC's own default receive limit. */
const MAX_UNARY_MESSAGE = 16 << 20;

/**
 * The BuildKit connection a call goes to: known at once, chosen from the call's headers
 * (`later`), or from its request message (`byRequest`: the call is unary-request, e.g.
 * Control.Solve or Status, and its message is read first).
 */
export type Upstream =
  | http2.ClientHttp2Session
  /** `body`: the request, when it was already read (a call looked at before it was forwarded). */
  | { later: () => Promise<UpstreamChoice>; body?: Buffer }
  | { byRequest: (msg: Uint8Array) => Promise<UpstreamChoice> };

export interface UpstreamChoice {
  session: http2.ClientHttp2Session;
  /** Said when that connection dies mid-call (names the backend). */
  lost?: string;
}

/**
 * Forwards one HTTP/2 stream (a gRPC call) to its upstream as it is: request
 * headers (repeated values kept, from rawHeaders), data both ways with
 * backpressure, response headers and trailers; a reset on either side
 * resets the other. With a UnaryRewrite, the call is unary and its two
 * messages pass through it; with a ResponseStreamRewrite, each response
 * message does.
 */
export function forwardStream(
  stream: http2.ServerHttp2Stream,
  rawHeaders: string[],
  upstream: Upstream,
  rewriteWith?: UnaryRewrite | ResponseStreamRewrite,
): void {
  stream.on("error", () => {});
  if (!("later" in upstream) && !("byRequest" in upstream)) {
    proxyCall(stream, rawHeaders, { session: upstream }, rewriteWith);
    return;
  }
  const chosen =
    "later" in upstream
      ? upstream.later().then((choice) => ({ choice, body: upstream.body }))
      : collect(stream).then(async (body) => ({
          choice: await upstream.byRequest(unaryMessage(body)),
          body,
        }));
  // Whatever fails on the way (the choice, a rewrite that refuses the request) answers the call.
  chosen
    .then(({ choice, body }) => proxyCall(stream, rawHeaders, choice, rewriteWith, body))
    .catch((err: unknown) => respondGrpcError(stream, err));
}

function proxyCall(
  stream: http2.ServerHttp2Stream,
  rawHeaders: string[],
  { session: upstream, lost }: UpstreamChoice,
  rewriteWith: UnaryRewrite | ResponseStreamRewrite | undefined,
  /** The request body, already read. */
  body?: Buffer,
): void {
  if (stream.closed || stream.destroyed) return;
  const rewrite = rewriteWith && "request" in rewriteWith ? rewriteWith : undefined;
  const mapStream = rewriteWith && "responseMessage" in rewriteWith ? rewriteWith : undefined;
  let up: http2.ClientHttp2Stream;
  try {
    up = upstream.request(requestHeaders(rawHeaders), { endStream: false });
  } catch (err) {
    respondGrpcError(stream, new ApiError("unavailable", `BuildKit connection: ${(err as Error).message}`));
    return;
  }
  up.on("error", () => {});
  let trailers: http2.IncomingHttpHeaders | undefined;
  let responded = false;

  // Either side going away early takes the other with it.
  stream.on("close", () => {
    if (!up.closed) up.close(NGHTTP2_CANCEL);
  });
  // A response rewrite that fails turns the call's status into its error.
  let failure: http2.OutgoingHttpHeaders | undefined;
  up.on("close", () => {
    // A failure already decided (a rewrite that failed) ends the call with its own status.
    if (stream.closed || failure) return;
    if (!responded) {
      respondGrpcError(
        stream,
        new ApiError(
          "unavailable",
          upstream.destroyed ? (lost ?? LOST_BUILDKIT) : "BuildKit closed the call",
        ),
      );
    } else if (up.rstCode !== undefined && up.rstCode !== NGHTTP2_NO_ERROR) {
      if (upstream.destroyed) {
        // The connection to BuildKit died (not BuildKit ending the call): say so in the status,
        // where a bare RST_STREAM would reach the client as "Canceled".
        failure = grpcErrorTrailers(new ApiError("unavailable", lost ?? LOST_BUILDKIT));
        if (!stream.writableEnded) stream.end();
      } else stream.close(up.rstCode);
    }
  });

  up.on("trailers", (t) => {
    trailers = t;
  });
  stream.on("wantTrailers", () => {
    if (failure) stream.sendTrailers(failure);
    else if (trailers) stream.sendTrailers(forwardable(trailers));
    else stream.close(NGHTTP2_INTERNAL_ERROR);
  });

  up.on("response", (headers, flags) => {
    responded = true;
    const h = forwardable(headers);
    h[":status"] = headers[":status"] ?? 200;
    // Trailers-only (an error status with no message, e.g. UNIMPLEMENTED): one HEADERS frame.
    if ((flags ?? 0) & NGHTTP2_FLAG_END_STREAM) {
      stream.respond(h, { endStream: true });
      return;
    }
    stream.respond(h, { waitForTrailers: true });
    const respond = rewrite?.response?.bind(rewrite);
    if (respond)
      rewriteResponse(up, stream, respond, () => trailers).catch((err) => {
        failure = grpcErrorTrailers(err);
        if (!stream.closed) stream.end();
      });
    else if (mapStream) {
      const mapped = up.pipe(new GrpcMessageMapper((m) => mapStream.responseMessage(m)));
      const tail = mapStream.endMessages?.bind(mapStream);
      const out = tail ? mapped.pipe(appendAtEnd(tail)) : mapped;
      // A message the rewrite cannot take ends the call with that error (unheard, it would be
      // an uncaught 'error' event: the daemon's end).
      const fail = (err: unknown) => {
        failure = grpcErrorTrailers(err);
        if (!up.closed) up.close(NGHTTP2_CANCEL);
        if (!stream.writableEnded) stream.end();
      };
      mapped.once("error", fail);
      if (out !== mapped) out.once("error", fail);
      out.pipe(stream);
    } else up.pipe(stream);
  });

  if (body) sendBody(stream, up, body, rewrite, mapStream);
  else if (rewrite) rewriteRequest(stream, up, rewrite);
  else if (mapStream?.requestMessage) {
    const observe = mapStream.requestMessage.bind(mapStream);
    const observed = stream.pipe(
      new GrpcMessageMapper((m) => {
        observe(m);
        return m;
      }),
    );
    // A request message the rewrite cannot read (the client's bytes) answers the call with the error.
    observed.once("error", (err) => {
      respondGrpcError(stream, err);
      if (!up.closed) up.close(NGHTTP2_CANCEL);
    });
    observed.pipe(up);
  } else stream.pipe(up);
}

function rewriteRequest(
  stream: http2.ServerHttp2Stream,
  up: http2.ClientHttp2Stream,
  rewrite: UnaryRewrite,
): void {
  collect(stream).then(
    (body) => sendBody(stream, up, body, rewrite, undefined),
    (err: unknown) => {
      respondGrpcError(stream, err);
      if (!up.closed) up.close(NGHTTP2_CANCEL);
    },
  );
}

/** A unary request's whole body: rewritten or observed, then sent. */
function sendBody(
  stream: http2.ServerHttp2Stream,
  up: http2.ClientHttp2Stream,
  body: Buffer,
  rewrite: UnaryRewrite | undefined,
  mapStream: ResponseStreamRewrite | undefined,
): void {
  // A rewrite may throw at once (a request it refuses): inside the promise, it answers the call.
  Promise.resolve()
    .then(() => {
      if (!rewrite) {
        mapStream?.requestMessage?.(unaryMessage(body));
        return body;
      }
      return Promise.resolve(rewrite.request(unaryMessage(body))).then((msg) => grpcFrame(msg));
    })
    .then(
      (framed) => up.end(framed),
      (err: unknown) => {
        respondGrpcError(stream, err);
        if (!up.closed) up.close(NGHTTP2_CANCEL);
      },
    );
}

/** Buffers the response message and sends the rewritten one; rejects when the rewrite fails. */
async function rewriteResponse(
  up: http2.ClientHttp2Stream,
  stream: http2.ServerHttp2Stream,
  respond: (msg: Uint8Array) => Uint8Array | Promise<Uint8Array>,
  trailers: () => http2.IncomingHttpHeaders | undefined,
): Promise<void> {
  const body = await collect(up);
  // Failures (and empty bodies) go back untouched.
  if (trailers()?.["grpc-status"] !== "0" || body.length === 0) {
    stream.end(body);
    return;
  }
  stream.end(grpcFrame(await respond(unaryMessage(body))));
}

/** A call's whole body (bounded like a unary message). */
export function collect(s: http2.Http2Stream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    s.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_UNARY_MESSAGE + 5) {
        reject(new ApiError("invalid_parameter", "gRPC message too large"));
        s.destroy();
        return;
      }
      chunks.push(c);
    });
    s.once("end", () => resolve(Buffer.concat(chunks, size)));
    s.once("close", () => reject(CALL_CLOSED));
  });
}

/** Request headers for the upstream call; repeated fields stay repeated (session method lists). */
function requestHeaders(raw: string[]): http2.OutgoingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const key = (raw[i] as string).toLowerCase();
    const value = raw[i + 1] as string;
    // :scheme and :authority come from the upstream session.
    if ((key.startsWith(":") && key !== ":method" && key !== ":path") || HOP_BY_HOP.has(key)) continue;
    const prev = out[key];
    if (prev === undefined) out[key] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else out[key] = [prev, value];
  }
  return out;
}

/** Response headers or trailers to send on: no pseudo-headers but :status, nothing hop-by-hop. */
function forwardable(h: http2.IncomingHttpHeaders): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || k.startsWith(":") || HOP_BY_HOP.has(k)) continue;
    out[k] = v;
  }
  return out;
}

/** Passes frames through and adds `tail()`'s messages, framed, when the input ends. */
function appendAtEnd(tail: () => Uint8Array[]): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      cb(null, chunk);
    },
    flush(cb) {
      try {
        for (const m of tail()) this.push(grpcFrame(m));
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
  });
}
