/**
 * `npm run bench`: Arca against `buildctl build` on the same buildkitd in the
 * same run, all pushing the result into Arca's registry endpoint. Arca is
 * measured twice: `build()` in a warm process (the daemon's path) and the
 * `arca build` CLI as a fresh process (Node start-up included). Prints
 * median wall times and ratios to buildctl. Target: ≤ 1.10 on each case.
 */
import { execFile } from "node:child_process";
import { createReadStream } from "node:fs";
import { mkdir, mkdtemp, open, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { build } from "../src/buildkit/index.js";
import { createRegistryServer, ImageStore, importRootfs, serveGrantSocket } from "../src/images/index.js";
import { freePort, startBuildkitd } from "../test/support/buildkitd.js";
import { writeBusyboxRootfs } from "../test/support/busybox-rootfs.js";
import { tool } from "../test/support/tools.js";
import { bigFileContext, manyFilesContext, median, timed, trivialContext } from "./workloads.js";

const run = promisify(execFile);
const repo = path.resolve(import.meta.dirname, "..");
const RUNS = Number(process.env.BENCH_RUNS ?? 5);

interface Case {
  name: string;
  context: string;
  /** Called before every run (e.g. change one file so the transfer is real). */
  before?: (i: number) => Promise<void>;
}

async function main(): Promise<void> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), "arca-bench-"));
  const port = await freePort();
  const bk = await startBuildkitd({ registryPort: port });
  const dataRoot = path.join(tmp, "data");
  const store = await ImageStore.open(path.join(dataRoot, "images"));
  const rootfs = path.join(tmp, "busybox.tar");
  await writeBusyboxRootfs(rootfs);
  await importRootfs(store, createReadStream(rootfs), { name: "busybox:local" });
  // One registry endpoint serves both tools; `arca build` uses it through --registry-less daemon mode below.
  const registry = createRegistryServer(store);
  const registryAddr = await registry.listen(`tcp://127.0.0.1:${port}`);
  const registryHost = new URL(registryAddr).host;
  await mkdir(path.join(dataRoot, "run"), { recursive: true });
  // The endpoint takes pushes only for registered names: this process's own builds, and `arca build`
  // through the grant socket a daemon serves.
  const grant = registry.allowPush(["bench:api", "bench:buildctl"]);
  const grantSocket = path.join(dataRoot, "run", "registry-grants.sock");
  const grants = await serveGrantSocket(registry, grantSocket);
  await writeFile(
    path.join(dataRoot, "run", "daemon.json"),
    JSON.stringify({ pid: process.pid, buildkitAddr: bk.addr, registryHost, grantSocket }),
  );
  try {
    // Case names hold commas: BENCH_CASES is a |-separated list of name prefixes.
    const only = process.env.BENCH_CASES?.split("|");
    const cases = (await makeCases(tmp)).filter((c) => !only || only.some((o) => c.name.startsWith(o)));
    const rows: string[] = [];
    for (const c of cases) {
      // The daemon's path: build() in a warm, long-running process.
      const api = async () =>
        build({ addr: bk.addr, context: c.context, tags: ["bench:api"], imageStore: { registryHost } });
      // The CLI, a fresh process each time (Node start-up included).
      const arca = async () =>
        run(
          process.execPath,
          [
            path.join(repo, "bin/arca.js"),
            "build",
            "-q",
            "--data-root",
            dataRoot,
            "-t",
            "bench:arca",
            c.context,
          ],
          {
            maxBuffer: 64 << 20,
          },
        );
      const buildctl = async () =>
        run(
          tool("buildctl"),
          [
            "--addr",
            bk.addr,
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
            "--output",
            `type=image,name=${registryHost}/library/bench:buildctl,push=true,registry.insecure=true`,
          ],
          { maxBuffer: 64 << 20 },
        );
      // Warm up each (first transfer of the context, base image pull).
      await api();
      await arca();
      await buildctl();
      const tApi: number[] = [];
      const tCli: number[] = [];
      const tRef: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        await c.before?.(i * 3);
        tApi.push(await timed(api));
        await c.before?.(i * 3 + 1);
        tCli.push(await timed(arca));
        await c.before?.(i * 3 + 2);
        tRef.push(await timed(buildctl));
      }
      const [a, cli, ref] = [median(tApi), median(tCli), median(tRef)];
      rows.push(
        `${c.name.padEnd(26)} buildctl ${ref.toFixed(3)}s | build() ${a.toFixed(3)}s ratio ${(a / ref).toFixed(2)} | arca CLI ${cli.toFixed(3)}s ratio ${(cli / ref).toFixed(2)}`,
      );
      process.stdout.write(`${rows[rows.length - 1]}\n`);
    }
  } finally {
    grant.release();
    await grants.close();
    await registry.close();
    store.close();
    await bk.stop();
    await rm(tmp, { recursive: true, force: true });
  }
}

async function makeCases(tmp: string): Promise<Case[]> {
  const trivial = await trivialContext(path.join(tmp, "trivial"), "echo hello > /hello");
  const many = await manyFilesContext(path.join(tmp, "many"));

  const big = await bigFileContext(path.join(tmp, "big"));

  return [
    { name: "trivial (cached)", context: trivial },
    {
      name: "20,000 files, 1 changed",
      context: many,
      before: (i) => writeFile(path.join(many, "d7", "f7.txt"), `run ${i}\n`),
    },
    {
      name: "512 MiB file, changed",
      context: big,
      before: async (i) => {
        const f = await open(path.join(big, "big.bin"), "r+");
        await f.write(Buffer.from(`run ${i} `), 0, undefined, 0);
        await f.close();
      },
    },
  ];
}

await main();
