import { type ChildProcess, execFile, spawn } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface StockDockerd {
  /** Path of the API socket (`unix://` + this for DOCKER_HOST). */
  socket: string;
  /** Resolves once dockerd prints "API listen on"; rejects if it exits first or takes over a minute. */
  ready: Promise<void>;
  /** Everything dockerd printed so far. */
  output(): string;
  stop(): Promise<void>;
}

/** The stock dockerd binary (Debian's docker.io), or undefined when it is not installed. */
export async function findDockerd(): Promise<string | undefined> {
  try {
    return (await run("which", ["dockerd"])).stdout.trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Starts a stock dockerd on its own socket, data root, exec root and pidfile
 * under `root`; no iptables, no bridge, so it touches nothing of the system's
 * own dockerd (whose socket is never used).
 */
export function startStockDockerd(bin: string, root: string): StockDockerd {
  const socket = path.join(root, "docker.sock");
  let out = "";
  const proc: ChildProcess = spawn(
    bin,
    [
      "--host",
      `unix://${socket}`,
      "--data-root",
      path.join(root, "data"),
      "--exec-root",
      path.join(root, "exec"),
      "--pidfile",
      path.join(root, "docker.pid"),
      "--iptables=false",
      "--bridge=none",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const onData = (d: Buffer) => {
    out += d.toString();
  };
  proc.stdout?.on("data", onData);
  proc.stderr?.on("data", onData);
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  const ready = (async () => {
    const end = Date.now() + 60_000;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`dockerd exited:\n${out}`);
      if (out.includes("API listen on")) return;
      if (Date.now() > end) throw new Error(`dockerd did not start:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  // Callers await `ready`; this keeps an early exit from being an unhandled rejection meanwhile.
  ready.catch(() => {});
  return {
    socket,
    ready,
    output: () => out,
    async stop() {
      // SIGTERM: dockerd stops its managed containerd and unmounts its layers before exiting.
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
      await exited;
    },
  };
}
