import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Runtime } from "./runtime.js";
import { collect, RUNC, type RuntimeTestEnv, runtimeTestEnv } from "./runtime-test-env.js";
import type { MountSpec } from "./types.js";

let env: RuntimeTestEnv;
let rt: Runtime;
before(async () => {
  env = await runtimeTestEnv();
  rt = await env.open();
});
after(() => env.cleanup());

// runc is dynamically linked (libseccomp, libc): bind it and the host's libraries in read-only.
const runcMounts: MountSpec[] = [
  { type: "bind", source: RUNC, target: "/usr/local/bin/runc", readonly: true },
  { type: "bind", source: "/usr/lib/x86_64-linux-gnu", target: "/lib/x86_64-linux-gnu", readonly: true },
  { type: "bind", source: "/usr/lib64", target: "/lib64", readonly: true },
  // Overlay upper dirs and nested bundles need a real directory, not the container's overlay rootfs.
  { type: "volume", source: "nested", target: "/work" },
];

const INNER_CONFIG = JSON.stringify({
  ociVersion: "1.0.2",
  process: {
    terminal: false,
    user: { uid: 0, gid: 0 },
    args: ["/bin/busybox", "sh", "-c", "echo nested-ok; /bin/busybox hostname"],
    env: ["PATH=/bin"],
    cwd: "/",
    capabilities: { bounding: ["CAP_KILL"], effective: ["CAP_KILL"], permitted: ["CAP_KILL"] },
  },
  root: { path: "rootfs" },
  hostname: "inner",
  mounts: [{ destination: "/proc", type: "proc", source: "proc" }],
  linux: {
    namespaces: [{ type: "pid" }, { type: "mount" }, { type: "uts" }, { type: "ipc" }, { type: "network" }],
  },
});

const SCRIPT = [
  "set -e",
  "mkdir -p /work/lower /work/upper /work/ovl-work /work/merged /work/b/rootfs/bin",
  "echo from-lower > /work/lower/f",
  "mount -t overlay overlay -o lowerdir=/work/lower,upperdir=/work/upper,workdir=/work/ovl-work /work/merged",
  "cat /work/merged/f",
  "umount /work/merged",
  "runc --version | head -1",
  "cp /bin/busybox /work/b/rootfs/bin/busybox",
  `printf '%s' '${INNER_CONFIG}' > /work/b/config.json`,
  "runc --root /work/runc-state run --bundle /work/b inner",
].join("\n");

test("a privileged container can mount overlay and run nested runc containers", async () => {
  const c = await rt.create({
    name: "nested",
    image: env.image,
    cmd: ["sh", "-c", SCRIPT],
    networkMode: "none",
    restartPolicy: { name: "no" },
    labels: {},
    mounts: runcMounts,
    privileged: true,
  });
  assert.equal(rt.inspect(c.id).HostConfig.Privileged, true);
  await rt.start(c.id);
  const code = await rt.wait(c.id);
  const logs = (await collect(rt.logs(c.id))).map((l) => `${l.stream}:${l.line}`);
  assert.equal(code, 0, logs.join(""));
  const out = logs.filter((l) => l.startsWith("stdout:")).map((l) => l.slice(7));
  assert.deepEqual(out, ["from-lower\n", out[1], "nested-ok\n", "inner\n"]);
  assert.match(out[1] ?? "", /^runc version 1\./);
  await rt.remove(c.id);
});

test("an unprivileged container cannot mount", async () => {
  const c = await rt.create({
    name: "plain",
    image: env.image,
    cmd: ["sh", "-c", "mkdir -p /m && mount -t tmpfs tmpfs /m"],
    networkMode: "none",
    restartPolicy: { name: "no" },
    labels: {},
    mounts: [],
  });
  await rt.start(c.id);
  assert.notEqual(await rt.wait(c.id), 0);
  await rt.remove(c.id);
});
