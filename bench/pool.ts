/**
 * npm run bench:pool — the backend pool against a single backend, in one run:
 *  (a) 16 classic `--no-cache` builds of 8 projects, all submitted at once, whose RUN step waits
 *      (`sleep 2`), at most 2 builds per backend: wall time with 3 backends vs 1 (target ≤ 0.45);
 *  (b) repeated builds of 8 projects (each built once, then twice more): the share of repeats
 *      answered from BuildKit's cache with key routing (target 100 %) against round-robin routing;
 *  (c) routing cost: a cached trivial build (a new build arg each time, so the daemon's memo of
 *      unchanged builds does not answer it) through a pool of 3 vs a single backend, alternating
 *      between the two (target ≤ 5 ms).
 * The backends are local sandboxes (runc containers), each with its own buildkitd and cache.
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { seedBusybox } from "../test/support/busybox-rootfs.js";
import { type DaemonProc, startDaemon } from "../test/support/daemon.js";
import { median, timed } from "./workloads.js";

const run = promisify(execFile);
/** Runs of (a), each 16 builds on each daemon; (c)'s builds per daemon. */
const WALL_RUNS = Number(process.env.BENCH_RUNS ?? 3);
const TRIVIAL_RUNS = 25;

interface Daemon {
  proc: DaemonProc;
  docker(args: string[]): Promise<{ stdout: string; stderr: string }>;
}

async function main(): Promise<void> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), "arca-bench-pool-"));
  const started: DaemonProc[] = [];
  const start = async (name: string, backends: number, flags: string[] = []): Promise<Daemon> => {
    const root = path.join(tmp, name);
    await mkdir(root, { recursive: true });
    await seedBusybox(root, tmp);
    const list = [{ name: "default", address: "sandbox", max: 2 }];
    for (let i = 2; i <= backends; i++) list.push({ name: `b${i}`, address: "sandbox", max: 2 });
    await writeFile(path.join(root, "backends.json"), JSON.stringify({ backends: list }));
    const proc = startDaemon(root, path.join(root, "arca.sock"), flags);
    started.push(proc);
    await proc.waitFor(/arca: ready in/, 600_000);
    for (let i = 2; i <= backends; i++)
      await proc.waitFor(new RegExp(`backend b${i} \\(sandbox\\) is up`), 300_000);
    const env = {
      ...process.env,
      DOCKER_HOST: `unix://${path.join(root, "arca.sock")}`,
      DOCKER_BUILDKIT: "0",
    };
    return { proc, docker: (args) => run("docker", args, { env, maxBuffer: 64 << 20 }) };
  };
  const project = async (name: string, step: string): Promise<string> => {
    const dir = path.join(tmp, "ctx", name);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, "Dockerfile"), `FROM busybox:local\nRUN ${step}\n`);
    return dir;
  };
  const builtId = (out: string) => /Successfully built ([0-9a-f]{12})/.exec(out)?.[1] ?? "";

  /** (a): every build of 8 projects (2 each) at once; wall time. */
  const wall = async (d: Daemon, tag: string) => {
    const dirs = await Promise.all(
      Array.from({ length: 8 }, (_, i) => project(`wait-${tag}-${i}`, `echo ${i} && sleep 2`)),
    );
    return timed(() =>
      Promise.all(
        dirs.flatMap((dir, i) => [1, 2].map(() => d.docker(["build", "--no-cache", "-t", `wait-${i}`, dir]))),
      ),
    );
  };
  /** (b): share of repeat builds whose image is the first build's (the stamp step came from the cache). */
  const hitRate = async (d: Daemon, tag: string) => {
    let hits = 0;
    let repeats = 0;
    for (let i = 0; i < 8; i++) {
      const dir = await project(`hits-${tag}-${i}`, `echo ${tag}-${i} $(date +%s%N) > /stamp`);
      const first = builtId(
        (await d.docker(["build", "--build-arg", "ROUND=0", "-t", `hits-${tag}-${i}`, dir])).stdout,
      );
      for (const round of [1, 2]) {
        const r = await d.docker(["build", "--build-arg", `ROUND=${round}`, "-t", `hits-${tag}-${i}`, dir]);
        repeats++;
        if (builtId(r.stdout) === first) hits++;
      }
    }
    return hits / repeats;
  };
  /**
   * (c): cached trivial builds (the memo bypassed by a new build arg each time), alternating
   * between the two daemons so drift on a shared machine hits both alike; medians.
   */
  const cachedTrivial = async (one: Daemon, pool: Daemon) => {
    const dirs = [
      await project("trivial-one", "echo hi > /x"),
      await project("trivial-pool", "echo hi > /x"),
    ];
    const daemons = [one, pool];
    const times: number[][] = [[], []];
    for (const [k, d] of daemons.entries())
      await d.docker(["build", "--build-arg", "ROUND=warm", "-t", "trivial", dirs[k] as string]);
    for (let i = 0; i < TRIVIAL_RUNS; i++)
      for (const [k, d] of daemons.entries())
        times[k]?.push(
          await timed(() =>
            d.docker(["build", "--build-arg", `ROUND=${i}`, "-t", "trivial", dirs[k] as string]),
          ),
        );
    // Each pair ran back to back: the median of the pairs' differences is the overhead, drift aside.
    const diffs = (times[1] ?? []).map((t, i) => t - (times[0]?.[i] ?? t));
    return [median(times[0] ?? []), median(times[1] ?? []), median(diffs)] as const;
  };

  try {
    const one = await start("one", 1);
    const pool = await start("pool", 3);
    // (c) first, on daemons that are up and idle: after (a)'s 96 builds, their backends' cache
    // upkeep runs for a while and lands on whichever daemon has more of them.
    const [trivialOne, trivialPool, overhead] = await cachedTrivial(one, pool);
    const walls: [number[], number[]] = [[], []];
    for (let i = 0; i < WALL_RUNS; i++) {
      walls[0].push(await wall(one, `one-${i}`));
      walls[1].push(await wall(pool, `pool-${i}`));
    }
    const [wallOne, wallPool] = walls.map((w) => median(w)) as [number, number];
    await one.proc.stop();
    const keyRate = await hitRate(pool, "key");
    await pool.proc.stop();
    const rr = await start("pool", 3, ["--backend-routing", "round-robin"]);
    const rrRate = await hitRate(rr, "rr");
    const pct = (x: number) => `${(x * 100).toFixed(0)} %`;
    console.log(
      `backend pool vs one backend (local sandboxes, ${os.cpus().length} CPUs; (a) median of ${WALL_RUNS}, (c) of ${TRIVIAL_RUNS}):`,
    );
    console.log(
      `(a) 16 builds of 8 projects (RUN sleep 2), max 2 per backend: 1 backend ${wallOne.toFixed(2)} s, 3 backends ${wallPool.toFixed(2)} s, ratio ${(wallPool / wallOne).toFixed(2)} (target ≤ 0.45)`,
    );
    console.log(
      `(b) cache hits on repeated builds of 8 projects: key routing ${pct(keyRate)} (target 100 %), round-robin ${pct(rrRate)}`,
    );
    console.log(
      `(c) cached trivial build: 1 backend ${(trivialOne * 1000).toFixed(0)} ms, pool of 3 ${(trivialPool * 1000).toFixed(0)} ms, routing overhead (median of the pairs' differences) ${(overhead * 1000).toFixed(1)} ms (target ≤ 5 ms)`,
    );
  } finally {
    for (const d of started) await d.stop().catch(() => {});
    await rm(tmp, { recursive: true, force: true });
  }
}

await main();
