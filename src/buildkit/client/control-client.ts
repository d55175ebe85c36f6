import http2 from "node:http2";
import type { Duplex } from "node:stream";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { Dialer } from "../../transport/index.js";
import { Control } from "../gen/moby/buildkit/v1/control_pb.js";
import { DialedDuplex } from "./dialed-duplex.js";

/** Authority sent to buildkitd; it ignores it, as the Go client does with its "localhost". */
const AUTHORITY = "http://buildkitd";

export type ControlService = Client<typeof Control>;

/** A Control API client bound to one dialer, plus the raw HTTP/2 connect for session streams. */
export interface ControlClient {
  readonly address: string;
  readonly control: ControlService;
  /** Opens a fresh HTTP/2 connection over the dialer (used for session streams). */
  connectHttp2(signal?: AbortSignal): http2.ClientHttp2Session;
  close(): void;
}

export function createControlClient(dialer: Dialer): ControlClient {
  // Every socket we open, so close() can end them: the session manager's abort() leaves a
  // ready connection open, which kept buildkitd's graceful shutdown waiting.
  const sockets = new Set<Duplex>();
  const connection = (signal?: AbortSignal) => {
    const sock: Duplex = dialer.connectNow?.() ?? new DialedDuplex(dialer.dial(signal));
    sockets.add(sock);
    sock.once("close", () => sockets.delete(sock));
    return sock;
  };
  const sessionOptions = { createConnection: () => connection() };
  const manager = new Http2SessionManager(
    AUTHORITY,
    // Builds can be silent for minutes (a long RUN); keep the connection. A ping only catches a
    // half-open link (a crash closes it): 60 s, as a TCG guest under load left one unanswered for 15 s
    // (connect-node's default) and its build failed.
    { pingIntervalMs: 30_000, pingTimeoutMs: 60_000, idleConnectionTimeoutMs: 15 * 60_000 },
    sessionOptions,
  );
  const transport = createGrpcTransport({ baseUrl: AUTHORITY, sessionManager: manager });
  const sessions = new Set<http2.ClientHttp2Session>();
  return {
    address: dialer.address,
    control: createClient(Control, transport),
    connectHttp2(signal) {
      const s = http2.connect(AUTHORITY, {
        createConnection: () => connection(signal),
        // Large windows: session streams carry whole build contexts.
        settings: { initialWindowSize: 4 << 20 },
      });
      s.on("error", () => {});
      // "connect" is emitted on a later tick, possibly after the caller already destroyed the session.
      s.on("connect", () => {
        if (!s.destroyed) s.setLocalWindowSize(16 << 20);
      });
      sessions.add(s);
      s.on("close", () => sessions.delete(s));
      return s;
    },
    close() {
      manager.abort();
      for (const s of sessions) s.destroy();
      for (const sock of sockets) sock.destroy();
    },
  };
}
