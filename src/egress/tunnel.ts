import type { IncomingMessage } from "node:http";
import type net from "node:net";
import { admit, type ProxyContext, recordAdmitted } from "./admit.js";
import { rawResponse, upstreamFailure } from "./failure.js";
import { IdleWatch } from "./idle-watch.js";
import { UpstreamReader } from "./upstream-reader.js";

/** "host:port" or "[v6]:port" from a CONNECT request line, or undefined. */
export function parseConnectTarget(target: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(target);
  const port = Number(m?.[3]);
  if (!m || !(port >= 1 && port <= 65535)) return undefined;
  return { host: (m[1] ?? m[2]) as string, port };
}

/**
 * CONNECT host:port: admit, then splice bytes both ways (TLS passes through
 * untouched). One audit record when both sides are closed.
 */
export async function handleConnect(
  ctx: ProxyContext,
  req: IncomingMessage,
  client: net.Socket,
  head: Buffer,
  tunnels: Set<net.Socket>,
): Promise<void> {
  const startedAt = Date.now();
  client.on("error", () => client.destroy());
  const target = parseConnectTarget(req.url ?? "");
  if (!target) {
    client.end(rawResponse(upstreamFailure(400, `CONNECT needs HOST:PORT, got "${req.url ?? ""}"`)));
    return;
  }
  tunnels.add(client);
  client.once("close", () => tunnels.delete(client));
  const reader = new UpstreamReader();
  const adm = await admit(
    ctx,
    "CONNECT",
    req.headers["proxy-authorization"],
    target.host,
    target.port,
    startedAt,
    reader,
  );
  if (!adm.ok) {
    if (!client.destroyed) client.end(rawResponse(adm.failure));
    return;
  }
  const upstream = adm.upstream;
  tunnels.add(upstream);
  let error: string | undefined;
  // TLS hides whose turn it is: a tunnel where nothing moves either way is an upstream that never
  // answered, a stalled transfer or a half-closed pair whose upstream never closes (each would
  // otherwise hold the client, and BuildKit's registry client has no response timeout of its own).
  const idle = new IdleWatch(ctx.idleTimeoutMs, () => {
    error ??= idleError(ctx.idleTimeoutMs);
    client.destroy();
    upstream.destroy();
  });
  let open = 2;
  const onClose = () => {
    idle.stop();
    if (--open > 0) {
      // One side is gone for good: nothing more can cross.
      client.destroy();
      upstream.destroy();
      return;
    }
    tunnels.delete(upstream);
    recordAdmitted(ctx, adm, startedAt, error);
  };
  upstream.once("close", onClose);
  client.once("close", onClose);
  upstream.on("error", (err) => {
    error ??= `upstream: ${err.message}`;
    upstream.destroy();
  });
  if (client.destroyed) {
    upstream.destroy();
    return;
  }
  client.setNoDelay(true);
  client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
  if (head.length > 0) upstream.write(head);
  client.on("data", () => idle.touch());
  client.pipe(upstream);
  // Downstream (the bulk of most traffic) without copies: see UpstreamReader.
  reader.setSink((chunk, release) => {
    idle.hold();
    client.write(chunk, () => {
      idle.release();
      release();
    });
  });
  upstream.once("end", () => client.end());
}

/** The audit log's (and a build's) wording for a tunnel closed by the idle bound. */
export function idleError(ms: number): string {
  return `no byte either way for ${formatSeconds(ms)} (the upstream never answered, or stalled): closed by the egress proxy`;
}

function formatSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms % 1000 ? 1 : 0)} s`;
}
