import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import http from "node:http";
import { hostPort } from "./address.js";
import { admit, type ProxyContext } from "./admit.js";
import { EgressError } from "./errors.js";
import { type Failure, upstreamFailure } from "./failure.js";

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  // The proxy already answered "100 Continue" to the client.
  "expect",
]);

/** rawHeaders minus hop-by-hop headers and those the Connection header names. */
export function endToEndHeaders(raw: string[]): [string, string][] {
  const drop = new Set(HOP_BY_HOP);
  for (let i = 0; i < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() === "connection") {
      for (const t of (raw[i + 1] as string).split(",")) drop.add(t.trim().toLowerCase());
    }
  }
  const out: [string, string][] = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (!drop.has((raw[i] as string).toLowerCase())) out.push([raw[i] as string, raw[i + 1] as string]);
  }
  return out;
}

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
  const adm = await admit(ctx, method, req.headers["proxy-authorization"], host, port, startedAt);
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
  let error: string | undefined;
  const headers: OutgoingHttpHeaders = {};
  // RFC 9112 3.2.2: a proxy replaces Host with the absolute-form target's authority.
  headers.Host = url.host;
  for (const [k, v] of endToEndHeaders(req.rawHeaders)) {
    if (k.toLowerCase() === "host") continue;
    const prev = headers[k];
    headers[k] = prev === undefined ? v : [...(Array.isArray(prev) ? prev : [String(prev)]), v];
  }
  const up = http.request({
    method,
    path: `${url.pathname}${url.search}`,
    headers,
    setHost: false,
    createConnection: () => upstream,
  });
  const target = hostPort(adm.base.host, port);
  up.setTimeout(ctx.responseTimeoutMs, () => {
    up.destroy(
      new EgressError(
        "upstream_timeout",
        `${target} (${adm.address}) sent no response within ${Math.round(ctx.responseTimeoutMs / 1000)} s`,
      ),
    );
  });
  up.on("response", (upRes) => {
    up.setTimeout(0);
    const out: string[] = [];
    for (const [k, v] of endToEndHeaders(upRes.rawHeaders)) out.push(k, v);
    res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, out);
    upRes.pipe(res);
    upRes.on("error", (err) => {
      error ??= `upstream: ${err.message}`;
      res.destroy();
    });
  });
  up.on("error", (err) => {
    error ??= err instanceof EgressError ? err.message : `${target} (${adm.address}): ${err.message}`;
    const timeout = err instanceof EgressError && err.code === "upstream_timeout";
    reply(res, upstreamFailure(timeout ? 504 : 502, error));
  });
  res.once("close", () => {
    if (!res.writableFinished) up.destroy();
    upstream.destroy();
    ctx.record({
      ...adm.base,
      address: adm.address,
      bytesUp: upstream.bytesWritten,
      bytesDown: upstream.bytesRead,
      durationMs: Date.now() - startedAt,
      decision: error ? "error" : "allow",
      rule: adm.rule,
      ...(error ? { error } : {}),
    });
  });
  req.pipe(up);
}
