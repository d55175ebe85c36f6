import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { ImageStore } from "../src/images/index.js";
import { seedBusybox } from "./support/busybox-rootfs.js";
import { type DaemonProc, startDaemon } from "./support/daemon.js";
import { imageFiles } from "./support/image-files.js";

const run = promisify(execFile);

/**
 * Context files COPY'd into an image keep their setuid/setgid bits, as with a privileged sandbox and
 * dockerd's BuildKit. The sandbox's user namespace put this at risk: BuildKit's context receiver
 * (fsutil's DiskWriter, requestAsyncFileData) writes a file's data after setting its mode, and the
 * kernel strips S_ISUID/S_ISGID on a write unless the writer has CAP_FSETID in the initial user
 * namespace — which no capability set inside the sandbox's namespace gives. Stock BuildKit v0.32.2
 * fails this; it passes once the receiver sets the mode again after the data is written.
 */
describe("COPY from the build context keeps setuid/setgid bits (userns sandbox)", () => {
  let tmp: string;
  let dataRoot: string;
  let socket: string;
  let daemon: DaemonProc | undefined;
  let store: ImageStore;

  const docker = (env: Record<string, string>, ...args: string[]) =>
    run("docker", args, { env: { ...process.env, DOCKER_HOST: `unix://${socket}`, ...env } });

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-copy-modes-"));
    dataRoot = path.join(tmp, "data");
    socket = path.join(dataRoot, "arca.sock");
    await seedBusybox(dataRoot, tmp);
    daemon = startDaemon(dataRoot, socket);
    await daemon.waitFor(/ready in [\d.]+s/);
    store = await ImageStore.open(path.join(dataRoot, "images"));
  });

  after(async () => {
    await daemon?.stop();
    store?.close();
    await rm(tmp, { recursive: true, force: true });
  });

  for (const [label, env] of [
    ["classic builder", { DOCKER_BUILDKIT: "0" }],
    ["buildx", { DOCKER_BUILDKIT: "1" }],
  ] as const) {
    test(`${label}: a COPY'd 4755 and 2755 file land in the image as 4755 and 2755`, async () => {
      const ctx = path.join(tmp, `ctx-${env.DOCKER_BUILDKIT}`);
      await mkdir(ctx, { recursive: true });
      await writeFile(path.join(ctx, "Dockerfile"), "FROM busybox:local\nCOPY suid sgid plain /c/\n");
      for (const [name, mode] of [
        ["suid", 0o4755],
        ["sgid", 0o2755],
        ["plain", 0o755],
      ] as const) {
        await writeFile(path.join(ctx, name), "x");
        await chmod(path.join(ctx, name), mode);
      }
      const tag = `copy-modes-${env.DOCKER_BUILDKIT}:t`;
      await docker(env, "build", "--no-cache", "-t", tag, ctx);
      const files = await imageFiles(store, tag);
      const modes = ["c/suid", "c/sgid", "c/plain"].map((f) => `${f} ${files.get(f)?.mode.toString(8)}`);
      assert.deepEqual(modes, ["c/suid 4755", "c/sgid 2755", "c/plain 755"]);
    });
  }
});
