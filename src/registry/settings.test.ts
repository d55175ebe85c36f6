import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { decodeRegistryAuth } from "./credentials.js";
import { loginDomain } from "./login.js";
import { endpointsFor, parseMirror } from "./settings.js";

test("endpoints: mirrors first for docker.io, plain HTTP for insecure, certs.d CA, loopback falls back to HTTP", (t) => {
  const certs = mkdtempSync(path.join(os.tmpdir(), "arca-certs-"));
  t.after(() => rmSync(certs, { recursive: true, force: true }));
  mkdirSync(path.join(certs, "reg.example:5000"));
  writeFileSync(path.join(certs, "reg.example:5000", "ca.crt"), "PEM");
  const settings = {
    insecure: ["plain.example:5000"],
    certsDir: certs,
    mirrors: ["http://mirror.example:5001"],
  };
  const hub = endpointsFor("docker.io", settings);
  assert.deepEqual(
    hub.map((e) => [e.base.href, e.mirror]),
    [
      ["http://mirror.example:5001/", true],
      ["https://registry-1.docker.io/", false],
    ],
  );
  assert.deepEqual(
    endpointsFor("plain.example:5000", settings).map((e) => e.base.href),
    ["http://plain.example:5000/"],
  );
  const tls = endpointsFor("reg.example:5000", settings);
  assert.equal(tls[0]?.ca?.toString(), "PEM");
  assert.deepEqual(
    endpointsFor("127.0.0.1:5000", settings).map((e) => [e.base.protocol, !!e.skipVerify]),
    [
      ["https:", true],
      ["http:", false],
    ],
  );
  assert.throws(() => parseMirror("ftp://x"), /http:\/\/ or https:\/\//);
  assert.throws(() => parseMirror("https://x/path"), /path is not allowed/);
});

test("X-Registry-Auth: base64url JSON, auth field split, empty is anonymous, garbage is a 400", () => {
  const enc = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  assert.deepEqual(decodeRegistryAuth(enc({ username: "u", password: "p", serveraddress: "r:5000" })), {
    username: "u",
    password: "p",
    serveraddress: "r:5000",
  });
  assert.deepEqual(decodeRegistryAuth(enc({ auth: Buffer.from("a:b:c").toString("base64") })), {
    username: "a",
    password: "b:c",
  });
  assert.deepEqual(decodeRegistryAuth(enc({ identitytoken: "tok" })), { identitytoken: "tok" });
  assert.deepEqual(decodeRegistryAuth(undefined), {});
  assert.deepEqual(decodeRegistryAuth(enc({})), {});
  assert.throws(() => decodeRegistryAuth("%%%not-base64"), /invalid X-Registry-Auth/);
});

test("login server addresses: Docker Hub's spellings are docker.io", () => {
  assert.equal(loginDomain("https://index.docker.io/v1/"), "docker.io");
  assert.equal(loginDomain(undefined), "docker.io");
  assert.equal(loginDomain("registry.example:5000"), "registry.example:5000");
  assert.equal(loginDomain("https://registry.example:5000/v2/"), "registry.example:5000");
});
