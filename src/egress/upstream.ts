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

const LOOKUP_TIMEOUT_MS = 5000;
const MAX_LOOKUPS = 2;
let lookups = 0;
const waiting: (() => void)[] = [];

/**
 * getaddrinfo runs on libuv's small thread pool, which the daemon's file
 * I/O shares: at most two lookups run at once (a build resolving slow names
 * cannot starve the image store), and a caller waits at most timeoutMs
 * (the slot stays taken until the lookup really ends).
 */
function boundedLookup(host: string, timeoutMs: number): Promise<{ address: string }[]> {
  return new Promise((resolve, reject) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      const err = new Error(`lookup of ${host} took over ${timeoutMs / 1000} s`) as NodeJS.ErrnoException;
      err.code = "ETIMEOUT";
      reject(err);
    }, timeoutMs);
    const run = () => {
      if (timedOut) return void waiting.shift()?.(); // gave up while queued: pass the turn on
      lookups++;
      lookup(host, { all: true, verbatim: true })
        .then(resolve, reject)
        .finally(() => {
          clearTimeout(timer);
          lookups--;
          waiting.shift()?.();
        });
    };
    if (lookups < MAX_LOOKUPS) run();
    else waiting.push(run);
  });
}

/** The daemon resolves every name itself; the hosts map wins over DNS. */
export async function resolveUpstream(host: string, policy: EgressPolicy): Promise<Resolution> {
  const literal = parseIp(host);
  if (literal) return { addresses: [literal.address], via: "literal" };
  const mapped = policy.resolveOverride(host);
  if (mapped) return { addresses: [mapped], via: "hosts" };
  try {
    const found = await boundedLookup(host, LOOKUP_TIMEOUT_MS);
    return { addresses: found.map((a) => a.address), via: "dns" };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    const why =
      code === "ENOTFOUND"
        ? "no such host"
        : code === "EAI_AGAIN"
          ? "DNS is unavailable"
          : code === "ETIMEOUT"
            ? "DNS did not answer in time"
            : code;
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
