/**
 * npm run bench:egress — the egress path against references measured in the same run (medians of 5):
 *  (a) a RUN step downloading 512 MiB from a local HTTP server through the egress proxy, vs curl on
 *      the host from the same server (throughput ratio, target ≥ 0.5);
 *  (b) FROM a 200 MB image on a local registry, no cache: a build through Arca (pull through
 *      egress) vs buildctl against a buildkitd with host network pulling it directly (target ≤ 1.3×).
 * The proxy's own connection setup cost is bench/egress-proxy.ts (when present, run after this).
 */
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { startBuildkitd } from "../test/support/buildkitd.js";
import { seedBusybox } from "../test/support/busybox-rootfs.js";
import { dockerConfigWithBuildx } from "../test/support/docker-cli.js";
import { startOrigin } from "../test/support/egress-origin.js";
import { startTestRegistry } from "../test/support/test-registry.js";
import { tool } from "../test/support/tools.js";
import { median, timed } from "./workloads.js";

const run = promisify(execFile);
const RUNS = 5;
const DOWNLOAD = 512 << 20;
const IMAGE_BYTES = 200_000_000;

async function main(): Promise<void> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), "arca-bench-egress-"));
  const dataRoot = path.join(tmp, "data");
  const socket = path.join(tmp, "arca.sock");
  const origin = await startOrigin(tmp, ["files.arca.test"]);
  const reg = await startTestRegistry(path.join(tmp, "registry"), "registry.arca.test", { plain: true });
  await mkdir(dataRoot, { recursive: true });
  await writeFile(
    path.join(dataRoot, "egress.json"),
    JSON.stringify({
      mode: "audit",
      hosts: { "files.arca.test": "127.0.0.1", "registry.arca.test": "127.0.0.1" },
    }),
  );
  await seedBusybox(dataRoot, tmp);
  const daemon = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      path.resolve(import.meta.dirname, "../src/cli/run.ts"),
      "daemon",
      "--data-root",
      dataRoot,
      "--socket",
      socket,
      "--insecure-registry",
      reg.host,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  daemon.stderr?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const dockerConfig = await dockerConfigWithBuildx(path.join(tmp, "docker-config"));
  const env = {
    ...process.env,
    DOCKER_HOST: `unix://${socket}`,
    DOCKER_CONFIG: dockerConfig,
    BUILDX_BUILDER: "",
  };
  const docker = (args: string[], extra: NodeJS.ProcessEnv = {}) =>
    run("docker", args, { env: { ...env, ...extra }, maxBuffer: 64 << 20 });
  let bk: Awaited<ReturnType<typeof startBuildkitd>> | undefined;
  try {
    for (let i = 0; i < 600 && !/ready in/.test(out); i++) await new Promise((r) => setTimeout(r, 200));
    if (!/ready in/.test(out)) throw new Error(`daemon not ready:\n${out}`);

    // (a) download through the proxy from a RUN step vs curl on the host.
    const url = `http://files.arca.test:${origin.httpPort}/zeros/${DOWNLOAD}`;
    const ctx = path.join(tmp, "dl");
    await mkdir(ctx, { recursive: true });
    await copyFile(tool("arca-net-probe"), path.join(ctx, "probe"));
    await writeFile(
      path.join(ctx, "Dockerfile"),
      `FROM busybox:local\nCOPY probe /probe\nRUN PROBE_DISCARD=1 /probe get ${url}\n`,
    );
    const step: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const r = await docker(["build", "--no-cache", ctx], { DOCKER_BUILDKIT: "0" });
      const m = /size=(\d+) sha256=\S+ seconds=([\d.]+)/.exec(r.stdout);
      if (!m || Number(m[1]) !== DOWNLOAD) throw new Error(`download failed:\n${r.stdout}`);
      step.push(Number(m[2]));
    }
    const host = await curlTimes(`http://127.0.0.1:${origin.httpPort}/zeros/${DOWNLOAD}`);
    // What any one relay between curl and the origin costs on this machine: curl through arca-proxy
    // forwarding raw TCP (one hop, no HTTP, no policy). The egress path has that hop and two more.
    const relay = await rawRelay(tmp, origin.httpPort);
    let hop: number[];
    try {
      hop = await curlTimes(`http://127.0.0.1:${relay.port}/zeros/${DOWNLOAD}`);
    } finally {
      relay.stop();
    }
    const mibs = (s: number) => DOWNLOAD / (1 << 20) / s;
    const [tStep, tHost, tHop] = [median(step), median(host), median(hop)];
    console.log(
      `(a) 512 MiB download: RUN step through egress ${tStep.toFixed(2)} s (${mibs(tStep).toFixed(0)} MiB/s), curl on the host ${tHost.toFixed(2)} s (${mibs(tHost).toFixed(0)} MiB/s): throughput ratio ${(tHost / tStep).toFixed(2)} (target ≥ 0.5)`,
    );
    console.log(
      `    one raw TCP relay (arca-proxy) between curl and the origin: ${tHop.toFixed(2)} s (${mibs(tHop).toFixed(0)} MiB/s), ratio ${(tHost / tHop).toFixed(2)} on ${os.cpus().length} CPUs: the ceiling for any proxied path here`,
    );

    // (b) FROM a 200 MB image on a local registry, no cache.
    const big = path.join(tmp, "big");
    await mkdir(big, { recursive: true });
    await writeFile(
      path.join(big, "Dockerfile"),
      `FROM busybox:local\nRUN head -c ${IMAGE_BYTES} /dev/urandom > /blob\n`,
    );
    await docker(["buildx", "build", "--push", "-t", `${reg.host}/big:1`, big]);
    const from = path.join(tmp, "from-arca");
    await mkdir(from, { recursive: true });
    await writeFile(path.join(from, "Dockerfile"), `FROM ${reg.host}/big:1\nRUN true\n`);
    const arca: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      await docker(["rmi", "-f", `${reg.host}/big:1`]).catch(() => {});
      await docker(["builder", "prune", "-af"]);
      arca.push(await timed(() => docker(["buildx", "build", "--no-cache", "--pull", from])));
    }
    bk = await startBuildkitd({ registryPort: reg.port });
    const fromRef = path.join(tmp, "from-ref");
    await mkdir(fromRef, { recursive: true });
    await writeFile(path.join(fromRef, "Dockerfile"), `FROM 127.0.0.1:${reg.port}/big:1\nRUN true\n`);
    const buildctl = tool("buildctl");
    const ref: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      await run(buildctl, ["--addr", bk.addr, "prune", "--all"]);
      ref.push(
        await timed(() =>
          run(buildctl, [
            "--addr",
            bk?.addr ?? "",
            "build",
            "--frontend",
            "dockerfile.v0",
            "--local",
            `context=${fromRef}`,
            "--local",
            `dockerfile=${fromRef}`,
            "--no-cache",
          ]),
        ),
      );
    }
    const [tArca, tRef] = [median(arca), median(ref)];
    console.log(
      `(b) FROM a 200 MB image, no cache: Arca (buildx, through egress) ${tArca.toFixed(2)} s, buildctl with host network ${tRef.toFixed(2)} s: ${(tArca / tRef).toFixed(2)}× (target ≤ 1.3)`,
    );
  } finally {
    await bk?.stop();
    daemon.kill("SIGTERM");
    await new Promise((r) => daemon.once("exit", r));
    await reg.stop();
    await origin.close();
    await rm(tmp, { recursive: true, force: true });
  }
}

/** curl's time_total for RUNS downloads of url. */
async function curlTimes(url: string): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = await run("curl", ["-sS", "-o", "/dev/null", "-w", "%{time_total}", url]);
    times.push(Number(r.stdout));
  }
  return times;
}

/** arca-proxy forwarding a free loopback port to the origin's, ready when its ready file exists. */
async function rawRelay(tmp: string, originPort: number): Promise<{ port: number; stop(): void }> {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise((r) => probe.close(r));
  const ready = path.join(tmp, "relay.ready");
  const child = spawn(
    tool("arca-proxy"),
    ["--forward", `tcp:127.0.0.1:${port}=tcp:127.0.0.1:${originPort}`, "--ready-file", ready],
    { stdio: "ignore" },
  );
  for (let i = 0; i < 100 && !existsSync(ready); i++) await new Promise((r) => setTimeout(r, 50));
  if (!existsSync(ready)) {
    child.kill();
    throw new Error("arca-proxy relay did not start");
  }
  return { port, stop: () => child.kill() };
}

await main();
