import assert from "node:assert/strict";
import { test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { StatusResponseSchema } from "../gen/moby/buildkit/v1/control_pb.js";
import { statusHasVertexError } from "./vertex-error.js";

const encode = (m: Parameters<typeof create<typeof StatusResponseSchema>>[1]) =>
  toBinary(StatusResponseSchema, create(StatusResponseSchema, m));

test("statusHasVertexError: finds a failed vertex among others, past statuses and logs", () => {
  const msg = encode({
    statuses: [{ ID: "s", name: "pushing", vertex: "sha256:a", current: 10n, total: 20n }],
    logs: [{ vertex: "sha256:a", stream: 1n, msg: new Uint8Array(5000).fill(65) }],
    vertexes: [
      { digest: "sha256:a", name: "RUN ok", started: { seconds: 1n } },
      { digest: "sha256:b", name: "RUN false", error: "process did not complete successfully: exit code: 1" },
    ],
    warnings: [{ vertex: "sha256:a", short: new TextEncoder().encode("warn") }],
  });
  assert.equal(statusHasVertexError(msg), true);
});

test("statusHasVertexError: no error anywhere, even with error-like text elsewhere", () => {
  const msg = encode({
    vertexes: [{ digest: "sha256:a", name: "error", inputs: ["sha256:x"], cached: true }],
    statuses: [{ ID: "error", name: "error" }],
    logs: [{ vertex: "sha256:a", msg: new TextEncoder().encode("error: nothing") }],
  });
  assert.equal(statusHasVertexError(msg), false);
  assert.equal(statusHasVertexError(new Uint8Array()), false);
});

test("statusHasVertexError: a message it cannot read (a vertex field past the vertex's end, truncation) is no error, never a throw", () => {
  assert.equal(statusHasVertexError(Buffer.from("0a030a056162636465", "hex")), false);
  const good = encode({ vertexes: [{ digest: "sha256:b", error: "failed" }] });
  for (let n = 0; n < good.length; n++) assert.doesNotThrow(() => statusHasVertexError(good.subarray(0, n)));
});
