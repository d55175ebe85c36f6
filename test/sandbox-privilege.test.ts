import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createReadStream } from "node:fs";
import { access, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { build } from "../src/buildkit/index.js";
import { ImageStore, importRootfs } from "../src/images/index.js";
import { createRuntime } from "../src/runtime/index.js";
import {
  assembleSandboxImage,
  DEFAULT_SANDBOX_PIDS_LIMIT,
  defaultSandboxMemory,
  loadSandboxImage,
  pinnedBuildkitVersion,
  toolsBin,
} from "../src/sandbox/index.js";
import { writeBusyboxRootfs } from "./support/busybox-rootfs.js";
import { type DaemonProc, startDaemon } from "./support/daemon.js";
import { PRIVILEGE_PROBE, parseProbe, SANDBOX_CAP_EFF } from "./support/privilege-probe.js";

const run = promisify(execFile);

/** Docker's default 14 capabilities: what BuildKit gives a RUN step (no SYS_ADMIN, no NET_ADMIN). */
const STEP_CAP_EFF = "00000000a80425fb";
/** The pids limit the test daemon runs with: small enough for a bounded fork test. */
const PIDS_LIMIT = 512;
/** Its memory limit: buildkitd needs ~100 MiB; a step asking for 700 MiB cannot have it. */
const MEMORY_MIB = 512;

describe("the BuildKit sandbox runs with least privilege", () => {
  let tmp: string;
  let dataRoot: string;
  let socket: string;
  let daemon: DaemonProc | undefined;
  let store: ImageStore;
  let addr: string;

  const docker = (...args: string[]) =>
    run("docker", ["-H", `unix://${socket}`, ...args], { env: { ...process.env, DOCKER_HOST: "" } });
  const sandboxId = async () => (await docker("inspect", "-f", "{{.Id}}", "arca-buildkit")).stdout.trim();
  const cgroup = async (ctl: string, file: string) =>
    (await readFile(`/sys/fs/cgroup/${ctl}/arca/${await sandboxId()}/${file}`, "utf8")).trim();

  /** Builds `dockerfile` with `RUN`s whose files land in the returned directory (a local export). */
  async function buildLocal(
    name: string,
    dockerfile: string,
    files: Record<string, string> = {},
  ): Promise<string> {
    const ctx = path.join(tmp, name);
    await mkdir(ctx, { recursive: true });
    await writeFile(path.join(ctx, "Dockerfile"), dockerfile);
    for (const [f, text] of Object.entries(files)) await writeFile(path.join(ctx, f), text);
    const out = path.join(tmp, `${name}-out`);
    await build({ addr, context: ctx, outputs: [`type=local,dest=${out}`], noCache: true });
    return out;
  }

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-privilege-"));
    dataRoot = path.join(tmp, "data");
    socket = path.join(dataRoot, "arca.sock");
    addr = `unix://${path.join(dataRoot, "run/sandbox/buildkitd.sock")}`;
    store = await ImageStore.open(path.join(dataRoot, "images"));
    const rootfs = path.join(tmp, "busybox.tar");
    await writeBusyboxRootfs(rootfs);
    await importRootfs(store, createReadStream(rootfs), { name: "busybox:local" });
  });

  after(async () => {
    await daemon?.stop();
    store?.close();
    await rm(tmp, { recursive: true, force: true });
  });

  test("a sandbox left by an older, privileged Arca is recreated, and its cache cleared", async () => {
    // What an Arca before this change left: arca-buildkit created privileged, a cache written as host root.
    const image = `arca-buildkit:${await pinnedBuildkitVersion()}`;
    const assembled = await assembleSandboxImage({ dataRoot, toolsBin: toolsBin() });
    await loadSandboxImage(store, assembled.layoutDir, { name: image });
    const rt = await createRuntime({ dataRoot, images: store });
    const old = await rt.create({
      name: "arca-buildkit",
      image,
      labels: { "com.arca.internal": "true", "com.arca.role": "buildkit" },
      networkMode: "none",
      restartPolicy: { name: "always" },
      mounts: [
        { type: "volume", source: "buildkit-cache", target: "/var/lib/buildkit" },
        { type: "bind", source: path.join(dataRoot, "run/sandbox"), target: "/run/arca" },
      ],
      privileged: true,
    });
    await rt.close();
    const cache = path.join(dataRoot, "volumes/buildkit-cache/_data");
    await mkdir(cache, { recursive: true });
    await writeFile(path.join(cache, "written-by-privileged"), "x");

    daemon = startDaemon(dataRoot, socket, [
      "--sandbox-pids-limit",
      String(PIDS_LIMIT),
      "--sandbox-memory",
      `${MEMORY_MIB}m`,
    ]);
    await daemon.waitFor(/ready in [\d.]+s/);
    assert.match(daemon.output(), /sandbox settings changed: recreating arca-buildkit/);
    assert.match(daemon.output(), /clearing volume buildkit-cache/);
    await assert.rejects(access(path.join(cache, "written-by-privileged")), /ENOENT/);
    const id = await sandboxId();
    assert.notEqual(id, old.id);
    const inspect = JSON.parse((await docker("inspect", "arca-buildkit")).stdout)[0];
    assert.equal(inspect.HostConfig.Privileged, false);
    assert.equal(inspect.HostConfig.PidsLimit, PIDS_LIMIT);
    assert.equal(inspect.HostConfig.Memory, MEMORY_MIB * 1024 ** 2);
    assert.deepEqual(inspect.HostConfig.Sysctls, { "net.ipv4.ip_forward": "1" });
    assert.deepEqual(inspect.HostConfig.SecurityOpt, [
      "seccomp=default;allow=pivot_root;enosys=keyctl,add_key,request_key",
    ]);
    assert.deepEqual(inspect.HostConfig.CapAdd, ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]);
    assert.equal(inspect.State.Running, true);
  });

  test("docker exec arca-buildkit: own user namespace, 16 capabilities, seccomp, read-only /proc/sys and /sys", async () => {
    const { stdout } = await docker("exec", "arca-buildkit", "sh", "-c", PRIVILEGE_PROBE);
    assert.deepEqual(
      { ...parseProbe(stdout) },
      {
        CapEff: SANDBOX_CAP_EFF,
        Seccomp: "2",
        uid_map: "0 100000 65536",
        root_owner: "0:0",
        core_pattern: "denied",
        sys: "ro",
        cgroup: "ro",
      },
      stdout,
    );
    // Only runc's default devices: no disk, kvm, vsock, loop, fuse or kmsg from the host.
    const devs = (await docker("exec", "arca-buildkit", "ls", "/dev")).stdout.split(/\s+/).filter(Boolean);
    assert.deepEqual(
      devs.filter(
        (d) =>
          ![
            "fd",
            "full",
            "mqueue",
            "null",
            "ptmx",
            "pts",
            "random",
            "shm",
            "stderr",
            "stdin",
            "stdout",
            "tty",
            "urandom",
            "zero",
            "console",
          ].includes(d),
      ),
      [],
      devs.join(" "),
    );
    // No way around it through the API.
    await assert.rejects(docker("exec", "--privileged", "arca-buildkit", "true"), (e: { stderr: string }) =>
      /privileged exec is not supported by Arca/.test(e.stderr),
    );
    // buildkitd itself, not just an exec'd shell.
    const bk = await docker(
      "exec",
      "arca-buildkit",
      "sh",
      "-c",
      "grep -E '^(CapEff|Seccomp):' /proc/$(pidof buildkitd)/status",
    );
    assert.match(bk.stdout, new RegExp(`CapEff:\\s+${SANDBOX_CAP_EFF}\\nSeccomp:\\s+2`));
    // The logs and the host side of the mapping.
    const logs = await docker("logs", "arca-buildkit");
    assert.match(logs.stdout + logs.stderr, /buildkitd|running server/);
    const inspect = JSON.parse((await docker("inspect", "arca-buildkit")).stdout)[0];
    const { stdout: hostIds } = await run("stat", ["-c", "%u:%g", `/proc/${inspect.State.Pid}`]);
    assert.equal(hostIds.trim(), "100000:100000", "the sandbox's root is host uid 100000");
  });

  test("a RUN step: in the sandbox's user namespace, Docker's default capabilities, no host knobs", async () => {
    const out = await buildLocal(
      "step-probe",
      "FROM busybox:local\nCOPY probe.sh /\nRUN sh /probe.sh > /probe.txt; cat /proc/self/mounts > /mounts.txt\n",
      { "probe.sh": `${PRIVILEGE_PROBE}\n` },
    );
    const probe = `${await readFile(path.join(out, "probe.txt"), "utf8")}\n${await readFile(path.join(out, "mounts.txt"), "utf8")}`;
    const v = parseProbe(probe);
    assert.equal(v.CapEff, STEP_CAP_EFF, probe);
    assert.equal(v.Seccomp, "2", probe);
    assert.equal(v.uid_map, "0 100000 65536", probe);
    assert.equal(v.core_pattern, "denied", probe);
    assert.ok(v.sys === "ro" || v.sys === "absent", probe);
  });

  test("a fork bomb in a RUN step stops at the sandbox's pids limit; the daemon and the next build are fine", async (t) => {
    assert.equal(await cgroup("pids", "pids.max"), String(PIDS_LIMIT));
    const restarts = async () =>
      (await docker("inspect", "-f", "{{.RestartCount}}", "arca-buildkit")).stdout.trim();
    const restartsBefore = await restarts();
    const t0 = Date.now();
    // The inner shell forks sleepers until fork fails (busybox sh then exits); the step's own shell,
    // using builtins only, records how far it got and frees the pids again.
    const bomb = [
      "sh -c 'i=0; while [ $i -lt 3000 ]; do sleep 600 & i=$((i+1)); echo $i > /tmp/n; done'",
      "read n < /tmp/n",
      'echo "$n" > /spawned',
      "kill -9 -1",
      "wait",
      "true",
    ].join("; ");
    const out = await buildLocal("fork-bomb", `FROM busybox:local\nRUN ${bomb}\n`);
    const spawned = Number((await readFile(path.join(out, "spawned"), "utf8")).trim());
    t.diagnostic(`fork failed after ${spawned} processes (limit ${PIDS_LIMIT}), ${Date.now() - t0} ms`);
    assert.ok(spawned > 100, `only ${spawned} processes: the loop did not run`);
    assert.ok(spawned < PIDS_LIMIT, `${spawned} processes: the pids limit did not hold`);
    assert.ok(Date.now() - t0 < 60_000, `took ${Date.now() - t0} ms`);
    // The daemon answers and the sandbox builds again (buildkitd survived, or came back).
    assert.equal((await docker("version", "-f", "{{.Server.Os}}")).stdout.trim(), "linux");
    assert.equal(await restarts(), restartsBefore, "the sandbox restarted: buildkitd did not survive");
    const next = await buildLocal("after-bomb", "FROM busybox:local\nRUN echo fine > /ok\n");
    assert.equal(await readFile(path.join(next, "ok"), "utf8"), "fine\n");
  });

  test("a RUN step that takes more memory than the sandbox has is OOM-killed inside it; buildkitd stays", async () => {
    assert.equal(await cgroup("memory", "memory.limit_in_bytes"), String(MEMORY_MIB * 1024 ** 2));
    const restarts = async () =>
      (await docker("inspect", "-f", "{{.RestartCount}}", "arca-buildkit")).stdout.trim();
    const restartsBefore = await restarts();
    // dd's one 700 MiB buffer is filled from /dev/zero: resident, so the cgroup's OOM killer takes dd.
    await assert.rejects(
      buildLocal("oom", "FROM busybox:local\nRUN dd if=/dev/zero of=/dev/null bs=700M count=1\n"),
      (err: Error) => /exit code: 137/.test(err.message),
    );
    assert.equal(await restarts(), restartsBefore, "the sandbox restarted: buildkitd did not survive");
    const next = await buildLocal("after-oom", "FROM busybox:local\nRUN echo fine > /ok\n");
    assert.equal(await readFile(path.join(next, "ok"), "utf8"), "fine\n");
  });

  test("restarted without flags: the default limits apply (the sandbox is recreated, the cache kept)", async () => {
    await buildLocal("cached", "FROM busybox:local\nRUN echo layer > /l\n");
    await daemon?.stop();
    daemon = startDaemon(dataRoot, socket);
    await daemon.waitFor(/ready in [\d.]+s/);
    assert.match(daemon.output(), /sandbox settings changed: recreating arca-buildkit/);
    assert.doesNotMatch(daemon.output(), /clearing volume/);
    assert.equal(await cgroup("pids", "pids.max"), String(DEFAULT_SANDBOX_PIDS_LIMIT));
    const pageAligned = Math.floor(defaultSandboxMemory() / 4096) * 4096;
    assert.equal(await cgroup("memory", "memory.limit_in_bytes"), String(pageAligned));
    // The cache written in the user namespace survived the recreation.
    const ctx = path.join(tmp, "cached");
    const cached = new Set<string>();
    await build({
      addr,
      context: ctx,
      outputs: [`type=local,dest=${path.join(tmp, "cached-again")}`],
      onProgress: (s) => {
        for (const v of s.vertexes) if (v.cached) cached.add(v.name);
      },
    });
    assert.ok(
      [...cached].some((n) => n.includes("RUN echo layer")),
      `not cached: ${[...cached]}`,
    );
  });

  test("daemon SIGKILL and restart: the running sandbox is adopted, not recreated; exec -it works", async () => {
    const before = await sandboxId();
    await daemon?.stop("SIGKILL");
    daemon = startDaemon(dataRoot, socket);
    await daemon.waitFor(/ready in [\d.]+s/);
    assert.match(daemon.output(), /adopted running container arca-buildkit/);
    assert.doesNotMatch(daemon.output(), /recreating/);
    assert.equal(await sandboxId(), before);
    // The docker CLI's `exec -it` (a TTY through arca-console-relay), given a terminal by script(1).
    const cli = await run(
      "script",
      ["-qec", "docker exec -it arca-buildkit sh -c 'tty; grep CapEff /proc/self/status'", "/dev/null"],
      { env: { ...process.env, DOCKER_HOST: `unix://${socket}` }, timeout: 15_000 },
    );
    assert.match(cli.stdout, /\/dev\/pts\/\d+\r\nCapEff:\s+00000000a82435fb/);
  });

  test("restart policy: buildkitd killed from the host, the sandbox comes back as it was", async () => {
    const before = JSON.parse((await docker("inspect", "arca-buildkit")).stdout)[0];
    const { stdout } = await run("pgrep", ["-P", String(before.State.Pid), "-x", "buildkitd"]);
    process.kill(Number(stdout.trim()), "SIGKILL");
    let after = before;
    for (let i = 0; i < 300 && !(after.RestartCount > before.RestartCount && after.State.Running); i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = JSON.parse((await docker("inspect", "arca-buildkit")).stdout)[0];
    }
    assert.equal(after.RestartCount, before.RestartCount + 1);
    assert.equal(after.Id, before.Id);
    const { stdout: probe } = await docker("exec", "arca-buildkit", "sh", "-c", PRIVILEGE_PROBE);
    assert.equal(parseProbe(probe).uid_map, "0 100000 65536", probe);
    assert.equal(parseProbe(probe).CapEff, SANDBOX_CAP_EFF, probe);
    const out = await buildLocal("after-restart", "FROM busybox:local\nRUN echo back > /ok\n");
    assert.equal(await readFile(path.join(out, "ok"), "utf8"), "back\n");
  });
});
