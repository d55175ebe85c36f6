import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, test } from "node:test";
import { gzipSync } from "node:zlib";
import tar from "tar-stream";
import { writeBusyboxRootfs } from "../../test/support/busybox-rootfs.js";
import { ImageError } from "./errors.js";
import { ImageStore } from "./image-store.js";
import { importRootfs } from "./import-rootfs.js";

let tmp: string;
let store: ImageStore;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), "arca-import-"));
  store = await ImageStore.open(join(tmp, "images"));
});
after(async () => {
  store.close();
  await rm(tmp, { recursive: true, force: true });
});

async function tarOf(add: (p: tar.Pack) => void): Promise<Buffer> {
  const pack = tar.pack();
  add(pack);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

test("a real rootfs imports, absolute symlink targets included", async () => {
  const rootfs = join(tmp, "busybox.tar");
  await writeBusyboxRootfs(rootfs);
  const r = await importRootfs(store, createReadStream(rootfs), { name: "bb:1" });
  assert.equal(store.resolve("bb:1").image.id, r.id);
  // The diffID is the plain tar's digest (over a MiB: hashed on the hashing thread).
  const plain = await readFile(rootfs);
  assert.ok(plain.length > 1024 * 1024, `rootfs tar is ${plain.length} bytes`);
  const config = await store.readConfig(r.id);
  assert.deepEqual(config.rootfs?.diff_ids, [`sha256:${createHash("sha256").update(plain).digest("hex")}`]);
  const links = await tarOf((p) => {
    p.entry({ name: "bin/", type: "directory" });
    p.entry({ name: "bin/busybox" }, "elf");
    p.entry({ name: "bin/sh", type: "symlink", linkname: "/bin/busybox" });
    p.entry({ name: "bin/ash", type: "link", linkname: "bin/busybox" });
    p.entry({ name: "./etc/hostname" }, "x");
  });
  await importRootfs(store, Readable.from([gzipSync(links)]), { name: "links:1" });
});

test("entries that could land outside the rootfs refuse the import; nothing is stored", async () => {
  const blobs = async () => (await readdir(join(tmp, "images", "blobs", "sha256"))).sort();
  const before = await blobs();
  const cases: [Buffer, RegExp][] = [
    [await tarOf((p) => p.entry({ name: "../x" }, "x")), /"\.\." component/],
    [await tarOf((p) => p.entry({ name: "/etc/cron.d/x" }, "x")), /absolute path/],
    [
      await tarOf((p) => p.entry({ name: "shadow", type: "link", linkname: "/etc/shadow" })),
      /absolute link target/,
    ],
    [
      await tarOf((p) => p.entry({ name: "s", type: "link", linkname: "../../etc/shadow" })),
      /"\.\." component in its link target/,
    ],
    [await tarOf((p) => p.entry({ name: "h", type: "link", linkname: "later" })), /not an earlier file/],
    [
      await tarOf((p) => {
        p.entry({ name: "l", type: "symlink", linkname: "/etc" });
        p.entry({ name: "l/passwd" }, "root::0:0::/:/bin/sh\n");
      }),
      /goes through a symlink/,
    ],
    [
      (await tarOf((p) => p.entry({ name: "f" }, "y".repeat(3000)))).subarray(0, 1500),
      /invalid rootfs archive/,
    ],
  ];
  for (const [body, re] of cases) {
    await assert.rejects(
      importRootfs(store, Readable.from([body]), { name: "evil:1" }),
      (err: unknown) => err instanceof ImageError && err.code === "invalid_archive" && re.test(err.message),
      String(re),
    );
  }
  assert.throws(() => store.resolve("evil:1"));
  assert.deepEqual(await blobs(), before);
});
