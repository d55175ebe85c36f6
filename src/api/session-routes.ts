import type { Duplex } from "node:stream";
import type { Lease } from "../backends/index.js";
import { openSessionStream } from "../buildkit/index.js";
import type { ApiDeps } from "./deps.js";
import { ApiError, CLIENT_DISCONNECTED } from "./errors.js";
import { checkH2cUpgrade, SWITCHING_TO_H2C, skipUpgradeBody, writeHttpError } from "./h2c-upgrade.js";
import { pacedPipe } from "./paced-pipe.js";
import type { Router } from "./router.js";

const HEADER_PREFIX = "x-docker-expose-session-";
const UUID_HEADER = `${HEADER_PREFIX}uuid`;
/** buildx's key for the build's context (its directory and builder): the pool's routing key. */
const SHARED_KEY_HEADER = `${HEADER_PREFIX}sharedkey`;
/** After buildkitd ends the session, how long the client gets to close its side. */
const CLOSE_GRACE_MS = 5000;

/**
 * POST /session: the client's session (dockerode's, the CLI's) reaches
 * buildkitd. dockerd runs BuildKit's session manager in-process; Arca's
 * buildkitd is remote, so the hijacked connection is bridged byte for byte
 * onto a `Control.Session` stream opened with the client's headers as
 * metadata: buildkitd then speaks h2/gRPC straight to the client's server.
 */
export function registerSessionRoutes(router: Router, deps: ApiDeps): void {
  /** Ids of sessions whose connection is open (dockerd's "session <id> already exists"). */
  const live = new Set<string>();

  // Without an Upgrade header Node does not hand the request over as an upgrade.
  router.add("POST", "/session", ({ req }) => {
    checkDuplicate(live, sessionHeaders(req.rawHeaders).id);
    throw new ApiError("invalid_parameter", "no upgrade proto in request");
  });

  router.upgrade("POST", "/session", async ({ req, socket, head }) => {
    socket.on("error", () => {});
    let id: string | undefined;
    let upgraded = false;
    let forget = () => {};
    let lease: Lease | undefined;
    let unbind = () => {};
    let offGone = () => {};
    try {
      const h = sessionHeaders(req.rawHeaders);
      checkDuplicate(live, h.id);
      checkH2cUpgrade(req);
      if (!h.id) throw new ApiError("invalid_parameter", `missing ${UUID_HEADER} header`);
      id = h.id;
      live.add(id);
      // Solves naming this session wait for its place instead of going elsewhere.
      forget = deps.pool.expectSession(id);
      // Bytes after the (discarded) request body already belong to the session.
      const early = await skipUpgradeBody(req, socket, head);
      const gone = new AbortController();
      socket.once("close", () => gone.abort(CLIENT_DISCONNECTED));
      // The session is the build's unit of work on a backend (buildx opens one per build): it
      // takes the place, by its context's key, and every solve using it follows.
      const shared = h.metadata[SHARED_KEY_HEADER]?.[0] ?? "";
      lease = await deps.pool.acquire(shared || `session:${id}`, gone.signal, sessionAttrs(shared));
      unbind = deps.pool.bindSession(id, lease);
      if (socket.destroyed) throw new ApiError("unavailable", "client disconnected");
      // Answered before the upstream is set up (~1 ms): the client's preface waits in the socket meanwhile.
      socket.write(SWITCHING_TO_H2C);
      upgraded = true;
      const h2 = lease.client.connectHttp2(gone.signal);
      const placed = lease.backend;
      offGone = deps.pool.onGone((name) => {
        if (name === placed) h2.destroy();
      });
      const stream = openSessionStream(h2, h.metadata);
      await bridge(socket, early, stream);
      h2.close();
    } catch (err) {
      if (upgraded) socket.destroy();
      else writeHttpError(socket, err);
    } finally {
      offGone();
      forget();
      unbind();
      lease?.release();
      if (id !== undefined) live.delete(id);
    }
  });
}

/** What a session's `build` event says: never its id, which works as a password to the session. */
export function sessionAttrs(sharedKey: string): Record<string, string> {
  return { via: "session", ...(sharedKey ? { context: sharedKey } : {}) };
}

function checkDuplicate(live: Set<string>, id: string): void {
  if (id && live.has(id)) throw new ApiError("invalid_parameter", `session ${id} already exists`);
}

/**
 * The session id and every `X-Docker-Expose-Session-*` header as gRPC
 * metadata. Read from rawHeaders: req.headers joins repeated values
 * (one Grpc-Method per exposed method) with ", ".
 */
function sessionHeaders(raw: string[]): { id: string; metadata: Record<string, string[]> } {
  const metadata: Record<string, string[]> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const key = (raw[i] as string).toLowerCase();
    if (!key.startsWith(HEADER_PREFIX)) continue;
    const values = metadata[key] ?? [];
    values.push(raw[i + 1] as string);
    metadata[key] = values;
  }
  return { id: metadata[UUID_HEADER]?.[0] ?? "", metadata };
}

/**
 * Pipes the hijacked socket and the session stream into each other until
 * both are done. Half-closes travel across (the client ending its side ends
 * the gRPC call; buildkitd ending the call ends the socket); an error or an
 * abrupt close on either side tears down both.
 *
 * The client's side is paced (pacedPipe): its file list arrives as one
 * small HTTP/2 frame per file, and relaying each alone cost the daemon
 * 140-180 ms of CPU per cached 20,000-file build. Tried before, no gain:
 * batching a loop turn's reads into one message, one write per message,
 * a pre-connected upstream, terminating the inner HTTP/2 here.
 */
function bridge(socket: Duplex, head: Buffer, stream: Duplex): Promise<void> {
  return new Promise((resolve) => {
    let grace: NodeJS.Timeout | undefined;
    const teardown = () => {
      clearTimeout(grace);
      stream.destroy();
      socket.destroy();
      resolve();
    };
    if (head.length) stream.write(head);
    pacedPipe(socket, stream);
    stream.pipe(socket);
    socket.once("close", teardown);
    stream.once("error", teardown);
    stream.once("close", () => {
      // Buildkitd closed the session: let buffered bytes reach the client, then cut it off.
      if (!socket.writableEnded) socket.end();
      grace = setTimeout(teardown, CLOSE_GRACE_MS);
      grace.unref();
    });
  });
}
