import assert from "node:assert/strict";
import { test } from "node:test";
import { ImageError } from "../errors.js";
import { displayPushNames, pushNameFor, storeExportText, storeRepository } from "./name-mapping.js";

test("mirror requests use ns; pushes map the path's first component", () => {
  assert.equal(storeRepository("library/busybox", "docker.io"), "docker.io/library/busybox");
  assert.equal(storeRepository("busybox", "docker.io"), "docker.io/library/busybox");
  assert.equal(storeRepository("x/y", "ghcr.io"), "ghcr.io/x/y");
  assert.equal(storeRepository("library/demo"), "docker.io/library/demo");
  assert.equal(storeRepository("foo/bar"), "docker.io/foo/bar");
  assert.equal(storeRepository("ghcr.io/x/y"), "ghcr.io/x/y");
  assert.equal(storeRepository("localhost/a"), "localhost/a");
  for (const bad of ["UPPER/x", "a//b", "a:b", "a@sha256:x", "../x"]) {
    assert.throws(
      () => storeRepository(bad),
      (e: unknown) => e instanceof ImageError && e.code === "invalid_reference",
      bad,
    );
  }
});

test("pushNameFor round-trips through storeRepository", () => {
  assert.equal(pushNameFor("127.0.0.1:5000", "demo:1"), "127.0.0.1:5000/library/demo:1");
  assert.equal(pushNameFor("127.0.0.1:5000", "demo"), "127.0.0.1:5000/library/demo:latest");
  assert.equal(pushNameFor("127.0.0.1:5000", "foo/bar:3"), "127.0.0.1:5000/foo/bar:3");
  assert.equal(pushNameFor("127.0.0.1:5000", "ghcr.io/x/y:2"), "127.0.0.1:5000/ghcr.io/x/y:2");
  assert.equal(storeRepository("ghcr.io/x/y"), "ghcr.io/x/y");
  // Registries with a port travel as `host__port` (no domain can contain "__").
  assert.equal(pushNameFor("127.0.0.1:5000", "localhost:5000/a:1"), "127.0.0.1:5000/localhost__5000/a:1");
  assert.equal(storeRepository("localhost__5000/a"), "localhost:5000/a");
  assert.equal(
    pushNameFor("127.0.0.1:5000", "my.reg.example:8443/team/app:2"),
    "127.0.0.1:5000/my.reg.example__8443/team/app:2",
  );
  assert.equal(storeRepository("my.reg.example__8443/team/app"), "my.reg.example:8443/team/app");
  // A Hub repository that merely looks alike is not taken for one (no path after it).
  assert.equal(storeRepository("abc__1"), "docker.io/library/abc__1");
  assert.throws(() => pushNameFor("127.0.0.1:5000", "[::1]:5000/a:1"), ImageError);
});

test("displayPushNames shows the image's own name for pushes through the endpoint", () => {
  const h = "127.0.0.1:5000";
  const digest = `sha256:${"a".repeat(64)}`;
  assert.equal(
    displayPushNames(h, `pushing manifest for ${h}/library/app:1@${digest}`),
    `pushing manifest for app:1@${digest}`,
  );
  assert.equal(
    displayPushNames(h, `naming ${h}/ghcr.io/x/y:2, ${h}/localhost__5000/z:3`),
    "naming ghcr.io/x/y:2, localhost:5000/z:3",
  );
  assert.equal(
    displayPushNames(h, `pushing manifest for ${h}/arca/dangling@${digest}`),
    `pushing manifest for image@${digest}`,
  );
  assert.equal(
    displayPushNames(h, `pushing manifest for ${h}/arca/dangling/0a1b2c@${digest}`),
    `pushing manifest for image@${digest}`,
  );
  assert.equal(displayPushNames(h, "exporting layers"), "exporting layers");
});

test("storeExportText names a store-bound export as dockerd names a local load", () => {
  const h = "127.0.0.1:5000";
  const digest = `sha256:${"a".repeat(64)}`;
  assert.equal(
    storeExportText(h, `pushing manifest for ${h}/library/app:1@${digest}`),
    "naming to docker.io/library/app:1",
  );
  assert.equal(
    storeExportText(h, `pushing manifest for ${h}/localhost__5000/z:3@${digest}`),
    "naming to localhost:5000/z:3",
  );
  assert.equal(
    storeExportText(h, `pushing manifest for ${h}/arca/dangling/0a1b2c@${digest}`),
    `naming to moby-dangling@${digest}`,
  );
  assert.equal(storeExportText(h, "pushing layers", true), "storing layers");
  // A build that also pushes to a registry: that part is a push.
  assert.equal(storeExportText(h, "pushing layers"), "pushing layers");
  assert.equal(storeExportText(h, `exporting manifest ${digest}`), `exporting manifest ${digest}`);
  assert.equal(storeExportText(h, `resolve ${h}/library/busybox:local`), "resolve busybox:local");
});
