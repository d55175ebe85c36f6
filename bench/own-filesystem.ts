import { execFile } from "node:child_process";
import { mkdir, rm } from "node:fs/promises";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface OwnFilesystem {
  dir: string;
  remove(): Promise<void>;
}

/**
 * A fresh ext4 of its own (mkfs.ext4's defaults, so with a journal), loop-mounted on `dir`.
 * Why: this machine's root ext4 has no journal, and there creating a file skips every inode deleted in
 * the last 5 minutes, one inode-table lookup each (ext4's `recently_deleted`, only without a journal).
 * dockerd deletes its context copy and its build containers' layers after every build (tens of
 * thousands of inodes in the 20,000-file case), so on a shared filesystem the next engine's creates
 * (BuildKit's 20,000-file snapshot) spent over half their CPU in that scan, and dockerd's own creates
 * too. A Docker host's filesystem has a journal; each engine on its own such filesystem measures the
 * engine, not this disk's format or the other engine's churn.
 */
export async function ownFilesystem(dir: string, sizeGiB = 64): Promise<OwnFilesystem> {
  const image = `${dir}.ext4`;
  await mkdir(dir, { recursive: true });
  await run("truncate", ["-s", `${sizeGiB}G`, image]);
  try {
    await run("mkfs.ext4", ["-q", "-F", image]);
    await run("mount", ["-o", "loop", image, dir]);
  } catch (err) {
    await rm(image, { force: true });
    throw err;
  }
  return {
    dir,
    async remove() {
      await run("umount", [dir]).catch(() => run("umount", ["-l", dir]));
      await rm(image, { force: true });
    },
  };
}
