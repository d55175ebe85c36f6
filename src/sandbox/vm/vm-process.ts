import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { appendFile, open, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { SandboxError } from "../errors.js";
import { qemuMachineArgs, type VmAssets } from "./vm-assets.js";

/** The guest's vsock CID (any above 2; one VM per vhost-device-vsock). */
export const GUEST_CID = 3;
/** Restarts of a VM that keeps dying back off up to this. */
const MAX_BACKOFF_MS = 30_000;
/** A VM that ran this long before dying is restarted at once. */
const STABLE_MS = 60_000;

export interface VmProcessOptions {
  assets: VmAssets;
  root: string;
  /** The initramfs for this start (the base plus the daemon's configuration). */
  initrd: string;
  cacheDisk: string;
  /** vhost-user socket (QEMU ↔ vhost-device-vsock) and the pid files live here. */
  channelDir: string;
  /** The hybrid-vsock socket through which the host reaches guest ports. */
  vsockSocket: string;
  /** Serial console and the tools' output, appended. */
  consoleLog: string;
  memoryMiB: number;
  cpus: number;
  accel: "tcg" | "kvm";
  log: (line: string) => void;
}

/**
 * QEMU and its vhost-device-vsock, supervised with restart policy "always":
 * when QEMU exits without stop() the pair is started again (backing off while
 * it keeps failing). Both write to one console log; their pids are kept in
 * the channel directory so that a daemon that died without stopping them
 * can clear them on its next start.
 */
export class VmProcess {
  #qemu: ChildProcess | undefined;
  #vsock: ChildProcess | undefined;
  #stopping = false;
  #backoffMs = 1000;
  #restarts = 0;
  #startedAt = 0;

  constructor(private readonly o: VmProcessOptions) {}

  get pid(): number | undefined {
    return this.#qemu?.pid;
  }

  get restarts(): number {
    return this.#restarts;
  }

  /** When the running QEMU was launched. */
  get startedAt(): Date | undefined {
    return this.#startedAt ? new Date(this.#startedAt) : undefined;
  }

  /** True while QEMU runs (a VM being restarted is not running). */
  get running(): boolean {
    const q = this.#qemu;
    return !!q && q.exitCode === null && q.signalCode === null;
  }

  async start(): Promise<void> {
    await killLeftovers(this.o.channelDir);
    await this.#launch();
  }

  async #launch(): Promise<void> {
    const vhu = path.join(this.o.channelDir, "vhu.sock");
    await rm(vhu, { force: true });
    await rm(this.o.vsockSocket, { force: true });
    const logFd = await open(this.o.consoleLog, "a", 0o600);
    try {
      if (this.#restarts > 0) await logFd.write(`--- arca: VM restart ${this.#restarts} ---\n`);
      const vsock = spawn(
        this.o.assets.vhostDeviceVsock,
        ["--guest-cid", String(GUEST_CID), "--socket", vhu, "--uds-path", this.o.vsockSocket],
        { stdio: ["ignore", logFd.fd, "pipe"] },
      );
      this.#vsock = vsock;
      // A panicked worker thread leaves the process up and the guest's vsock dead: restart the VM.
      const logFile = this.o.consoleLog;
      vsock.stderr?.on("data", (d: Buffer) => {
        void appendFile(logFile, d);
        if (vsock === this.#vsock && / panicked at /.test(d.toString())) {
          this.o.log("sandbox VM: its vsock device failed (vhost-device-vsock panicked); restarting the VM");
          this.#qemu?.kill("SIGKILL");
        }
      });
      await writePid(this.o.channelDir, "vhost-device-vsock", this.#vsock.pid);
      for (let i = 0; !existsSync(vhu); i++) {
        if (i > 250 || this.#vsock.exitCode !== null) {
          throw new SandboxError(
            "vm_failed",
            `vhost-device-vsock did not create ${vhu} (see ${this.o.consoleLog})`,
          );
        }
        await sleep(20);
      }
      const mem = `${this.o.memoryMiB}M`;
      this.#qemu = spawn(
        this.o.assets.qemu,
        [
          ...qemuMachineArgs(this.o.assets, {
            accel: this.o.accel,
            memory: mem,
            initrd: this.o.initrd,
            append: "loglevel=4",
          }),
          ...["-smp", String(this.o.cpus)],
          // vhost-user needs the guest's memory shareable with vhost-device-vsock.
          ...["-object", `memory-backend-memfd,id=mem,size=${mem},share=on`, "-numa", "node,memdev=mem"],
          ...["-drive", `file=${this.o.root},if=virtio,format=raw,readonly=on`],
          ...["-drive", `file=${this.o.cacheDisk},if=virtio,format=raw,discard=unmap`],
          ...["-chardev", `socket,id=vsock,path=${vhu}`, "-device", "vhost-user-vsock-pci,chardev=vsock"],
        ],
        { stdio: ["ignore", logFd.fd, logFd.fd] },
      );
      await writePid(this.o.channelDir, "qemu", this.#qemu.pid);
    } finally {
      await logFd.close();
    }
    this.#startedAt = Date.now();
    const qemu = this.#qemu;
    qemu.once("exit", (code, signal) => void this.#onExit(qemu, code, signal));
  }

  async #onExit(qemu: ChildProcess, code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    if (qemu !== this.#qemu) return;
    this.#vsock?.kill("SIGKILL");
    if (this.#stopping) return;
    const ranMs = Date.now() - this.#startedAt;
    if (ranMs > STABLE_MS) this.#backoffMs = 1000;
    const tail = (await consoleTail(this.o.consoleLog)).split("--- arca: VM restart").pop()?.trim();
    this.o.log(
      `sandbox VM exited (${signal ?? `code ${code}`}) after ${(ranMs / 1000).toFixed(1)} s; restarting in ${this.#backoffMs / 1000} s${tail ? `; console:\n${tail}` : ""}`,
    );
    // A launch that fails (vhost-device-vsock slow to come up on a loaded host) is tried again: a
    // sandbox with restart policy "always" must not stay down after one bad try.
    for (;;) {
      await sleep(this.#backoffMs);
      this.#backoffMs = Math.min(this.#backoffMs * 2, MAX_BACKOFF_MS);
      if (this.#stopping) return;
      this.#restarts++;
      try {
        await this.#launch();
        return;
      } catch (err) {
        this.#vsock?.kill("SIGKILL");
        this.o.log(`sandbox VM restart failed: ${String(err)}; trying again in ${this.#backoffMs / 1000} s`);
      }
    }
  }

  /** Powers the VM off (the cache disk is ext4 with a journal: a cut is recovered on the next mount). */
  async stop(): Promise<void> {
    this.#stopping = true;
    const qemu = this.#qemu;
    if (qemu && qemu.exitCode === null && qemu.signalCode === null) {
      const exited = new Promise((r) => qemu.once("exit", r));
      qemu.kill("SIGTERM");
      await Promise.race([exited, sleep(5000)]);
      qemu.kill("SIGKILL");
    }
    this.#vsock?.kill("SIGKILL");
    await rm(pidFile(this.o.channelDir, "qemu"), { force: true });
    await rm(pidFile(this.o.channelDir, "vhost-device-vsock"), { force: true });
  }
}

function pidFile(dir: string, name: string): string {
  return path.join(dir, `${name}.pid`);
}

async function writePid(dir: string, name: string, pid: number | undefined): Promise<void> {
  if (pid) await writeFile(pidFile(dir, name), `${pid}\n`);
}

/** A VM (and its vsock device) that a daemon killed without stopping left running holds the disks: end it. */
async function killLeftovers(dir: string): Promise<void> {
  for (const [name, exe] of [
    ["qemu", "qemu-system"],
    ["vhost-device-vsock", "vhost-device-vsock"],
  ] as const) {
    const pid = Number((await readFile(pidFile(dir, name), "utf8").catch(() => "")).trim());
    if (!pid) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (cmdline.includes(exe) && cmdline.includes(dir)) {
      process.kill(pid, "SIGKILL");
      for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) await sleep(20);
    }
    await rm(pidFile(dir, name), { force: true });
  }
}

/** The console's last lines (what the guest said before it went away). */
export async function consoleTail(file: string, lines = 15): Promise<string> {
  const text = await readFile(file, "utf8").catch(() => "");
  return text.split("\n").filter(Boolean).slice(-lines).join("\n");
}
