import assert from "node:assert/strict";
import {
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { after, before, describe, test } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import type { StatSchema } from "../../gen/fsutil/types/stat_pb.js";
import { Packet_PacketType, PacketSchema } from "../../gen/fsutil/types/wire_pb.js";
import { BytesMessageSchema } from "../../gen/moby/filesync/v1/filesync_pb.js";
import { GoMode } from "../filesync/file-mode.js";
import { rawBidi, startTestServer } from "../filesync/test-server.js";
import { createFileSendService, type ExportResult, type ExportTarget } from "./file-send-service.js";
import { FileSendRaw } from "./raw-message.js";

type StatInit = Parameters<typeof create<typeof StatSchema>>[1];
const enc = (p: Parameters<typeof create<typeof PacketSchema>>[1]) =>
  toBinary(PacketSchema, create(PacketSchema, p));
const METHOD = "/moby.filesync.v1.FileSend/DiffCopy";

describe("FileSend DiffCopy", () => {
  let tmp: string;
  let srv: Awaited<ReturnType<typeof startTestServer>>;
  const targets: (ExportTarget | undefined)[] = [];
  const results: ExportResult[] = [];

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-filesend-"));
    srv = await startTestServer((r) => {
      r.service(FileSendRaw, createFileSendService({ targets, onResult: (x) => results.push(x) }));
    });
  });
  after(async () => {
    await srv.close();
    await rm(tmp, { recursive: true, force: true });
  });

  /** Plays buildkitd's fsutil sender for the local exporter. */
  async function sendLocal(exporterId: number, entries: { stat: StatInit; data?: Buffer }[]) {
    const call = rawBidi(srv.sock, METHOD, { "buildkit-attachable-exporter-id": String(exporterId) });
    for (const e of entries) call.send(enc({ type: Packet_PacketType.PACKET_STAT, stat: e.stat }));
    call.send(enc({ type: Packet_PacketType.PACKET_STAT }));
    const requested: number[] = [];
    let fin = false;
    for await (const m of call.messages) {
      const p = fromBinary(PacketSchema, m);
      if (p.type === Packet_PacketType.PACKET_REQ) {
        requested.push(p.ID);
        const data = entries[p.ID]?.data ?? Buffer.alloc(0);
        for (let off = 0; off < data.length; off += 7) {
          call.send(
            enc({ type: Packet_PacketType.PACKET_DATA, ID: p.ID, data: data.subarray(off, off + 7) }),
          );
        }
        call.send(enc({ type: Packet_PacketType.PACKET_DATA, ID: p.ID }));
      } else if (p.type === Packet_PacketType.PACKET_FIN) {
        fin = true;
        call.send(enc({ type: Packet_PacketType.PACKET_FIN }));
        call.end();
      }
    }
    const status = await call.status;
    call.close();
    return { status, requested, fin };
  }

  test("tar target: bytes land in dest atomically, exporter-md-* is collected", async () => {
    const dest = path.join(tmp, "out.tar");
    targets[0] = undefined;
    targets[1] = { kind: "tar", dest };
    const call = rawBidi(srv.sock, METHOD, {
      "buildkit-attachable-exporter-id": "1",
      "exporter-md-containerimage.digest": "sha256:abc",
      "exporter-md-image.name": ["a", "b"],
    });
    const payload = Buffer.alloc(3 << 20);
    for (let i = 0; i < payload.length; i++) payload[i] = i % 251;
    for (let off = 0; off < payload.length; off += 1 << 20) {
      call.send(
        toBinary(
          BytesMessageSchema,
          create(BytesMessageSchema, { data: payload.subarray(off, off + (1 << 20)) }),
        ),
      );
    }
    call.end();
    for await (const _ of call.messages) {
      // none expected
    }
    const status = await call.status;
    call.close();
    assert.equal(status.code, 0, status.message);
    assert.ok((await readFile(dest)).equals(payload));
    assert.deepEqual(
      (await readdir(tmp)).filter((n) => n.includes("arca-")),
      [],
      "no temp file left",
    );
    const r = results.find((x) => x.exporterId === 1);
    assert.equal(r?.bytes, payload.length);
    assert.deepEqual({ ...r?.metadata }, { "containerimage.digest": "sha256:abc", "image.name": "a,b" });
  });

  test("tar target to a Writable; absent exporter id means 0", async () => {
    const sink = new PassThrough();
    const got: Buffer[] = [];
    sink.on("data", (d: Buffer) => got.push(d));
    targets[0] = { kind: "tar", stream: sink };
    const call = rawBidi(srv.sock, METHOD, {});
    call.send(toBinary(BytesMessageSchema, create(BytesMessageSchema, { data: Buffer.from("hello ") })));
    call.send(toBinary(BytesMessageSchema, create(BytesMessageSchema, { data: Buffer.from("tar") })));
    call.end();
    for await (const _ of call.messages) {
      // none expected
    }
    assert.equal((await call.status).code, 0);
    call.close();
    assert.equal(Buffer.concat(got).toString(), "hello tar");
    assert.ok(sink.writableEnded);
  });

  test("no target for the exporter id is NOT_FOUND", async () => {
    targets.length = 0;
    const call = rawBidi(srv.sock, METHOD, { "buildkit-attachable-exporter-id": "5" });
    call.end();
    for await (const _ of call.messages) {
      // none expected
    }
    assert.equal((await call.status).code, Code.NotFound);
    call.close();
  });

  test("local target: files, dirs, symlinks, hardlinks, modes and mtimes", async () => {
    const dest = path.join(tmp, "local-out");
    targets[2] = { kind: "local", dest };
    const t = 1_650_000_000_123_456_000n;
    const { status, requested, fin } = await sendLocal(2, [
      { stat: { path: "bin", mode: GoMode.dir + 0o555, modTime: t } },
      {
        stat: { path: "bin/tool", mode: GoMode.setuid + 0o755, size: 20n, modTime: t },
        data: Buffer.from("#!/bin/sh\necho tool\n"),
      },
      { stat: { path: "empty", mode: 0o600, modTime: t } },
      { stat: { path: "hard", mode: 0o755, linkname: "bin/tool", modTime: t } },
      { stat: { path: "link", mode: GoMode.symlink + 0o777, linkname: "bin/tool", modTime: t } },
      { stat: { path: "tmp", mode: GoMode.dir + GoMode.sticky + 0o777, modTime: t } },
      { stat: { path: "tmp/ro.txt", mode: 0o444, modTime: t }, data: Buffer.from("read only contents") },
    ]);
    assert.equal(status.code, 0, status.message);
    assert.ok(fin);
    assert.deepEqual(requested.sort(), [1, 2, 6]);
    assert.equal(await readFile(path.join(dest, "bin/tool"), "utf8"), "#!/bin/sh\necho tool\n");
    assert.equal(await readFile(path.join(dest, "tmp/ro.txt"), "utf8"), "read only contents");
    assert.equal((await stat(path.join(dest, "empty"))).size, 0);
    const tool = await stat(path.join(dest, "bin/tool"), { bigint: true });
    assert.equal(Number(tool.mode) & 0o7777, 0o4755);
    assert.equal(tool.ino, (await stat(path.join(dest, "hard"), { bigint: true })).ino);
    assert.equal(tool.mtimeNs / 1000n, t / 1000n, "mtime kept to the microsecond");
    assert.equal(await readlink(path.join(dest, "link")), "bin/tool");
    assert.equal((await stat(path.join(dest, "bin"))).mode & 0o7777, 0o555);
    const tmpDir = await stat(path.join(dest, "tmp"), { bigint: true });
    assert.equal(Number(tmpDir.mode) & 0o7777, 0o1777);
    assert.equal(tmpDir.mtimeNs / 1000n, t / 1000n, "dir mtime applied after its contents");
    const r = results.find((x) => x.exporterId === 2);
    assert.equal(r?.local?.files, 3);
    assert.equal(r?.local?.hardlinks, 1);
  });

  test("local target never writes outside dest", async () => {
    const outside = path.join(tmp, "outside");
    await mkdir(outside, { recursive: true });
    const dest = path.join(tmp, "hostile-out");
    await mkdir(dest, { recursive: true });
    // A pre-existing symlink in dest pointing outside must be replaced, not followed.
    await symlink(path.join(outside, "victim"), path.join(dest, "pre"));
    await writeFile(path.join(outside, "victim"), "untouched");
    targets[3] = { kind: "local", dest };

    const dotdot = await sendLocal(3, [{ stat: { path: "../escape", mode: 0o644 }, data: Buffer.from("x") }]);
    assert.equal(dotdot.status.code, Code.InvalidArgument, dotdot.status.message);

    const abs = await sendLocal(3, [{ stat: { path: "/etc-evil", mode: 0o644 } }]);
    assert.equal(abs.status.code, Code.InvalidArgument);

    const through = await sendLocal(3, [
      { stat: { path: "evil", mode: GoMode.symlink + 0o777, linkname: outside } },
      { stat: { path: "evil/pwned", mode: 0o644 }, data: Buffer.from("pwned") },
    ]);
    assert.equal(through.status.code, Code.InvalidArgument, through.status.message);

    const hardOut = await sendLocal(3, [{ stat: { path: "h", mode: 0o644, linkname: "../outside/victim" } }]);
    assert.equal(hardOut.status.code, Code.InvalidArgument);

    const pre = await sendLocal(3, [{ stat: { path: "pre", mode: 0o644 }, data: Buffer.from("new") }]);
    assert.equal(pre.status.code, 0, pre.status.message);
    assert.ok((await lstat(path.join(dest, "pre"))).isFile());
    assert.equal(await readFile(path.join(dest, "pre"), "utf8"), "new");

    assert.deepEqual((await readdir(outside)).sort(), ["victim"]);
    assert.equal(await readFile(path.join(outside, "victim"), "utf8"), "untouched");
    assert.deepEqual(
      (await readdir(tmp)).filter((n) => n === "escape"),
      [],
    );
  });
});
