import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { StatusResponseSchema } from "../gen/moby/buildkit/v1/control_pb.js";
import { type ProgressEvent, ProgressTracker, toProgressEvents } from "./index.js";

const T = 1_700_000_000_000;
const enc = new TextEncoder();

const resp = create(StatusResponseSchema, {
  vertexes: [
    { digest: "sha256:p", name: "pending" },
    { digest: "sha256:s", name: "running", inputs: ["sha256:p"], started: timestampFromMs(T) },
    { digest: "sha256:d", name: "done", started: timestampFromMs(T), completed: timestampFromMs(T + 1500) },
    {
      digest: "sha256:c",
      name: "cached",
      cached: true,
      started: timestampFromMs(T),
      completed: timestampFromMs(T),
    },
    { digest: "sha256:e", name: "failed", error: "exit code: 1", completed: timestampFromMs(T + 2) },
    { digest: "sha256:x", name: "stopped", error: "rpc error: context canceled" },
  ],
  statuses: [
    {
      vertex: "sha256:s",
      ID: "transferring context:",
      current: 2048n,
      total: 4096n,
      timestamp: timestampFromMs(T + 10),
      started: timestampFromMs(T),
    },
  ],
  logs: [{ vertex: "sha256:s", stream: 2n, msg: enc.encode("oops\n"), timestamp: timestampFromMs(T + 7) }],
  warnings: [
    {
      vertex: "sha256:s",
      level: 1n,
      short: enc.encode("JSONArgsRecommended: ..."),
      detail: [enc.encode("detail one")],
      url: "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/",
      info: { filename: "Dockerfile" },
      ranges: [{ start: { line: 3, character: 0 }, end: { line: 3, character: 0 } }],
    },
  ],
});

describe("toProgressEvents", () => {
  it("turns one StatusResponse into typed events in message order", () => {
    const events = toProgressEvents(resp);
    const vertexes = events.filter((e) => e.type === "vertex");
    assert.deepEqual(
      vertexes.map((v) => [v.digest, v.phase]),
      [
        ["sha256:p", "pending"],
        ["sha256:s", "start"],
        ["sha256:d", "done"],
        ["sha256:c", "cached"],
        ["sha256:e", "error"],
        ["sha256:x", "canceled"],
      ],
    );
    assert.deepEqual(vertexes[1], {
      type: "vertex",
      phase: "start",
      digest: "sha256:s",
      name: "running",
      inputs: ["sha256:p"],
      cached: false,
      startedMs: T,
    });
    assert.equal(vertexes[2]?.completedMs, T + 1500);
    assert.equal(vertexes[4]?.error, "exit code: 1");
    const rest = events.slice(vertexes.length);
    assert.deepEqual(rest.slice(0, 2), [
      {
        type: "status",
        vertex: "sha256:s",
        id: "transferring context:",
        name: "",
        current: 2048,
        total: 4096,
        done: false,
        timestampMs: T + 10,
        startedMs: T,
      },
      { type: "log", vertex: "sha256:s", stream: 2, data: enc.encode("oops\n"), timestampMs: T + 7 },
    ] satisfies ProgressEvent[]);
    assert.deepEqual(rest[2], {
      type: "warning",
      vertex: "sha256:s",
      level: 1,
      short: "JSONArgsRecommended: ...",
      detail: ["detail one"],
      url: "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/",
      file: "Dockerfile",
      ranges: [{ start: { line: 3, character: 0 }, end: { line: 3, character: 0 } }],
    });
  });
});

describe("ProgressTracker", () => {
  it("counts steps and keeps warnings; a later pending echo does not reset a step", () => {
    const t = new ProgressTracker();
    const events = t.update(resp);
    assert.equal(events.length, 9);
    t.update(create(StatusResponseSchema, { vertexes: [{ digest: "sha256:d", name: "done" }] }));
    const s = t.summary();
    assert.deepEqual(
      { ...s, failed: s.failed?.name },
      { total: 6, completed: 2, cached: 1, errors: 1, canceled: 1, warnings: 1, failed: "failed" },
    );
    assert.equal(t.failedStep()?.error, "exit code: 1");
    assert.equal(t.warnings[0]?.short, "JSONArgsRecommended: ...");
  });
});
