import type net from "node:net";
import { normalizeHost } from "./address.js";
import { admitClient, type ProxyContext, recordAdmitted } from "./admit.js";
import type { EgressClient } from "./credentials.js";
import { EgressError } from "./errors.js";

/**
 * Opens a TCP connection to host:port for one of the daemon's own clients
 * (`daemon:pull`, `daemon:push`) under the same policy, name resolution and
 * audit log as the proxy's requests, without going through the proxy's
 * socket. TLS, if any, is the caller's business on top of the socket.
 */
export type EgressDial = (host: string, port: number, signal?: AbortSignal) => Promise<net.Socket>;

export async function dialEgress(
  ctx: ProxyContext,
  client: EgressClient,
  rawHost: string,
  port: number,
  signal?: AbortSignal,
): Promise<net.Socket> {
  signal?.throwIfAborted();
  const startedAt = Date.now();
  const adm = await admitClient(ctx, client, "CONNECT", normalizeHost(rawHost), port, startedAt);
  if (!adm.ok) {
    // The failure's body is the proxy's explanation (host, rule, policy file, how to allow it).
    const text = adm.failure.body.trim().split("\n").join("; ");
    const code =
      adm.failure.status === 403
        ? "denied"
        : adm.failure.status === 504
          ? "upstream_timeout"
          : "upstream_failed";
    throw new EgressError(code, text);
  }
  const sock = adm.upstream;
  let error: string | undefined;
  sock.on("error", (err) => {
    error ??= err.message;
  });
  sock.once("close", () => recordAdmitted(ctx, adm, startedAt, error));
  if (signal?.aborted) {
    sock.destroy();
    signal.throwIfAborted();
  }
  return sock;
}
