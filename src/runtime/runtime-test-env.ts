import { execFile } from "node:child_process";
import { createReadStream } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { writeBusyboxRootfs } from "../../test/support/busybox-rootfs.js";
import { ImageStore, importRootfs } from "../images/index.js";
import { RuntimePaths } from "./paths.js";
import { createRuntime, type Runtime } from "./runtime.js";

const run = promisify(execFile);

/** For tests only: a temp data root with a busybox image, and a cleanup that leaves nothing behind. */
export interface RuntimeTestEnv {
  root: string;
  images: ImageStore;
  image: string;
  runtimes: Runtime[];
  open(): Promise<Runtime>;
  cleanup(): Promise<void>;
}

export const RUNC = "/usr/sbin/runc";

export async function runtimeTestEnv(): Promise<RuntimeTestEnv> {
  const root = await mkdtemp(join(tmpdir(), "arca-runtime-"));
  const images = await ImageStore.open(join(root, "images"));
  const tarball = join(root, "busybox.tar");
  await writeBusyboxRootfs(tarball);
  await importRootfs(images, createReadStream(tarball), { name: "busybox:test" });
  const env: RuntimeTestEnv = {
    root,
    images,
    image: "busybox:test",
    runtimes: [],
    async open() {
      const rt = await createRuntime({ dataRoot: root, images, runcPath: RUNC });
      env.runtimes.push(rt);
      return rt;
    },
    async cleanup() {
      for (const rt of env.runtimes) await rt.close({ stopTimeoutSec: 0 }).catch(() => {});
      const runcRoot = join(root, "containers", "runc-state");
      const { stdout } = await run(RUNC, ["--root", runcRoot, "list", "-q"]).catch(() => ({ stdout: "" }));
      for (const id of stdout.split("\n").filter(Boolean))
        await run(RUNC, ["--root", runcRoot, "delete", "--force", id]).catch(() => {});
      // Wait for supervisors to go so their mounts are released, then unmount whatever is left.
      const userns = new RuntimePaths(root).usernsRootfs;
      const mounts = (await readFile("/proc/self/mountinfo", "utf8"))
        .split("\n")
        .map((l) => l.split(" ")[4] ?? "")
        .filter((m) => m.startsWith(root) || m.startsWith(`${userns}/`))
        .sort((a, b) => b.length - a.length);
      for (const m of mounts) await run("umount", ["-l", m]).catch(() => {});
      images.close();
      await rm(root, { recursive: true, force: true });
      await rm(userns, { recursive: true, force: true });
    },
  };
  return env;
}

/** Polls until check() returns a truthy value or the deadline passes. */
export async function eventually<T>(
  check: () => T | Promise<T>,
  timeoutMs = 3000,
  what = "condition",
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
