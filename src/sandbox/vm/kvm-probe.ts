import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { access, readFile, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { cpioArchive, initramfsTree } from "./guest-disks.js";
import { qemuMachineArgs, type VmAssets } from "./vm-assets.js";

/** A KVM boot that has not reached init by then has failed (a TCG boot takes ~2 s). */
const PROBE_TIMEOUT_MS = 20_000;
const PROBE_OK = "arca-vm: probe ok";

export interface KvmProbe {
  ok: boolean;
  /** Why KVM is not used (or "a guest booted under KVM"). */
  why: string;
}

/**
 * Whether this host's /dev/kvm really runs the guest kernel: a device that
 * opens is not enough (a PVM host, for one, has /dev/kvm and fails a stock
 * kernel with emulation errors). Boots the guest kernel under KVM with an
 * initramfs whose init only says so; the answer is kept in `dir` until QEMU,
 * the kernel or /dev/kvm change.
 */
export async function probeKvm(assets: VmAssets, dir: string, signal?: AbortSignal): Promise<KvmProbe> {
  try {
    await access("/dev/kvm", constants.R_OK | constants.W_OK);
  } catch {
    return { ok: false, why: "no usable /dev/kvm" };
  }
  const identity = JSON.stringify(
    await Promise.all(
      [assets.qemu, assets.kernel, "/dev/kvm"].map(async (f) => [f, (await stat(f)).mtimeMs]),
    ),
  );
  const cacheFile = path.join(dir, "kvm-probe.json");
  const cached = await readFile(cacheFile, "utf8")
    .then((t) => JSON.parse(t) as { identity: string; result: KvmProbe })
    .catch(() => undefined);
  if (cached?.identity === identity) return cached.result;
  const tree = path.join(dir, "kvm-probe");
  await rm(tree, { recursive: true, force: true });
  await initramfsTree(
    tree,
    assets.busybox,
    `#!/bin/busybox sh\n/bin/busybox echo "${PROBE_OK}"\n/bin/busybox poweroff -f\n`,
  );
  const initrd = path.join(dir, "kvm-probe.cpio");
  await cpioArchive(tree, initrd, signal);
  const result = await bootOnce(assets, initrd, signal);
  await writeFile(cacheFile, JSON.stringify({ identity, result }));
  return result;
}

function bootOnce(assets: VmAssets, initrd: string, signal?: AbortSignal): Promise<KvmProbe> {
  return new Promise((resolve) => {
    execFile(
      assets.qemu,
      qemuMachineArgs(assets, { accel: "kvm", memory: "256M", initrd, append: "loglevel=3" }),
      { timeout: PROBE_TIMEOUT_MS, signal, maxBuffer: 4 << 20 },
      (err, stdout, stderr) => {
        const out = `${stdout}${stderr}`;
        if (out.includes(PROBE_OK)) return resolve({ ok: true, why: "a guest booted under KVM" });
        const last = out.trim().split("\n").filter(Boolean).slice(-1)[0];
        const timedOut = (err as { killed?: boolean } | null)?.killed;
        resolve({
          ok: false,
          why: timedOut
            ? `a guest under KVM did not reach init within ${PROBE_TIMEOUT_MS / 1000} s`
            : `a guest under KVM failed: ${last ?? err?.message ?? "no output"}`,
        });
      },
    );
  });
}
