import assert from "node:assert/strict";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { StatusRequestSchema } from "../buildkit/index.js";
import { EgressReports } from "./grpc-egress-report.js";
import { grpcFrame } from "./grpc-frames.js";
import { forwardStream } from "./grpc-proxy.js";
import { STATUS_PATH, StatusRewrite } from "./grpc-status.js";

const REGISTRY = "127.0.0.1:5991";

/**
 * A client → proxy (forwardStream with a StatusRewrite) → upstream chain on
 * real local HTTP/2 connections; `upstream` answers each call as a hostile
 * BuildKit would. Returns the call's response status and trailers.
 */
async function callThroughProxy(
  request: Buffer,
  upstream: (s: http2.ServerHttp2Stream) => void,
): Promise<{ status: string | undefined; message: string }> {
  const up = http2.createServer();
  up.on("stream", upstream);
  await new Promise<void>((r) => up.listen(0, "127.0.0.1", r));
  const upSession = http2.connect(`http://127.0.0.1:${(up.address() as AddressInfo).port}`);
  const proxy = http2.createServer();
  proxy.on(
    "stream",
    (stream: http2.ServerHttp2Stream, _h: http2.IncomingHttpHeaders, _f: number, rawHeaders: string[]) => {
      const reports = new EgressReports();
      forwardStream(stream, rawHeaders, upSession, new StatusRewrite(REGISTRY, undefined, reports));
    },
  );
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
  const client = http2.connect(`http://127.0.0.1:${(proxy.address() as AddressInfo).port}`);
  try {
    return await new Promise((resolve, reject) => {
      const req = client.request({
        ":method": "POST",
        ":path": STATUS_PATH,
        "content-type": "application/grpc",
        te: "trailers",
      });
      let status: string | undefined;
      let message = "";
      const take = (h: http2.IncomingHttpHeaders) => {
        if (h["grpc-status"] !== undefined) {
          status = String(h["grpc-status"]);
          message = decodeURIComponent(String(h["grpc-message"] ?? ""));
        }
      };
      req.on("response", take);
      req.on("trailers", take);
      req.on("data", () => {});
      req.on("close", () => resolve({ status, message }));
      req.on("error", reject);
      req.end(request);
    });
  } finally {
    client.close();
    upSession.close();
    proxy.close();
    up.close();
  }
}

const goodRequest = grpcFrame(toBinary(StatusRequestSchema, create(StatusRequestSchema, { Ref: "r1" })));

test("forwardStream: a status update the rewrite cannot read ends the call with an error, not the daemon", {
  timeout: 10_000,
}, async () => {
  // Names the registry (so it is decoded) but its first field runs past the message's end.
  const hostile = Buffer.concat([Buffer.from([0x0a, 0x7f]), Buffer.from(REGISTRY)]);
  const out = await callThroughProxy(goodRequest, (s) => {
    s.on("data", () => {});
    s.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    s.on("wantTrailers", () => s.sendTrailers({ "grpc-status": "0" }));
    s.end(grpcFrame(hostile));
  });
  assert.notEqual(out.status, undefined, "no gRPC status reached the client");
  assert.notEqual(out.status, "0");
  assert.match(out.message, /illegal tag|premature EOF|invalid/i);
});

test("forwardStream: a request message the rewrite cannot read is answered with an error, not a crash", {
  timeout: 10_000,
}, async () => {
  let upstreamSaw = 0;
  const out = await callThroughProxy(grpcFrame(Buffer.from([0x0a, 0x7f, 0x01])), (s) => {
    s.on("data", (c: Buffer) => {
      upstreamSaw += c.length;
    });
    s.on("end", () => {
      s.respond(
        { ":status": 200, "content-type": "application/grpc", "grpc-status": "0" },
        { endStream: true },
      );
    });
  });
  assert.notEqual(out.status, undefined, "no gRPC status reached the client");
  assert.notEqual(out.status, "0");
  assert.equal(upstreamSaw, 0, "the unreadable request went upstream");
});
