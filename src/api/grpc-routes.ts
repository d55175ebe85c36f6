import http2 from "node:http2";
import type { Duplex } from "node:stream";
import { type BuildEgressGrant, type BuildMemo, openBuildEgress } from "../build/index.js";
import type { ControlClient } from "../buildkit/index.js";
import type { ApiDeps } from "./deps.js";
import { ApiError } from "./errors.js";
import { EgressReports } from "./grpc-egress-report.js";
import { GATEWAY_SOLVE_PATH, GatewaySolveRewrite } from "./grpc-gateway-solve.js";
import { forwardStream, type ResponseStreamRewrite, type UnaryRewrite } from "./grpc-proxy.js";
import { SOLVE_PATH, SolveRewrite } from "./grpc-solve.js";
import { STATUS_PATH, StatusRewrite } from "./grpc-status.js";
import { StoreOnlyRefs } from "./grpc-store-refs.js";
import { checkH2cUpgrade, SWITCHING_TO_H2C, skipUpgradeBody, writeHttpError } from "./h2c-upgrade.js";
import type { HostLoopbackDeps } from "./host-loopback-ref.js";
import type { Router } from "./router.js";

const PRUNE_PATH = "/moby.buildkit.v1.Control/Prune";

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
      socket.once("close", () => gone.abort(new ApiError("unavailable", "client disconnected")));
      const client = await deps.buildkit.client(gone.signal);
      if (socket.destroyed) throw new ApiError("unavailable", "client disconnected");
      socket.write(SWITCHING_TO_H2C);
      upgraded = true;
      await serveGrpc(socket, early, client, deps, memo, gone.signal, {
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
 * Serves the client's HTTP/2 connection until it closes; one upstream
 * connection per client connection, so the client going away cancels every
 * call it had open on buildkitd (and with them their builds).
 */
function serveGrpc(
  socket: Duplex,
  early: Buffer,
  client: ControlClient,
  deps: ApiDeps,
  memo: BuildMemo,
  signal: AbortSignal,
  refs: SolveRefs,
): Promise<void> {
  const upstream = client.connectHttp2(signal);
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
  return new Promise((resolve) => {
    let session: http2.ServerHttp2Session | undefined;
    const done = () => {
      egress?.finish();
      egress = undefined;
      upstream.destroy();
      session?.destroy();
      socket.destroy();
      resolve();
    };
    socket.once("close", done);
    // The HTTP server's sockets allow half-open; HTTP/2 has no use for it: EOF means the client is gone.
    socket.once("end", done);
    // buildkitd went away (sandbox restart): let the client reconnect rather than hang.
    upstream.once("close", () => {
      if (session && !session.closed) session.close(done);
      else done();
    });
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
      // Classic builds answered from memory would outlive the cache this prunes.
      if (path === PRUNE_PATH) memo.clear();
      // A gateway client's calls name their solve (BuildKit's client/buildid).
      const buildId = headers["buildkit-controlapi-buildid"];
      const rewrite = rewriteFor(
        path,
        deps,
        stream,
        stepProxy,
        refs,
        typeof buildId === "string" ? buildId : undefined,
      );
      forwardStream(stream, rawHeaders ?? [], upstream, rewrite);
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

/** The calls Arca edits on their way to buildkitd: both ways to start a frontend, and progress. */
function rewriteFor(
  path: string,
  deps: ApiDeps,
  stream: http2.ServerHttp2Stream,
  stepProxy: (ref?: string) => string | undefined,
  { storeOnlyRefs, egressReports, loopbackDomains }: SolveRefs,
  buildId: string | undefined,
): UnaryRewrite | ResponseStreamRewrite | undefined {
  if (path === SOLVE_PATH) {
    // The Solve call lasts as long as the build; its push grant ends with it.
    return new SolveRewrite({
      ...deps,
      ...callGrants(stream, deps, loopbackDomains),
      stepProxy,
      storeOnlyRefs,
    });
  }
  if (path === GATEWAY_SOLVE_PATH) {
    // The frontend imports its caches during this call.
    return new GatewaySolveRewrite(() => stepProxy(buildId), callGrants(stream, deps, loopbackDomains));
  }
  if (path === STATUS_PATH)
    return new StatusRewrite(deps.registryHost, storeOnlyRefs, egressReports, loopbackDomains);
  return undefined;
}
