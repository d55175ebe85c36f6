import assert from "node:assert/strict";
import { test } from "node:test";
import { ImageError } from "./errors.js";
import { familiarName, formatReference, parseNormalizedTagged, parseReference } from "./reference.js";

const full = (s: string) => formatReference(parseNormalizedTagged(s));

test("normalizes Docker Hub short names", () => {
  assert.equal(full("busybox"), "docker.io/library/busybox:latest");
  assert.equal(full("busybox:local"), "docker.io/library/busybox:local");
  assert.equal(full("foo/bar:1"), "docker.io/foo/bar:1");
  assert.equal(full("docker.io/busybox"), "docker.io/library/busybox:latest");
  assert.equal(full("index.docker.io/library/busybox:1"), "docker.io/library/busybox:1");
  assert.equal(full("a/b/c"), "docker.io/a/b/c:latest");
});

test("keeps other registries and ports", () => {
  assert.equal(full("localhost:5000/a"), "localhost:5000/a:latest");
  assert.equal(full("localhost/a:2"), "localhost/a:2");
  assert.equal(full("ghcr.io/x/y:2"), "ghcr.io/x/y:2");
  assert.equal(full("127.0.0.1:5000/library/demo:1"), "127.0.0.1:5000/library/demo:1");
  assert.equal(full("[::1]:5000/a:b"), "[::1]:5000/a:b");
  const d = `sha256:${"a".repeat(64)}`;
  assert.deepEqual(parseReference(`ghcr.io/x/y@${d}`), {
    domain: "ghcr.io",
    path: "x/y",
    tag: undefined,
    digest: d,
  });
  assert.equal(full(`busybox:1@${d}`), `docker.io/library/busybox:1@${d}`);
  assert.equal(full(`busybox@${d}`), `docker.io/library/busybox@${d}`);
});

test("separators follow the grammar", () => {
  assert.equal(full("a_b__c-d---e.f"), "docker.io/library/a_b__c-d---e.f:latest");
  assert.equal(full("localhost:5000"), "docker.io/library/localhost:5000");
});

test("familiar names", () => {
  assert.equal(familiarName("docker.io/library/busybox:local"), "busybox:local");
  assert.equal(familiarName("docker.io/foo/bar:1"), "foo/bar:1");
  assert.equal(familiarName("ghcr.io/x/y:2"), "ghcr.io/x/y:2");
  assert.equal(familiarName("docker.io/library/a/b:1"), "library/a/b:1");
});

test("invalid references are invalid_argument errors", () => {
  for (const bad of [
    "",
    "Busybox",
    "busybox:",
    "busybox:-x",
    `busybox:${"t".repeat(129)}`,
    "a//b",
    "a/",
    "-a",
    "a__-b",
    "a..b",
    "busybox@sha256:abc",
    `busybox@md5:${"a".repeat(64)}`,
    "a".repeat(64).replace(/a/g, "f"),
    "ghcr.io/X/y",
    "has space",
    `x/${"a".repeat(260)}`,
  ]) {
    assert.throws(
      () => parseReference(bad),
      (err: unknown) =>
        err instanceof ImageError && err.code === "invalid_reference" && err.kind === "invalid_argument",
      bad,
    );
  }
});
