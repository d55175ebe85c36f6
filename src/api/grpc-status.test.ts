import assert from "node:assert/strict";
import { test } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { StatusRequestSchema, StatusResponseSchema } from "../buildkit/index.js";
import { EgressReports } from "./grpc-egress-report.js";
import { StatusRewrite } from "./grpc-status.js";

const status = (m: Parameters<typeof create<typeof StatusResponseSchema>>[1]) =>
  toBinary(StatusResponseSchema, create(StatusResponseSchema, m));

test("Control.Status: a push to the user's localhost:PORT reads as the name the user gave", () => {
  const domains = new Map([
    [5000, "localhost:5000"],
    [5001, "127.0.0.1:5001"],
  ]);
  const rw = new StatusRewrite("127.0.0.1:5991", undefined, undefined, domains);
  const out = fromBinary(
    StatusResponseSchema,
    rw.responseMessage(
      status({
        vertexes: [
          { digest: "sha256:a", name: "pushing host-loopback.arca.internal:5000/app:1 with docker" },
        ],
        statuses: [
          {
            ID: "pushing manifest for host-loopback.arca.internal:5001/app:1@sha256:0",
            name: "pushing manifest for host-loopback.arca.internal:5001/app:1@sha256:0",
            vertex: "sha256:a",
          },
          { ID: "x", name: "to host-loopback.arca.internal:5002/c:1", vertex: "sha256:a" },
        ],
      }),
    ),
  );
  assert.equal(out.vertexes[0]?.name, "pushing localhost:5000/app:1 with docker");
  assert.equal(out.statuses[0]?.ID, "pushing manifest for 127.0.0.1:5001/app:1@sha256:0");
  assert.equal(out.statuses[0]?.name, "pushing manifest for 127.0.0.1:5001/app:1@sha256:0");
  // A port no solve named (another connection's): localhost, as dockerd users write it.
  assert.equal(out.statuses[1]?.name, "to localhost:5002/c:1");
  // Anything else passes through as the same bytes.
  const plain = status({ vertexes: [{ digest: "sha256:b", name: "[2/3] RUN true" }] });
  assert.equal(rw.responseMessage(plain), plain);
});

test("Control.Status: the stream ends with the solve's egress report, with BuildKit's failures only when it failed", () => {
  const reports = new EgressReports();
  const seen: boolean[] = [];
  const report = (opts: { failed: boolean }) => {
    seen.push(opts.failed);
    return {
      summary: "egress: 2 requests to 1 host, 1 denied (arca egress log --build build-1)",
      details: ["egress denied: GET 169.254.169.254:80 (rule: link-local)"],
    };
  };
  reports.set("ref-1", report);
  const rw = new StatusRewrite("127.0.0.1:5991", undefined, reports);
  rw.requestMessage(toBinary(StatusRequestSchema, create(StatusRequestSchema, { Ref: "ref-1" })));
  rw.responseMessage(
    status({ vertexes: [{ digest: "sha256:a", name: "[1/2] FROM x", error: "not found" }] }),
  );
  const [end, ...more] = rw.endMessages();
  assert.equal(more.length, 0);
  assert.deepEqual(seen, [true]);
  const msg = fromBinary(StatusResponseSchema, end as Uint8Array);
  const v = msg.vertexes[0];
  assert.equal(v?.name, "egress: 2 requests to 1 host, 1 denied (arca egress log --build build-1)");
  assert.ok(v?.started && v.completed, "a completed vertex");
  assert.equal(msg.logs[0]?.vertex, v?.digest);
  assert.equal(
    new TextDecoder().decode(msg.logs[0]?.msg),
    "egress denied: GET 169.254.169.254:80 (rule: link-local)\n",
  );
  // Once: a second Status stream for the same solve, or one without a report, adds nothing.
  const again = new StatusRewrite("127.0.0.1:5991", undefined, reports);
  again.requestMessage(toBinary(StatusRequestSchema, create(StatusRequestSchema, { Ref: "ref-1" })));
  assert.deepEqual(again.endMessages(), []);
});
