import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { promisify } from "node:util";
import { RuntimeError } from "./errors.js";

const run = promisify(execFile);

/** Mount points from /proc/self/mountinfo (octal escapes decoded) with their filesystem type. */
export async function listMounts(): Promise<{ mountPoint: string; fsType: string }[]> {
  const text = await readFile("/proc/self/mountinfo", "utf8");
  const out: { mountPoint: string; fsType: string }[] = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    const fields = line.split(" ");
    const sep = fields.indexOf("-");
    const mountPoint = fields[4];
    const fsType = sep >= 0 ? fields[sep + 1] : undefined;
    if (mountPoint && fsType) out.push({ mountPoint: unescapeMountPath(mountPoint), fsType });
  }
  return out;
}

function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

export async function isMounted(path: string): Promise<boolean> {
  return (await listMounts()).some((m) => m.mountPoint === path);
}

/**
 * Mounts overlayfs at target. lowerDirs are top-most first (overlayfs order). Node has no mount(2), so
 * this uses mount(8).
 */
export async function mountOverlay(
  lowerDirs: string[],
  upperDir: string,
  workDir: string,
  target: string,
): Promise<void> {
  for (const d of [...lowerDirs, upperDir, workDir, target]) {
    if (/[,:]/.test(d)) throw new RuntimeError("rootfs_failed", `overlay path contains ',' or ':': ${d}`);
  }
  const opts = `lowerdir=${lowerDirs.join(":")},upperdir=${upperDir},workdir=${workDir}`;
  try {
    await run("mount", ["-t", "overlay", "overlay", "-o", opts, target]);
  } catch (err) {
    throw new RuntimeError("rootfs_failed", `mounting overlay at ${target}: ${stderrOf(err)}`, {
      cause: err,
    });
  }
}

/** Unmounts path if it is mounted; falls back to a lazy unmount when it is busy. */
export async function unmount(path: string): Promise<void> {
  if (!(await isMounted(path))) return;
  try {
    await run("umount", [path]);
  } catch (err) {
    try {
      await run("umount", ["-l", path]);
    } catch {
      throw new RuntimeError("rootfs_failed", `unmounting ${path}: ${stderrOf(err)}`, { cause: err });
    }
  }
}

export function stderrOf(err: unknown): string {
  const e = err as { stderr?: string | Buffer; message?: string };
  const s = e.stderr ? String(e.stderr).trim() : "";
  return s || e.message || String(err);
}
