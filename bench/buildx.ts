/**
 * `npm run bench:buildx`: `docker buildx build` (docker driver, through Arca's
 * /grpc and /session) against `buildctl build` straight to the same buildkitd
 * in Arca's sandbox, in the same run. Both push the result into Arca's store
 * through the registry endpoint and send the same frontend options (no
 * network, local base images, no provenance attestation), so the difference
 * is the docker CLI + buildx plus Arca's proxying. A third column runs the
 * same buildx with its `remote` driver straight to that buildkitd: buildx's
 * own cost without Arca in between. Prints the median wall time of
 * BENCH_RUNS (default 3) interleaved runs per case and the ratios.
 * Also printed: buildx via Arca against the remote driver (the docker-driver
 * path's own cost: ≤ +10 ms on the trivial cached build, ≤ 1.05× on the cached
 * 20,000-file rebuild), with the CPU time the whole machine spent per build on
 * each (median): every process's, client, daemon, proxy and buildkitd alike.
 * Target: ≤ 1.10 everywhere; ≤ 1.2 on the one-file-changed 20,000-file rebuild;
 * ≤ 0.6 on the 512 MiB `--no-cache` build (buildctl exports gzip, its default;
 * Arca's store takes uncompressed layers), with the daemon's peak RSS
 * during it ≤ 200 MB.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { type PushGrant, requestPushGrant } from "../src/images/index.js";
import { SANDBOX_REGISTRY_HOST } from "../src/sandbox/index.js";
import { writeBusyboxRootfs } from "../test/support/busybox-rootfs.js";
import { startDaemon } from "../test/support/daemon.js";
import { dockerConfigWithBuildx } from "../test/support/docker-cli.js";
import { tool } from "../test/support/tools.js";
import {
  bigFileContext,
  manyFilesContext,
  median,
  multiStageContext,
  peakRss,
  timedWithMachineCpu,
  trivialContext,
} from "./workloads.js";

const run = promisify(execFile);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
/** The registry endpoint as buildkitd in the sandbox reaches it. */
const REGISTRY_HOST = SANDBOX_REGISTRY_HOST;

interface Case {
  name: string;
  context: string;
  noCache: boolean;
  /** Called before every run (change one file so the transfer is real). */
  before?: (i: number) => Promise<void>;
  /** Also report the daemon's peak RSS during the runs through Arca. */
  rss?: boolean;
  /** Also time the classic path through Arca (`DOCKER_BUILDKIT=0 docker build`) for the same change. */
  classic?: boolean;
}

async function main(): Promise<void> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), "arca-bench-buildx-"));
  const dataRoot = path.join(tmp, "data");
  const socket = path.join(tmp, "arca.sock");
  const daemon = startDaemon(dataRoot, socket, [], { bundled: true });
  const dockerConfig = await dockerConfigWithBuildx(path.join(tmp, "docker-config"));
  const env = {
    ...process.env,
    DOCKER_HOST: `unix://${socket}`,
    DOCKER_CONFIG: dockerConfig,
    BUILDX_CONFIG: path.join(tmp, "buildx-config"),
  };
  const buildkitAddr = `unix://${path.join(dataRoot, "run", "sandbox", "buildkitd.sock")}`;
  let grant: PushGrant | undefined;
  try {
    await daemon.waitFor(/ready in/);
    // buildctl and the remote driver push to Arca's registry endpoint, which takes registered names only.
    grant = await requestPushGrant(path.join(dataRoot, "run", "registry-grants.sock"), [
      "bench:direct",
      "bench:buildctl",
    ]);
    const rootfs = path.join(tmp, "busybox.tar");
    await writeBusyboxRootfs(rootfs);
    await run("docker", ["import", rootfs, "busybox:local"], { env });
    const version = (await run("docker", ["buildx", "version"], { env })).stdout.trim();
    process.stdout.write(
      `${version} against Arca vs buildctl on the same buildkitd, median of ${RUNS}\n` +
        "target: ratio ≤ 1.10 everywhere (≤ 1.2 for the one-file-changed rebuild; ≤ 0.6 for 512 MiB --no-cache, peak RSS ≤ 200 MB)\n",
    );

    const buildx = (c: Case) => () => {
      const args = ["buildx", "build", "--progress=quiet", "--provenance=false", "-t", "bench:buildx"];
      if (c.noCache) args.push("--no-cache");
      return run("docker", [...args, c.context], { env, maxBuffer: 64 << 20 });
    };
    // buildx without Arca: its remote driver on buildkitd's channel socket.
    await run("docker", ["buildx", "create", "--name", "direct", "--driver", "remote", buildkitAddr], {
      env,
    });
    const direct = (c: Case) => () => {
      const args = ["buildx", "build", "--builder", "direct", "--progress=quiet", "--provenance=false"];
      args.push("--network=none", "--output");
      args.push(`type=image,name=${REGISTRY_HOST}/library/bench:direct,push=true,registry.insecure=true`);
      if (c.noCache) args.push("--no-cache");
      return run("docker", [...args, c.context], { env, maxBuffer: 64 << 20 });
    };
    const buildctl = (c: Case) => () => {
      const args = [
        "--addr",
        buildkitAddr,
        "build",
        "--progress=quiet",
        "--frontend",
        "dockerfile.v0",
        "--local",
        `context=${c.context}`,
        "--local",
        `dockerfile=${c.context}`,
        "--opt",
        "force-network-mode=none",
        "--opt",
        "image-resolve-mode=local",
        "--output",
        `type=image,name=${REGISTRY_HOST}/library/bench:buildctl,push=true,registry.insecure=true`,
      ];
      if (c.noCache) args.push("--no-cache");
      return run(tool("buildctl"), args, { maxBuffer: 64 << 20 });
    };

    const classic = (c: Case) => () =>
      run("docker", ["build", "-q", "-t", "bench:classic", c.context], {
        env: { ...env, DOCKER_BUILDKIT: "0" },
        maxBuffer: 64 << 20,
      });

    // Case names hold commas: BENCH_CASES is a |-separated list of name prefixes.
    const only = process.env.BENCH_CASES?.split("|");
    const cases = (await makeCases(tmp)).filter((c) => !only || only.some((o) => c.name.startsWith(o)));
    for (const c of cases) {
      // Warm-up: the first context transfer and the cache, for each.
      const tools = [buildx(c), direct(c), buildctl(c), ...(c.classic ? [classic(c)] : [])];
      for (const t of tools) await t();
      const times: number[][] = tools.map(() => []);
      const cpus: number[][] = tools.map(() => []);
      const peaks: number[] = [];
      // Interleaved, so drift in machine load hits all alike.
      for (let i = 0; i < RUNS; i++) {
        for (const [k, t] of tools.entries()) {
          await c.before?.(i * tools.length + k);
          let r = { wall: 0, cpu: 0 };
          const measure = async () => {
            r = await timedWithMachineCpu(t);
          };
          // k 0 is buildx through Arca: the daemon's memory during it.
          if (k === 0 && c.rss && daemon.proc.pid) peaks.push(await peakRss(daemon.proc.pid, measure));
          else await measure();
          times[k]?.push(r.wall);
          cpus[k]?.push(r.cpu);
        }
      }
      const [x, d, y, cl] = times.map(median) as [number, number, number, number | undefined];
      const [cx, cd] = cpus.map(median) as [number, number];
      let rss = peaks.length ? ` | arca daemon peak RSS ${(Math.max(...peaks) / 1e6).toFixed(0)} MB` : "";
      if (cl !== undefined)
        rss += ` | classic via Arca ${cl.toFixed(3)}s = buildx via Arca + ${(cl - x).toFixed(3)}s`;
      process.stdout.write(
        `${c.name.padEnd(38)} | buildctl ${y.toFixed(3)}s | buildx via Arca ${x.toFixed(3)}s ratio ${(x / y).toFixed(2)} | buildx remote driver ${d.toFixed(3)}s ratio ${(d / y).toFixed(2)} | via Arca/remote ${(x / d).toFixed(2)} (${((x - d) * 1000).toFixed(0)} ms; machine CPU ${(cx * 1000).toFixed(0)} vs ${(cd * 1000).toFixed(0)} ms)${rss}\n`,
      );
    }
  } finally {
    grant?.release();
    await daemon.stop();
    await rm(tmp, { recursive: true, force: true });
  }
}

async function makeCases(tmp: string): Promise<Case[]> {
  const trivial = await trivialContext(path.join(tmp, "trivial"));
  const multi = await multiStageContext(path.join(tmp, "multistage"));
  const many = await manyFilesContext(path.join(tmp, "files20k"));

  const cases: Case[] = [];
  for (const [name, context] of [
    ["trivial", trivial],
    ["multi-stage", multi],
    ["20,000-file context", many],
  ] as const) {
    cases.push({ name: `${name} (cached)`, context, noCache: false });
    cases.push({ name: `${name} (--no-cache)`, context, noCache: true });
  }
  cases.push({
    name: "20,000-file context, 1 file changed",
    context: many,
    noCache: false,
    classic: true,
    before: (i) => writeFile(path.join(many, "d7", "f7.txt"), `run ${i}\n`),
  });
  const big = await bigFileContext(path.join(tmp, "big"));
  cases.push({ name: "512 MiB file (--no-cache)", context: big, noCache: true, rss: true });
  return cases;
}

await main();
