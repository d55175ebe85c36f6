import type { IncomingMessage, ServerResponse } from "node:http";
import { Transform } from "node:stream";
import { hostPort } from "./address.js";
import { admit, type ProxyContext, recordAdmitted } from "./admit.js";
import { type Failure, upstreamFailure } from "./failure.js";
import { endToEndHeaders } from "./headers.js";
import { relayResponse } from "./response-relay.js";
import { UpstreamReader } from "./upstream-reader.js";

function reply(res: ServerResponse, f: Failure): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(f.status, f.reason, { ...f.headers, "Content-Type": "text/plain; charset=utf-8" });
  res.end(f.body);
}

/**
 * An absolute-form request (`GET http://host/path`): admit, forward with
 * hop-by-hop headers stripped, stream both bodies. The client's connection
 * stays keep-alive; each request gets its own upstream connection.
 */
export async function handleForward(
  ctx: ProxyContext,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const startedAt = Date.now();
  let url: URL | undefined;
  try {
    url = new URL(req.url ?? "");
  } catch {
    url = undefined;
  }
  if (url?.protocol !== "http:" || url.hostname === "") {
    const why =
      url?.protocol === "https:"
        ? "https:// URLs go through CONNECT (set HTTPS_PROXY), not as absolute-form requests"
        : `this is an HTTP proxy: send absolute-form requests (GET http://host/path) or CONNECT, not "${req.url ?? ""}"`;
    req.resume();
    reply(res, upstreamFailure(400, why));
    return;
  }
  const host = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
  const port = url.port ? Number(url.port) : 80;
  const method = req.method ?? "GET";
  const reader = new UpstreamReader();
  const adm = await admit(ctx, method, req.headers["proxy-authorization"], host, port, startedAt, reader);
  if (!adm.ok) {
    req.resume();
    reply(res, adm.failure);
    return;
  }
  const upstream = adm.upstream;
  if (res.destroyed) {
    upstream.destroy();
    return;
  }
  const target = hostPort(adm.base.host, port);
  // The request head as the origin expects it (RFC 9112 3.2.2: Host is the target's authority).
  const chunked =
    req.headers["content-length"] === undefined && /chunked/i.test(req.headers["transfer-encoding"] ?? "");
  const lines = [`${method} ${originForm(req.url ?? "")} HTTP/1.1`, `Host: ${url.host}`];
  for (const [k, v] of endToEndHeaders(req.rawHeaders)) {
    if (k.toLowerCase() !== "host") lines.push(`${k}: ${v}`);
  }
  if (chunked) lines.push("Transfer-Encoding: chunked");
  lines.push("Connection: close", "", "");
  upstream.write(lines.join("\r\n"));
  (chunked ? req.pipe(chunkEncoder()) : req).pipe(upstream, { end: false });
  const requestSent = new Promise<void>((resolve) => {
    if (req.readableEnded) resolve();
    else req.once("end", () => resolve());
  });
  const result = await relayResponse(
    upstream,
    reader,
    method,
    res,
    ctx.responseTimeoutMs,
    requestSent,
    ctx.idleTimeoutMs,
  );
  upstream.destroy();
  const error = result.error ? `${target} (${adm.address}) ${result.error}` : undefined;
  if (error && result.headersUnsent) reply(res, upstreamFailure(result.timeout ? 504 : 502, error));
  recordAdmitted(ctx, adm, startedAt, error);
}

/** The path and query of an absolute-form target, as sent (no normalization). */
export function originForm(absolute: string): string {
  const from = absolute.indexOf("//") + 2;
  const ends = [absolute.indexOf("/", from), absolute.indexOf("?", from)].filter((i) => i >= 0);
  if (ends.length === 0) return "/";
  const at = Math.min(...ends);
  return absolute[at] === "?" ? `/${absolute.slice(at)}` : absolute.slice(at);
}

/** Frames a request body in chunked encoding (the client's framing was hop-by-hop). */
function chunkEncoder(): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      if (chunk.length === 0) return cb();
      this.push(`${chunk.length.toString(16)}\r\n`);
      this.push(chunk);
      cb(null, "\r\n");
    },
    flush(cb) {
      cb(null, "0\r\n\r\n");
    },
  });
}
