import { execFile } from "node:child_process";
import { createReadStream, createWriteStream, existsSync } from "node:fs";
import { cp, mkdir, open, rename, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import type { ControlClient } from "../../buildkit/index.js";
import type { ImageStore } from "../../images/index.js";
import { EGRESS_PORT } from "../buildkitd-config.js";
import { SandboxError } from "../errors.js";
import {
  ensureFrontendImage,
  readLayoutManifest,
  SANDBOX_IMAGE_REPOSITORY,
  SANDBOX_REGISTRY_HOST,
} from "../image/index.js";
import {
  connectBuildkit,
  type Sandbox,
  SandboxLifecycle,
  type SandboxSettings,
  type SandboxStatus,
} from "../sandbox.js";
import { cpioArchive, guestDisks } from "./guest-disks.js";
import { probeKvm } from "./kvm-probe.js";
import { vmAssets } from "./vm-assets.js";
import { consoleLogEntries, type SandboxContainer, vmInspect } from "./vm-container-view.js";
import { vmExec } from "./vm-exec-client.js";
import { consoleTail, VmProcess } from "./vm-process.js";

const run = promisify(execFile);

/** buildkitd's port in the guest, on vsock (the proxy forwards it to loopback TCP). */
export const VM_BUILDKIT_PORT = 8088;
/** The guest's exec service (tools/vm-exec) on vsock. */
const VM_EXEC_PORT = 8090;
/** Host ports (CID 2) the guest's proxy dials for the registry endpoint and the egress proxy. */
const VM_REGISTRY_PORT = Number(SANDBOX_REGISTRY_HOST.split(":")[1]);
/** How long a VM may take from launch to a BuildKit with a worker (TCG boots are slow). */
const READY_TIMEOUT_MS = 180_000;

export interface VmSandboxOptions extends SandboxSettings {
  store: ImageStore;
  /** Guest memory in bytes (default 2 GiB). */
  memoryBytes?: number;
  /** Size of the cache disk when it is first made (a sparse file; default 64 GiB). */
  cacheDiskBytes?: number;
  /** The accelerator; default: KVM when a guest boots under it here (probed once), else TCG. */
  accel?: "kvm" | "tcg";
}

/**
 * BuildKit in a QEMU VM reached only over virtio-vsock: the same sandbox image
 * as the runc sandbox, booted from a read-only root image, with the BuildKit
 * cache on a disk image that outlives the VM. The guest has no network
 * device; the daemon dials buildkitd through vhost-device-vsock's hybrid-vsock
 * socket, and serves its registry endpoint and egress proxy on the
 * `<vsock socket>_<port>` sockets where guest connections to the host arrive.
 */
export class VmSandbox extends SandboxLifecycle implements Sandbox {
  readonly kind = "vm";
  readonly #vmDir: string;
  #vm: VmProcess | undefined;
  #createdAt = new Date();
  #imageId = "";

  /** `docker inspect/logs arca-buildkit`: the VM as a container (QEMU's pid, the serial console). */
  readonly container: SandboxContainer = {
    inspect: () =>
      vmInspect({
        name: SANDBOX_IMAGE_REPOSITORY,
        channelDir: this.channelDir,
        imageId: this.#imageId,
        pid: this.#vm?.running ? this.#vm.pid : undefined,
        startedAt: this.#vm?.startedAt,
        createdAt: this.#createdAt,
        restarts: this.#vm?.restarts ?? 0,
        consoleLog: this.consoleLog,
        cacheDisk: path.join(this.#vmDir, "cache.img"),
        memoryBytes: this.#memoryBytes,
      }),
    logs: (opts = {}) => consoleLogEntries(this.consoleLog, opts, () => this.#vm?.running === true),
    exec: (opts) => vmExec(`vsock-uds://${this.#vsockSocket}:${VM_EXEC_PORT}`, opts),
  };

  get #memoryBytes(): number {
    return this.opts.memoryBytes ?? 2 * 2 ** 30;
  }

  constructor(private readonly opts: VmSandboxOptions) {
    super(opts);
    this.#vmDir = path.join(opts.dataRoot, "buildkit", "vm");
  }

  get #vsockSocket(): string {
    return path.join(this.channelDir, "vsock.sock");
  }

  get buildkitAddr(): string {
    return `vsock-uds://${this.#vsockSocket}:${VM_BUILDKIT_PORT}`;
  }

  get egressSocket(): string {
    return `${this.#vsockSocket}_${EGRESS_PORT}`;
  }

  get registrySocket(): string {
    return `${this.#vsockSocket}_${VM_REGISTRY_PORT}`;
  }

  /** Where the guest's serial console is written (kernel, init, buildkitd, the vsock device). */
  get consoleLog(): string {
    return path.join(this.#vmDir, "console.log");
  }

  get vmPid(): number | undefined {
    return this.#vm?.pid;
  }

  protected async bringUp(signal?: AbortSignal): Promise<{ client: ControlClient; status: SandboxStatus }> {
    const t0 = performance.now();
    const log = this.opts.log ?? (() => {});
    const assets = vmAssets(this.opts.toolsBin);
    const { image } = await this.prepare(signal);
    await ensureFrontendImage({ ...this.opts, signal, log });
    const manifest = await readLayoutManifest(image.layoutDir);
    const disks = await guestDisks({
      assets,
      layerBlob: path.join(image.layoutDir, "blobs", ...image.layerDigest.split(":")),
      layerDigest: image.layerDigest,
      dir: path.join(this.#vmDir, "disks"),
      epoch: 0,
      signal,
      log,
    });
    const cacheDisk = path.join(this.#vmDir, "cache.img");
    await this.#ensureCacheDisk(cacheDisk, signal);
    const initrd = await this.#initrdWithConfig(disks.initrd, signal);
    await writeFile(this.consoleLog, "", { mode: 0o600 });
    let accel = this.opts.accel;
    if (!accel) {
      const kvm = await probeKvm(assets, this.#vmDir, signal);
      accel = kvm.ok ? "kvm" : "tcg";
      log(
        kvm.ok ? "sandbox VM: QEMU with KVM" : `sandbox VM: QEMU with TCG, software emulation (${kvm.why})`,
      );
    }
    this.#vm = new VmProcess({
      assets,
      root: disks.root,
      initrd,
      cacheDisk,
      channelDir: this.channelDir,
      vsockSocket: this.#vsockSocket,
      consoleLog: this.consoleLog,
      memoryMiB: Math.floor(this.#memoryBytes / (1 << 20)),
      cpus: Math.max(1, os.availableParallelism()),
      accel,
      log,
    });
    this.#imageId = manifest.digest;
    this.#createdAt = new Date();
    await this.#vm.start();
    const client = await this.#waitReady(log, signal);
    return {
      client,
      status: {
        ready: true,
        kind: "vm",
        imageId: manifest.digest,
        imageLoaded: false,
        readyMs: performance.now() - t0,
        accel,
      },
    };
  }

  /** Polls BuildKit over vsock while the VM boots (finer than the build path's backoff). */
  async #waitReady(log: (line: string) => void, signal?: AbortSignal): Promise<ControlClient> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let last: unknown;
    while (Date.now() < deadline) {
      signal?.throwIfAborted();
      if ((this.#vm?.restarts ?? 0) >= 2) break; // a VM that cannot boot does not get better
      try {
        return await connectBuildkit(this.buildkitAddr, () => {}, signal, 1);
      } catch (err) {
        last = err;
      }
      await sleep(250, undefined, { signal });
    }
    log(`sandbox VM console:\n${await consoleTail(this.consoleLog)}`);
    throw new SandboxError(
      "vm_failed",
      `BuildKit in the sandbox VM did not come up (${this.#vm?.restarts ? `the VM exited ${this.#vm.restarts + 1} times` : `no answer within ${READY_TIMEOUT_MS / 1000} s`}; console: ${this.consoleLog}): ${String(last)}`,
    );
  }

  async #ensureCacheDisk(file: string, signal?: AbortSignal): Promise<void> {
    if (existsSync(file)) return;
    await mkdir(path.dirname(file), { recursive: true });
    const tmp = `${file}.tmp`;
    const fh = await open(tmp, "w", 0o600);
    await fh.truncate(this.opts.cacheDiskBytes ?? 64 * 2 ** 30);
    await fh.close();
    await run("mke2fs", ["-q", "-t", "ext4", "-L", "buildkit-cache", "-m", "0", tmp], { signal });
    await rename(tmp, file);
  }

  /** The base initramfs followed by one holding this start's configuration (Linux unpacks both). */
  async #initrdWithConfig(base: string, signal?: AbortSignal): Promise<string> {
    const dir = path.join(this.#vmDir, "config");
    await rm(dir, { recursive: true, force: true });
    const tree = path.join(dir, "tree", "config");
    await mkdir(tree, { recursive: true });
    for (const name of ["buildkitd.toml", "buildkitd.env", "certs.d", "ca"]) {
      const src = path.join(this.channelDir, name);
      if (existsSync(src)) await cp(src, path.join(tree, name), { recursive: true });
    }
    // The proxy's rules in the guest: buildkitd on vsock, the daemon's endpoints on the host's ports.
    const forwards = [
      `vsock:${VM_BUILDKIT_PORT}=tcp:127.0.0.1:${VM_BUILDKIT_PORT}`,
      `tcp:${SANDBOX_REGISTRY_HOST}=vsock:2:${VM_REGISTRY_PORT}`,
      `tcp:0.0.0.0:${EGRESS_PORT}=vsock:2:${EGRESS_PORT}`,
    ];
    await writeFile(path.join(tree, "proxy-forwards"), `${forwards.join(" ")}\n`);
    await writeFile(path.join(tree, "exec-port"), `${VM_EXEC_PORT}\n`);
    await cpioArchive(path.dirname(tree), path.join(dir, "config.cpio"), signal);
    const out = path.join(this.#vmDir, "initrd.img");
    // Linux unpacks concatenated newc archives in order: the base, then this start's configuration.
    const concatenated = createWriteStream(`${out}.tmp`, { mode: 0o600 });
    for (const part of [base, path.join(dir, "config.cpio")]) {
      await pipeline(createReadStream(part), concatenated, { end: false, signal });
    }
    await new Promise<void>((resolve, reject) =>
      concatenated.end((err?: Error | null) => (err ? reject(err) : resolve())),
    );
    await rename(`${out}.tmp`, out);
    await rm(dir, { recursive: true, force: true });
    return out;
  }

  async stop(opts: { keepRunning?: boolean } = {}): Promise<void> {
    this.reset();
    // A VM cannot be adopted by the next daemon: it always stops with this one.
    void opts;
    await this.#vm?.stop();
    this.#vm = undefined;
  }
}
