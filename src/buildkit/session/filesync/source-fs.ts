import { lstatSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { open, realpath } from "node:fs/promises";
import path from "node:path";

/** What the FileSync sender needs to know about one entry (lstat's fields, POSIX st_mode). */
export interface SourceStat {
  mode: number;
  uid: number;
  gid: number;
  size: bigint;
  mtimeNs: bigint;
  /** Identity for hardlink detection; entries sharing it with nlink > 1 are one file. */
  ino: bigint;
  nlink: bigint;
  rdev: bigint;
}

export interface SourceDirent {
  name: string;
  isDir: boolean;
}

/** A file opened for sequential reads (asynchronous: large files are read in MiB chunks). */
export interface SourceFile {
  /** Reads up to `length` bytes into `buf` at `offset`; 0 at the end. */
  read(buf: Buffer, offset: number, length: number): Promise<number>;
  close(): Promise<void>;
}

/**
 * The read-only tree a local dir is served from. Paths are relative,
 * slash-separated, "" for the root; missing entries throw ENOENT-coded
 * errors like the fs module. Synchronous on purpose: the walk and small
 * reads are far faster without a thread-pool round trip per call.
 */
export interface SourceFS {
  lstat(rel: string): SourceStat;
  readdir(rel: string): SourceDirent[];
  readlink(rel: string): string;
  /** The whole file (callers use it for small files only). */
  readFile(rel: string): Buffer;
  open(rel: string): Promise<SourceFile>;
}

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;

export function isDirMode(mode: number): boolean {
  return (mode & S_IFMT) === S_IFDIR;
}

export function isSymlinkMode(mode: number): boolean {
  return (mode & S_IFMT) === S_IFLNK;
}

export function notFound(rel: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`ENOENT: no such file or directory, '${rel}'`), { code: "ENOENT" });
}

/** The subtree of `fs` at `dir` ("" for all of it) as a tree of its own. */
export function subSourceFS(fs: SourceFS, dir: string): SourceFS {
  if (dir === "") return fs;
  const at = (rel: string) => (rel === "" ? dir : `${dir}/${rel}`);
  return {
    lstat: (rel) => fs.lstat(at(rel)),
    readdir: (rel) => fs.readdir(at(rel)),
    readlink: (rel) => fs.readlink(at(rel)),
    readFile: (rel) => fs.readFile(at(rel)),
    open: (rel) => fs.open(at(rel)),
  };
}

/** A directory on this host (its real path, so a symlinked root is followed once). */
export async function hostSourceFS(root: string): Promise<SourceFS> {
  const base = await realpath(root);
  const abs = (rel: string) => (rel === "" ? base : path.join(base, rel));
  return {
    lstat(rel) {
      const st = lstatSync(abs(rel), { bigint: true });
      return {
        mode: Number(st.mode),
        uid: Number(st.uid),
        gid: Number(st.gid),
        size: st.size,
        mtimeNs: st.mtimeNs,
        ino: st.ino,
        nlink: st.nlink,
        rdev: st.rdev,
      };
    },
    readdir: (rel) =>
      readdirSync(abs(rel), { withFileTypes: true }).map((d) => ({ name: d.name, isDir: d.isDirectory() })),
    readlink: (rel) => readlinkSync(abs(rel)),
    readFile: (rel) => readFileSync(abs(rel)),
    async open(rel) {
      const fh = await open(abs(rel), "r");
      return {
        read: async (buf, offset, length) => (await fh.read(buf, offset, length, null)).bytesRead,
        close: () => fh.close(),
      };
    },
  };
}
