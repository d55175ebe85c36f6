import { isIP, connect as netConnect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { connect as tlsConnect } from "node:tls";
import { parseAddress } from "./address.js";
import { awaitConnected } from "./connect-socket.js";
import { TransportError, toTransportError } from "./errors.js";
import { hybridVsockHandshake } from "./hybrid-vsock.js";
import { readTlsFiles, type TlsFiles } from "./tls-files.js";

/** Opens a fresh byte channel to one endpoint. */
export interface Dialer {
  readonly address: string;
  /** The signal governs the dial only; the returned stream belongs to the caller. */
  dial(signal?: AbortSignal): Promise<Duplex>;
  /**
   * A socket already connecting, for callers that must hand a stream over
   * synchronously (node:http2's createConnection). Offered by plain unix and
   * tcp only: a native net.Socket spares http2 the JS stream wrapper and its
   * copies, which halved throughput on large transfers.
   */
  connectNow?(): Socket;
}

/**
 * Node cannot wrap an AF_VSOCK file descriptor, so vsock://CID:PORT goes
 * through a host-side proxy that listens on a unix socket and dials vsock.
 */
export interface VsockBridge {
  unixPathFor(cid: number, port: number): Promise<string>;
}

export interface DialOptions {
  tls?: TlsFiles;
  vsockBridge?: VsockBridge;
  /** Bound on connect (and TLS handshake); default 10 s. */
  connectTimeoutMs?: number;
  /** Bound on the hybrid-vsock CONNECT/OK exchange; default 5 s. */
  handshakeTimeoutMs?: number;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5_000;

/** Validates the address now; failures surface as TransportError at parse time. */
export function parseDialAddress(addr: string, opts: DialOptions = {}): Dialer {
  const parsed = parseAddress(addr);
  const timeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const handshakeTimeoutMs = opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  if (opts.tls && parsed.scheme !== "tcp") {
    throw new TransportError("unsupported", `TLS is only supported for tcp:// addresses, not ${addr}`);
  }
  switch (parsed.scheme) {
    case "unix": {
      const { path } = parsed;
      return {
        address: addr,
        dial: (signal) => dialUnix(path, `dial ${addr}`, signal, timeoutMs),
        connectNow: () => netConnect(path),
      };
    }
    case "tcp": {
      const { host, port } = parsed;
      const tls = opts.tls;
      if (!tls) {
        return {
          address: addr,
          dial: (signal) =>
            awaitConnected(netConnect({ host, port }), "connect", `dial ${addr}`, { signal, timeoutMs }),
          connectNow: () => netConnect({ host, port }),
        };
      }
      return {
        address: addr,
        dial: async (signal) => {
          const material = await readTlsFiles(tls);
          const servername = tls.serverName ?? (isIP(host) ? undefined : host);
          const socket = tlsConnect({
            host,
            port,
            ...material,
            ...(servername !== undefined ? { servername } : {}),
            // gRPC over TLS negotiates HTTP/2 with ALPN.
            ALPNProtocols: ["h2"],
          });
          return awaitConnected(socket, "secureConnect", `dial ${addr} (TLS)`, { signal, timeoutMs });
        },
      };
    }
    case "vsock-uds": {
      const { path, port } = parsed;
      return {
        address: addr,
        dial: async (signal) => {
          const what = `dial ${addr}`;
          const socket = await dialUnix(path, what, signal, timeoutMs);
          return hybridVsockHandshake(socket, port, what, { signal, timeoutMs: handshakeTimeoutMs });
        },
      };
    }
    case "vsock": {
      const { cid, port } = parsed;
      const bridge = opts.vsockBridge;
      if (!bridge) {
        throw new TransportError(
          "unsupported",
          `cannot dial ${addr}: Node cannot open AF_VSOCK sockets; a vsock bridge (host-side proxy) is needed`,
        );
      }
      return {
        address: addr,
        dial: async (signal) => {
          const what = `dial ${addr}`;
          let path: string;
          try {
            path = await bridge.unixPathFor(cid, port);
          } catch (err) {
            throw toTransportError(err, `${what}: vsock bridge`);
          }
          return dialUnix(path, `${what} via bridge ${path}`, signal, timeoutMs);
        },
      };
    }
  }
}

function dialUnix(
  path: string,
  what: string,
  signal: AbortSignal | undefined,
  timeoutMs: number,
): Promise<Socket> {
  return awaitConnected(netConnect({ path }), "connect", what, { signal, timeoutMs });
}
