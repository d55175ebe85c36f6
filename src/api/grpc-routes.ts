import http2 from "node:http2";
import type { Duplex } from "node:stream";
import { fromBinary } from "@bufbuild/protobuf";
import type { Placement } from "../backends/index.js";
import { type BuildEgressGrant, type BuildMemo, openBuildEgress } from "../build/index.js";
import { LOST_BUILDKIT, SolveRequestSchema, StatusRequestSchema } from "../buildkit/index.js";
import type { ApiDeps } from "./deps.js";
import { ApiError, CLIENT_DISCONNECTED } from "./errors.js";
import { EgressReports } from "./grpc-egress-report.js";
import { callSignal } from "./grpc-frames.js";
import { GATEWAY_SOLVE_PATH, GatewaySolveRewrite } from "./grpc-gateway-solve.js";
import {
  answerListWorkers,
  answerPoolDiskUsage,
  answerPoolPrune,
  DISK_USAGE_PATH,
  LIST_WORKERS_PATH,
  PRUNE_PATH,
} from "./grpc-pool-calls.js";
import { forwardStream, type UpstreamChoice } from "./grpc-proxy.js";
import { SOLVE_PATH, SolveRewrite, type SolveRewriteDeps } from "./grpc-solve.js";
import { STATUS_PATH, StatusRewrite } from "./grpc-status.js";
import { StoreOnlyRefs } from "./grpc-store-refs.js";
import { checkH2cUpgrade, SWITCHING_TO_H2C, skipUpgradeBody, writeHttpError } from "./h2c-upgrade.js";
import type { HostLoopbackDeps } from "./host-loopback-ref.js";
import type { Router } from "./router.js";
import { sessionAttrs } from "./session-routes.js";

/** Windows as large as the session bridge's: Solve requests carry whole LLB definitions. */
const STREAM_WINDOW = 4 << 20;
const CONNECTION_WINDOW = 16 << 20;

/**
 * POST /grpc: buildx's docker driver speaks BuildKit's gRPC API (Control,
 * the LLBBridge gateway forwarder, history, content) over the hijacked
 * connection. Arca terminates the client's HTTP/2 and forwards each call,
 * streams included, over its own HTTP/2 connection to buildkitd; calls it
 * does not know go through too, so buildkitd answers UNIMPLEMENTED itself.
 * Only the two ways to start a build are edited: Control.Solve (exporters,
 * entitlements, network; SolveRewrite) and LLBBridge.Solve (network); and
 * Control.Status names pushed images as the user named them (StatusRewrite).
 */
export function registerGrpcRoutes(router: Router, deps: ApiDeps, memo: BuildMemo): void {
  // Shared by every connection: a client may follow a solve's progress on another one.
  const storeOnlyRefs = new StoreOnlyRefs();
  const egressReports = new EgressReports();
  // Ports are few and a later push to the same port names it the same way, or close enough.
  const loopbackDomains = new Map<number, string>();
  // Without an Upgrade header Node does not hand the request over as an upgrade.
  router.add("POST", "/grpc", ({ req }) => {
    req.resume();
    throw new ApiError("protocol_error", "no upgrade proto in request");
  });

  router.upgrade("POST", "/grpc", async ({ req, socket, head }) => {
    socket.on("error", () => {});
    let upgraded = false;
    try {
      checkH2cUpgrade(req, "protocol_error");
      const early = await skipUpgradeBody(req, socket, head);
      const gone = new AbortController();
      socket.once("close", () => gone.abort(CLIENT_DISCONNECTED));
      // As dockerd with its embedded BuildKit: the connection is taken once a backend answers.
      await deps.pool.any(gone.signal);
      if (socket.destroyed) throw new ApiError("unavailable", "client disconnected");
      socket.write(SWITCHING_TO_H2C);
      upgraded = true;
      await serveGrpc(socket, early, deps, memo, gone.signal, {
        storeOnlyRefs,
        egressReports,
        loopbackDomains,
      });
    } catch (err) {
      if (upgraded) socket.destroy();
      else writeHttpError(socket, err);
    }
  });
}

/**
 * Serves the client's HTTP/2 connection until it closes. Each call goes to
 * its backend (see routeCall) over one upstream connection per backend
 * and client connection, so the client going away cancels every call it
 * had open (and with them their builds).
 */
function serveGrpc(
  socket: Duplex,
  early: Buffer,
  deps: ApiDeps,
  memo: BuildMemo,
  signal: AbortSignal,
  refs: SolveRefs,
): Promise<void> {
  const upstreams = new Map<string, http2.ClientHttp2Session>();
  const named = deps.pool.targets.length > 1;
  const connect = (p: Placement): UpstreamChoice => {
    let up = upstreams.get(p.backend);
    if (!up || up.destroyed || up.closed) {
      const fresh = p.client.connectHttp2(signal);
      // A backend that went away (restart, crash): its next call opens a new connection.
      fresh.once("close", () => {
        if (upstreams.get(p.backend) === fresh) upstreams.delete(p.backend);
      });
      upstreams.set(p.backend, fresh);
      up = fresh;
    }
    return {
      session: up,
      lost: named ? `${LOST_BUILDKIT} (BuildKit backend "${p.backend}")` : LOST_BUILDKIT,
    };
  };
  // Node's default session memory cap (10 MB) is below the windows granted: a fast client would get ENHANCE_YOUR_CALM.
  const server = http2.createServer({ settings: { initialWindowSize: STREAM_WINDOW }, maxSessionMemory: 64 });
  // One egress credential per client connection (one buildx invocation), made when a build first
  // asks for the step network and released with the connection.
  let egress: BuildEgressGrant | undefined;
  const stepProxy = (ref?: string) => {
    if (!deps.egress) return undefined;
    egress ??= openBuildEgress(deps.egress, [], () => {});
    const grant = egress;
    // The solve's progress ends with this connection's egress report (buildx shows it last).
    if (ref) refs.egressReports.set(ref, (opts) => grant.report(opts));
    return grant.stepProxy;
  };
  const call: CallContext = { deps, memo, signal, refs, stepProxy, connect };
  // A backend down for a while (a host gone without closing its connections): its calls end, named.
  const offGone = deps.pool.onGone((name) => upstreams.get(name)?.destroy());
  return new Promise((resolve) => {
    let session: http2.ServerHttp2Session | undefined;
    const done = () => {
      offGone();
      egress?.finish();
      egress = undefined;
      for (const up of upstreams.values()) up.destroy();
      session?.destroy();
      socket.destroy();
      resolve();
    };
    socket.once("close", done);
    // The HTTP server's sockets allow half-open; HTTP/2 has no use for it: EOF means the client is gone.
    socket.once("end", done);
    server.on("session", (s) => {
      session = s;
      s.on("error", () => {});
      s.once("connect", () => {
        if (!s.destroyed) s.setLocalWindowSize(CONNECTION_WINDOW);
      });
    });
    // Node passes rawHeaders as a 4th argument (its typings omit it): repeated fields stay apart.
    const onStream = (
      stream: http2.ServerHttp2Stream,
      headers: http2.IncomingHttpHeaders,
      _flags: number,
      rawHeaders?: string[],
    ) => {
      const path = String(headers[":path"]);
      if (path === PRUNE_PATH) {
        // Classic builds answered from memory would outlive the cache this prunes; the kept uploads
        // it frees are reported with the backends' records.
        answerPoolPrune(stream, deps.pool, signal, memo.clear());
        return;
      }
      if (path === DISK_USAGE_PATH) {
        answerPoolDiskUsage(stream, deps.pool, signal, () => memo.contexts?.usage() ?? []);
        return;
      }
      if (path === LIST_WORKERS_PATH) {
        answerListWorkers(stream, deps.pool, (body) =>
          forwardStream(stream, rawHeaders ?? [], {
            later: async () => connect(await deps.pool.any(signal)),
            body,
          }),
        );
        return;
      }
      routeCall(stream, headers, rawHeaders ?? [], path, call);
    };
    server.on("stream", onStream);
    // Bytes that followed the request headers are the client's connection preface.
    if (early.length) socket.unshift(early);
    server.emit("connection", socket);
    socket.resume();
  });
}

/** What /grpc connections share about solves, by ref. */
interface SolveRefs {
  storeOnlyRefs: StoreOnlyRefs;
  egressReports: EgressReports;
  loopbackDomains: Map<number, string>;
}

interface CallContext {
  deps: ApiDeps;
  memo: BuildMemo;
  signal: AbortSignal;
  refs: SolveRefs;
  stepProxy: (ref?: string) => string | undefined;
  connect: (p: Placement) => UpstreamChoice;
}

/**
 * Where each call goes, and the edits on its way:
 * - Control.Solve runs where its session is (buildx's /session took a place by the context's
 *   key), else takes a place by its own key; its ref then names that backend;
 * - Control.Status and the gateway's LLBBridge calls follow their solve's ref;
 * - Control.Session (a session over /grpc) takes a place as POST /session does;
 * - the rest (ListWorkers, Info, history) answers for the pool from the first healthy backend.
 */
function routeCall(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  raw: string[],
  path: string,
  c: CallContext,
): void {
  const { deps, signal, refs, connect } = c;
  const pool = deps.pool;
  const callEnds = callSignal(stream, signal);
  if (path === SOLVE_PATH) {
    // Filled in once the solve is placed: the backend decides the registry host and step network.
    const solveDeps: SolveRewriteDeps = {
      ...deps,
      ...callGrants(stream, deps, refs.loopbackDomains),
      storeOnlyRefs: refs.storeOnlyRefs,
    };
    const rewrite = new SolveRewrite(solveDeps);
    forwardStream(
      stream,
      raw,
      {
        byRequest: async (msg) => {
          const req = fromBinary(SolveRequestSchema, msg);
          // Its progress and gateway calls wait for its place rather than go elsewhere.
          const forgetRef = req.Ref ? pool.expectRef(req.Ref) : () => {};
          let at: Placement | undefined;
          try {
            at = req.Session ? await pool.sessionPlacement(req.Session, callEnds) : undefined;
            if (!at) {
              const lease = await pool.acquire(solveKey(req), callEnds);
              whenClosed(stream, () => lease.release());
              at = lease;
            }
            if (req.Ref) whenClosed(stream, pool.bindRef(req.Ref, at.backend));
          } finally {
            forgetRef();
          }
          // Placed too late: the call is gone, open nothing for it.
          if (stream.closed) throw new ApiError("unavailable", "call closed");
          solveDeps.registryHost = at.registryHost;
          solveDeps.pushScope = at.pushScope;
          solveDeps.stepProxy = at.stepEgress ? c.stepProxy : undefined;
          return connect(at);
        },
      },
      rewrite,
    );
    return;
  }
  if (path === STATUS_PATH) {
    const rewrite = new StatusRewrite(
      deps.registryHost,
      refs.storeOnlyRefs,
      refs.egressReports,
      refs.loopbackDomains,
    );
    forwardStream(
      stream,
      raw,
      {
        byRequest: async (msg) => {
          const ref = fromBinary(StatusRequestSchema, msg).Ref;
          const at = (ref ? await pool.refPlacement(ref, callEnds) : undefined) ?? (await pool.any(callEnds));
          rewrite.registryHost = at.registryHost;
          return connect(at);
        },
      },
      rewrite,
    );
    return;
  }
  if (path === CONTROL_SESSION_PATH) {
    const id = firstHeader(headers, "x-docker-expose-session-uuid");
    const shared = firstHeader(headers, "x-docker-expose-session-sharedkey");
    forwardStream(stream, raw, {
      later: async () => {
        const forget = id ? pool.expectSession(id) : () => {};
        try {
          const lease = await pool.acquire(shared || `session:${id}`, callEnds, sessionAttrs(shared));
          const unbind = id ? pool.bindSession(id, lease) : () => {};
          whenClosed(stream, () => {
            unbind();
            lease.release();
          });
          if (stream.closed) throw new ApiError("unavailable", "call closed");
          return connect(lease);
        } finally {
          forget();
        }
      },
    });
    return;
  }
  // A gateway client's calls name their solve (BuildKit's client/buildid).
  const buildId = firstHeader(headers, "buildkit-controlapi-buildid");
  let stepEgress = false;
  const placed = async () => {
    const at =
      (buildId ? await pool.refPlacement(buildId, callEnds) : undefined) ?? (await pool.any(callEnds));
    stepEgress = at.stepEgress;
    return connect(at);
  };
  // The frontend imports its caches during this call.
  const rewrite =
    path === GATEWAY_SOLVE_PATH
      ? new GatewaySolveRewrite(
          () => (stepEgress ? c.stepProxy(buildId) : undefined),
          callGrants(stream, deps, refs.loopbackDomains),
        )
      : undefined;
  forwardStream(stream, raw, { later: placed }, rewrite);
}

const CONTROL_SESSION_PATH = "/moby.buildkit.v1.Control/Session";

/** Runs `fn` when the call's stream closes, or now if it already did (a place taken too late). */
function whenClosed(stream: http2.ServerHttp2Stream, fn: () => void): void {
  if (stream.closed || stream.destroyed) fn();
  else stream.once("close", fn);
}

function firstHeader(h: http2.IncomingHttpHeaders, name: string): string {
  const v = h[name];
  return (Array.isArray(v) ? v[0] : v) ?? "";
}

/** A solve without a client session: keyed by what it builds (frontend, context, target, platform). */
function solveKey(req: ReturnType<typeof fromBinary<typeof SolveRequestSchema>>): string {
  const a = req.FrontendAttrs;
  return JSON.stringify([
    "solve",
    req.Frontend,
    a.context ?? "",
    a.filename ?? "",
    a.target ?? "",
    a.platform ?? "",
  ]);
}

/** Host-loopback grants (localhost:PORT registries) that end when the call's stream closes. */
function callGrants(
  stream: http2.ServerHttp2Stream,
  deps: ApiDeps,
  loopbackDomains: Map<number, string>,
): HostLoopbackDeps {
  const ended = new AbortController();
  stream.once("close", () => ended.abort());
  const egress = deps.egress;
  return {
    signal: ended.signal,
    loopbackDomains,
    ...(egress ? { hostLoopback: (port: number) => egress.allowHostLoopback(port) } : {}),
  };
}
