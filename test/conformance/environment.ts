import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { writeBusyboxRootfs } from "../support/busybox-rootfs.js";
import { type DaemonProc, startDaemon } from "../support/daemon.js";
import { findDockerd, type StockDockerd, startStockDockerd } from "../support/stock-dockerd.js";
import { tool, toolsBin } from "../support/tools.js";
import { buildctlRunner, buildxRunner, classicRunner, exec, type Runner } from "./runners.js";

export interface ConformanceEnv {
  /** Runners in comparison order: buildctl (the reference) first. */
  runners: Runner[];
  arcaSocket: string;
  /** The sandbox's buildkitd, through Arca's channel directory. */
  buildkitAddr: string;
  buildctl: string;
  dockerConfig: string;
  /** Scratch space for prepared cases and archives. */
  tmp: string;
  /** Why a runner is missing (e.g. buildx not installed). */
  notes: string[];
  stop(): Promise<void>;
}

export interface EnvOptions {
  /** Start a stock dockerd for the classic-builder comparison (d). */
  dockerd: boolean;
  /** Try `docker buildx` against Arca (b). */
  buildx: boolean;
}

/**
 * Starts Arca's daemon (and a stock dockerd) on temp data roots, imports
 * busybox:local into both, and returns the runners. The buildctl runner
 * talks to the very buildkitd Arca's sandbox runs.
 */
export async function startEnvironment(opts: EnvOptions): Promise<ConformanceEnv> {
  const buildctl = tool("buildctl");
  const tmp = await mkdtemp(path.join(os.tmpdir(), "arca-conformance-"));
  const dockerConfig = path.join(tmp, "docker-config");
  await mkdir(dockerConfig);
  const arcaSocket = path.join(tmp, "arca.sock");
  let daemon: DaemonProc | undefined;
  let stock: StockDockerd | undefined;
  const stop = async () => {
    await daemon?.stop();
    await stock?.stop();
    await rm(tmp, { recursive: true, force: true });
  };
  try {
    let dockerdBin: string | undefined;
    if (opts.dockerd) {
      dockerdBin = await findDockerd();
      if (!dockerdBin)
        throw new Error("dockerd not found: apt-get install -y docker.io (the stock dockerd 20.10)");
    }
    const dataRoot = path.join(tmp, "arca");
    daemon = startDaemon(dataRoot, arcaSocket);
    if (dockerdBin) stock = startStockDockerd(dockerdBin, path.join(tmp, "dockerd"));
    const rootfs = path.join(tmp, "busybox.tar");
    await writeBusyboxRootfs(rootfs);
    await Promise.all([daemon.waitFor(/ready in/, 300_000), stock?.ready]);
    const notes: string[] = [];
    const arcaEnv = { ...process.env, DOCKER_HOST: `unix://${arcaSocket}`, DOCKER_CONFIG: dockerConfig };
    await exec("docker", ["import", rootfs, "busybox:local"], arcaEnv);
    const buildkitAddr = `unix://${path.join(dataRoot, "run", "sandbox", "buildkitd.sock")}`;
    const runners: Runner[] = [
      buildctlRunner(buildctl, buildkitAddr),
      classicRunner("arca-classic", arcaSocket, dockerConfig),
    ];
    if (opts.buildx) {
      // DOCKER_CONFIG is ours, so the CLI looks for plugins only in its cli-plugins: link buildx there.
      const plugin = buildxPlugin();
      if (plugin) {
        await mkdir(path.join(dockerConfig, "cli-plugins"), { recursive: true });
        await symlink(plugin, path.join(dockerConfig, "cli-plugins", "docker-buildx"));
      }
      try {
        await exec("docker", ["buildx", "version"], arcaEnv);
        runners.push(buildxRunner(arcaSocket, dockerConfig));
      } catch (err) {
        notes.push(
          `arca-buildx not run: \`docker buildx version\` failed (${(err as Error).message.split("\n")[1] ?? ""})`,
        );
      }
    }
    if (stock) {
      const env = { ...process.env, DOCKER_HOST: `unix://${stock.socket}`, DOCKER_CONFIG: dockerConfig };
      await exec("docker", ["import", rootfs, "busybox:local"], env);
      runners.push(classicRunner("dockerd-classic", stock.socket, dockerConfig));
    }
    return { runners, arcaSocket, buildkitAddr, buildctl, dockerConfig, tmp, notes, stop };
  } catch (err) {
    if (daemon && process.env.ARCA_TEST_DEBUG) console.error(daemon.output());
    await stop();
    throw err;
  }
}

/** The docker-buildx CLI plugin, wherever it is installed. */
function buildxPlugin(): string | undefined {
  const dirs = [
    toolsBin,
    path.join(os.homedir(), ".docker", "cli-plugins"),
    "/usr/local/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
  ];
  return dirs.map((d) => path.join(d, "docker-buildx")).find((p) => existsSync(p));
}
