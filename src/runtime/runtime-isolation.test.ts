import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, test } from "node:test";
import { PRIVILEGE_PROBE, parseProbe, SANDBOX_CAP_EFF } from "../../test/support/privilege-probe.js";
import type { Runtime } from "./runtime.js";
import { collect, RUNC, type RuntimeTestEnv, runtimeTestEnv } from "./runtime-test-env.js";
import type { ContainerSpec, MountSpec } from "./types.js";

let env: RuntimeTestEnv;
let rt: Runtime;
before(async () => {
  env = await runtimeTestEnv();
  rt = await env.open();
});
after(() => env.cleanup());

async function probe(spec: Partial<ContainerSpec>, script = PRIVILEGE_PROBE) {
  const c = await rt.create({
    name: `probe-${Math.random().toString(36).slice(2, 8)}`,
    image: env.image,
    cmd: ["sh", "-c", script],
    networkMode: "none",
    restartPolicy: { name: "no" },
    ...spec,
  });
  await rt.start(c.id);
  const code = await rt.wait(c.id);
  const logs = await collect(rt.logs(c.id));
  const out = logs
    .filter((l) => l.stream === "stdout")
    .map((l) => l.line)
    .join("");
  const err = logs
    .filter((l) => l.stream === "stderr")
    .map((l) => l.line)
    .join("");
  return { id: c.id, code, out, err, values: parseProbe(out) };
}

const LEAST_PRIVILEGE: Partial<ContainerSpec> = {
  userns: { hostId: 100_000, size: 65_536 },
  capAdd: ["SYS_ADMIN", "NET_ADMIN"],
  seccomp: { allow: ["pivot_root"], enosys: ["keyctl", "add_key", "request_key"] },
  sysctls: { "net.ipv4.ip_forward": "1" },
};

test("the probe reports a privileged container's privileges (so it can fail)", async () => {
  const r = await probe({ privileged: true });
  assert.equal(r.code, 0, r.err);
  const bnd = /^CapBnd:\s*([0-9a-f]+)$/m.exec(await readFile("/proc/self/status", "utf8"))?.[1];
  assert.equal(r.values.CapEff, bnd, r.out);
  assert.equal(r.values.Seccomp, "0");
  assert.match(r.values.uid_map ?? "", /^0 0 4294967295$/);
  assert.equal(r.values.core_pattern, "writable");
  assert.equal(r.values.sys, "rw");
  await rt.remove(r.id);
});

test("least privilege: own user namespace, default seccomp, read-only /proc/sys and /sys, cgroup limits", async () => {
  const r = await probe({ ...LEAST_PRIVILEGE, pidsLimit: 300, memory: 256 * 1024 ** 2 });
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(
    { ...r.values },
    {
      CapEff: SANDBOX_CAP_EFF,
      Seccomp: "2",
      uid_map: "0 100000 65536",
      root_owner: "0:0",
      core_pattern: "denied",
      sys: "ro",
      cgroup: "ro",
    },
    r.out,
  );
  const cg = (ctl: string, file: string) => readFile(`/sys/fs/cgroup/${ctl}/arca/${r.id}/${file}`, "utf8");
  // The cgroup is gone with the container; check it while one runs.
  const live = await rt.create({
    name: "limits",
    image: env.image,
    cmd: ["sleep", "30"],
    networkMode: "none",
    restartPolicy: { name: "no" },
    ...LEAST_PRIVILEGE,
    pidsLimit: 300,
    memory: 256 * 1024 ** 2,
  });
  await rt.start(live.id);
  const liveCg = (ctl: string, file: string) =>
    readFile(`/sys/fs/cgroup/${ctl}/arca/${live.id}/${file}`, "utf8");
  assert.equal((await liveCg("pids", "pids.max")).trim(), "300");
  assert.equal((await liveCg("memory", "memory.limit_in_bytes")).trim(), String(256 * 1024 ** 2));
  await assert.rejects(cg("pids", "pids.max"), /ENOENT/);
  await rt.remove(live.id, { force: true });
  await rt.remove(r.id);
});

// runc is dynamically linked (libseccomp, libc): bind it and the host's libraries in read-only.
const runcMounts: MountSpec[] = [
  { type: "bind", source: RUNC, target: "/usr/local/bin/runc", readonly: true },
  { type: "bind", source: "/usr/lib/x86_64-linux-gnu", target: "/lib/x86_64-linux-gnu", readonly: true },
  { type: "bind", source: "/usr/lib64", target: "/lib64", readonly: true },
  { type: "volume", source: "userns-nested", target: "/work" },
];

const INNER_CONFIG = JSON.stringify({
  ociVersion: "1.0.2",
  process: {
    terminal: false,
    user: { uid: 0, gid: 0 },
    args: ["/bin/busybox", "sh", "-c", "echo nested-ok"],
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

test("least privilege still does what BuildKit's OCI worker does: overlay mounts and nested runc", async () => {
  const script = [
    "set -e",
    "mkdir -p /work/lower /work/upper /work/ovl-work /work/merged /work/b/rootfs/bin",
    "echo from-lower > /work/lower/f",
    "mount -t overlay overlay -o lowerdir=/work/lower,upperdir=/work/upper,workdir=/work/ovl-work /work/merged",
    "cat /work/merged/f",
    "umount /work/merged",
    "cp /bin/busybox /work/b/rootfs/bin/busybox",
    `printf '%s' '${INNER_CONFIG}' > /work/b/config.json`,
    "runc --root /work/runc-state run --bundle /work/b inner",
    "echo ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)",
  ].join("\n");
  const r = await probe({ ...LEAST_PRIVILEGE, mounts: runcMounts }, script);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out, "from-lower\nnested-ok\nip_forward=1\n");
  await rt.remove(r.id);
});

test("without CAP_SYS_ADMIN the same container cannot mount", async () => {
  const r = await probe(
    { ...LEAST_PRIVILEGE, capAdd: ["NET_ADMIN"] },
    "mkdir -p /m && mount -t tmpfs tmpfs /m && echo mounted",
  );
  assert.notEqual(r.code, 0);
  assert.equal(r.out, "");
  await rt.remove(r.id);
});
