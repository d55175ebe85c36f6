import assert from "node:assert/strict";
import { test } from "node:test";
import { parseChallenges } from "./challenge.js";

test("bearer challenge with quoted, escaped and comma-holding values", () => {
  const c = parseChallenges(
    'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push",error="insufficient_scope"',
  );
  assert.deepEqual(c, [
    {
      scheme: "bearer",
      params: {
        realm: "https://auth.example/token",
        service: "registry.example",
        scope: "repository:a/b:pull,push",
        error: "insufficient_scope",
      },
    },
  ]);
});

test("basic challenge, several challenges, several headers", () => {
  assert.deepEqual(parseChallenges('Basic realm="arca-test"'), [
    { scheme: "basic", params: { realm: "arca-test" } },
  ]);
  assert.deepEqual(parseChallenges(['Basic realm="a"', 'Bearer realm="b\\"x",service=svc']), [
    { scheme: "basic", params: { realm: "a" } },
    { scheme: "bearer", params: { realm: 'b"x', service: "svc" } },
  ]);
  assert.deepEqual(parseChallenges(undefined), []);
});
