import { execFile } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readFile, realpath, rm, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { toolsBin } from "../tools.js";
import { blobPath, readLayoutManifest } from "./oci-layout.js";

const execFileAsync = promisify(execFile);

export interface TestTools {
  dir: string;
  bin: string;
  /** The copied file behind `<bin>/arca-proxy` (tests change its mtime). */
  proxyStandIn: string;
  cleanup(): Promise<void>;
}

/**
 * A temp tools dir for tests: symlinks to the real buildkitd, buildctl, runc, cni-loopback and busybox, and a
 * STAND-IN arca-proxy (a copy of the static busybox) so the tests do not depend on the Go proxy being
 * built and never touch the real tools dir.
 */
export async function makeTestTools(): Promise<TestTools> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "arca-sandbox-image-"));
  const bin = path.join(dir, "bin");
  await mkdir(bin);
  const real = toolsBin();
  for (const t of ["buildkitd", "buildctl", "runc", "cni-loopback", "cni-bridge", "cni-host-local", "nft"])
    await symlink(await realpath(path.join(real, t)), path.join(bin, t));
  await symlink("/usr/bin/busybox", path.join(bin, "busybox"));
  const proxyStandIn = path.join(dir, "arca-proxy-STAND-IN-busybox-copy");
  await copyFile("/usr/bin/busybox", proxyStandIn);
  await symlink(proxyStandIn, path.join(bin, "arca-proxy"));
  return { dir, bin, proxyStandIn, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Extracts the layout's single layer into dir with the system tar (root keeps modes and owners). */
export async function unpackLayoutLayer(layoutDir: string, dir: string): Promise<void> {
  const desc = await readLayoutManifest(layoutDir);
  const manifest = JSON.parse(await readFile(blobPath(layoutDir, desc.digest), "utf8")) as {
    layers: { digest: string }[];
  };
  await mkdir(dir, { recursive: true });
  for (const l of manifest.layers) {
    await execFileAsync("tar", ["-xzf", blobPath(layoutDir, l.digest), "-C", dir]);
  }
}
