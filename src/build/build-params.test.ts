import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseBuildParams } from "./build-params.js";
import { BuildError } from "./errors.js";
import { parsePlatform } from "./platform-param.js";

const parse = (qs: string, apiVersion = "1.51", registryConfig?: string) =>
  parseBuildParams({ query: new URLSearchParams(qs), apiVersion, registryConfig });

function rejects(qs: string, code: string, re: RegExp): void {
  assert.throws(
    () => parse(qs),
    (err: unknown) => err instanceof BuildError && err.code === code && re.test(err.message),
  );
}

describe("POST /build parameters", () => {
  test("defaults and normalisation", () => {
    const p = parse(
      "t=x&t=x:latest&t=ghcr.io/a/b:1&buildargs=%7B%22A%22%3A%22b%22%2C%22N%22%3Anull%7D&nocache=1&pull=false&extrahosts=db:10.0.0.2",
    );
    assert.deepEqual(p.tags, ["docker.io/library/x:latest", "ghcr.io/a/b:1"]);
    assert.deepEqual(p.buildArgs, { A: "b" });
    assert.equal(p.dockerfile, "Dockerfile");
    assert.equal(p.version, "1");
    assert.equal(p.noCache, true);
    assert.equal(p.pull, false);
    assert.equal(p.network, "sandbox");
    assert.deepEqual(p.extraHosts, ["db=10.0.0.2"]);
    // What the docker CLI sends when no limit is set passes.
    const cli = parse(
      "memory=0&memswap=-1&cpushares=0&cpuperiod=0&cpuquota=0&cpusetcpus=&cgroupparent=&shmsize=0",
    );
    assert.equal(cli.shmSize, 0);
    assert.equal(parse("shmsize=67108864").shmSize, 67108864);
  });

  test("dockerd's errors and their classes", () => {
    rejects(
      "buildargs=%5B%5D",
      "invalid_parameter",
      /^error reading build args: json: cannot unmarshal array/,
    );
    rejects("labels=%7B", "invalid_parameter", /^error reading labels: /);
    rejects("version=3", "invalid_parameter", /^invalid version "3"$/);
    rejects("squash=1", "invalid_parameter", /experimental/);
    rejects("remote=client-session", "invalid_parameter", /client-session/);
    rejects(
      "shmsize=big",
      "invalid_parameter",
      /^invalid shmsize "big": strconv.ParseInt: .*invalid syntax$/,
    );
    rejects("shmsize=99999999999999999999", "invalid_parameter", /value out of range$/);
    rejects("shmsize=-1", "invalid_parameter", /^SHM size can not be less than 0$/);
    rejects("memory=abc", "invalid_parameter", /^invalid memory "abc": .*invalid syntax$/);
    rejects(
      "memory=1073741824",
      "unsupported",
      /^resource limits .* not supported by Arca: memory=1073741824/,
    );
    rejects("cpushares=512&cpusetcpus=0-1", "unsupported", /cpushares=512, cpusetcpus=0-1/);
    rejects("t=Bad%20Name", "invalid_parameter", /^invalid tag "Bad Name": /);
    rejects("networkmode=bridge", "rejected", /not supported by buildkit/);
    rejects(`t=a@sha256:${"b".repeat(64)}`, "invalid_parameter", /digest/);
    rejects("outputs=%5B%7B%7D%2C%7B%7D%5D", "rejected", /multiple outputs/);
    rejects("securityopt=x", "invalid_parameter", /security options/);
  });

  test("platform only from API 1.32; parsed like containerd", () => {
    assert.equal(parse("platform=linux/arm64", "1.31").platform, undefined);
    assert.equal(parsePlatform("Linux/x86_64"), "linux/amd64");
    assert.equal(parsePlatform("linux/arm"), "linux/arm/v7");
    assert.throws(() => parsePlatform("nope"), /unknown operating system or architecture/);
  });

  test("X-Registry-Config (base64 URL alphabet) becomes credentials", () => {
    const header = Buffer.from(
      JSON.stringify({
        "ghcr.io": { username: "u", password: "p" },
        "q.io": { auth: Buffer.from("a:b").toString("base64") },
      }),
    ).toString("base64url");
    assert.deepEqual(parse("", "1.51", header).credentials, {
      "ghcr.io": { username: "u", secret: "p" },
      "q.io": { username: "a", secret: "b" },
    });
    assert.deepEqual(parse("", "1.51", "%%%").credentials, {});
  });
});
