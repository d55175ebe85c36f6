import { execFileSync } from "node:child_process";
import { createReadStream, createWriteStream, statSync } from "node:fs";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { ImageStore, importRootfs } from "../../src/images/index.js";

const BUSYBOX = "/usr/bin/busybox";

/**
 * Writes a minimal busybox-static rootfs tarball (what `docker import` takes):
 * /bin/busybox, one symlink per applet, /etc/passwd with root and nobody.
 */
export async function writeBusyboxRootfs(file: string): Promise<void> {
  const applets = execFileSync(BUSYBOX, ["--list"], { encoding: "utf8" }).split("\n").filter(Boolean);
  const pack = tar.pack();
  const out = pipeline(pack, createWriteStream(file));
  const mtime = new Date(0);
  const dir = (name: string, mode = 0o755) => pack.entry({ name, type: "directory", mode, mtime });
  for (const d of ["bin/", "etc/", "root/", "var/", "home/"]) dir(d);
  dir("tmp/", 0o1777);
  const text = (name: string, body: string) => pack.entry({ name, mode: 0o644, mtime }, body);
  text("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n");
  text("etc/group", "root:x:0:\nnogroup:x:65534:\n");
  const size = statSync(BUSYBOX).size;
  await new Promise<void>((resolve, reject) => {
    const entry = pack.entry({ name: "bin/busybox", mode: 0o755, size, mtime }, (err) =>
      err ? reject(err) : resolve(),
    );
    createReadStream(BUSYBOX).pipe(entry);
  });
  for (const a of applets) {
    if (a !== "busybox") pack.entry({ name: `bin/${a}`, type: "symlink", linkname: "busybox", mtime });
  }
  pack.finalize();
  await out;
}

/**
 * Puts `busybox:local` into the image store under `dataRoot` before a daemon
 * opens it (the rootfs tar is written to `scratch`).
 */
export async function seedBusybox(dataRoot: string, scratch: string): Promise<void> {
  const rootfs = path.join(scratch, "busybox.tar");
  await writeBusyboxRootfs(rootfs);
  const store = await ImageStore.open(path.join(dataRoot, "images"));
  try {
    await importRootfs(store, createReadStream(rootfs), { name: "busybox:local" });
  } finally {
    store.close();
  }
}
