import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { ApiError } from "./errors.js";

const MAX_BODY = 1024 * 1024;

function parse(text: string): Record<string, unknown> {
  if (!text.trim()) return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new ApiError("invalid_parameter", `invalid JSON: ${(err as Error).message}`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v))
    throw new ApiError("invalid_parameter", "invalid JSON: expected an object");
  return v as Record<string, unknown>;
}

/** A small JSON request body (exec configs, start options); an empty body is `{}`. */
export async function readJsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY) throw new ApiError("invalid_parameter", "request body too large");
    chunks.push(c as Buffer);
  }
  return parse(Buffer.concat(chunks).toString("utf8"));
}

/**
 * The JSON body of a hijacked request. Node hands upgrades over right after the headers, so the
 * body (Content-Length bytes) is read off `head` and the socket here; whatever follows it is the
 * client's stdin and is put back on the (paused) socket.
 */
export async function readUpgradeBody(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): Promise<Record<string, unknown>> {
  const length = Number(req.headers["content-length"] ?? 0);
  if (!Number.isSafeInteger(length) || length < 0 || length > MAX_BODY)
    throw new ApiError("invalid_parameter", "invalid Content-Length");
  let buf = head;
  if (buf.length < length) {
    buf = await new Promise<Buffer>((resolve, reject) => {
      const parts = [head];
      let have = head.length;
      const onData = (d: Buffer) => {
        parts.push(d);
        have += d.length;
        if (have >= length) finish();
      };
      const onEnd = () => {
        cleanup();
        reject(new ApiError("invalid_parameter", "unexpected EOF in request body"));
      };
      const cleanup = () => {
        socket.off("data", onData);
        socket.off("end", onEnd);
        socket.pause();
      };
      const finish = () => {
        cleanup();
        resolve(Buffer.concat(parts));
      };
      socket.on("data", onData);
      socket.once("end", onEnd);
    });
  }
  const rest = buf.subarray(length);
  if (rest.length) socket.unshift(rest);
  return parse(buf.subarray(0, length).toString("utf8"));
}
