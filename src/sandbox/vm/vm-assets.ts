import { execFileSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { SandboxError } from "../errors.js";

/** What the VM sandbox runs with, all provisioned by `npm run setup` (scripts/setup-tools.sh). */
export interface VmAssets {
  qemu: string;
  vhostDeviceVsock: string;
  /** The guest kernel (Debian's cloud kernel, unpacked). */
  kernel: string;
  /** `<kernel dir>/lib/modules`, holding `<release>/` with modules.dep from depmod. */
  modulesDir: string;
  release: string;
  busybox: string;
  /** The guest's exec service (tools/vm-exec). */
  vmExec: string;
}

/** Finds the VM's tools in the tools dir and on PATH, or says what to run. */
export function vmAssets(toolsBin: string): VmAssets {
  const missing = (what: string) =>
    new SandboxError("vm_unavailable", `the VM sandbox needs ${what}: run \`npm run setup\``);
  const qemu = onPath("qemu-system-x86_64");
  if (!qemu) throw missing("qemu-system-x86_64 (Debian's qemu-system-x86)");
  const vhostDeviceVsock = path.join(toolsBin, "vhost-device-vsock");
  if (!existsSync(vhostDeviceVsock)) throw missing(`vhost-device-vsock in ${toolsBin}`);
  const kdir = path.join(toolsBin, "vm-kernel");
  const kernel = path.join(kdir, "vmlinuz");
  const modulesDir = path.join(kdir, "lib", "modules");
  const releases = existsSync(modulesDir) ? readdirSync(modulesDir) : [];
  const release = releases[0];
  if (!existsSync(kernel) || releases.length !== 1 || !release) throw missing(`the guest kernel in ${kdir}`);
  const busybox = path.join(toolsBin, "busybox");
  if (!existsSync(busybox)) throw missing(`busybox in ${toolsBin}`);
  const vmExec = path.join(toolsBin, "arca-vm-exec");
  if (!existsSync(vmExec)) throw missing(`arca-vm-exec in ${toolsBin}`);
  for (const tool of ["mkfs.erofs", "mke2fs", "cpio", "modprobe", "tar"]) {
    if (!onPath(tool)) throw missing(tool);
  }
  return { qemu, vhostDeviceVsock, kernel, modulesDir, release, busybox, vmExec };
}

function onPath(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(":").concat("/usr/sbin", "/sbin")) {
    const p = path.join(dir, cmd);
    if (dir && existsSync(p)) return p;
  }
  return undefined;
}

/** The module files (with their dependencies, in load order) that give the guest its disks and root overlay. */
export function diskModules(assets: VmAssets): string[] {
  const files: string[] = [];
  for (const mod of ["virtio_pci", "virtio_blk", "erofs", "overlay"]) {
    const out = execFileSync(
      "modprobe",
      ["-d", path.dirname(path.dirname(assets.modulesDir)), "-S", assets.release, "--show-depends", mod],
      { encoding: "utf8" },
    );
    for (const line of out.split("\n")) {
      const m = /^insmod (\S+)/.exec(line);
      if (m?.[1] && !files.includes(m[1])) files.push(m[1]);
    }
  }
  return files;
}

/**
 * The machine both the VM and the KVM probe boot: q35 with no default devices (no NIC, no
 * monitor), the serial console on stdio, the guest kernel and an initramfs.
 */
export function qemuMachineArgs(
  assets: VmAssets,
  o: { accel: "kvm" | "tcg"; memory: string; initrd: string; append: string },
): string[] {
  return [
    ...["-nodefaults", "-no-user-config", "-machine", "q35", "-display", "none", "-no-reboot"],
    ...["-accel", o.accel === "kvm" ? "kvm" : "tcg,thread=multi", "-cpu", o.accel === "kvm" ? "host" : "max"],
    ...["-m", o.memory, "-serial", "stdio", "-kernel", assets.kernel, "-initrd", o.initrd],
    ...["-append", `console=ttyS0 panic=-1 ${o.append}`],
  ];
}
