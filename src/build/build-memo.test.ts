import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { StatusResponseSchema } from "../buildkit/index.js";
import { BuildMemo, type MemoImages, ProgressRecorder } from "./build-memo.js";

const status = (...names: string[]) =>
  create(StatusResponseSchema, { vertexes: names.map((name, i) => ({ digest: `sha256:${i}`, name })) });

test("base refs: FROM images and the # syntax= frontend image", () => {
  const rec = new ProgressRecorder();
  rec.add(
    status(
      "resolve image config for docker-image://docker.io/docker/dockerfile:1",
      "docker-image://docker.io/docker/dockerfile:1@sha256:abc",
      "[internal] load metadata for docker.io/library/busybox:local",
      "[2/2] RUN true",
    ),
  );
  assert.deepEqual(rec.baseRefs().sort(), [
    "docker.io/docker/dockerfile:1",
    "docker.io/library/busybox:local",
  ]);
});

test("a memoized build whose syntax image is gone is not answered again", () => {
  const names = new Map([
    ["docker.io/docker/dockerfile:1", "sha256:f1"],
    ["docker.io/library/busybox:local", "sha256:b1"],
  ]);
  const images: MemoImages = { resolve: (r) => names.get(r), hasManifest: () => true };
  const memo = new BuildMemo();
  memo.set("k", {
    imageId: "sha256:i",
    manifestDigest: "sha256:m",
    bases: [...names].map(([ref, digest]) => ({ ref, digest })),
    progress: status(),
  });
  assert.ok(memo.get("k", images));
  names.delete("docker.io/docker/dockerfile:1");
  assert.equal(memo.get("k", images), undefined);
});
