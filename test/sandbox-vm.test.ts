import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { promisify } from "node:util";
import { createControlClient } from "../src/buildkit/index.js";
import { parseDialAddress } from "../src/transport/index.js";
import { seedBusybox, writeBusyboxRootfs } from "./support/busybox-rootfs.js";
import { type DaemonProc, startDaemon } from "./support/daemon.js";
import { dockerCli, dockerConfigWithBuildx } from "./support/docker-cli.js";
import { type Origin, RANDOM_SIZE, startOrigin } from "./support/egress-origin.js";
import { tool } from "./support/tools.js";

const run = promisify(execFile);
const MULTI_STAGE = [
  "FROM busybox:base AS build",
  "RUN echo built-in-a-stage > /artifact",
  "FROM busybox:base",
  "COPY --from=build /artifact /artifact",
  "RUN cat /artifact && echo ok > /done",
  "",
].join("\n");
const EPOCH = "1700000000";

/** path → text of the small files in a `docker save` tar's image (its layers in order, later wins). */
async function savedFiles(archive: string): Promise<Map<string, string>> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "arca-vm-save-"));
  try {
    await run("tar", ["-xf", archive, "-C", dir]);
    const [manifest] = JSON.parse(await readFile(path.join(dir, "manifest.json"), "utf8")) as {
      Layers: string[];
    }[];
    const files = new Map<string, string>();
    for (const layer of manifest?.Layers ?? []) {
      const out = path.join(dir, `layer-${files.size}-${path.basename(layer)}`);
      await mkdir(out);
      await run("tar", ["-xf", path.join(dir, layer), "-C", out]);
      const { stdout } = await run("find", [out, "-type", "f", "-size", "-64k"]);
      for (const f of stdout.split("\n").filter(Boolean))
        files.set(path.relative(out, f), await readFile(f, "utf8"));
    }
    return files;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// The VM sandbox with real parts: QEMU (TCG here), vhost-device-vsock, Debian's cloud kernel, the
// sandbox image as the guest's root; the daemon reaches buildkitd over hybrid vsock only.
describe("VM sandbox: BuildKit in a QEMU VM over virtio-vsock", { timeout: 900_000 }, () => {
  let tmp: string;
  let env: NodeJS.ProcessEnv;
  let origin: Origin;
  const daemons: DaemonProc[] = [];
  let vm: DaemonProc;
  let vmRoot: string;
  const { cli, ok } = dockerCli(() => env);
  let ctxCount = 0;

  const context = async (dockerfile: string): Promise<string> => {
    const dir = path.join(tmp, `ctx-${++ctxCount}`);
    await mkdir(dir, { recursive: true });
    await copyFile(tool("arca-net-probe"), path.join(dir, "arca-net-probe"));
    await copyFile(tool("arca-net-probe-386"), path.join(dir, "arca-net-probe-386"));
    await writeFile(path.join(dir, "Dockerfile"), dockerfile);
    return dir;
  };
  /** A daemon on a fresh data root; busybox:local is seeded (and `base`, a docker save tar, loaded). */
  const start = async (
    name: string,
    flags: string[],
    base?: string,
  ): Promise<{ daemon: DaemonProc; root: string }> => {
    const root = path.join(tmp, name);
    await mkdir(root, { recursive: true });
    await writeFile(
      path.join(root, "egress.json"),
      JSON.stringify({ mode: "audit", hosts: { "files.arca.test": "127.0.0.1" } }),
    );
    await seedBusybox(root, tmp);
    const daemon = startDaemon(root, path.join(root, "arca.sock"), flags);
    daemons.push(daemon);
    await daemon.waitFor(/arca: ready in/, 300_000);
    if (base) await ok(["load", "-i", base], { DOCKER_HOST: `unix://${path.join(root, "arca.sock")}` });
    return { daemon, root };
  };
  const useDaemon = (root: string) => {
    env = { ...env, DOCKER_HOST: `unix://${path.join(root, "arca.sock")}` };
  };
  const vsockAddr = () => `vsock-uds://${path.join(vmRoot, "run/sandbox/vsock.sock")}:8088`;
  const consoleLog = () => readFile(path.join(vmRoot, "buildkit/vm/console.log"), "utf8");
  const qemuPid = async () =>
    Number((await readFile(path.join(vmRoot, "run/sandbox/qemu.pid"), "utf8")).trim());
  const imageId = async (ref: string) =>
    (await ok(["image", "inspect", "--format", "{{.Id}}", ref])).stdout.trim();

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-vm-"));
    origin = await startOrigin(tmp, ["files.arca.test"]);
    env = {
      ...process.env,
      DOCKER_CONFIG: await dockerConfigWithBuildx(path.join(tmp, "docker-config")),
      BUILDX_CONFIG: path.join(tmp, "buildx-config"),
      BUILDX_BUILDER: "",
    };
    ({ daemon: vm, root: vmRoot } = await start("vm", ["--sandbox", "vm"]));
    useDaemon(vmRoot);
    // A base with /dev, /proc and /sys, as real images have: the runc of each sandbox then creates
    // no mount point in a RUN step's layer (the VM's would leave an empty sys/ where the other does not).
    const rootfs = path.join(tmp, "base-rootfs.tar");
    await writeBusyboxRootfs(rootfs);
    const dirs = path.join(tmp, "base-dirs");
    for (const d of ["dev", "proc", "sys"]) await mkdir(path.join(dirs, d), { recursive: true });
    await run("tar", [
      "-rf",
      rootfs,
      "-C",
      dirs,
      "--owner=0",
      "--group=0",
      "--mtime=@0",
      "dev",
      "proc",
      "sys",
    ]);
    await ok(["import", rootfs, "busybox:base"]);
  });

  after(async () => {
    if (process.env.ARCA_TEST_DEBUG) console.log(vm?.output());
    for (const d of daemons) await d.stop();
    await origin?.close();
    await rm(tmp, { recursive: true, force: true });
  });

  test("boots from a fresh data root; ListWorkers answers over vsock; the guest has no interface but lo", async () => {
    // The accelerator is chosen by a real boot under KVM, and the choice is said with its reason.
    const probe = JSON.parse(await readFile(path.join(vmRoot, "buildkit/vm/kvm-probe.json"), "utf8")) as {
      result: { ok: boolean; why: string };
    };
    const accel = probe.result.ok ? "kvm" : "tcg";
    assert.match(
      vm.output(),
      probe.result.ok
        ? /sandbox VM: QEMU with KVM\n/
        : /sandbox VM: QEMU with TCG, software emulation \(.+\)\n/,
    );
    assert.match(
      vm.output(),
      new RegExp(`ready in [\\d.]+s \\(vm sandbox with ${accel}, BuildKit at vsock-uds://`),
    );
    assert.match((await ok(["info"])).stdout, new RegExp(`sandbox kind: vm \\(QEMU, ${accel}\\)`));
    const client = createControlClient(parseDialAddress(vsockAddr()));
    try {
      const workers = await client.control.listWorkers({});
      assert.equal(workers.record.length, 1);
      assert.equal(workers.record[0]?.Labels["org.mobyproject.buildkit.worker.network"], "cni");
    } finally {
      client.close();
    }
    assert.match(await consoleLog(), /^arca-vm: network interfaces: lo $/m);
    // docker inspect/logs arca-buildkit show the VM: QEMU's pid, its serial console.
    const [c] = JSON.parse((await ok(["inspect", "arca-buildkit"])).stdout) as {
      State: { Running: boolean; Pid: number };
      HostConfig: { NetworkMode: string; RestartPolicy: { Name: string } };
      Config: { Labels: Record<string, string> };
    }[];
    assert.equal(c?.State.Running, true);
    assert.equal(c?.State.Pid, await qemuPid());
    assert.equal(c?.HostConfig.NetworkMode, "none");
    assert.equal(c?.HostConfig.RestartPolicy.Name, "always");
    assert.equal(c?.Config.Labels["com.arca.sandbox"], "vm");
    assert.match((await ok(["logs", "arca-buildkit"])).stdout, /^arca-vm: network interfaces: lo $/m);
    // docker exec runs in the guest through its exec service on vsock: output, exit code, stdin.
    const exec = await cli(["exec", "arca-buildkit", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert.deepEqual([exec.code, exec.stdout, exec.stderr], [3, "out\n", "err\n"]);
    const piped = await run("sh", ["-c", "echo through-stdin | docker exec -i arca-buildkit cat"], { env });
    assert.equal(piped.stdout, "through-stdin\n");
    const cmdline = (await readFile(`/proc/${await qemuPid()}/cmdline`, "utf8")).split("\0");
    assert.ok(cmdline.includes("-nodefaults"), "QEMU gets no default devices (no NIC)");
    assert.ok(!cmdline.some((a) => /^-(nic|netdev|net)$/.test(a)), cmdline.join(" "));
  });

  test("classic and buildx builds of a multi-stage Dockerfile land in the store with the runc sandbox's image ID", async () => {
    const ctx = await context(MULTI_STAGE);
    const classic = await ok(["build", "-t", "vm-classic:1", ctx], { DOCKER_BUILDKIT: "0" });
    assert.match(classic.stdout, /built-in-a-stage/);
    // SOURCE_DATE_EPOCH and rewrite-timestamp: the same bytes whichever sandbox builds them.
    const reproducible = (name: string) => [
      "buildx",
      "build",
      "--build-arg",
      `SOURCE_DATE_EPOCH=${EPOCH}`,
      "--output",
      `type=image,name=${name},rewrite-timestamp=true`,
      ctx,
    ];
    await ok(reproducible("vm-buildx:1"));
    const fromVm = await imageId("vm-buildx:1");
    const saved = path.join(tmp, "vm-buildx.tar");
    await ok(["save", "-o", saved, "vm-buildx:1"]);
    const files = await savedFiles(saved);
    assert.equal(files.get("artifact"), "built-in-a-stage\n");
    assert.equal(files.get("done"), "ok\n");
    const base = path.join(tmp, "busybox-base.tar");
    await ok(["save", "-o", base, "busybox:base"]);
    const { root: runcRoot, daemon: runc } = await start("runc", [], base);
    useDaemon(runcRoot);
    try {
      await ok(reproducible("runc-buildx:1"));
      assert.equal(
        await imageId("runc-buildx:1"),
        fromVm,
        "same Dockerfile and epoch, same image in both sandboxes",
      );
    } finally {
      useDaemon(vmRoot);
      await runc.stop();
    }
  });

  test("the proxy's vsock listener and dialer (its Go test) work over the real device in the guest", async () => {
    const bin = path.join(tmp, "endpoint.test");
    await run("go", ["test", "-c", "-o", bin, "./internal/endpoint"], {
      cwd: path.resolve(import.meta.dirname, "../sandbox-image/proxy"),
      env: { ...process.env, CGO_ENABLED: "0" },
    });
    await run(
      "sh",
      [
        "-c",
        `docker exec -i arca-buildkit sh -c 'cat > /tmp/endpoint.test && chmod +x /tmp/endpoint.test' < ${bin}`,
      ],
      { env },
    );
    // The host's side: an echo server where the guest's dial to CID 2 arrives...
    const hostPort = path.join(vmRoot, "run/sandbox/vsock.sock_9101");
    const server = net.createServer((c) => c.once("data", (d) => c.end(`host:${d}`)));
    await new Promise<void>((r) => server.listen(hostPort, r));
    try {
      const guest = cli([
        "exec",
        ...["-e", "ARCA_VSOCK_LISTEN_PORT=9100", "-e", "ARCA_VSOCK_DIAL_PORT=9101"],
        ...["arca-buildkit", "/tmp/endpoint.test", "-test.run", "TestVsockDevice", "-test.v"],
      ]);
      // ...and a connection to the guest's listener through the hybrid-vsock socket, once it listens.
      let reply = "";
      for (let i = 0; i < 120 && !reply; i++) {
        const sock = await parseDialAddress(`vsock-uds://${path.join(vmRoot, "run/sandbox/vsock.sock")}:9100`)
          .dial()
          .catch(() => undefined);
        if (!sock) {
          await delay(250);
          continue;
        }
        sock.write("hello guest\n");
        reply = await new Promise<string>((resolve) => {
          sock.once("data", (d: Buffer) => resolve(d.toString()));
          sock.once("close", () => resolve(""));
        });
        sock.destroy();
      }
      assert.equal(reply, "guest:hello guest\n");
      const r = await guest;
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /--- PASS: TestVsockDevice/);
    } finally {
      server.close();
    }
  });

  test("--sandbox auto takes the VM only where KVM boots a guest, and says why not", async () => {
    const probe = JSON.parse(await readFile(path.join(vmRoot, "buildkit/vm/kvm-probe.json"), "utf8")) as {
      result: { ok: boolean; why: string };
    };
    const root = path.join(tmp, "auto");
    await mkdir(root, { recursive: true });
    const daemon = startDaemon(root, path.join(root, "arca.sock"), ["--sandbox", "auto"]);
    daemons.push(daemon);
    try {
      const [line] = await daemon.waitFor(/--sandbox auto: .*\n/, 120_000);
      if (probe.result.ok) assert.equal(line, "--sandbox auto: vm (KVM works here)\n");
      else assert.equal(line, `--sandbox auto: runc (${probe.result.why})\n`);
    } finally {
      await daemon.stop();
    }
  });

  test("a RUN step reaches the egress listener and nothing else (no vsock either); the egress proxy carries its download over vsock", async () => {
    // The guest-wide filter is on the init and on buildkitd, whatever thread installed it: the
    // 32-bit probe below is a race-free check only together with this.
    const seccomp = await ok([
      "exec",
      "arca-buildkit",
      "sh",
      "-c",
      'grep -h "^Seccomp:" /proc/1/status /proc/$(pidof buildkitd)/status',
    ]);
    assert.deepEqual(
      seccomp.stdout
        .trim()
        .split("\n")
        .map((l) => l.replace(/\s+/g, " ")),
      ["Seccomp: 2", "Seccomp: 2"],
    );
    const ctx = await context(
      [
        "FROM busybox:local",
        "COPY arca-net-probe /probe",
        // The probe works: the egress listener answers.
        "RUN /probe connect 10.89.0.1:3128",
        [
          "RUN for t in 10.89.0.1:8088 10.89.0.1:5991 10.89.0.1:22 127.0.0.1:8088 127.0.0.1:5991;",
          'do if /probe connect $t; then echo "REACHED $t"; exit 1; fi; done; echo fenced',
        ].join(" "),
        // vsock is not namespaced: a step could dial the host's channel ports but for the seccomp profile,
        // and a 32-bit program (socketcall, whose family no filter reads) but for the guest-wide filter.
        "COPY arca-net-probe-386 /probe386",
        'RUN for p in 5991 3128; do if /probe vsock 2 $p; then echo "REACHED vsock $p"; exit 1; fi; done; echo vsock-fenced',
        'RUN for p in 5991 3128; do if /probe386 vsock 2 $p; then echo "REACHED vsock $p"; exit 1; fi; done; echo vsock386-fenced',
        `RUN /probe get http://files.arca.test:${origin.httpPort}/random`,
        "",
      ].join("\n"),
    );
    const r = await ok(["build", "--no-cache", ctx], { DOCKER_BUILDKIT: "0" });
    assert.match(r.stdout, /[\nm]fenced\n/);
    assert.match(r.stdout, /vsock-fenced/);
    assert.match(r.stdout, /vsock386-fenced/);
    // Both probes, 64- and 32-bit, twice each: refused before any connect.
    assert.equal(r.stdout.match(/socket\(AF_VSOCK\): operation not permitted/g)?.length, 4, r.stdout);
    assert.doesNotMatch(r.stdout, /REACHED (\d|vsock \d)/);
    assert.ok(r.stdout.includes(`size=${RANDOM_SIZE} sha256=${origin.randomSha256}`), r.stdout);
    const audit = await readFile(path.join(vmRoot, "egress.log"), "utf8");
    assert.match(audit, /"host":"files\.arca\.test"/);
  });

  test("kill -9 of QEMU mid-build: a clear error, the VM comes back with its cache disk, the next build is cached", async () => {
    const ctx = await context(`FROM busybox:local\nRUN echo started; sleep 60\n`);
    const pid = await qemuPid();
    const building = cli(["build", "--no-cache", ctx], { DOCKER_BUILDKIT: "0" });
    // The step is running well before this (a build of one cached FROM and one RUN).
    await delay(8000);
    process.kill(pid, "SIGKILL");
    const failed = await building;
    assert.notEqual(failed.code, 0);
    assert.match(
      `${failed.stdout}${failed.stderr}`,
      /lost connection to BuildKit during the build \(it may have crashed/,
    );
    await vm.waitFor(/sandbox VM exited \(SIGKILL\)/, 10_000);
    // Back: a new QEMU, BuildKit answering over vsock.
    let back = false;
    for (let i = 0; i < 240 && !back; i++) {
      const client = createControlClient(parseDialAddress(vsockAddr()));
      back = await client.control.listWorkers({}, { timeoutMs: 2000 }).then(
        (w) => w.record.length === 1,
        () => false,
      );
      client.close();
      if (!back) await delay(500);
    }
    assert.ok(
      back,
      `BuildKit answers again after the VM restarted; the daemon said:\n${vm.output().slice(-6000)}`,
    );
    assert.notEqual(await qemuPid(), pid);
    const restarted = JSON.parse((await ok(["inspect", "arca-buildkit"])).stdout) as {
      State: { Pid: number };
      RestartCount: number;
    }[];
    assert.equal(restarted[0]?.State.Pid, await qemuPid());
    assert.equal(restarted[0]?.RestartCount, 1);
    // The cache disk survived: the multi-stage build of the earlier test is fully cached.
    const again = await ok(["buildx", "build", "--progress=plain", await context(MULTI_STAGE)]);
    assert.match(again.stderr, /RUN cat \/artifact[^\n]*\n#\d+ CACHED/);
  });
});
