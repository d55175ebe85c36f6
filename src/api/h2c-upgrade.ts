import http from "node:http";
import type { Duplex } from "node:stream";
import { errorMessage } from "../util/index.js";
import { ApiError, httpStatusFor } from "./errors.js";

/** What dockerd writes once a /grpc or /session connection is hijacked; raw HTTP/2 follows. */
export const SWITCHING_TO_H2C =
  "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";

/** dockerd's pre-upgrade check: only `Upgrade: h2c` is accepted (400 for /session, 500 for /grpc, as dockerd). */
export function checkH2cUpgrade(
  req: http.IncomingMessage,
  code: "invalid_parameter" | "protocol_error" = "invalid_parameter",
): void {
  const proto = req.headers.upgrade ?? "";
  if (!proto) throw new ApiError(code, "no upgrade proto in request");
  if (proto.toLowerCase() !== "h2c") throw new ApiError(code, `protocol ${proto} not supported`);
}

/** More than any sane empty-ish upgrade request body; a client streaming data here is not speaking the protocol. */
const MAX_BODY = 64 * 1024;

/**
 * Reads past the request body of an upgrade request and returns what
 * follows it. Node hands upgrades over right after the headers and never
 * parses their body, yet clients send one: Node's http client (dockerode)
 * sends `Transfer-Encoding: chunked` and a final `0\r\n\r\n`, which would
 * otherwise be taken for the start of the HTTP/2 stream. Handles
 * Content-Length and chunked framing by hand for that reason.
 */
export function skipUpgradeBody(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<Buffer> {
  const chunked = /\bchunked\b/i.test(String(req.headers["transfer-encoding"] ?? ""));
  const length = chunked ? 0 : Number(req.headers["content-length"] ?? 0);
  if (!Number.isSafeInteger(length) || length < 0 || length > MAX_BODY) {
    return Promise.reject(new ApiError("invalid_parameter", "invalid Content-Length"));
  }
  // Returns the bytes after the body once `buf` holds all of it, else undefined.
  const rest = (buf: Buffer): Buffer | undefined => {
    if (!chunked) return buf.length >= length ? buf.subarray(length) : undefined;
    let pos = 0;
    for (;;) {
      const eol = buf.indexOf("\r\n", pos);
      if (eol < 0) return undefined;
      const size = Number.parseInt(buf.subarray(pos, eol).toString("latin1").split(";")[0] as string, 16);
      if (!Number.isSafeInteger(size) || size < 0)
        throw new ApiError("invalid_parameter", "invalid chunked body");
      if (size > 0) {
        pos = eol + 2 + size + 2;
        if (buf.length < pos) return undefined;
        continue;
      }
      // Last chunk: skip trailer lines up to the empty line.
      let p = eol + 2;
      for (;;) {
        const e = buf.indexOf("\r\n", p);
        if (e < 0) return undefined;
        if (e === p) return buf.subarray(e + 2);
        p = e + 2;
      }
    }
  };
  return new Promise((resolve, reject) => {
    let buf = head;
    const check = (): boolean => {
      let r: Buffer | undefined;
      try {
        r = rest(buf);
        if (r === undefined && buf.length > MAX_BODY)
          throw new ApiError("invalid_parameter", "request body too large");
      } catch (err) {
        cleanup();
        reject(err);
        return true;
      }
      if (r === undefined) return false;
      cleanup();
      resolve(r);
      return true;
    };
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      check();
    };
    const onEnd = () => {
      cleanup();
      reject(new ApiError("invalid_parameter", "unexpected EOF in request body"));
    };
    const cleanup = () => {
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("close", onEnd);
      socket.pause();
    };
    if (check()) return;
    socket.on("data", onData);
    socket.once("end", onEnd);
    socket.once("close", onEnd);
  });
}

/** An error before the upgrade: a plain HTTP response with dockerd's `{"message"}` body. */
export function writeHttpError(socket: Duplex, err: unknown): void {
  if (socket.destroyed) return;
  const status = httpStatusFor(err);
  const body = JSON.stringify({ message: errorMessage(err) });
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? "Error"}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}
