import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import {
  chmod,
  copyFile,
  mkdir,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { SandboxError } from "../errors.js";
import { repoRoot } from "../image/index.js";
import { diskModules, type VmAssets } from "./vm-assets.js";

const run = promisify(execFile);

/** Bump when the disks change in a way their inputs do not show. */
const GUEST_DISKS_VERSION = 2;

export interface GuestDisks {
  /** Read-only erofs root: the sandbox image's rootfs, the kernel's modules, /sbin/arca-vm-init. */
  root: string;
  /** The initramfs: busybox, the disk drivers and /init (the daemon appends its configuration). */
  initrd: string;
}

export interface GuestDiskInputs {
  assets: VmAssets;
  /** The sandbox image's single gzip layer (its OCI layout blob) and digest. */
  layerBlob: string;
  layerDigest: string;
  /** Where the disks are kept, one directory per input key (older keys are removed). */
  dir: string;
  /** mtime of every file in both disks (SOURCE_DATE_EPOCH). */
  epoch: number;
  signal?: AbortSignal;
  log?: (line: string) => void;
}

/**
 * The guest's root image and initramfs, made from the same sandbox image the
 * runc sandbox runs (one source of truth for what BuildKit runs with), cached
 * by everything that goes in: same inputs, same files, nothing rebuilt.
 */
export async function guestDisks(i: GuestDiskInputs): Promise<GuestDisks> {
  const texts = await guestTexts();
  const key = createHash("sha256")
    .update(
      JSON.stringify({
        v: GUEST_DISKS_VERSION,
        layer: i.layerDigest,
        kernel: i.assets.release,
        kernelStamp: (await stat(i.assets.kernel)).mtimeMs,
        vmExec: createHash("sha256")
          .update(await readFile(i.assets.vmExec))
          .digest("hex"),
        epoch: i.epoch,
        texts: Object.fromEntries(Object.entries(texts).map(([k, v]) => [k, sha256(v)])),
      }),
    )
    .digest("hex");
  const out = path.join(i.dir, key.slice(0, 16));
  const disks = { root: path.join(out, "root.img"), initrd: path.join(out, "initrd.cpio") };
  if (existsSync(disks.root) && existsSync(disks.initrd)) return disks;
  const t0 = performance.now();
  i.log?.("assembling the VM sandbox's disks (root image, initramfs)");
  const work = `${out}.tmp-${process.pid}`;
  await rm(work, { recursive: true, force: true });
  try {
    await mkdir(work, { recursive: true });
    await rootImage(i, texts, work, key);
    await initramfs(i, texts, work);
    await rm(out, { recursive: true, force: true });
    await mkdir(out, { recursive: true });
    await rename(path.join(work, "root.img"), disks.root);
    await rename(path.join(work, "initrd.cpio"), disks.initrd);
  } catch (err) {
    throw new SandboxError("assembly_failed", `cannot assemble the VM sandbox's disks: ${String(err)}`, {
      cause: err,
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  i.log?.(`VM sandbox disks ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  await pruneOthers(i.dir, path.basename(out));
  return disks;
}

interface GuestTexts {
  init: string;
  vmInit: string;
}

async function guestTexts(): Promise<GuestTexts> {
  const dir = path.join(repoRoot(), "sandbox-image");
  return {
    init: await readFile(path.join(dir, "vm-initramfs-init.sh"), "utf8"),
    vmInit: await readFile(path.join(dir, "vm-init.sh"), "utf8"),
  };
}

async function rootImage(i: GuestDiskInputs, texts: GuestTexts, work: string, key: string): Promise<void> {
  const tree = path.join(work, "root");
  await mkdir(tree);
  await run("tar", ["-xzf", i.layerBlob, "-C", tree, "--numeric-owner"], { signal: i.signal });
  await mkdir(path.join(tree, "lib/modules"), { recursive: true });
  await run("cp", ["-a", path.join(i.assets.modulesDir, i.assets.release), path.join(tree, "lib/modules/")], {
    signal: i.signal,
  });
  await mkdir(path.join(tree, "sbin"), { recursive: true });
  await symlink("/bin/busybox", path.join(tree, "sbin/modprobe"));
  await writeFile(path.join(tree, "sbin/arca-vm-init"), texts.vmInit, { mode: 0o755 });
  await copyFile(i.assets.vmExec, path.join(tree, "usr/local/bin/arca-vm-exec"));
  await chmod(path.join(tree, "usr/local/bin/arca-vm-exec"), 0o755);
  await chmod(path.join(tree, "sbin/arca-vm-init"), 0o755);
  // erofs: read-only by design, and reproducible: one timestamp for every file, a fixed UUID, root-owned.
  const uuid = [
    key.slice(0, 8),
    key.slice(8, 12),
    key.slice(12, 16),
    key.slice(16, 20),
    key.slice(20, 32),
  ].join("-");
  await run(
    "mkfs.erofs",
    [
      "--quiet",
      `-T${i.epoch}`,
      "--ignore-mtime",
      "--all-root",
      `-U${uuid}`,
      path.join(work, "root.img"),
      tree,
    ],
    { signal: i.signal },
  );
}

async function initramfs(i: GuestDiskInputs, texts: GuestTexts, work: string): Promise<void> {
  const tree = path.join(work, "initrd");
  await initramfsTree(tree, i.assets.busybox, texts.init);
  await mkdir(path.join(tree, "modules"));
  const order: string[] = [];
  for (const file of diskModules(i.assets)) {
    await copyFile(file, path.join(tree, "modules", path.basename(file)));
    order.push(path.basename(file));
  }
  await writeFile(path.join(tree, "modules/order"), `${order.join("\n")}\n`);
  await cpioArchive(tree, path.join(work, "initrd.cpio"), i.signal, i.epoch);
}

/** An initramfs tree of its own: static busybox at /bin/busybox and `init` as /init. */
export async function initramfsTree(tree: string, busybox: string, init: string): Promise<void> {
  await mkdir(path.join(tree, "bin"), { recursive: true });
  await copyFile(busybox, path.join(tree, "bin/busybox"));
  await chmod(path.join(tree, "bin/busybox"), 0o755);
  await writeFile(path.join(tree, "init"), init, { mode: 0o755 });
  await chmod(path.join(tree, "init"), 0o755);
}

/**
 * A newc archive of a directory's tree: sorted names, owners root, inode numbers reset and
 * every mtime the epoch (cpio has no option for that, so the tree is stamped first).
 */
export async function cpioArchive(tree: string, out: string, signal?: AbortSignal, epoch = 0): Promise<void> {
  await stampTree(tree, epoch);
  const names = (await listTree(tree)).sort();
  await new Promise<void>((resolve, reject) => {
    const child = execFile(
      "sh",
      ["-c", 'cd "$1" && cpio -o -H newc --reproducible -R 0:0 --quiet > "$2"', "sh", tree, out],
      { signal },
      (err) => (err ? reject(err) : resolve()),
    );
    child.stdin?.end(`${names.join("\n")}\n`);
  });
}

async function listTree(dir: string, prefix = "."): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const rel = `${prefix}/${e.name}`;
    out.push(rel);
    if (e.isDirectory()) out.push(...(await listTree(path.join(dir, e.name), rel)));
  }
  return out;
}

/** Every entry's mtime set to the epoch (symlinks included), so archives do not carry build times. */
async function stampTree(tree: string, epoch: number): Promise<void> {
  await run("find", [tree, "-exec", "touch", "-h", "-d", `@${epoch}`, "{}", "+"]);
  await utimes(tree, epoch, epoch);
}

async function pruneOthers(dir: string, keep: string): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (name !== keep) await rm(path.join(dir, name), { recursive: true, force: true });
  }
}

function sha256(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}
