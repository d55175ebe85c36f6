import { chmod, lstat, unlink } from "node:fs/promises";
import type { Server as HttpServer } from "node:http";
import { type AddressInfo, type Server as NetServer, connect as netConnect } from "node:net";
import { formatHostPort, parseAddress } from "./address.js";
import { TransportError, toTransportError } from "./errors.js";
import { checkSocketOwnership } from "./socket-owner.js";

export interface ListenOptions {
  /** Mode for a unix socket file; default 0o660. */
  socketMode?: number;
  /** Bound on probing an existing socket file; default 1 s. */
  probeTimeoutMs?: number;
  /**
   * A group the socket's directory may be writable by (root's directory
   * shared with a sandbox's root through this gid); others' write access
   * is still refused.
   */
  sharedGroup?: number;
}

/**
 * Binds server to unix:///path or tcp://host:port (port 0 picks one) and
 * resolves with the address actually bound, e.g. "tcp://127.0.0.1:12345".
 * An existing unix socket file is removed only if nothing answers on it, and
 * no path another user owns or can replace is used (checkSocketOwnership).
 */
export async function listen(
  address: string,
  server: NetServer | HttpServer,
  opts: ListenOptions = {},
): Promise<string> {
  const parsed = parseAddress(address, { allowPortZero: true });
  switch (parsed.scheme) {
    case "unix": {
      const { path } = parsed;
      await checkSocketOwnership(path, opts.sharedGroup);
      await removeStaleSocket(path, opts.probeTimeoutMs ?? 1000);
      await bind(server, { path }, address);
      try {
        await chmod(path, opts.socketMode ?? 0o660);
      } catch (err) {
        server.close();
        throw toTransportError(err, `chmod ${path}`);
      }
      return `unix://${path}`;
    }
    case "tcp": {
      await bind(server, { host: parsed.host, port: parsed.port }, address);
      const a = server.address() as AddressInfo;
      return `tcp://${formatHostPort(a.address, a.port)}`;
    }
    default:
      throw new TransportError(
        "unsupported",
        `cannot listen on ${address}: only unix:// and tcp:// are supported`,
      );
  }
}

function bind(
  server: NetServer | HttpServer,
  at: { path: string } | { host: string; port: number },
  address: string,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => {
      server.off("listening", onListening);
      reject(toTransportError(err, `listen on ${address}`));
    };
    const onListening = () => {
      server.off("error", onError);
      resolve();
    };
    server.once("error", onError);
    server.once("listening", onListening);
    server.listen(at);
  });
}

/**
 * A socket file left behind by a dead process refuses connections
 * (ECONNREFUSED) and is safe to remove; one a live process answers on is not.
 */
async function removeStaleSocket(path: string, probeTimeoutMs: number): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = (await lstat(path)).isSocket();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw toTransportError(err, `inspect ${path}`);
  }
  if (!isSocket) {
    throw new TransportError("address_in_use", `cannot listen on ${path}: it exists and is not a socket`);
  }
  const state = await probe(path, probeTimeoutMs);
  if (state === "live") {
    throw new TransportError(
      "address_in_use",
      `cannot listen on ${path}: another process is listening on it`,
    );
  }
  if (state === "unknown") {
    throw new TransportError(
      "address_in_use",
      `cannot listen on ${path}: existing socket neither accepts nor refuses connections`,
    );
  }
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw toTransportError(err, `remove stale ${path}`);
  }
}

function probe(path: string, timeoutMs: number): Promise<"live" | "stale" | "gone" | "unknown"> {
  return new Promise((resolve) => {
    const sock = netConnect({ path });
    const done = (state: "live" | "stale" | "gone" | "unknown") => {
      clearTimeout(timer);
      sock.destroy();
      resolve(state);
    };
    const timer = setTimeout(() => done("unknown"), timeoutMs);
    sock.once("connect", () => done("live"));
    sock.once("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "ECONNREFUSED") done("stale");
      else if (err.code === "ENOENT") done("gone");
      else done("unknown");
    });
  });
}

/** Stops an HTTP server and drops its open connections (held-open responses included). */
export function closeHttpServer(server: HttpServer): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
