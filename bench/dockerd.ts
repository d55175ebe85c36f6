/**
 * `node --import tsx bench/dockerd.ts`: the same `DOCKER_BUILDKIT=0 docker build`
 * against Arca's daemon and against a stock dockerd (Debian's docker.io, started
 * here on its own socket, data root and exec root; the system's dockerd socket is
 * never touched), in the same run. Prints the median wall time of BENCH_RUNS
 * (default 3) runs per case and the ratio arca/dockerd, and the daemon's peak
 * RSS during the 512 MiB build.
 * Targets: ≤ 0.20 on the cached 20,000-file rebuild, ≤ 0.6 on the 512 MiB
 * `--no-cache` build (peak RSS ≤ 200 MB), ≤ 0.7 on the 20,000-file rebuild
 * with one file changed, ≤ 1.00 everywhere. "512 MiB file, new content"
 * changes the whole file before every run: the layer is new to both stores.
 * Each engine's data root is on a fresh ext4 of its own (see own-filesystem.ts);
 * BENCH_SHARED_FS=1 keeps both on the temp directory's filesystem.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { writeBusyboxRootfs } from "../test/support/busybox-rootfs.js";
import { startDaemon } from "../test/support/daemon.js";
import { findDockerd, startStockDockerd } from "../test/support/stock-dockerd.js";
import { type OwnFilesystem, ownFilesystem } from "./own-filesystem.js";
import {
  bigFileContext,
  manyFilesContext,
  median,
  multiStageContext,
  peakRss,
  timed,
  trivialContext,
} from "./workloads.js";

const run = promisify(execFile);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);

interface Engine {
  name: "dockerd" | "arca";
  env: NodeJS.ProcessEnv;
}

interface Case {
  name: string;
  context: string;
  /** Which runs (default both). */
  modes?: ("cached" | "--no-cache")[];
  /** Called before every run (change one file so the transfer is real). */
  before?: (i: number) => Promise<void>;
  /** Also report the daemon's peak RSS during Arca's runs. */
  rss?: boolean;
}

async function main(): Promise<void> {
  const dockerd = await findDockerd();
  if (!dockerd) throw new Error("dockerd not found: apt-get install -y docker.io");
  const tmp = await mkdtemp(path.join(os.tmpdir(), "arca-bench-dockerd-"));
  // Each engine's data on a filesystem of its own (see ownFilesystem); BENCH_SHARED_FS=1: both on tmp's.
  const own: OwnFilesystem[] = [];
  if (process.env.BENCH_SHARED_FS !== "1")
    try {
      for (const name of ["dockerd", "arca"]) own.push(await ownFilesystem(path.join(tmp, name)));
    } catch (err) {
      for (const fs of own) await fs.remove();
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
  const stock = startStockDockerd(dockerd, path.join(tmp, "dockerd"));
  const arca = startDaemon(path.join(tmp, "arca"), path.join(tmp, "arca.sock"), [], { bundled: true });
  try {
    const engines: Engine[] = [
      { name: "dockerd", env: clientEnv(tmp, stock.socket) },
      { name: "arca", env: clientEnv(tmp, path.join(tmp, "arca.sock")) },
    ];
    await Promise.all([stock.ready, arca.waitFor(/ready in/)]);
    const rootfs = path.join(tmp, "busybox.tar");
    await writeBusyboxRootfs(rootfs);
    for (const e of engines) await docker(e, ["import", rootfs, "busybox:local"]);

    const cases = await makeCases(tmp);
    const version = (
      await docker(engines[0] as Engine, ["version", "--format", "{{.Server.Version}}"])
    ).trim();
    process.stdout.write(
      `DOCKER_BUILDKIT=0 docker build, dockerd ${version} vs arca, median of ${RUNS}\n` +
        "targets: cached 20,000-file rebuild ≤ 1/5 of dockerd; 512 MiB --no-cache ≤ 0.6 (daemon peak RSS ≤ 200 MB);\n" +
        "20,000 files, 1 changed ≤ 0.7; not slower anywhere (ratio ≤ 1)\n" +
        `data roots: ${own.length ? "each on its own fresh ext4 (loop device, with a journal)" : `both on ${tmp}'s filesystem (BENCH_SHARED_FS=1)`}\n`,
    );
    // Case names hold commas: BENCH_CASES is a |-separated list of name prefixes.
    const only = process.env.BENCH_CASES?.split("|");
    for (const c of cases.filter((c) => !only || only.some((o) => c.name.startsWith(o)))) {
      for (const mode of c.modes ?? ["cached", "--no-cache"]) {
        const args = ["build", "-q", "-t", `bench:${path.basename(c.context)}`];
        if (mode === "--no-cache") args.push("--no-cache");
        args.push(c.context);
        let k = 0;
        // Warm-up: the cache (for the cached case) and first-use costs on both sides.
        for (const e of engines) {
          await c.before?.(k++);
          await docker(e, args);
        }
        const times: Record<Engine["name"], number[]> = { dockerd: [], arca: [] };
        const peaks: number[] = [];
        // Interleaved, so drift in machine load hits both alike.
        for (let i = 0; i < RUNS; i++) {
          for (const e of engines) {
            await c.before?.(k++);
            // The other engine's dirty pages are flushed first, not billed to this one (untimed).
            await run("sync", []);
            const once = () => docker(e, args);
            if (e.name === "arca" && c.rss && arca.proc.pid) {
              let t = 0;
              peaks.push(await peakRss(arca.proc.pid, async () => (t = await timed(once))));
              times.arca.push(t);
            } else times[e.name].push(await timed(once));
          }
        }
        const [x, y] = [median(times.dockerd), median(times.arca)];
        const name = `${c.name} (${mode})`;
        const rss = peaks.length ? ` | arca daemon peak RSS ${(Math.max(...peaks) / 1e6).toFixed(0)} MB` : "";
        process.stdout.write(
          `${name.padEnd(36)} | dockerd ${x.toFixed(3)}s | arca ${y.toFixed(3)}s | ratio ${(y / x).toFixed(2)}${rss}\n`,
        );
      }
    }
  } finally {
    await arca.stop();
    await stock.stop();
    for (const fs of own) await fs.remove();
    await rm(tmp, { recursive: true, force: true });
  }
}

function clientEnv(tmp: string, socket: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    DOCKER_HOST: `unix://${socket}`,
    DOCKER_CONFIG: path.join(tmp, "docker-config"),
    DOCKER_BUILDKIT: "0",
  };
}

async function docker(e: Engine, args: string[]): Promise<string> {
  try {
    return (await run("docker", args, { env: e.env, maxBuffer: 64 << 20 })).stdout;
  } catch (err) {
    const x = err as { stderr?: string; stdout?: string };
    throw new Error(`${e.name}: docker ${args.join(" ")} failed:\n${x.stdout ?? ""}${x.stderr ?? ""}`);
  }
}

async function makeCases(tmp: string): Promise<Case[]> {
  const trivial = await trivialContext(path.join(tmp, "trivial"));
  const multi = await multiStageContext(path.join(tmp, "multistage"));
  const many = await manyFilesContext(path.join(tmp, "files20k"));
  const big = await bigFileContext(path.join(tmp, "big"));
  const bigNew = path.join(tmp, "big-new");

  return [
    { name: "trivial", context: trivial },
    { name: "multi-stage RUN", context: multi },
    { name: "20,000-file context", context: many },
    {
      name: "20,000 files, 1 changed",
      context: many,
      modes: ["cached"],
      before: (i) => writeFile(path.join(many, "d7", "f7.txt"), `run ${i}\n`),
    },
    { name: "512 MiB file", context: big, modes: ["--no-cache"], rss: true },
    {
      // A changed big file: its layer is new to both stores (the first build of a release, say).
      name: "512 MiB file, new content",
      context: bigNew,
      modes: ["cached"],
      before: async (i) => void (await bigFileContext(bigNew, i + 1)),
    },
  ];
}

await main();
