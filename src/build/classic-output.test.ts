import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { StatusResponseSchema } from "../buildkit/index.js";
import { ClassicOutput } from "./classic-output.js";
import { dockerfileInstructions, planDockerfile } from "./dockerfile-steps.js";
import type { JsonMessage } from "./json-message.js";

const T = 1_700_000_000_000;
const enc = new TextEncoder();

type V = { digest: string; name: string; phase: "start" | "done" | "cached" | "error" };
function status(vertexes: V[], logs: { vertex: string; text: string }[] = []) {
  return create(StatusResponseSchema, {
    vertexes: vertexes.map((v) => ({
      digest: v.digest,
      name: v.name,
      started: timestampFromMs(T),
      cached: v.phase === "cached",
      completed: v.phase === "start" ? undefined : timestampFromMs(T + 1),
      error: v.phase === "error" ? "process did not complete successfully: exit code: 7" : "",
    })),
    logs: logs.map((l) => ({
      vertex: l.vertex,
      stream: 1n,
      msg: enc.encode(l.text),
      timestamp: timestampFromMs(T),
    })),
  });
}

function collect(): { emit: (m: JsonMessage) => void; text: () => string } {
  const out: string[] = [];
  return { emit: (m) => out.push(String(m.stream ?? "")), text: () => out.join("") };
}

const digest = (c: string) => `sha256:${c.repeat(64)}`;

describe("Dockerfile instructions as the classic builder counts them", () => {
  it("joins continuations, drops comments, honours # escape= and skips heredoc bodies", () => {
    const src = [
      "# escape=`",
      "",
      "FROM busybox:local AS base",
      "# a comment",
      "RUN echo a && `",
      "    # inside",
      "    echo b",
      "COPY <<EOF /x",
      "FROM not-an-instruction",
      "EOF",
      "  ENV A=1",
    ].join("\n");
    assert.deepEqual(dockerfileInstructions(src), [
      "FROM busybox:local AS base",
      "RUN echo a &&     echo b",
      "COPY <<EOF /x",
      "ENV A=1",
    ]);
  });

  it("numbers every instruction and ties RUN/COPY/ADD/WORKDIR (and FROM an image) to BuildKit's indexes", () => {
    const plan = planDockerfile(
      [
        "ARG V=1",
        "FROM busybox:local AS base",
        "ENV A=1",
        "RUN true",
        "FROM scratch AS unused",
        "COPY --from=base /bin/sh /sh",
        "FROM base",
        "WORKDIR /app",
        "LABEL x=y",
        "COPY --from=base /etc/passwd /p",
      ].join("\n"),
    );
    assert.deepEqual(
      plan.steps.map((s) => [s.keyword, s.stage, s.vertexIndex]),
      [
        ["ARG", -1, 0],
        ["FROM", 0, 1],
        ["ENV", 0, 0],
        ["RUN", 0, 2],
        ["FROM", 1, 0],
        ["COPY", 1, 1],
        ["FROM", 2, 0],
        ["WORKDIR", 2, 1],
        ["LABEL", 2, 0],
        ["COPY", 2, 2],
      ],
    );
    assert.deepEqual(
      plan.stages.map((s) => [s.key, s.needed]),
      [
        ["base", true],
        ["unused", false],
        ["stage-2", true],
      ],
    );
    assert.deepEqual(
      planDockerfile("FROM busybox:local AS one\nFROM busybox:local AS two\n", "one").stages.map(
        (s) => s.needed,
      ),
      [true, false],
    );
  });
});

describe("ClassicOutput", () => {
  const dockerfile = [
    "FROM busybox:local",
    "ENV A=1",
    "RUN echo hi",
    "LABEL l=1",
    "COPY a.txt /a.txt",
    'CMD ["sh"]',
  ].join("\n");

  it("prints Step i/n for every instruction in order, n counting all six", () => {
    const out = collect();
    const c = new ClassicOutput(out.emit, { dockerfile, imageIdFor: () => digest("b") });
    // BuildKit finishes COPY before RUN: the output still follows the Dockerfile.
    c.update(
      status([
        { digest: digest("1"), name: "[1/3] FROM docker.io/library/busybox:local", phase: "done" },
        { digest: digest("3"), name: "[3/3] COPY a.txt /a.txt", phase: "done" },
        { digest: digest("2"), name: "[2/3] RUN echo hi", phase: "start" },
      ]),
    );
    assert.doesNotMatch(out.text(), /COPY/);
    c.update(
      status(
        [{ digest: digest("2"), name: "[2/3] RUN echo hi", phase: "done" }],
        [{ vertex: digest("2"), text: "hi\n" }],
      ),
    );
    c.finish({ imageId: digest("f") });
    const lines = out.text().split("\n");
    assert.deepEqual(
      lines.filter((l) => l.startsWith("Step")),
      [
        "Step 1/6 : FROM busybox:local",
        "Step 2/6 : ENV A=1",
        "Step 3/6 : RUN echo hi",
        "Step 4/6 : LABEL l=1",
        "Step 5/6 : COPY a.txt /a.txt",
        'Step 6/6 : CMD ["sh"]',
      ],
    );
    assert.match(out.text(), /Step 1\/6 : FROM busybox:local\n ---> bbbbbbbbbbbb\n/);
    assert.match(
      out.text(),
      /Step 3\/6 : RUN echo hi\n ---> Running in [0-9a-f]{12}\nhi\n ---> Removed intermediate container [0-9a-f]{12}\n ---> 222222222222\n/,
    );
    // The last step ends with the image's ID, as "Successfully built" will.
    assert.match(out.text(), /Step 6\/6 : CMD \["sh"\]\n ---> ffffffffffff\n$/);
    assert.doesNotMatch(out.text(), /Using cache/);
  });

  it("marks cached steps with ---> Using cache, the instructions without a vertex too", () => {
    const out = collect();
    const c = new ClassicOutput(out.emit, { dockerfile });
    c.update(
      status([
        // BuildKit resolves the base afresh on every build: its FROM is never "cached".
        { digest: digest("1"), name: "[1/3] FROM docker.io/library/busybox:local", phase: "done" },
        { digest: digest("2"), name: "[2/3] RUN echo hi", phase: "cached" },
        { digest: digest("3"), name: "[3/3] COPY a.txt /a.txt", phase: "cached" },
      ]),
    );
    c.finish({ imageId: digest("f") });
    const text = out.text();
    for (const n of [2, 3, 4, 5, 6])
      assert.match(text, new RegExp(`Step ${n}/6 : [^\\n]+\\n ---> Using cache\\n ---> [0-9a-f]{12}\\n`));
    assert.doesNotMatch(text, /Running in/);
  });

  it("shows build labels as one last LABEL step, keys sorted, as the classic builder does", () => {
    const out = collect();
    const c = new ClassicOutput(out.emit, {
      dockerfile: "FROM busybox:local\nRUN true\n",
      labels: { z: "1", a: "x y" },
    });
    c.update(
      status([
        { digest: digest("1"), name: "[1/2] FROM docker.io/library/busybox:local", phase: "done" },
        { digest: digest("2"), name: "[2/2] RUN true", phase: "cached" },
      ]),
    );
    c.finish({ imageId: digest("f") });
    assert.match(out.text(), /Step 3\/3 : LABEL "a"='x y' "z"='1'\n ---> Using cache\n ---> ffffffffffff\n$/);
  });

  it("does not wait for a vertex BuildKit never makes (WORKDIR /)", () => {
    const out = collect();
    const c = new ClassicOutput(out.emit, {
      dockerfile: "FROM busybox:local\nWORKDIR /\nRUN true\nRUN sleep 1\n",
    });
    c.update(
      status([
        { digest: digest("1"), name: "[1/4] FROM docker.io/library/busybox:local", phase: "done" },
        { digest: digest("2"), name: "[2/4] RUN true", phase: "done" },
        { digest: digest("3"), name: "[3/4] RUN sleep 1", phase: "start" },
      ]),
    );
    // Still building, yet everything up to the running step is out.
    assert.match(out.text(), /Step 2\/4 : WORKDIR \/\n ---> [0-9a-f]{12}\nStep 3\/4 : RUN true\n/);
    assert.match(out.text(), /Step 4\/4 : RUN sleep 1\n ---> Running in/);
  });

  it("stops at a failed step: its output shows, nothing after it", () => {
    const out = collect();
    const c = new ClassicOutput(out.emit, { dockerfile });
    c.update(
      status(
        [
          { digest: digest("1"), name: "[1/3] FROM docker.io/library/busybox:local", phase: "done" },
          { digest: digest("2"), name: "[2/3] RUN echo hi", phase: "error" },
        ],
        [{ vertex: digest("2"), text: "about to fail\n" }],
      ),
    );
    c.finish({ failed: true });
    assert.match(out.text(), /Step 3\/6 : RUN echo hi\n ---> Running in [0-9a-f]{12}\nabout to fail\n$/);
  });

  it("pads like BuildKit ([ 2/10]) and names stages; an unneeded stage says it was skipped", () => {
    const lines = ["FROM busybox:local AS unused", "RUN echo never", "FROM busybox:local AS app"];
    for (let i = 0; i < 9; i++) lines.push(`RUN echo ${i}`);
    const out = collect();
    const c = new ClassicOutput(out.emit, { dockerfile: lines.join("\n") });
    c.update(
      status([
        { digest: digest("a"), name: "[app  1/10] FROM docker.io/library/busybox:local", phase: "done" },
        ...Array.from({ length: 9 }, (_, i) => ({
          digest: `sha256:${String(i).repeat(64)}`,
          name: `[app ${String(i + 2).padStart(2)}/10] RUN echo ${i}`,
          phase: "done" as const,
        })),
      ]),
    );
    c.finish({ imageId: digest("f") });
    const text = out.text();
    assert.match(
      text,
      /Step 1\/12 : FROM busybox:local AS unused\n ---> Skipped: the target does not need this stage\n/,
    );
    assert.match(text, /Step 12\/12 : RUN echo 8\n ---> Running in/);
    assert.equal((text.match(/^Step /gm) ?? []).length, 12);
  });
});
