import { lookup } from "node:dns/promises";
import net from "node:net";
import { hostPort, parseIp } from "./address.js";
import { EgressError } from "./errors.js";
import type { EgressPolicy } from "./policy.js";
import type { UpstreamReader } from "./upstream-reader.js";

/** How a name became addresses: an IP literal, the policy's hosts map, or DNS. */
export interface Resolution {
  addresses: string[];
  via: "literal" | "hosts" | "dns";
}

/** The daemon resolves every name itself; the hosts map wins over DNS. */
export async function resolveUpstream(host: string, policy: EgressPolicy): Promise<Resolution> {
  const literal = parseIp(host);
  if (literal) return { addresses: [literal.address], via: "literal" };
  const mapped = policy.resolveOverride(host);
  if (mapped) return { addresses: [mapped], via: "hosts" };
  try {
    const found = await lookup(host, { all: true, verbatim: true });
    return { addresses: found.map((a) => a.address), via: "dns" };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    const why = code === "ENOTFOUND" ? "no such host" : code === "EAI_AGAIN" ? "DNS is unavailable" : code;
    throw new EgressError("upstream_unresolved", `cannot resolve "${host}": ${why} (${code})`, {
      cause: err,
    });
  }
}

/**
 * Connects to address:port within timeoutMs; failures name the target, the
 * address and the cause. With a reader, the socket's data goes to it (not to
 * 'data' events).
 */
export function dialUpstream(
  host: string,
  address: string,
  port: number,
  timeoutMs: number,
  reader?: UpstreamReader,
): Promise<net.Socket> {
  const target = `${hostPort(host, port)}${address === host ? "" : ` (${address})`}`;
  return new Promise((resolve, reject) => {
    const sock = net.connect({
      host: address,
      port,
      noDelay: true,
      ...(reader ? { onread: reader.onread } : {}),
    });
    reader?.attach(sock);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(
        new EgressError(
          "upstream_timeout",
          `connecting to ${target} timed out after ${(timeoutMs / 1000).toFixed(timeoutMs % 1000 ? 1 : 0)} s`,
        ),
      );
    }, timeoutMs);
    sock.once("connect", () => {
      clearTimeout(timer);
      sock.removeAllListeners("error");
      resolve(sock);
    });
    sock.once("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      sock.destroy();
      const why = err.code === "ECONNREFUSED" ? "connection refused" : err.message;
      reject(
        new EgressError(
          "upstream_failed",
          `connecting to ${target} failed: ${why} (${err.code ?? "error"})`,
          { cause: err },
        ),
      );
    });
  });
}
