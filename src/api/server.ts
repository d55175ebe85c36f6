import http from "node:http";
import { listen } from "../transport/index.js";
import { CLIENT_DISCONNECTED, httpStatusFor } from "./errors.js";
import { sendError, sendJSON } from "./respond.js";
import type { Router } from "./router.js";
import { splitVersion } from "./version.js";

export interface ApiServer {
  /** Listens on `unix:///path` (mode 0660; a live daemon on it is refused, a stale socket replaced). */
  listen(address: string): Promise<string>;
  close(): Promise<void>;
}

/** A client gets this long to send a request's headers (Node's default; dockerd allows as long). */
const HEADERS_TIMEOUT_MS = 60_000;

/** The Engine API HTTP server: versioned and unversioned paths, JSON errors, hijacked upgrades. */
export function createApiServer(
  router: Router,
  opts: { log?: (line: string) => void; headersTimeoutMs?: number } = {},
): ApiServer {
  const headersTimeout = opts.headersTimeoutMs ?? HEADERS_TIMEOUT_MS;
  // Node checks the timeout this often (30 s by default, i.e. up to 90 s in all).
  const connectionsCheckingInterval = Math.max(250, Math.min(5_000, headersTimeout / 4));
  const server = http.createServer({ connectionsCheckingInterval }, (req, res) => {
    void dispatch(router, req, res).catch((err) => {
      // Client errors are answers, not incidents: only 5xx get logged.
      if (httpStatusFor(err) >= 500) opts.log?.(`${req.method} ${req.url}: ${(err as Error)?.stack ?? err}`);
      sendError(res, err);
    });
  });
  // A connection trickling its headers is dropped. Once they are in, nothing is timed: build
  // contexts and loads upload for as long as they take, and responses (builds, logs -f, events,
  // hijacked exec and /grpc) stream for as long as they last.
  server.headersTimeout = headersTimeout;
  server.requestTimeout = 0;
  server.on("upgrade", (req, socket, head) => {
    void dispatchUpgrade(router, req, socket, head).catch((err) => {
      opts.log?.(`upgrade ${req.method} ${req.url}: ${(err as Error)?.stack ?? err}`);
      if (!socket.destroyed) {
        const body = JSON.stringify({ message: (err as Error).message });
        socket.end(
          `HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
        );
      }
    });
  });
  const sockets = new Set<import("node:net").Socket>();
  server.on("connection", (s) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  return {
    listen: (address) => listen(address, server, { socketMode: 0o660 }),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

async function dispatch(router: Router, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = new URL(req.url ?? "/", "http://arca");
  const { apiVersion, path } = splitVersion(url.pathname);
  const found = router.match(req.method ?? "GET", path);
  if (!found) return sendJSON(res, 404, { message: "page not found" });
  if ("methodNotAllowed" in found) return sendJSON(res, 405, { message: "method not allowed" });
  const ac = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) ac.abort(CLIENT_DISCONNECTED);
  });
  await found.handler({
    req,
    res,
    params: found.params,
    query: url.searchParams,
    apiVersion,
    signal: ac.signal,
  });
}

async function dispatchUpgrade(
  router: Router,
  req: http.IncomingMessage,
  socket: import("node:stream").Duplex,
  head: Buffer,
): Promise<void> {
  const url = new URL(req.url ?? "/", "http://arca");
  const { apiVersion, path } = splitVersion(url.pathname);
  const found = router.matchUpgrade(req.method ?? "GET", path);
  if (!found || "methodNotAllowed" in found) {
    const body = JSON.stringify({ message: "page not found" });
    socket.end(
      `HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    return;
  }
  await found.handler({ req, socket, head, params: found.params, query: url.searchParams, apiVersion });
}
