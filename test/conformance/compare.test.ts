import assert from "node:assert/strict";
import { test } from "node:test";
import { alignHistory, compareImages, type ImageSnapshot } from "./compare.js";
import { canonicalStep, configView } from "./config-view.js";
import { checkKnown, type KnownDifference, staleWildcards, validateKnown } from "./known-differences.js";

test("configView keeps compared fields and treats null, [] and {} alike", () => {
  const v = configView({
    architecture: "amd64",
    os: "linux",
    config: {
      Env: ["A=1"],
      Cmd: null,
      Labels: {},
      ExposedPorts: { "80/tcp": {}, "53/udp": {} },
      Volumes: { "/b": {}, "/a": {} },
      Hostname: "ignored",
    },
    rootfs: { type: "layers", diff_ids: ["sha256:1", "sha256:2"] },
    history: [{ created: "x", created_by: "ENV A=1", empty_layer: true, comment: "buildkit.dockerfile.v0" }],
  });
  assert.deepEqual(v, {
    architecture: "amd64",
    os: "linux",
    Env: ["A=1"],
    ExposedPorts: ["53/udp", "80/tcp"],
    Volumes: ["/a", "/b"],
    layers: 2,
    history: [{ created_by: "ENV A=1", empty_layer: true, comment: "buildkit.dockerfile.v0" }],
  });
});

test("canonicalStep puts classic and BuildKit history in one form", () => {
  assert.equal(canonicalStep("/bin/sh -c #(nop)  ENV A=1"), "ENV A=1");
  assert.equal(canonicalStep("ENV A=1"), "ENV A=1");
  assert.equal(canonicalStep("/bin/sh -c echo hi"), "RUN /bin/sh -c echo hi");
  assert.equal(canonicalStep("RUN /bin/sh -c echo hi # buildkit"), "RUN /bin/sh -c echo hi");
  assert.equal(canonicalStep("/bin/sh -c #(nop) COPY file:0a1b in /x "), "COPY");
  assert.equal(canonicalStep("COPY a /x # buildkit"), "COPY");
  assert.equal(canonicalStep("|1 X=y /bin/sh -c echo"), "RUN |1 X=y /bin/sh -c echo");
});

const snap = (cfg: Record<string, unknown>, files: [string, number][]): ImageSnapshot => ({
  config: configView(cfg),
  tree: new Map(
    files.map(([p, mode]) => [p, { type: "file" as const, mode, uid: 0, gid: 0, size: 0, sha256: "0" }]),
  ),
});

test("compareImages reports config fields, history and paths that differ", () => {
  const a = snap({ config: { User: "1" }, history: [{ created_by: "RUN /bin/sh -c x # buildkit" }] }, [
    ["x", 0o644],
    ["y", 0o644],
  ]);
  const b = snap({ config: { User: "2" }, history: [{ created_by: "/bin/sh -c x" }] }, [["x", 0o600]]);
  const canon = compareImages(a, b, { canonicalHistory: true });
  assert.deepEqual(
    canon.map((d) => d.where),
    ["config.User", "/x", "/y"],
  );
  const exact = compareImages(a, b, { canonicalHistory: false });
  assert.ok(exact.some((d) => d.where === "history[0]"));
  assert.deepEqual(compareImages(a, a, { canonicalHistory: false }), []);
});

const known: KnownDifference[] = [
  { id: "k1", reason: "r", cases: ["c1"], where: "/proc", buildkit: "/proc dir.*", dockerd: "\\(absent\\)" },
  { id: "k2", reason: "r", cases: "*", where: "config\\.Env" },
];

test("checkKnown explains listed differences, reports the rest and stale entries", () => {
  const proc = { where: "/proc", a: "/proc dir 0755 0:0", b: "(absent)" };
  const env = { where: "config.Env", a: "x", b: "y" };
  const other = { where: "/x", a: "1", b: "2" };
  const r = checkKnown("c1", [proc, env, other], known);
  assert.deepEqual(r.unexpected, [other]);
  assert.deepEqual(r.stale, []);
  assert.deepEqual(r.used.sort(), ["k1", "k2"]);
  // Listed for c1 but gone: stale. Not listed for c2: unexplained there.
  assert.deepEqual(
    checkKnown("c1", [], known).stale.map((k) => k.id),
    ["k1"],
  );
  assert.deepEqual(checkKnown("c2", [proc], known).unexpected, [proc]);
  // The value regexes must match too.
  assert.equal(checkKnown("c1", [{ ...proc, b: "/proc dir" }], known).unexpected.length, 1);
  assert.deepEqual(
    staleWildcards(known, new Set(["k1"])).map((k) => k.id),
    ["k2"],
  );
});

test("validateKnown rejects unknown cases and duplicate ids", () => {
  validateKnown(known, new Set(["c1"]));
  assert.throws(() => validateKnown(known, new Set(["c2"])), /no case c1/);
  assert.throws(
    () => validateKnown([known[1] as KnownDifference, known[1] as KnownDifference], new Set()),
    /twice/,
  );
});

test("alignHistory pairs common entries and shows one-sided ones as one difference each", () => {
  assert.deepEqual(alignHistory(["A", "B", "C"], ["A", "X", "B", "C", "Y"]), [
    ["A", "A"],
    [undefined, "X"],
    ["B", "B"],
    ["C", "C"],
    [undefined, "Y"],
  ]);
  assert.deepEqual(alignHistory(["A", "B1", "C"], ["A", "B2", "C"]), [
    ["A", "A"],
    ["B1", "B2"],
    ["C", "C"],
  ]);
});

test("canonicalStep strips a custom SHELL's #(nop) prefix", () => {
  assert.equal(canonicalStep("/bin/sh -ec #(nop)  SHELL [/bin/sh -ec]"), "SHELL [/bin/sh -ec]");
});
