import { mkdtemp, rm } from "node:fs/promises";
import http2 from "node:http2";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { type ConnectRouter, createContextValues, type Transport } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { rawHeadersKey } from "../request-headers.js";

/**
 * For tests of the session services: a real h2c gRPC server (set up like the
 * session server) on a temp unix socket, and a client transport to it.
 */
export async function startTestServer(
  routes: (router: ConnectRouter) => void,
): Promise<{ transport: Transport; sock: string; close(): Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "arca-session-test-"));
  const sock = path.join(dir, "s.sock");
  const server = http2.createServer(
    connectNodeAdapter({
      routes,
      contextValues: (req) => createContextValues().set(rawHeadersKey, req.rawHeaders),
    }),
  );
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  const nodeOptions = { createConnection: () => net.connect(sock) };
  const sessionManager = new Http2SessionManager("http://localhost", {}, nodeOptions);
  const transport = createGrpcTransport({ baseUrl: "http://localhost", sessionManager });
  return {
    transport,
    sock,
    async close() {
      sessionManager.abort();
      for (const s of sessions) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface RawBidiCall {
  send(message: Uint8Array): void;
  end(): void;
  /** Response messages, in order. */
  messages: AsyncIterable<Uint8Array>;
  /** grpc-status and grpc-message once the call ends. */
  status: Promise<{ code: number; message: string }>;
  close(): void;
}

/**
 * A raw gRPC bidi call over HTTP/2. Used instead of a connect client where
 * metadata must carry repeated keys as separate header fields, as Go gRPC
 * sends them (connect's Headers joins them with ", ").
 */
export function rawBidi(
  sock: string,
  method: string,
  metadata: Record<string, string | string[]>,
): RawBidiCall {
  const session = http2.connect("http://localhost", { createConnection: () => net.connect(sock) });
  session.on("error", () => {});
  const req = session.request({
    ":method": "POST",
    ":path": method,
    "content-type": "application/grpc",
    te: "trailers",
    ...metadata,
  });
  const queue: Uint8Array[] = [];
  let ended = false;
  let wake: (() => void) | undefined;
  let buf = Buffer.alloc(0);
  let parts: Buffer[] = [];
  let partsLen = 0;
  let need = 5;
  req.on("data", (chunk: Buffer) => {
    // Concatenate only once a whole frame is there (large messages arrive in many chunks).
    parts.push(chunk);
    partsLen += chunk.length;
    if (partsLen < need) return;
    buf = Buffer.concat([buf, ...parts]);
    parts = [];
    partsLen = 0;
    for (;;) {
      if (buf.length < 5) {
        need = 5 - buf.length;
        break;
      }
      const len = buf.readUInt32BE(1);
      if (buf.length < 5 + len) {
        need = 5 + len - buf.length;
        break;
      }
      queue.push(buf.subarray(5, 5 + len));
      buf = buf.subarray(5 + len);
    }
    wake?.();
  });
  let headers: http2.IncomingHttpHeaders = {};
  req.on("response", (h) => {
    headers = h;
  });
  const status = new Promise<{ code: number; message: string }>((resolve) => {
    let trailers: http2.IncomingHttpHeaders | undefined;
    req.on("trailers", (t) => {
      trailers = t;
    });
    req.on("close", () => {
      ended = true;
      wake?.();
      const t = trailers ?? headers;
      const code = t["grpc-status"] === undefined ? -1 : Number(t["grpc-status"]);
      resolve({ code, message: decodeURIComponent(String(t["grpc-message"] ?? "")) });
    });
  });
  req.on("error", () => {});
  async function* messages(): AsyncGenerator<Uint8Array> {
    for (;;) {
      const m = queue.shift();
      if (m) {
        yield m;
        continue;
      }
      if (ended) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
      wake = undefined;
    }
  }
  return {
    send(message) {
      const frame = Buffer.alloc(5 + message.length);
      frame.writeUInt32BE(message.length, 1);
      frame.set(message, 5);
      req.write(frame);
    },
    end: () => req.end(),
    messages: messages(),
    status,
    close: () => session.close(),
  };
}
