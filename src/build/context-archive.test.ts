import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, open, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { after, describe, test } from "node:test";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import tar from "tar-stream";
import { filteredWalk } from "../buildkit/session/filesync/index.js";
import { type ContextArchive, Spool, spoolContext } from "./context-archive.js";
import { BuildError } from "./errors.js";

const run = promisify(execFile);

async function tarOf(add: (p: tar.Pack) => void): Promise<Buffer> {
  const pack = tar.pack();
  add(pack);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe("spoolContext", () => {
  const dirs: string[] = [];
  const fresh = async () => {
    const d = await mkdtemp(path.join(os.tmpdir(), "arca-ctx-"));
    dirs.push(d);
    return d;
  };
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const spool = async (body: Buffer, dir: string) =>
    spoolContext(Readable.from([body]), path.join(dir, "ctx.spool"), new AbortController().signal);
  const read = async (a: ContextArchive, rel: string) => {
    const f = await a.fs.open(rel);
    const buf = Buffer.alloc(1 << 16);
    let out = "";
    for (let n = await f.read(buf, 0, 7); n > 0; n = await f.read(buf, 0, 7))
      out += buf.toString("utf8", 0, n);
    await f.close();
    return out;
  };

  test("files, dirs, symlinks (kept, even pointing out), hardlinks, modes, mtimes, replacement", async () => {
    const dir = await fresh();
    const mtime = new Date("2020-01-02T03:04:05Z");
    const big = "b".repeat(300 << 10);
    const body = await tarOf((p) => {
      p.entry({ name: "./a/", type: "directory", mode: 0o700, mtime });
      p.entry({ name: "a/f.txt", mode: 0o4640, mtime }, "hi");
      p.entry({ name: "out", type: "symlink", linkname: "/etc" });
      p.entry({ name: "hl", type: "link", linkname: "a/f.txt" });
      p.entry({ name: "big" }, big);
      p.entry({ name: "implied/deep/x" }, "x");
      p.entry({ name: "gone/y" }, "y");
      p.entry({ name: "gone" }, "now a file");
    });
    const a = await spool(body, dir);
    assert.equal(a.entries, 8);
    assert.equal(a.fs.readFile("a/f.txt").toString(), "hi");
    assert.equal(await read(a, "big"), big);
    assert.equal(await read(a, "a/f.txt"), "hi");
    const f = a.fs.lstat("a/f.txt");
    assert.equal(f.mode, 0o104640);
    // Whole seconds from the archive, a content fingerprint in the nanoseconds.
    assert.equal(f.mtimeNs / 1_000_000_000n, BigInt(mtime.getTime() / 1000));
    assert.notEqual(f.mtimeNs % 1_000_000_000n, 0n);
    assert.equal(f.nlink, 2n);
    assert.equal(a.fs.lstat("hl").ino, f.ino);
    assert.equal(a.fs.lstat("a").mode, 0o40700);
    assert.equal(a.fs.readlink("out"), "/etc");
    assert.equal(a.fs.lstat("implied/deep").mode, 0o40755);
    assert.equal(a.fs.readFile("gone").toString(), "now a file");
    assert.ok(a.has("implied/deep/x") && !a.has("gone/y") && !a.has("nope"));
    assert.throws(() => a.fs.lstat("nope"), { code: "ENOENT" });
    // Served like a directory: fsutil order, hardlink named after the first path.
    const walked = [];
    for await (const s of filteredWalk(a.fs, {})) walked.push([s.path, s.linkname ?? ""]);
    assert.deepEqual(walked, [
      ["a", ""],
      ["a/f.txt", ""],
      ["big", ""],
      ["gone", ""],
      ["hl", "a/f.txt"],
      ["implied", ""],
      ["implied/deep", ""],
      ["implied/deep/x", ""],
      ["out", "/etc"],
    ]);
    await a.close();
    assert.deepEqual(await readdir(dir), []);
  });

  test("same metadata, other bytes: another mtime for FileSync and another context digest", async () => {
    const dir = await fresh();
    const mtime = new Date("2020-01-02T03:04:05Z");
    const one = await spool(await tarOf((p) => p.entry({ name: "v", mtime }, "one")), dir);
    const again = await spool(await tarOf((p) => p.entry({ name: "v", mtime }, "one")), await fresh());
    const two = await spool(await tarOf((p) => p.entry({ name: "v", mtime }, "two")), await fresh());
    assert.equal(one.fs.lstat("v").mtimeNs, again.fs.lstat("v").mtimeNs);
    assert.equal(one.digest, again.digest);
    assert.notEqual(one.fs.lstat("v").mtimeNs, two.fs.lstat("v").mtimeNs);
    assert.notEqual(one.digest, two.digest);
    for (const a of [one, again, two]) await a.close();
  });

  test("an archive ending right after the last file's data (the docker CLI's) is accepted", async () => {
    const dir = await fresh();
    const body = await tarOf((p) => p.entry({ name: "Dockerfile" }, "FROM x\n"));
    const a = await spool(body.subarray(0, 512 + 7), dir);
    assert.equal(a.fs.readFile("Dockerfile").toString(), "FROM x\n");
    await a.close();
  });

  test("FIFOs are kept; device nodes (which no user namespace can create) are listed as left out", async () => {
    const dir = await fresh();
    const body = await tarOf((p) => {
      p.entry({ name: "dev/", type: "directory" });
      p.entry({ name: "dev/pipe", type: "fifo", mode: 0o640 });
      p.entry({ name: "dev/null", type: "character-device", mode: 0o666, devmajor: 1, devminor: 3 });
      p.entry({ name: "dev/nvme", type: "block-device", mode: 0o660, devmajor: 259, devminor: 1 });
    });
    const a = await spool(body, dir);
    assert.equal(a.fs.lstat("dev/pipe").mode, 0o010640);
    assert.deepEqual(
      a.fs.readdir("dev").map((d) => d.name),
      ["pipe"],
    );
    assert.deepEqual(a.skippedDevices, ["dev/null", "dev/nvme"]);
    await a.close();
  });

  test("a context inflating past maxBytes is refused while it streams", async () => {
    const dir = await fresh();
    const zeros = Buffer.alloc(64 << 20);
    const body = gzipSync(await tarOf((p) => p.entry({ name: "zeros" }, zeros)));
    assert.ok(body.length < 1 << 20, "a small compressed body");
    await assert.rejects(
      spoolContext(Readable.from([body]), path.join(dir, "ctx.spool"), new AbortController().signal, {
        maxBytes: 8 << 20,
      }),
      (err: unknown) =>
        err instanceof BuildError &&
        err.code === "invalid_context" &&
        /larger than 8388608 bytes once decompressed \(the daemon's --max-context-size\)/.test(err.message),
    );
    assert.deepEqual(await readdir(dir), []);
    const ok = await spoolContext(
      Readable.from([body]),
      path.join(dir, "ok.spool"),
      new AbortController().signal,
      {
        maxBytes: 80 << 20,
      },
    );
    assert.equal(ok.bytes, 64 << 20);
    await ok.close();
  });

  test("refuses escapes and truncation, leaving nothing behind", async () => {
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
      [await tarOf((p) => p.entry({ name: "h", type: "link", linkname: "later" })), /not an earlier file/],
      [
        (await tarOf((p) => p.entry({ name: "f" }, "y".repeat(3000)))).subarray(0, 1500),
        /Unexpected end of data|unexpected EOF/,
      ],
      [Buffer.from("not a tar ".repeat(100)), /failed to read build context/],
    ];
    for (const [body, re] of cases) {
      const dir = await fresh();
      await assert.rejects(spool(body, dir), re);
      assert.deepEqual(await readdir(dir), []);
    }
  });

  test("bytes written while the next are read land where the index says (big files, thousands of small ones)", async () => {
    const dir = await fresh();
    // Past the spool's write batch, its in-flight bound and writev's buffer limit.
    const big = randomBytes(24 << 20);
    const smalls = Array.from({ length: 3000 }, (_, i) => `file ${i}\n`);
    const body = await tarOf((p) => {
      for (let i = 0; i < smalls.length; i++) p.entry({ name: `s/${i}` }, smalls[i]);
      p.entry({ name: "big" }, big);
      p.entry({ name: "after" }, "tail");
    });
    // In 64 KiB pieces, as a socket delivers them.
    const pieces: Buffer[] = [];
    for (let o = 0; o < body.length; o += 1 << 16) pieces.push(body.subarray(o, o + (1 << 16)));
    const a = await spoolContext(
      Readable.from(pieces),
      path.join(dir, "ctx.spool"),
      new AbortController().signal,
    );
    assert.ok(a.fs.readFile("big").equals(big));
    for (const i of [0, 1, 511, 512, 513, 1999, 2999])
      assert.equal(a.fs.readFile(`s/${i}`).toString(), smalls[i]);
    assert.equal(await read(a, "after"), "tail");
    assert.equal(a.bytes, big.length + smalls.reduce((n, s) => n + s.length, 0) + 4);
    await a.close();
  });

  test("a full disk is the daemon's failure (500), named, and leaves no spool", async () => {
    const dir = await fresh();
    await run("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir]);
    try {
      const body = await tarOf((p) => p.entry({ name: "big" }, randomBytes(3 << 20)));
      await assert.rejects(
        spoolContext(Readable.from([body]), path.join(dir, "ctx.spool"), new AbortController().signal),
        (e) =>
          e instanceof BuildError &&
          e.code === "spool_failed" &&
          e.kind === "internal" &&
          /^cannot store the build context: no space left on /.test(e.message),
      );
      assert.deepEqual(await readdir(dir), []);
    } finally {
      await run("umount", [dir]);
    }
  });

  test("an upload repeating the kept one's big files reads them from its spool; changed ones are written", async () => {
    const dir = await fresh();
    const big = randomBytes(3 << 20);
    const late = Buffer.from(big);
    late[late.length - 1] = (late.at(-1) ?? 0) ^ 1;
    const early = Buffer.from(big);
    early[10] = (early[10] ?? 0) ^ 1;
    const upload = (files: Record<string, Buffer>) =>
      tarOf((p) => {
        p.entry({ name: "Dockerfile" }, "FROM scratch\n");
        for (const [name, data] of Object.entries(files)) p.entry({ name }, data);
      });
    const at = (name: string, base?: ContextArchive) => async (body: Buffer) =>
      spoolContext(Readable.from([body]), path.join(dir, name), new AbortController().signal, { base });
    const whole = async (a: ContextArchive, rel: string) => {
      const f = await a.fs.open(rel);
      const chunks: Buffer[] = [];
      const buf = Buffer.alloc(1 << 20);
      for (let n = await f.read(buf, 0, buf.length); n > 0; n = await f.read(buf, 0, buf.length))
        chunks.push(Buffer.from(buf.subarray(0, n)));
      return Buffer.concat(chunks);
    };
    const first = await at("1")(await upload({ same: big, late: big, early: big, grown: big }));
    assert.equal(first.reusable, true);
    assert.equal(first.files[0]?.size, 4 * big.length + 13);
    const second = await at(
      "2",
      first,
    )(await upload({ same: big, late, early, grown: Buffer.concat([big, Buffer.from("x")]) }));
    // Only the changed files (and the Dockerfile) were written: `same` is read from the first spool.
    assert.equal(second.files[0]?.size, 3 * big.length + 1 + 13);
    assert.deepEqual(second.files.slice(1), [first.files[0]]);
    assert.deepEqual(second.stored("same"), {
      file: first.files[0],
      offset: first.stored("same")?.offset,
      size: big.length,
    });
    await first.close();
    // The first spool lives on for what the second reads from it.
    assert.deepEqual((await readdir(dir)).sort(), ["1", "2"]);
    assert.ok((await whole(second, "same")).equals(big));
    assert.ok((await whole(second, "late")).equals(late));
    assert.ok((await whole(second, "early")).equals(early));
    assert.equal((await whole(second, "grown")).length, big.length + 1);
    assert.equal((await second.fs.readFile("same")).length, big.length);
    assert.ok(second.fs.readFile("same").equals(big));
    // Same content, another digest input: the context digest still says what was uploaded.
    assert.notEqual(second.digest, first.digest);
    await second.close();
    assert.deepEqual(await readdir(dir), []);
  });

  test("small entries are copied into the spool's own batch, not kept as slices of the upload", async () => {
    const dir = await fresh();
    const fh = await open(path.join(dir, "s"), "wx+");
    try {
      const spool = new Spool(fh);
      // Below the batch size nothing is written before flush(): what lands is what the spool holds.
      const chunks = [Buffer.from("one"), Buffer.from("two")];
      await spool.appendCopy(chunks, 6);
      await spool.appendCopy([Buffer.from("three")], 5);
      for (const c of chunks) c.fill(0x21);
      await spool.flush();
      assert.equal((await readFile(path.join(dir, "s"))).toString(), "onetwothree");
    } finally {
      await fh.close();
    }
  });
});
