import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, test } from "node:test";
import { RuntimeError } from "./errors.js";
import type { Runtime } from "./runtime.js";
import { collect, type RuntimeTestEnv, runtimeTestEnv } from "./runtime-test-env.js";
import type { ContainerSpec } from "./types.js";

let env: RuntimeTestEnv;
let rt: Runtime;
before(async () => {
  env = await runtimeTestEnv();
  rt = await env.open();
});
after(() => env.cleanup());

const spec = (name: string, cmd: string[], extra: Partial<ContainerSpec> = {}): ContainerSpec => ({
  name,
  image: env.image,
  cmd,
  networkMode: "none",
  restartPolicy: { name: "no" },
  labels: { "com.arca.test": "yes" },
  mounts: [],
  ...extra,
});

test("runs a container: exit code, both log streams with timestamps, inspect", async () => {
  const events: string[] = [];
  rt.onEvent((e) => events.push(`${e.type}:${e.name}`));
  const c = await rt.create(spec("hello", ["sh", "-c", "echo hi; echo err >&2; exit 3"]));
  assert.match(c.id, /^[a-f0-9]{64}$/);
  assert.equal(c.status, "created");
  await rt.start(c.id);
  assert.equal(await rt.wait("hello"), 3);
  const logs = await collect(rt.logs("hello"));
  assert.deepEqual(logs.map((l) => `${l.stream}:${l.line}`).sort(), ["stderr:err\n", "stdout:hi\n"]);
  for (const l of logs) assert.match(l.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
  const stamped = await collect(rt.logs("hello", { timestamps: true, tail: 1 }));
  assert.equal(stamped.length, 1);
  assert.ok(stamped[0]?.line.startsWith(`${stamped[0]?.time} `));
  const info = rt.inspect("hello");
  assert.equal(info.Name, "/hello");
  assert.equal(info.State.Status, "exited");
  assert.equal(info.State.ExitCode, 3);
  assert.equal(info.State.Running, false);
  assert.equal(info.Path, "sh");
  assert.deepEqual(info.Args, ["-c", "echo hi; echo err >&2; exit 3"]);
  assert.deepEqual(info.Config.Labels, { "com.arca.test": "yes" });
  assert.equal(info.HostConfig.NetworkMode, "none");
  assert.match(info.Image, /^sha256:/);
  assert.deepEqual(events, ["create:hello", "start:hello", "die:hello"]);
  assert.equal(
    rt.list().some((x) => x.name === "hello"),
    false,
  );
  assert.equal(
    rt.list({ all: true }).some((x) => x.name === "hello"),
    true,
  );
  await rt.remove("hello");
  assert.throws(
    () => rt.inspect("hello"),
    (e) => e instanceof RuntimeError && e.code === "not_found",
  );
});

test("networkMode none has only lo", async () => {
  const c = await rt.create(spec("netnone", ["cat", "/proc/net/dev"]));
  await rt.start(c.id);
  assert.equal(await rt.wait(c.id), 0);
  const text = (await collect(rt.logs(c.id))).map((l) => l.line).join("");
  const ifaces = text
    .split("\n")
    .slice(2)
    .filter((l) => l.includes(":"))
    .map((l) => l.split(":")[0]?.trim());
  assert.deepEqual(ifaces, ["lo"]);
  await rt.remove(c.id);
});

test("a named volume survives remove and recreate", async () => {
  const mounts = [{ type: "volume" as const, source: "data", target: "/data" }];
  const a = await rt.create(spec("vol1", ["sh", "-c", "echo kept > /data/f"], { mounts }));
  await rt.start(a.id);
  assert.equal(await rt.wait(a.id), 0);
  assert.equal(rt.inspect(a.id).Mounts[0]?.Name, "data");
  await rt.remove(a.id);
  const b = await rt.create(spec("vol1", ["cat", "/data/f"], { mounts }));
  await rt.start(b.id);
  assert.equal(await rt.wait(b.id), 0);
  assert.deepEqual(
    (await collect(rt.logs(b.id))).map((l) => l.line),
    ["kept\n"],
  );
  await rt.remove(b.id);
});

test("exec runs in the container and reports its exit code", async () => {
  const c = await rt.create(spec("execme", ["sleep", "1000"]));
  await rt.start(c.id);
  const p = await rt.exec(c.id, { cmd: ["cat", "/etc/hostname"] });
  p.stdin.end();
  const out = (await collect(p.stdout)).join("");
  assert.equal(out, `${c.id.slice(0, 12)}\n`);
  assert.equal(await p.exitCode, 0);
  const q = await rt.exec(c.id, { cmd: ["sh", "-c", "echo oops >&2; exit 5"], env: ["X=1"] });
  q.stdin.end();
  const [err] = await Promise.all([collect(q.stderr), collect(q.stdout)]);
  assert.equal(err.join(""), "oops\n");
  assert.equal(await q.exitCode, 5);
});

test("name conflicts and removing a running container are refused", async () => {
  await assert.rejects(
    rt.create(spec("execme", ["true"])),
    (e) => e instanceof RuntimeError && e.code === "conflict",
  );
  await assert.rejects(rt.remove("execme"), (e) => e instanceof RuntimeError && e.code === "conflict");
  const { id } = rt.get("execme");
  await rt.remove("execme", { force: true });
  assert.equal(existsSync(`${env.root}/containers/${id}`), false);
  await assert.rejects(
    rt.create({ ...spec("noimg", ["true"]), image: "nope:latest" }),
    (e) => e instanceof RuntimeError && e.code === "image_not_found",
  );
});
