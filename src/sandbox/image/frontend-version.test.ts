import assert from "node:assert/strict";
import { test } from "node:test";
import { SandboxError } from "../errors.js";
import { frontendTags, parseFrontendVersion } from "./frontend-version.js";

test("the version comes from the dockerfile/X.Y.Z word of -version output", () => {
  const out =
    "/bin/dockerfile-frontend github.com/moby/buildkit/frontend/dockerfile/cmd/dockerfile-frontend dockerfile/1.26.0 v0.32.2\n";
  assert.equal(parseFrontendVersion(out), "1.26.0");
  assert.equal(parseFrontendVersion("x pkg dockerfile/1.27.0-rc1 abc\n"), "1.27.0-rc1");
  assert.equal(parseFrontendVersion("x pkg dockerfile/1.26.1-labs abc"), "1.26.1-labs");
});

test("an unstamped binary is refused with the command that rebuilds it", () => {
  for (const out of [
    "x pkg 0.0.0+unknown \n",
    "",
    "x pkg dockerfile/1.26 rev",
    "x pkg mydockerfile/1.2.3 r",
  ]) {
    assert.throws(
      () => parseFrontendVersion(out),
      (err: unknown) =>
        err instanceof SandboxError && err.code === "tool_missing" && /npm run setup/.test(err.message),
      out,
    );
  }
});

test("tags follow upstream's release: X, X.Y and X.Y.Z; pre-releases only their own", () => {
  assert.deepEqual(frontendTags("1.26.0"), [
    "docker/dockerfile:1",
    "docker/dockerfile:1.26",
    "docker/dockerfile:1.26.0",
  ]);
  assert.deepEqual(frontendTags("0.9.3"), ["docker/dockerfile:0.9", "docker/dockerfile:0.9.3"]);
  assert.deepEqual(frontendTags("1.27.0-rc1"), ["docker/dockerfile:1.27.0-rc1"]);
  assert.deepEqual(frontendTags("1.26.0-dev"), ["docker/dockerfile:1.26.0-dev"]);
});
