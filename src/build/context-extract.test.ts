import assert from "node:assert/strict";
import { lstat, mkdtemp, readFile, readlink, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { after, describe, test } from "node:test";
import tar from "tar-stream";
import { extractContext } from "./context-extract.js";

async function tarOf(add: (p: tar.Pack) => void): Promise<Buffer> {
  const pack = tar.pack();
  add(pack);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe("extractContext", () => {
  const dirs: string[] = [];
  const fresh = async () => {
    const d = await mkdtemp(path.join(os.tmpdir(), "arca-ctx-"));
    dirs.push(d);
    return d;
  };
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  test("files, dirs, symlinks (kept, even pointing out), hardlinks, mtimes", async () => {
    const dir = await fresh();
    const mtime = new Date("2020-01-02T03:04:05Z");
    const body = await tarOf((p) => {
      p.entry({ name: "./a/", type: "directory" });
      p.entry({ name: "a/f.txt", mode: 0o640, mtime }, "hi");
      p.entry({ name: "out", type: "symlink", linkname: "/etc" });
      p.entry({ name: "hl", type: "link", linkname: "a/f.txt" });
    });
    const st = await extractContext(Readable.from([body]), dir, new AbortController().signal);
    assert.equal(st.entries, 4);
    assert.equal(await readFile(path.join(dir, "a/f.txt"), "utf8"), "hi");
    assert.equal((await lstat(path.join(dir, "a/f.txt"))).mode & 0o777, 0o640);
    assert.equal((await lstat(path.join(dir, "a/f.txt"))).mtime.getTime(), mtime.getTime());
    assert.equal(await readlink(path.join(dir, "out")), "/etc");
    assert.equal(await readFile(path.join(dir, "hl"), "utf8"), "hi");
  });

  test("an archive ending right after the last file's data (the docker CLI's) is accepted", async () => {
    const dir = await fresh();
    const body = await tarOf((p) => p.entry({ name: "Dockerfile" }, "FROM x\n"));
    await extractContext(Readable.from([body.subarray(0, 512 + 7)]), dir, new AbortController().signal);
    assert.equal(await readFile(path.join(dir, "Dockerfile"), "utf8"), "FROM x\n");
  });

  test("refuses escapes and truncation", async () => {
    const cases: [Buffer, RegExp][] = [
      [await tarOf((p) => p.entry({ name: "../x" }, "x")), /"\.\." component/],
      [await tarOf((p) => p.entry({ name: "/abs" }, "x")), /absolute path/],
      [
        await tarOf((p) => {
          p.entry({ name: "l", type: "symlink", linkname: "/tmp" });
          p.entry({ name: "l/x" }, "x");
        }),
        /goes through a symlink/,
      ],
      [
        await tarOf((p) => p.entry({ name: "h", type: "link", linkname: "../etc/passwd" })),
        /"\.\." component/,
      ],
      [
        (await tarOf((p) => p.entry({ name: "f" }, "y".repeat(3000)))).subarray(0, 1500),
        /Unexpected end of data|unexpected EOF/,
      ],
      [Buffer.from("not a tar ".repeat(100)), /failed to read build context/],
    ];
    for (const [body, re] of cases) {
      const dir = await fresh();
      await assert.rejects(extractContext(Readable.from([body]), dir, new AbortController().signal), re);
    }
  });
});
