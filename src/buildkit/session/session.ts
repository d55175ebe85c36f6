import { createHash, randomBytes } from "node:crypto";
import http2 from "node:http2";
import { createContextValues } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { ControlClient } from "../client/control-client.js";
import type { Attachable } from "./attachable.js";
import { rawHeadersKey } from "./request-headers.js";
import { openSessionStream } from "./session-stream.js";
import { socketPair } from "./socket-pair.js";

export interface SessionOptions {
  /** Cache key hint for local dirs; a hash of the context path allows incremental re-sync. */
  sharedKey: string;
  attachables: readonly Attachable[];
  id?: string;
  signal?: AbortSignal;
}

export interface Session {
  readonly id: string;
  /** Resolves when the session ends (buildkitd closed it or close() was called). */
  readonly done: Promise<void>;
  close(): Promise<void>;
}

/** A new random session id (25 chars, like BuildKit's identity.NewID). */
export function newId(): string {
  return randomBytes(16).toString("base64url").replace(/[-_]/g, "").slice(0, 25).toLowerCase();
}

export function sharedKeyFor(contextPath: string): string {
  return createHash("sha256").update(contextPath).digest("hex").slice(0, 32);
}

/**
 * The gRPC server a session runs on its tunnelled byte stream: the
 * attachables' services, raw request headers for multi-valued metadata, and
 * UNIMPLEMENTED for anything not offered.
 */
export function createSessionServer(attachables: readonly Attachable[]): http2.Http2Server {
  const handler = connectNodeAdapter({
    routes: (router) => {
      for (const a of attachables) a.register(router);
    },
    contextValues: (req) => createContextValues().set(rawHeadersKey, req.rawHeaders),
    // BuildKit's client offers gzip; compressing file data on a local channel only burns CPU.
    acceptCompression: [],
    fallback: (_req, res) => {
      // gRPC "trailers-only" UNIMPLEMENTED for services we do not offer.
      res.writeHead(200, {
        "content-type": "application/grpc",
        "grpc-status": "12",
        "grpc-message": "unknown service",
      });
      res.end();
    },
  });
  const raw = new Map(attachables.flatMap((a) => [...(a.rawRoutes ?? [])]));
  const server = http2.createServer({ settings: { initialWindowSize: 4 << 20 } }, (req, res) => {
    const route = raw.get(req.url);
    if (route) route(req, res);
    else handler(req, res);
  });
  server.on("session", (s) => {
    s.on("error", () => {});
    s.on("connect", () => s.setLocalWindowSize(16 << 20));
  });
  return server;
}

/**
 * Opens Control.Session and serves the attachables as an h2c gRPC server on
 * the tunnelled byte stream: buildkitd dials *us* over it.
 */
export function startSession(client: ControlClient, opts: SessionOptions): Session {
  const id = opts.id ?? newId();
  const methods = opts.attachables.flatMap((a) => a.methods);
  const h2 = client.connectHttp2(opts.signal);
  const stream = openSessionStream(h2, {
    "x-docker-expose-session-uuid": id,
    "x-docker-expose-session-sharedkey": opts.sharedKey,
    "x-docker-expose-session-grpc-method": methods,
  });
  const server = createSessionServer(opts.attachables);
  socketPair().then(
    ([inner, outer]) => {
      server.emit("connection", inner);
      stream.pipe(outer);
      outer.pipe(stream);
      outer.on("error", () => stream.destroy());
      stream.on("close", () => {
        outer.destroy();
        inner.destroy();
      });
    },
    (err: Error) => stream.destroy(err),
  );

  let closed = false;
  const done = new Promise<void>((resolve) => {
    stream.on("close", resolve);
    stream.on("end", () => stream.destroy());
    stream.on("error", () => {});
  }).finally(() => {
    h2.close();
    server.close();
  });
  const onAbort = () => void close();
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  async function close(): Promise<void> {
    if (!closed) {
      closed = true;
      opts.signal?.removeEventListener("abort", onAbort);
      // Half-close; buildkitd then ends the stream. Bound the wait.
      stream.end();
      const t = setTimeout(() => stream.destroy(), 2000);
      await done;
      clearTimeout(t);
    }
    await done;
  }
  return { id, done, close };
}
