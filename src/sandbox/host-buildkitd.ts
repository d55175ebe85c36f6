import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { sleep } from "../util/index.js";
import { buildkitdConfig } from "./buildkitd-config.js";

export interface HostBuildkitdOptions {
  /** Directory holding buildkitd's state (`root/`), config and log. */
  dir: string;
  /** Unix socket path buildkitd listens on. */
  socket: string;
  registryHost: string;
  toolsBin: string;
  log?: (line: string) => void;
}

/**
 * buildkitd as a supervised host process, restarted with backoff when it
 * dies. The interim runner until the network-less sandbox container
 * replaces it; its state dir (the build cache) survives restarts.
 */
export class HostBuildkitd {
  #proc: ChildProcess | undefined;
  #stopping = false;
  #logStream: WriteStream | undefined;
  #restarts = 0;

  constructor(private readonly opts: HostBuildkitdOptions) {}

  get addr(): string {
    return `unix://${this.opts.socket}`;
  }

  async start(): Promise<void> {
    await mkdir(this.opts.dir, { recursive: true });
    await mkdir(path.dirname(this.opts.socket), { recursive: true });
    await writeFile(
      path.join(this.opts.dir, "buildkitd.toml"),
      buildkitdConfig({ registryHost: this.opts.registryHost }),
    );
    this.#logStream = createWriteStream(path.join(this.opts.dir, "buildkitd.log"), { flags: "a" });
    await this.#spawn();
  }

  async #spawn(): Promise<void> {
    await rm(this.opts.socket, { force: true });
    const proc = spawn(
      path.join(this.opts.toolsBin, "buildkitd"),
      [
        "--config",
        path.join(this.opts.dir, "buildkitd.toml"),
        "--root",
        path.join(this.opts.dir, "root"),
        "--addr",
        this.addr,
        "--oci-worker-net=host",
      ],
      {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, PATH: `${this.opts.toolsBin}:${process.env.PATH}` },
      },
    );
    this.#proc = proc;
    proc.stdout?.pipe(this.#logStream as WriteStream, { end: false });
    proc.stderr?.pipe(this.#logStream as WriteStream, { end: false });
    proc.once("exit", (code, sig) => void this.#onExit(code, sig));
  }

  async #onExit(code: number | null, sig: NodeJS.Signals | null): Promise<void> {
    if (this.#stopping) return;
    const delay = Math.min(16_000, 500 * 2 ** Math.min(this.#restarts++, 5));
    this.opts.log?.(`buildkitd exited (${sig ?? code}); restarting in ${delay / 1000}s`);
    await sleep(delay);
    if (!this.#stopping) await this.#spawn();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    const proc = this.#proc;
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(t);
    }
    this.#logStream?.end();
  }
}
