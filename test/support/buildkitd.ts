import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { tool, toolsBin } from "./tools.js";

export interface Buildkitd {
  /** `unix:///…/buildkitd.sock` */
  addr: string;
  dir: string;
  logFile: string;
  proc: ChildProcess;
  stop(): Promise<void>;
  log(): Promise<string>;
}

/**
 * Starts a real buildkitd (OCI worker, runc) on a temp unix socket, with
 * docker.io mirrored to Arca's registry endpoint at 127.0.0.1:registryPort,
 * as the sandbox's buildkitd.toml does.
 */
export async function startBuildkitd(opts: { registryPort: number }): Promise<Buildkitd> {
  const bin = tool("buildkitd");
  tool("runc");
  const dir = await mkdtemp(path.join(os.tmpdir(), "arca-bk-"));
  const sock = path.join(dir, "buildkitd.sock");
  const reg = `127.0.0.1:${opts.registryPort}`;
  const config = path.join(dir, "buildkitd.toml");
  await writeFile(
    config,
    [
      "[worker.oci]",
      "  enabled = true",
      '  snapshotter = "overlayfs"',
      "[worker.containerd]",
      "  enabled = false",
      '[registry."docker.io"]',
      `  mirrors = ["${reg}"]`,
      `[registry."${reg}"]`,
      "  http = true",
      "  insecure = true",
      "",
    ].join("\n"),
  );
  const logFile = path.join(dir, "buildkitd.log");
  const out = createWriteStream(logFile);
  const proc = spawn(
    bin,
    [
      "--config",
      config,
      "--root",
      path.join(dir, "root"),
      "--addr",
      `unix://${sock}`,
      "--oci-worker-net=host",
    ],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, PATH: `${toolsBin}:${process.env.PATH}` } },
  );
  proc.stdout?.pipe(out);
  proc.stderr?.pipe(out);
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  const deadline = Date.now() + 20_000;
  while (!(await canConnect(sock))) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      const log = await readFile(logFile, "utf8").catch(() => "");
      throw new Error(`buildkitd did not start:\n${log.slice(-3000)}`);
    }
    await delay(50);
  }
  return {
    addr: `unix://${sock}`,
    dir,
    logFile,
    proc,
    log: () => readFile(logFile, "utf8"),
    async stop() {
      if (proc.exitCode === null) {
        proc.kill("SIGTERM");
        const t = setTimeout(() => proc.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(t);
      }
      out.end();
      await rm(dir, { recursive: true, force: true }).catch(() => {});
    },
  };
}

function canConnect(sock: string): Promise<boolean> {
  if (!existsSync(sock)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const s = net.connect(sock);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** A free loopback TCP port (bound then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}
