import assert from "node:assert/strict";
import { chmod, link, lstat, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { Stat } from "../../gen/fsutil/types/stat_pb.js";
import { Packet_PacketType, PacketSchema } from "../../gen/fsutil/types/wire_pb.js";
import { FileSync } from "../../gen/moby/filesync/v1/filesync_pb.js";
import { GoMode } from "./file-mode.js";
import { createFileSyncService } from "./file-sync-service.js";
import { rawBidi, startTestServer } from "./test-server.js";
import { createTransferStats } from "./transfer-stats.js";

const enc = (p: Parameters<typeof create<typeof PacketSchema>>[1]) =>
  toBinary(PacketSchema, create(PacketSchema, p));

interface Received {
  stats: Stat[];
  files: Map<string, Buffer>;
  status: { code: number; message: string };
  gotFin: boolean;
}

/** Plays BuildKit's fsutil receiver: REQs every regular file as its STAT arrives, then FIN. */
async function receive(sock: string, metadata: Record<string, string | string[]>): Promise<Received> {
  const call = rawBidi(sock, "/moby.filesync.v1.FileSync/DiffCopy", metadata);
  const stats: Stat[] = [];
  const chunks = new Map<number, Buffer[]>();
  const files = new Map<string, Buffer>();
  let walkDone = false;
  let gotFin = false;
  let finSent = false;
  const maybeFin = () => {
    if (walkDone && chunks.size === 0 && !finSent) {
      finSent = true;
      call.send(enc({ type: Packet_PacketType.PACKET_FIN }));
    }
  };
  for await (const m of call.messages) {
    const p = fromBinary(PacketSchema, m);
    if (p.type === Packet_PacketType.PACKET_STAT) {
      if (!p.stat) {
        walkDone = true;
        maybeFin();
        continue;
      }
      const id = stats.length;
      stats.push(p.stat);
      if ((p.stat.mode & 0xfff80000) === 0 && p.stat.linkname === "") {
        chunks.set(id, []);
        call.send(enc({ type: Packet_PacketType.PACKET_REQ, ID: id }));
      }
    } else if (p.type === Packet_PacketType.PACKET_DATA) {
      const c = chunks.get(p.ID);
      assert.ok(c, `DATA for unrequested id ${p.ID}`);
      if (p.data.length > 0) c.push(Buffer.from(p.data));
      else {
        files.set((stats[p.ID] as Stat).path, Buffer.concat(c));
        chunks.delete(p.ID);
        maybeFin();
      }
    } else if (p.type === Packet_PacketType.PACKET_FIN) {
      gotFin = true;
      call.end();
    }
  }
  const status = await call.status;
  call.close();
  return { stats, files, status, gotFin };
}

describe("FileSync DiffCopy (fsutil sender)", () => {
  let tmp: string;
  let srv: Awaited<ReturnType<typeof startTestServer>>;
  const transfer = createTransferStats();
  const dirs: Record<string, { path: string }> = {};

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-filesync-"));
    srv = await startTestServer((r) => {
      r.service(FileSync, createFileSyncService({ dirs, stats: transfer, chunkSize: 1000 }));
    });
  });
  after(async () => {
    await srv.close();
    await rm(tmp, { recursive: true, force: true });
  });

  async function tree(name: string, files: Record<string, string>): Promise<string> {
    const root = path.join(tmp, name);
    for (const [rel, content] of Object.entries(files)) {
      const abs = path.join(root, rel);
      if (rel.endsWith("/")) await mkdir(abs, { recursive: true });
      else {
        await mkdir(path.dirname(abs), { recursive: true });
        await writeFile(abs, content);
      }
    }
    dirs[name] = { path: root };
    return root;
  }

  test("walk order, Go modes, ns mtimes, IDs, contents, symlinks, hardlinks", async () => {
    const big = "0123456789".repeat(550); // several 1000-byte chunks
    const root = await tree("basic", {
      "b.txt": "bbb",
      "a.txt": big,
      "a/x": "x",
      "a-c": "c",
      "a.b": "ab",
      empty: "",
      "é.txt": "e",
      "\uFF5E.txt": "fullwidth tilde",
      "\u{1F600}.txt": "emoji",
      suid: "s",
      "sticky/": "",
    });
    await symlink("a.txt", path.join(root, "link"));
    await link(path.join(root, "a.txt"), path.join(root, "hl"));
    await chmod(path.join(root, "suid"), 0o4755);
    await chmod(path.join(root, "sticky"), 0o1777);
    await utimes(path.join(root, "b.txt"), 1_600_000_000.123456, 1_600_000_000.123456);

    const r = await receive(srv.sock, { "dir-name": "basic" });
    assert.equal(r.status.code, 0, r.status.message);
    assert.ok(r.gotFin);
    const paths = r.stats.map((s) => s.path);
    // Go WalkDir order: bytewise names, children right after their dir; U+FF5E sorts before U+1F600 in UTF-8.
    assert.deepEqual(paths, [
      "a",
      "a/x",
      "a-c",
      "a.b",
      "a.txt",
      "b.txt",
      "empty",
      "hl",
      "link",
      "sticky",
      "suid",
      "é.txt",
      "\uFF5E.txt",
      "\u{1F600}.txt",
    ]);
    const by = new Map(r.stats.map((s) => [s.path, s]));
    const st = (p: string) => by.get(p) as Stat;
    assert.equal(st("a").mode, GoMode.dir + ((await lstat(path.join(root, "a"))).mode & 0o777));
    assert.equal(st("a").size, 0n);
    assert.equal(st("link").mode, GoMode.symlink + 0o777);
    assert.equal(st("link").linkname, "a.txt");
    assert.equal(st("link").size, 5n);
    assert.equal(st("suid").mode, GoMode.setuid + 0o755);
    assert.equal(st("sticky").mode, GoMode.dir + GoMode.sticky + 0o777);
    assert.equal(st("hl").linkname, "a.txt", "second name of an inode is a hardlink to the first");
    assert.equal(st("hl").size, BigInt(big.length));
    assert.equal(st("a.txt").linkname, "");
    const bstat = await lstat(path.join(root, "b.txt"), { bigint: true });
    assert.equal(st("b.txt").modTime, bstat.mtimeNs);
    assert.notEqual(bstat.mtimeNs % 1_000_000_000n, 0n, "sub-second mtime survives");
    assert.equal(st("b.txt").uid, process.getuid?.());
    assert.equal(st("b.txt").size, 3n);

    assert.equal(r.files.get("a.txt")?.toString(), big);
    assert.equal(r.files.get("empty")?.length, 0);
    assert.equal(r.files.get("\u{1F600}.txt")?.toString(), "emoji");
    assert.equal(r.files.get("a/x")?.toString(), "x");
    const d = transfer.dirs.basic;
    assert.ok(d);
    assert.equal(d.entriesSent, 14);
    assert.equal(d.filesRequested, r.files.size);
    assert.equal(d.filesSent, r.files.size);
    assert.equal(
      d.bytesSent,
      [...r.files.values()].reduce((n, b) => n + b.length, 0),
    );
  });

  test(".dockerignore semantics: **, ! exceptions, dir/ subtrees, lazy parents", async () => {
    await tree("ignore", {
      Dockerfile: "FROM x",
      "app.log": "",
      "keep.log": "k",
      "src/main.c": "m",
      "src/deep/x.log": "",
      "build/out.o": "o",
      "node_modules/a/index.js": "",
      "node_modules/keep/me.txt": "me",
      "node_modules/keep/other.txt": "",
      "docs/a.md": "",
      "docs/b.txt": "",
    });
    const r = await receive(srv.sock, {
      "dir-name": "ignore",
      "exclude-patterns": [
        "**/*.log",
        "!keep.log",
        "build/",
        "node_modules",
        "!node_modules/keep/me.txt",
        "docs/*.md",
      ],
    });
    assert.equal(r.status.code, 0, r.status.message);
    assert.deepEqual(
      r.stats.map((s) => s.path),
      [
        "Dockerfile",
        "docs",
        "docs/b.txt",
        "keep.log",
        "node_modules",
        "node_modules/keep",
        "node_modules/keep/me.txt",
        "src",
        "src/deep",
        "src/main.c",
      ],
    );
    assert.ok(r.stats[4] && r.stats[4].mode >= GoMode.dir, "lazily emitted parent is a dir");
    assert.equal(r.files.get("node_modules/keep/me.txt")?.toString(), "me");
  });

  test("include patterns and wildcard exceptions inside excluded dirs", async () => {
    await tree("inc", { "a/b/c.txt": "", "a/b/d.md": "", "a/e.txt": "", "f.txt": "", "g/h.txt": "" });
    const r = await receive(srv.sock, { "dir-name": "inc", "include-patterns": ["a/b", "f.txt"] });
    assert.deepEqual(
      r.stats.map((s) => s.path),
      ["a", "a/b", "a/b/c.txt", "a/b/d.md", "f.txt"],
    );
    const r2 = await receive(srv.sock, { "dir-name": "inc", "exclude-patterns": ["a", "g", "!**/*.md"] });
    assert.deepEqual(
      r2.stats.map((s) => s.path),
      ["a", "a/b", "a/b/d.md", "f.txt"],
    );
  });

  test("followpaths include the symlink and its target", async () => {
    const root = await tree("follow", {
      Dockerfile: "",
      "other.txt": "",
      "real/Dockerfile.real": "FROM scratch",
      "real/unrelated": "",
    });
    await symlink("real/Dockerfile.real", path.join(root, "link-df"));
    await symlink("/real/unrelated", path.join(root, "abs"));
    const r = await receive(srv.sock, { "dir-name": "follow", followpaths: ["link-df", "missing"] });
    assert.deepEqual(
      r.stats.map((s) => s.path),
      ["link-df", "real", "real/Dockerfile.real"],
    );
    assert.equal(r.files.get("real/Dockerfile.real")?.toString(), "FROM scratch");
    const r2 = await receive(srv.sock, { "dir-name": "follow", followpaths: ["abs"] });
    assert.deepEqual(
      r2.stats.map((s) => s.path),
      ["abs", "real", "real/unrelated"],
    );
  });

  test("non-ASCII patterns arrive URL-encoded with <key>-encoded: 1", async () => {
    await tree("enc", { "é.txt": "", "a.txt": "" });
    const r = await receive(srv.sock, {
      "dir-name": "enc",
      "exclude-patterns": [encodeURIComponent("é.txt")],
      "exclude-patterns-encoded": "1",
    });
    assert.deepEqual(
      r.stats.map((s) => s.path),
      ["a.txt"],
    );
  });

  test("unknown dir-name is NOT_FOUND; TarStream is UNIMPLEMENTED", async () => {
    const r = await receive(srv.sock, { "dir-name": "nope" });
    assert.equal(r.status.code, Code.NotFound);
    assert.equal(r.stats.length, 0);
    const client = createClient(FileSync, srv.transport);
    await assert.rejects(
      async () => {
        for await (const _ of client.tarStream((async function* () {})())) {
          // drain
        }
      },
      (err: unknown) => ConnectError.from(err).code === Code.Unimplemented,
    );
  });

  test("streams STATs before the walk ends and answers REQs meanwhile", async () => {
    const root = path.join(tmp, "many");
    for (let d = 0; d < 20; d++) {
      await mkdir(path.join(root, `d${d}`), { recursive: true });
      await Promise.all(
        Array.from({ length: 100 }, (_, f) => writeFile(path.join(root, `d${d}`, `f${f}`), `${d}/${f}`)),
      );
    }
    dirs.many = { path: root };
    const r = await receive(srv.sock, { "dir-name": "many" });
    assert.equal(r.status.code, 0, r.status.message);
    assert.equal(r.stats.length, 2020);
    assert.equal(r.files.size, 2000);
    assert.equal(r.files.get("d7/f42")?.toString(), "7/42");
  });

  test("an ERR packet from the receiver ends the call with an error", async () => {
    await tree("err", { x: "" });
    const call = rawBidi(srv.sock, "/moby.filesync.v1.FileSync/DiffCopy", { "dir-name": "err" });
    call.send(enc({ type: Packet_PacketType.PACKET_ERR, data: new TextEncoder().encode("disk full") }));
    for await (const _ of call.messages) {
      // drain
    }
    const s = await call.status;
    call.close();
    assert.notEqual(s.code, 0);
    assert.match(s.message, /disk full/);
  });
});
