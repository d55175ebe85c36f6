import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { mergeBackendSpecs, parseBackendFlag, readBackendsFile } from "./backend-config.js";

test("--backend flags: sandbox, remote with mTLS, options", () => {
  assert.deepEqual(parseBackendFlag("b2=sandbox,max=3,weight=2"), {
    name: "b2",
    address: "sandbox",
    weight: 2,
    maxBuilds: 3,
  });
  const r = parseBackendFlag(
    "r1=tcp://10.0.0.5:1234,ca=/c/ca.pem,cert=/c/c.pem,key=/c/k.pem,registry=arca:5443",
  );
  assert.deepEqual(r.tls, { ca: "/c/ca.pem", cert: "/c/c.pem", key: "/c/k.pem" });
  assert.equal(r.registry, "arca:5443");
  assert.equal(r.maxBuilds, os.availableParallelism());
  assert.equal(parseBackendFlag("u=unix:///run/bk.sock,registry=h:1").address, "unix:///run/bk.sock");
});

test("--backend refuses what cannot work, saying why", () => {
  const cases: [string, RegExp][] = [
    ["nameonly", /NAME=ADDR/],
    ["Bad Name=sandbox", /must match/],
    ["r=tcp://1.2.3.4:1234,registry=h:1", /mutual TLS/],
    ["r=tcp://1.2.3.4:1234,ca=a,cert=b,registry=h:1", /mutual TLS/],
    ["r=tcp://1.2.3.4:1234,ca=a,cert=b,key=c", /registry=HOST:PORT/],
    ["r=unix:///x,ca=a,registry=h:1", /need a tcp/],
    ["r=sandbox,registry=h:1", /takes no/],
    ["r=sandbox,max=0", /max must be/],
    ["r=sandbox,colour=red", /unknown option "colour"/],
    ["default=unix:///x,registry=h:1", /built-in sandbox/],
    ["r=ftp://x", /./],
  ];
  for (const [flag, msg] of cases) assert.throws(() => parseBackendFlag(flag), msg, flag);
});

test("backends.json and flags merge after the built-in sandbox; a name twice is refused", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "arca-backends-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, "backends.json");
  assert.deepEqual(await readBackendsFile(file), []);
  await writeFile(
    file,
    JSON.stringify({
      backends: [
        { name: "b2", address: "sandbox", max: 2 },
        { name: "default", address: "sandbox", max: 5 },
      ],
    }),
  );
  const fromFile = await readBackendsFile(file);
  const merged = mergeBackendSpecs(fromFile, [parseBackendFlag("b3=sandbox")]);
  assert.deepEqual(
    merged.map((b) => [b.name, b.maxBuilds]),
    [
      ["default", 5],
      ["b2", 2],
      ["b3", os.availableParallelism()],
    ],
  );
  assert.throws(() => mergeBackendSpecs(fromFile, [parseBackendFlag("b2=sandbox")]), /configured twice/);
  await writeFile(file, "{");
  await assert.rejects(readBackendsFile(file), /backends\.json/);
  await writeFile(file, JSON.stringify({ backends: [{ name: "x", address: "sandbox", nested: {} }] }));
  await assert.rejects(readBackendsFile(file), /must be a string or number/);
});
