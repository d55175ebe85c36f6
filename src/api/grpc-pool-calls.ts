import type http2 from "node:http2";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import type { BackendPool } from "../backends/index.js";
import {
  DiskUsageRequestSchema,
  DiskUsageResponseSchema,
  ListWorkersRequestSchema,
  ListWorkersResponseSchema,
  PruneRequestSchema,
  type UsageRecord,
  UsageRecordSchema,
} from "../buildkit/index.js";
import {
  callSignal,
  grpcErrorTrailers,
  grpcFrame,
  OK_TRAILERS,
  respondGrpcError,
  respondGrpcMessage,
  unaryMessage,
} from "./grpc-frames.js";
import { collect } from "./grpc-proxy.js";

export const DISK_USAGE_PATH = "/moby.buildkit.v1.Control/DiskUsage";
export const PRUNE_PATH = "/moby.buildkit.v1.Control/Prune";
export const LIST_WORKERS_PATH = "/moby.buildkit.v1.Control/ListWorkers";

/**
 * Control.ListWorkers answered from the pool's last health check, no round trip to buildkitd:
 * buildx asks 2-3 times per build, once on a connection that makes no other call. A filtered
 * request, or none up yet, goes to `forward()`.
 */
export function answerListWorkers(
  stream: http2.ServerHttp2Stream,
  pool: BackendPool,
  forward: (body: Buffer) => void,
): void {
  stream.on("error", () => {});
  collect(stream)
    .then((body) => {
      const req = fromBinary(ListWorkersRequestSchema, unaryMessage(body));
      const cached = req.filter.length === 0 ? pool.workers() : undefined;
      if (!cached) return forward(body);
      respondGrpcMessage(stream, toBinary(ListWorkersResponseSchema, cached));
    })
    .catch((err: unknown) => respondGrpcError(stream, err));
}

/**
 * Control.DiskUsage for the whole pool: every healthy backend's records in one answer (`buildx du`),
 * and the daemon's own (`local()`: kept classic uploads) when the request filters nothing.
 */
export function answerPoolDiskUsage(
  stream: http2.ServerHttp2Stream,
  pool: BackendPool,
  connection: AbortSignal,
  local: () => UsageRecord[],
): void {
  stream.on("error", () => {});
  const signal = callSignal(stream, connection);
  (async () => {
    const req = fromBinary(DiskUsageRequestSchema, unaryMessage(await collect(stream)));
    const backends = await pool.everyUp(signal);
    // A backend that does not answer leaves its records out rather than failing the whole answer.
    const settled = await Promise.allSettled(
      backends.map((b) => b.client.control.diskUsage(req, { signal })),
    );
    const answers = settled.flatMap((s, i) => {
      if (s.status !== "fulfilled") return [];
      // `buildx du --verbose` shows each record's description: it names the backend.
      if (backends.length > 1)
        for (const r of s.value.record)
          r.Description = backendDescription(backends[i]?.backend, r.Description);
      return [s.value];
    });
    if (answers.length === 0 && settled[0]?.status === "rejected") throw settled[0].reason;
    const merged = answers[0] ?? fromBinary(DiskUsageResponseSchema, new Uint8Array());
    for (const a of answers.slice(1)) merged.record.push(...a.record);
    // BuildKit's filter language is its own; a filtered listing stays the backends' answer. buildx
    // sends its filters joined into one string, "" for none.
    if (req.filter.every((f) => f === "")) merged.record.push(...local());
    respondGrpcMessage(stream, toBinary(DiskUsageResponseSchema, merged));
  })().catch((err: unknown) => respondGrpcError(stream, err));
}

/**
 * Control.Prune for the whole pool: each healthy backend pruned in turn, every record streamed back,
 * after `released` (what the daemon itself freed for this prune).
 */
export function answerPoolPrune(
  stream: http2.ServerHttp2Stream,
  pool: BackendPool,
  connection: AbortSignal,
  released: UsageRecord[],
): void {
  stream.on("error", () => {});
  // The client cancelling the call stops the prune, not only closing its connection.
  const signal = callSignal(stream, connection);
  let started = false;
  (async () => {
    const req = fromBinary(PruneRequestSchema, unaryMessage(await collect(stream)));
    const backends = await pool.everyUp(signal);
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    started = true;
    let failure: http2.OutgoingHttpHeaders | undefined;
    stream.once("wantTrailers", () => stream.sendTrailers(failure ?? OK_TRAILERS));
    for (const r of released) stream.write(grpcFrame(toBinary(UsageRecordSchema, r)));
    try {
      for (const b of backends) {
        for await (const r of b.client.control.prune(req, { signal }))
          stream.write(grpcFrame(toBinary(UsageRecordSchema, r)));
      }
    } catch (err) {
      failure = grpcErrorTrailers(err);
    }
    stream.end();
  })().catch((err: unknown) => {
    if (!started) respondGrpcError(stream, err);
    else stream.close();
  });
}

/** A cache record's description in a pool of several backends: `[NAME] description`. */
export function backendDescription(backend: string | undefined, description: string): string {
  return backend ? `[${backend}] ${description}` : description;
}
