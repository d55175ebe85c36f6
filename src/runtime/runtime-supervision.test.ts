import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import { processStartTime } from "./proc.js";
import type { Runtime } from "./runtime.js";
import { collect, eventually, RUNC, type RuntimeTestEnv, runtimeTestEnv } from "./runtime-test-env.js";
import type { ContainerSpec } from "./types.js";

let env: RuntimeTestEnv;
let rt: Runtime;
before(async () => {
  env = await runtimeTestEnv();
  rt = await env.open();
});
after(() => env.cleanup());

const spec = (name: string, extra: Partial<ContainerSpec> = {}): ContainerSpec => ({
  name,
  image: env.image,
  cmd: ["sleep", "1000"],
  networkMode: "none",
  restartPolicy: { name: "always" },
  labels: {},
  mounts: [],
  ...extra,
});

test("restart policy always: a killed container comes back; stop keeps it stopped", async () => {
  const c = await rt.create(spec("always"));
  await rt.start(c.id);
  const pid1 = rt.inspect(c.id).State.Pid;
  assert.ok(pid1 > 0);
  const t0 = Date.now();
  process.kill(pid1, "SIGKILL");
  const back = await eventually(
    () => {
      const s = rt.inspect(c.id);
      return s.State.Running && s.State.Pid !== pid1 ? s : undefined;
    },
    2000,
    "restart",
  );
  assert.equal(back.RestartCount, 1);
  assert.equal(back.State.ExitCode, 0);
  assert.ok(Date.now() - t0 < 2000);

  // kill() is not a user stop: the policy still applies.
  await rt.kill(c.id, "SIGKILL");
  await eventually(
    () => rt.inspect(c.id).RestartCount === 2 && rt.inspect(c.id).State.Running,
    3000,
    "second restart",
  );

  const stopT0 = Date.now();
  await rt.stop(c.id, { timeoutSec: 1 });
  // sleep as PID 1 ignores SIGTERM, so this took the SIGKILL path.
  assert.ok(Date.now() - stopT0 >= 900);
  const stopped = rt.inspect(c.id);
  assert.equal(stopped.State.Status, "exited");
  assert.equal(stopped.State.ExitCode, 137);
  await new Promise((r) => setTimeout(r, 600));
  assert.equal(rt.inspect(c.id).State.Status, "exited");
  await rt.start(c.id);
  assert.equal(rt.inspect(c.id).State.Running, true);
  await rt.remove(c.id, { force: true });
});

test("on-failure honours maximumRetryCount", async () => {
  const c = await rt.create(
    spec("flaky", {
      cmd: ["sh", "-c", "exit 7"],
      restartPolicy: { name: "on-failure", maximumRetryCount: 2 },
    }),
  );
  const dies: number[] = [];
  const off = rt.onEvent((e) => e.id === c.id && e.type === "die" && dies.push(e.exitCode ?? -1));
  await rt.start(c.id);
  await eventually(() => dies.length === 3 && rt.inspect(c.id).State.Status === "exited", 5000, "retries");
  off();
  const s = rt.inspect(c.id);
  assert.equal(s.RestartCount, 2);
  assert.equal(s.State.ExitCode, 7);
  await rt.remove(c.id);
});

test("a restarted daemon adopts a running container and can stop it", async () => {
  const c = await rt.create(spec("survivor", { restartPolicy: { name: "unless-stopped" } }));
  const doomed = await rt.create(spec("doomed", { restartPolicy: { name: "no" } }));
  await rt.start(c.id);
  await rt.start(doomed.id);
  const pid = rt.inspect(c.id).State.Pid;
  const start = await processStartTime(pid);
  await rt.close({ stopTimeoutSec: 0 });
  assert.equal(await processStartTime(pid), start, "the container outlives the daemon");

  const rt2 = await env.open();
  const adopted = rt2.inspect(c.id);
  assert.equal(adopted.State.Status, "running");
  assert.equal(adopted.State.Pid, pid);
  assert.equal(rt2.inspect(doomed.id).State.Status, "exited", "policy no: stopped when the daemon closed");
  const died = rt2.wait(c.id);
  await rt2.stop(c.id, { timeoutSec: 0 });
  assert.equal(await died, 137);
  assert.equal(await processStartTime(pid), undefined);
  assert.equal(rt2.inspect(c.id).State.Status, "exited");
  rt = rt2;
});

test("a container that died while no daemon ran is restarted by its policy on start-up", async () => {
  const c = await rt.create(spec("phoenix"));
  await rt.start(c.id);
  const pid = rt.inspect(c.id).State.Pid;
  await rt.close();
  process.kill(pid, "SIGKILL");
  await eventually(async () => (await processStartTime(pid)) === undefined, 2000, "death");
  const rt3 = await env.open();
  rt = rt3;
  const s = await eventually(
    () => {
      const i = rt3.inspect(c.id);
      return i.State.Running ? i : undefined;
    },
    2000,
    "restart after recovery",
  );
  assert.notEqual(s.State.Pid, pid);
  assert.equal(s.RestartCount, 1);
  await rt3.remove(c.id, { force: true });
});

test("a daemon killed with SIGKILL leaves its containers running and logging; the next one adopts them", async () => {
  const fixture = new URL("./runtime-crash-fixture.ts", import.meta.url).pathname;
  const daemon = spawn(process.execPath, ["--import", "tsx", fixture, env.root, RUNC], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const [line] = (await once(createInterface({ input: daemon.stdout }), "line")) as [string];
  const id = line.trim();
  daemon.kill("SIGKILL");
  await once(daemon, "exit");
  await new Promise((r) => setTimeout(r, 400));

  const rt2 = await env.open();
  rt = rt2;
  const s = rt2.inspect(id);
  assert.equal(s.State.Status, "running", "no SIGPIPE: the container outlived its daemon");
  const before = (await collect(rt2.logs(id))).length;
  // Output written while no daemon ran was kept, and new output keeps coming.
  assert.ok(before >= 8, `lines so far: ${before}`);
  await eventually(async () => (await collect(rt2.logs(id))).length > before + 4, 2000, "more logs");
  const entries = await collect(rt2.logs(id));
  const outs = entries.filter((e) => e.stream === "stdout").map((e) => Number(e.line.split(" ")[1]));
  assert.deepEqual(
    outs,
    outs.map((_, i) => i + 1),
    "stdout lines are complete and in order",
  );
  await rt2.remove(id, { force: true });
});
