import assert from "node:assert/strict";
import { test } from "node:test";
import { originForm } from "./forward.js";
import { endToEndHeaders } from "./headers.js";
import { parseConnectTarget } from "./tunnel.js";

test("CONNECT targets: host:port and [v6]:port only", () => {
  assert.deepEqual(parseConnectTarget("registry.test:443"), { host: "registry.test", port: 443 });
  assert.deepEqual(parseConnectTarget("[fd00::1]:8443"), { host: "fd00::1", port: 8443 });
  for (const bad of [
    "registry.test",
    "registry.test:0",
    "registry.test:70000",
    "fd00::1:443",
    ":443",
    "a:b",
  ]) {
    assert.equal(parseConnectTarget(bad), undefined, bad);
  }
});

test("absolute-form targets keep their path and query as sent", () => {
  assert.equal(originForm("http://h.test/a/../b?x=%2F"), "/a/../b?x=%2F");
  assert.equal(originForm("http://h.test:8080"), "/");
  assert.equal(originForm("http://h.test?q=/x"), "/?q=/x");
  assert.equal(originForm("http://[fd00::1]:80/p"), "/p");
});

test("hop-by-hop headers and those Connection names are dropped", () => {
  const raw = [
    "Host",
    "h.test",
    "Connection",
    "keep-alive, X-Private",
    "X-Private",
    "secret",
    "Proxy-Authorization",
    "Basic eDp5",
    "Proxy-Connection",
    "keep-alive",
    "Transfer-Encoding",
    "chunked",
    "TE",
    "trailers",
    "Upgrade",
    "websocket",
    "Keep-Alive",
    "timeout=5",
    "Set-Cookie",
    "a=1",
    "Set-Cookie",
    "b=2",
  ];
  assert.deepEqual(endToEndHeaders(raw), [
    ["Host", "h.test"],
    ["Set-Cookie", "a=1"],
    ["Set-Cookie", "b=2"],
  ]);
});
