/**
 * npm run bench:vm — the VM sandbox against the runc sandbox, in one run (medians of BENCH_RUNS, default 3):
 *  - boot-to-ready: `arca daemon` start → BuildKit answering ListWorkers (the daemon's "ready" line),
 *    on a data root whose sandbox image and disks already exist;
 *  - channel throughput: a RUN step downloading 1 GiB from the host through the egress listener, the
 *    sandbox's channel (unix sockets for runc, virtio-vsock for the VM) and the daemon's proxy;
 *  - a trivial build and a 20,000-file build (`--no-cache`) through each sandbox.
 * Under TCG (no usable KVM, as on these machines) the VM runs every guest instruction in software.
 */
import { execFile } from "node:child_process";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { seedBusybox } from "../test/support/busybox-rootfs.js";
import { type DaemonProc, startDaemon } from "../test/support/daemon.js";
import { dockerConfigWithBuildx } from "../test/support/docker-cli.js";
import { startOrigin } from "../test/support/egress-origin.js";
import { tool } from "../test/support/tools.js";
import { manyFilesContext, median, timed, trivialContext } from "./workloads.js";

const run = promisify(execFile);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const DOWNLOAD = 1 << 30;
type Kind = "runc" | "vm";

async function main(): Promise<void> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), "arca-bench-vm-"));
  const origin = await startOrigin(tmp, ["files.arca.test"]);
  const dockerConfig = await dockerConfigWithBuildx(path.join(tmp, "docker-config"));
  const trivial = await trivialContext(path.join(tmp, "trivial"));
  const many = await manyFilesContext(path.join(tmp, "many"));
  const dl = path.join(tmp, "download");
  await mkdir(dl, { recursive: true });
  await copyFile(tool("arca-net-probe"), path.join(dl, "probe"));
  await writeFile(
    path.join(dl, "Dockerfile"),
    `FROM busybox:local\nCOPY probe /probe\nRUN PROBE_DISCARD=1 /probe get http://files.arca.test:${origin.httpPort}/zeros/${DOWNLOAD}\n`,
  );
  const results: Record<string, Record<Kind, number>> = {};
  let accel = "?";
  const record = (what: string, kind: Kind, v: number) => {
    results[what] ??= { runc: Number.NaN, vm: Number.NaN };
    results[what][kind] = v;
  };
  try {
    for (const kind of ["runc", "vm"] as const) {
      const root = path.join(tmp, kind);
      await mkdir(root, { recursive: true });
      await writeFile(
        path.join(root, "egress.json"),
        JSON.stringify({ mode: "audit", hosts: { "files.arca.test": "127.0.0.1" } }),
      );
      await seedBusybox(root, tmp);
      const flags = ["--sandbox", kind];
      // The first start assembles the image and disks; boots are timed on the starts after it.
      let daemon: DaemonProc = startDaemon(root, path.join(root, "arca.sock"), flags);
      await daemon.waitFor(/arca: ready in/, 600_000);
      const boots: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        await daemon.stop();
        const t0 = performance.now();
        daemon = startDaemon(root, path.join(root, "arca.sock"), flags);
        await daemon.waitFor(/arca: ready in/, 600_000);
        boots.push((performance.now() - t0) / 1000);
      }
      record("boot-to-ready (s)", kind, median(boots));
      accel = /vm sandbox with (\w+)/.exec(daemon.output())?.[1] ?? accel;
      const env = {
        ...process.env,
        DOCKER_HOST: `unix://${path.join(root, "arca.sock")}`,
        DOCKER_CONFIG: dockerConfig,
        BUILDX_BUILDER: "",
      };
      const docker = (args: string[], extra: NodeJS.ProcessEnv = {}) =>
        run("docker", args, { env: { ...env, ...extra }, maxBuffer: 64 << 20 });
      try {
        const mibs: number[] = [];
        for (let i = 0; i < RUNS; i++) {
          const r = await docker(["build", "--no-cache", dl], { DOCKER_BUILDKIT: "0" });
          const m = /size=(\d+) sha256=\S+ seconds=([\d.]+)/.exec(r.stdout);
          if (!m || Number(m[1]) !== DOWNLOAD) throw new Error(`download failed:\n${r.stdout}`);
          mibs.push(DOWNLOAD / (1 << 20) / Number(m[2]));
        }
        record("1 GiB RUN-step download through the channel (MiB/s)", kind, median(mibs));
        const times = async (args: string[], extra: NodeJS.ProcessEnv = {}) => {
          const t: number[] = [];
          for (let i = 0; i < RUNS; i++) t.push(await timed(() => docker(args, extra)));
          return median(t);
        };
        record(
          "trivial build, classic, --no-cache (s)",
          kind,
          await times(["build", "--no-cache", trivial], { DOCKER_BUILDKIT: "0" }),
        );
        record(
          "20,000-file build, buildx, --no-cache (s)",
          kind,
          await times(["buildx", "build", "--no-cache", many]),
        );
      } finally {
        await daemon.stop();
      }
    }
    console.log(`VM sandbox (QEMU, ${accel}) vs runc sandbox, medians of ${RUNS}, ${os.cpus().length} CPUs:`);
    for (const [what, r] of Object.entries(results)) {
      const ratio = r.vm / r.runc;
      console.log(
        `  ${what.padEnd(55)} runc ${r.runc.toFixed(2).padStart(8)}   vm ${r.vm.toFixed(2).padStart(8)}   vm/runc ${ratio.toFixed(2)}`,
      );
    }
  } finally {
    await origin.close();
    await rm(tmp, { recursive: true, force: true });
  }
}

await main();
