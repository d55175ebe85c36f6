import { type ChildProcess, spawn, spawnSync } from "node:child_process";
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
  /** SIGKILL, as a crash; restart() brings it back on the same root and address. */
  kill9(): Promise<void>;
  restart(): Promise<void>;
  log(): Promise<string>;
}

/**
 * Starts a real buildkitd (OCI worker, runc) on a temp unix socket, with
 * docker.io mirrored to Arca's registry endpoint at 127.0.0.1:registryPort,
 * as the sandbox's buildkitd.toml does.
 */
export async function startBuildkitd(opts: {
  registryPort: number;
  /** Listen on tcp://127.0.0.1:PORT with mutual TLS (server cert/key, client CA) instead of a unix socket. */
  tcp?: { port: number; cert: string; key: string; ca: string };
  /** The registry endpoint speaks mutual TLS: trust `ca`, present cert/key. */
  registryTls?: { ca: string; cert: string; key: string };
}): Promise<Buildkitd> {
  const bin = tool("buildkitd");
  tool("runc");
  const dir = await mkdtemp(path.join(os.tmpdir(), "arca-bk-"));
  const sock = path.join(dir, "buildkitd.sock");
  const reg = `127.0.0.1:${opts.registryPort}`;
  const config = path.join(dir, "buildkitd.toml");
  const rt = opts.registryTls;
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
      ...(rt
        ? [
            // Explicit: BuildKit otherwise speaks plain HTTP to a loopback registry.
            "  http = false",
            `  ca = ["${rt.ca}"]`,
            `  [[registry."${reg}".keypair]]`,
            `    key = "${rt.key}"`,
            `    cert = "${rt.cert}"`,
          ]
        : ["  http = true", "  insecure = true"]),
      "",
    ].join("\n"),
  );
  const logFile = path.join(dir, "buildkitd.log");
  const out = createWriteStream(logFile);
  const tcp = opts.tcp;
  const listen = tcp
    ? [
        "--addr",
        `tcp://127.0.0.1:${tcp.port}`,
        "--tlscert",
        tcp.cert,
        "--tlskey",
        tcp.key,
        "--tlscacert",
        tcp.ca,
      ]
    : ["--addr", `unix://${sock}`];
  const launch = async (): Promise<{ proc: ChildProcess; exited: Promise<void> }> => {
    const proc = spawn(
      bin,
      ["--config", config, "--root", path.join(dir, "root"), ...listen, "--oci-worker-net=host"],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, PATH: `${toolsBin}:${process.env.PATH}` } },
    );
    proc.stdout?.pipe(out, { end: false });
    proc.stderr?.pipe(out, { end: false });
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    const deadline = Date.now() + 20_000;
    while (!(await canConnect(tcp ? tcp.port : sock))) {
      if (proc.exitCode !== null || Date.now() > deadline) {
        const log = await readFile(logFile, "utf8").catch(() => "");
        throw new Error(`buildkitd did not start:\n${log.slice(-3000)}`);
      }
      await delay(50);
    }
    return { proc, exited };
  };
  let current = await launch();
  const self: Buildkitd = {
    addr: tcp ? `tcp://127.0.0.1:${tcp.port}` : `unix://${sock}`,
    dir,
    logFile,
    proc: current.proc,
    log: () => readFile(logFile, "utf8"),
    async kill9() {
      current.proc.kill("SIGKILL");
      await current.exited;
    },
    async restart() {
      current = await launch();
      self.proc = current.proc;
    },
    async stop() {
      const { proc, exited } = current;
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGTERM");
        const t = setTimeout(() => proc.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(t);
      }
      out.end();
      // A buildkitd killed mid-step leaves its step's rootfs mounted: rm cannot remove a mount.
      await unmountUnder(dir);
      await rm(dir, { recursive: true, force: true }).catch(() => {});
    },
  };
  return self;
}

/** Lazily unmounts every mount below `dir`, deepest first. */
async function unmountUnder(dir: string): Promise<void> {
  const info = await readFile("/proc/self/mountinfo", "utf8");
  const points = info
    .split("\n")
    // Field 5 is the mount point, octal-escaped (\040 for a space).
    .map((l) =>
      l.split(" ")[4]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))),
    )
    .filter((p): p is string => p?.startsWith(`${dir}/`) === true)
    .sort((a, b) => b.length - a.length);
  for (const p of points) spawnSync("umount", ["-l", p]);
}

/** Whether something listens on the unix socket path, or on 127.0.0.1:port. */
function canConnect(at: string | number): Promise<boolean> {
  if (typeof at === "string" && !existsSync(at)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const s = typeof at === "string" ? net.connect(at) : net.connect(at, "127.0.0.1");
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
