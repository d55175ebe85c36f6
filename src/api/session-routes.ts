import http from "node:http";
import type { Duplex } from "node:stream";
import { openSessionStream } from "../buildkit/index.js";
import { errorMessage } from "../util/index.js";
import type { ApiDeps } from "./deps.js";
import { ApiError, httpStatusFor } from "./errors.js";
import type { Router } from "./router.js";

const HEADER_PREFIX = "x-docker-expose-session-";
const UUID_HEADER = `${HEADER_PREFIX}uuid`;
/** After buildkitd ends the session, how long the client gets to close its side. */
const CLOSE_GRACE_MS = 5000;

/**
 * POST /session: the client's session (dockerode's, the CLI's) reaches
 * buildkitd. dockerd runs BuildKit's session manager in-process; Arca's
 * buildkitd is remote, so the hijacked connection is bridged byte for byte
 * onto a `Control.Session` stream opened with the client's headers as
 * metadata: buildkitd then speaks h2/gRPC straight to the client's server.
 */
export function registerSessionRoutes(router: Router, deps: ApiDeps): void {
  /** Ids of sessions whose connection is open (dockerd's "session <id> already exists"). */
  const live = new Set<string>();

  // Without an Upgrade header Node does not hand the request over as an upgrade.
  router.add("POST", "/session", ({ req }) => {
    checkDuplicate(live, sessionHeaders(req.rawHeaders).id);
    throw new ApiError("invalid_parameter", "no upgrade proto in request");
  });

  router.upgrade("POST", "/session", async ({ req, socket, head }) => {
    socket.on("error", () => {});
    let id: string | undefined;
    let upgraded = false;
    try {
      const h = sessionHeaders(req.rawHeaders);
      checkDuplicate(live, h.id);
      const proto = req.headers.upgrade ?? "";
      if (proto.toLowerCase() !== "h2c") {
        throw new ApiError("invalid_parameter", `protocol ${proto} not supported`);
      }
      if (!h.id) throw new ApiError("invalid_parameter", `missing ${UUID_HEADER} header`);
      id = h.id;
      live.add(id);
      // Bytes after the (discarded) request body already belong to the session.
      const early = await skipUpgradeBody(req, socket, head);
      const gone = new AbortController();
      socket.once("close", () => gone.abort(new ApiError("unavailable", "client disconnected")));
      const client = await deps.buildkit.client(gone.signal);
      if (socket.destroyed) throw new ApiError("unavailable", "client disconnected");
      const h2 = client.connectHttp2(gone.signal);
      const stream = openSessionStream(h2, h.metadata);
      socket.write("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n");
      upgraded = true;
      await bridge(socket, early, stream);
      h2.close();
    } catch (err) {
      if (upgraded) socket.destroy();
      else writeHttpError(socket, err);
    } finally {
      if (id !== undefined) live.delete(id);
    }
  });
}

function checkDuplicate(live: Set<string>, id: string): void {
  if (id && live.has(id)) throw new ApiError("invalid_parameter", `session ${id} already exists`);
}

/**
 * The session id and every `X-Docker-Expose-Session-*` header as gRPC
 * metadata. Read from rawHeaders: req.headers joins repeated values
 * (one Grpc-Method per exposed method) with ", ".
 */
function sessionHeaders(raw: string[]): { id: string; metadata: Record<string, string[]> } {
  const metadata: Record<string, string[]> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const key = (raw[i] as string).toLowerCase();
    if (!key.startsWith(HEADER_PREFIX)) continue;
    const values = metadata[key] ?? [];
    values.push(raw[i + 1] as string);
    metadata[key] = values;
  }
  return { id: metadata[UUID_HEADER]?.[0] ?? "", metadata };
}

/**
 * Pipes the hijacked socket and the session stream into each other until
 * both are done. Half-closes travel across (the client ending its side ends
 * the gRPC call; buildkitd ending the call ends the socket); an error or an
 * abrupt close on either side tears down both.
 */
function bridge(socket: Duplex, head: Buffer, stream: Duplex): Promise<void> {
  return new Promise((resolve) => {
    let grace: NodeJS.Timeout | undefined;
    const teardown = () => {
      clearTimeout(grace);
      stream.destroy();
      socket.destroy();
      resolve();
    };
    if (head.length) stream.write(head);
    socket.pipe(stream);
    stream.pipe(socket);
    socket.once("close", teardown);
    stream.once("error", teardown);
    stream.once("close", () => {
      // Buildkitd closed the session: let buffered bytes reach the client, then cut it off.
      if (!socket.writableEnded) socket.end();
      grace = setTimeout(teardown, CLOSE_GRACE_MS);
      grace.unref();
    });
  });
}

/** More than any sane empty-ish /session body; a client streaming data here is not speaking the protocol. */
const MAX_BODY = 64 * 1024;

/**
 * Reads past the request body of an upgrade request and returns what
 * follows it. Node hands upgrades over right after the headers and never
 * parses their body, yet clients send one: Node's http client (dockerode)
 * sends `Transfer-Encoding: chunked` and a final `0\r\n\r\n`, which would
 * otherwise reach buildkitd as the start of the HTTP/2 stream. Handles
 * Content-Length and chunked framing by hand for that reason.
 */
function skipUpgradeBody(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<Buffer> {
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
function writeHttpError(socket: Duplex, err: unknown): void {
  if (socket.destroyed) return;
  const status = httpStatusFor(err);
  const body = JSON.stringify({ message: errorMessage(err) });
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? "Error"}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}
