import { constants } from "node:fs";
import {
  chmod,
  type FileHandle,
  link,
  lstat,
  lutimes,
  mkdir,
  open,
  realpath,
  rm,
  symlink,
  unlink,
  utimes,
} from "node:fs/promises";
import path from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Stat } from "../../gen/fsutil/types/stat_pb.js";
import { type Packet, Packet_PacketType, type PacketSchema } from "../../gen/fsutil/types/wire_pb.js";
import { isDirGoMode, isRegularGoMode, isSymlinkGoMode, posixPermFromGoMode } from "../filesync/file-mode.js";
import { PacketQueue } from "../filesync/packet-queue.js";

type PacketInit = MessageInitShape<typeof PacketSchema>;

export interface LocalExportResult {
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  bytes: number;
  /** Devices, fifos and sockets: Node cannot create them, so they are skipped. */
  skipped: string[];
}

interface PendingFile {
  abs: string;
  stat: Stat;
  fh?: FileHandle;
}

/** Open files at once; fsutil's sender streams 4, so this only stops a hostile peer. */
const MAX_OPEN_FILES = 256;

const invalid = (msg: string) => new ConnectError(msg, Code.InvalidArgument);

/**
 * fsutil's receiver for the `local` exporter (buildkitd is the sender):
 * reads STATs until the empty STAT, REQuests every regular file, writes DATA,
 * creates dirs/symlinks/hardlinks, applies modes and mtimes once contents are
 * in, then sends FIN and drains. Merges into `dest` like buildx does.
 *
 * Nothing is written outside dest: paths must be clean and relative, every
 * parent must be a directory this stream created (so a symlink from the
 * stream is never traversed), duplicates are refused, and files are created
 * with O_EXCL|O_NOFOLLOW after removing whatever was there before.
 */
export function receiveLocal(
  requests: AsyncIterable<Packet>,
  dest: string,
  signal: AbortSignal,
): { packets: AsyncGenerator<PacketInit>; result: Promise<LocalExportResult> } {
  const out = new PacketQueue<PacketInit>(1 << 20);
  const result: LocalExportResult = { files: 0, dirs: 0, symlinks: 0, hardlinks: 0, bytes: 0, skipped: [] };
  const seen = new Set<string>();
  const dirs = new Set<string>([""]);
  const nonDirs = new Set<string>();
  const dirMeta: { abs: string; stat: Stat }[] = [];
  const pending = new Map<number, PendingFile>();
  let openFiles = 0;
  let root = "";
  let nextId = 0;
  let walkEnded = false;
  let finSent = false;

  const finishFile = async (id: number, f: PendingFile) => {
    const fh = f.fh ?? (await openExisting(f.abs));
    try {
      await fh.chmod(posixPermFromGoMode(f.stat.mode));
      const t = toSeconds(f.stat.modTime);
      await fh.utimes(t, t);
    } finally {
      await fh.close();
      if (f.fh) openFiles--;
    }
    pending.delete(id);
  };

  const maybeFinish = async () => {
    if (!walkEnded || pending.size > 0 || finSent) return;
    // Directory modes and mtimes last, deepest first, so writing children cannot disturb them.
    for (let i = dirMeta.length - 1; i >= 0; i--) {
      const { abs, stat } = dirMeta[i] as { abs: string; stat: Stat };
      await chmod(abs, posixPermFromGoMode(stat.mode));
      const t = toSeconds(stat.modTime);
      await utimes(abs, t, t);
    }
    finSent = true;
    await out.push({ type: Packet_PacketType.PACKET_FIN }, 2);
  };

  const handleStat = async (stat: Stat) => {
    const id = nextId++;
    const rel = stat.path;
    checkRelPath(rel);
    if (seen.has(rel)) throw invalid(`duplicate path ${JSON.stringify(rel)}`);
    const parent = rel.includes("/") ? rel.slice(0, rel.lastIndexOf("/")) : "";
    if (!dirs.has(parent)) throw invalid(`${JSON.stringify(rel)} arrived before its parent directory`);
    seen.add(rel);
    const abs = path.join(root, rel);
    const mode = stat.mode;
    if (isDirGoMode(mode)) {
      const st = await lstat(abs).catch(() => undefined);
      if (!st?.isDirectory()) {
        if (st) await rm(abs, { recursive: true, force: true });
        await mkdir(abs, { mode: 0o700 });
      } else {
        await chmod(abs, 0o700);
      }
      dirs.add(rel);
      dirMeta.push({ abs, stat });
      result.dirs++;
      return;
    }
    nonDirs.add(rel);
    if (isSymlinkGoMode(mode)) {
      await removeExisting(abs);
      await symlink(stat.linkname, abs);
      const t = toSeconds(stat.modTime);
      await lutimes(abs, t, t);
      result.symlinks++;
      return;
    }
    if (!isRegularGoMode(mode)) {
      result.skipped.push(rel);
      return;
    }
    if (stat.linkname !== "") {
      // A hardlink to an earlier non-directory of this stream.
      checkRelPath(stat.linkname);
      if (!nonDirs.has(stat.linkname) || stat.linkname === rel) {
        throw invalid(`hardlink ${JSON.stringify(rel)} to unknown ${JSON.stringify(stat.linkname)}`);
      }
      await removeExisting(abs);
      await link(path.join(root, stat.linkname), abs);
      result.hardlinks++;
      return;
    }
    await removeExisting(abs);
    const fh = await open(
      abs,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      0o600,
    );
    await fh.close();
    pending.set(id, { abs, stat });
    result.files++;
    await out.push({ type: Packet_PacketType.PACKET_REQ, ID: id }, 8);
  };

  const handleData = async (p: Packet) => {
    const f = pending.get(p.ID);
    if (!f) throw invalid(`invalid file request ${p.ID}`);
    if (p.data.length === 0) {
      await finishFile(p.ID, f);
      await maybeFinish();
      return;
    }
    if (!f.fh) {
      if (openFiles >= MAX_OPEN_FILES) throw invalid("too many files written at once");
      f.fh = await openExisting(f.abs);
      openFiles++;
    }
    let off = 0;
    while (off < p.data.length) {
      const { bytesWritten } = await f.fh.write(p.data, off, p.data.length - off);
      off += bytesWritten;
    }
    result.bytes += p.data.length;
  };

  const run = async () => {
    await mkdir(dest, { recursive: true, mode: 0o700 });
    root = await realpath(dest);
    for await (const p of requests) {
      if (signal.aborted) throw signal.reason;
      switch (p.type) {
        case Packet_PacketType.PACKET_STAT:
          if (walkEnded) throw invalid("STAT after the end of the walk");
          if (!p.stat) {
            walkEnded = true;
            await maybeFinish();
          } else {
            await handleStat(p.stat);
          }
          break;
        case Packet_PacketType.PACKET_DATA:
          await handleData(p);
          break;
        case Packet_PacketType.PACKET_ERR:
          throw new ConnectError(`error from sender: ${new TextDecoder().decode(p.data)}`, Code.Aborted);
        case Packet_PacketType.PACKET_FIN:
          if (!finSent) throw invalid("FIN before the transfer completed");
          out.close();
          return;
      }
    }
    if (!finSent) throw invalid("stream ended before the transfer completed");
    out.close();
  };

  const done = run().catch(async (err) => {
    for (const f of pending.values()) await f.fh?.close().catch(() => {});
    out.fail(err instanceof ConnectError ? err : ConnectError.from(err));
    throw err;
  });
  const final = done.then(() => result);
  // The failure reaches the caller through `packets`; nobody may await `result` then.
  final.catch(() => {});
  return { packets: out.drain(), result: final };
}

function checkRelPath(p: string): void {
  if (p === "" || p.startsWith("/") || p.includes("\0")) throw invalid(`invalid path ${JSON.stringify(p)}`);
  for (const part of p.split("/")) {
    if (part === "" || part === "." || part === "..") throw invalid(`invalid path ${JSON.stringify(p)}`);
  }
}

async function removeExisting(abs: string): Promise<void> {
  const st = await lstat(abs).catch(() => undefined);
  if (!st) return;
  if (st.isDirectory()) await rm(abs, { recursive: true, force: true });
  else await unlink(abs);
}

function openExisting(abs: string): Promise<FileHandle> {
  return open(abs, constants.O_WRONLY | constants.O_NOFOLLOW);
}

/** fsutil stores ns; Node takes seconds as a double (microsecond precision is kept). */
function toSeconds(ns: bigint): number {
  return Number(ns / 1000n) / 1e6;
}
