import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { PassThrough, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import tar from "tar-stream";

/** One path of a flattened image filesystem, as far as a conformance check cares (no mtimes). */
export interface TreeEntry {
  type: "file" | "dir" | "symlink" | "char" | "block" | "fifo";
  /** Permission bits plus setuid/setgid/sticky (07777). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  sha256?: string;
  /** Symlink target. */
  link?: string;
  /** Device numbers of char/block devices. */
  dev?: string;
  /** Other paths sharing this file's inode (hardlinks), filled in by {@link FlatTree.finish}. */
  hardlinks?: string[];
}

/** What a layer tar entry says, before it is applied (the content already hashed). */
export interface LayerEntry {
  path: string;
  kind: "file" | "dir" | "symlink" | "hardlink" | "char" | "block" | "fifo" | "whiteout" | "opaque";
  mode: number;
  uid: number;
  gid: number;
  size: number;
  sha256?: string;
  /** Symlink target, or the hardlink's target path (normalized). */
  link?: string;
  dev?: string;
}

const WHITEOUT = ".wh.";
const OPAQUE = ".wh..wh..opq";

/** `./a/b/` → `a/b`; the root is "". */
export function normalizePath(p: string): string {
  const parts: string[] = [];
  for (const seg of p.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") parts.pop();
    else parts.push(seg);
  }
  return parts.join("/");
}

function parentOf(p: string): string {
  const i = p.lastIndexOf("/");
  return i < 0 ? "" : p.slice(0, i);
}

function baseOf(p: string): string {
  return p.slice(p.lastIndexOf("/") + 1);
}

/** Classifies a tar header (and its whiteout naming) into a {@link LayerEntry} without content. */
export function layerEntryFromHeader(h: tar.Header): LayerEntry {
  const path = normalizePath(h.name);
  const base = baseOf(path);
  const common = {
    mode: (h.mode ?? 0) & 0o7777,
    uid: h.uid ?? 0,
    gid: h.gid ?? 0,
    size: 0,
  };
  if (base === OPAQUE) return { ...common, path: parentOf(path), kind: "opaque" };
  if (base.startsWith(WHITEOUT)) {
    const dir = parentOf(path);
    const name = base.slice(WHITEOUT.length);
    return { ...common, path: dir ? `${dir}/${name}` : name, kind: "whiteout" };
  }
  switch (h.type) {
    case "directory":
      return { ...common, path, kind: "dir" };
    case "symlink":
      return { ...common, path, kind: "symlink", link: h.linkname ?? "" };
    case "link":
      return { ...common, path, kind: "hardlink", link: normalizePath(h.linkname ?? "") };
    case "character-device":
    case "block-device":
      return {
        ...common,
        path,
        kind: h.type === "block-device" ? "block" : "char",
        dev: `${h.devmajor ?? 0}:${h.devminor ?? 0}`,
      };
    case "fifo":
      return { ...common, path, kind: "fifo" };
    default:
      return { ...common, path, kind: "file", size: h.size ?? 0 };
  }
}

interface Node extends TreeEntry {
  inode: number;
}

/**
 * An image's filesystem, flattened by applying its layers in order with
 * OCI whiteout semantics: a layer's whiteouts and opaque markers hide only
 * what lower layers put there, never the layer's own entries.
 */
export class FlatTree {
  readonly #nodes = new Map<string, Node>();
  #nextInode = 1;

  applyLayer(entries: LayerEntry[]): void {
    for (const e of entries) {
      if (e.kind === "whiteout") this.#remove(e.path);
      else if (e.kind === "opaque") this.#removeBelow(e.path);
    }
    for (const e of entries) {
      if (e.kind === "whiteout" || e.kind === "opaque" || e.path === "") continue;
      const old = this.#nodes.get(e.path);
      // A non-directory replacing a directory takes its subtree with it.
      if (old?.type === "dir" && e.kind !== "dir") this.#removeBelow(e.path);
      if (e.kind === "hardlink") {
        const target = this.#nodes.get(e.link ?? "");
        if (!target) throw new Error(`hardlink ${e.path} → ${e.link}: target not found`);
        this.#nodes.set(e.path, { ...target });
        continue;
      }
      const node: Node = {
        type: e.kind,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        size: e.kind === "file" ? e.size : 0,
        inode: this.#nextInode++,
      };
      if (e.sha256 !== undefined) node.sha256 = e.sha256;
      if (e.link !== undefined) node.link = e.link;
      if (e.dev !== undefined) node.dev = e.dev;
      this.#nodes.set(e.path, node);
    }
  }

  #remove(p: string): void {
    this.#nodes.delete(p);
    this.#removeBelow(p);
  }

  #removeBelow(dir: string): void {
    const prefix = dir === "" ? "" : `${dir}/`;
    for (const k of [...this.#nodes.keys()]) if (k.startsWith(prefix) && k !== dir) this.#nodes.delete(k);
  }

  /** The flattened tree, sorted by path, hardlink groups filled in. */
  finish(): Map<string, TreeEntry> {
    const byInode = new Map<number, string[]>();
    for (const [p, n] of this.#nodes) {
      if (n.type !== "file") continue;
      const g = byInode.get(n.inode) ?? [];
      g.push(p);
      byInode.set(n.inode, g);
    }
    const out = new Map<string, TreeEntry>();
    for (const p of [...this.#nodes.keys()].sort()) {
      const { inode, ...entry } = this.#nodes.get(p) as Node;
      const group = byInode.get(inode);
      if (group && group.length > 1) entry.hardlinks = group.filter((x) => x !== p).sort();
      out.set(p, entry);
    }
    return out;
  }
}

/** Plain bytes of a layer blob: gunzip when it starts with the gzip magic. */
async function openLayer(file: string): Promise<Readable> {
  const head = await new Promise<Buffer>((resolve, reject) => {
    const s = createReadStream(file, { start: 0, end: 1 });
    const chunks: Buffer[] = [];
    s.on("data", (c) => chunks.push(c as Buffer));
    s.on("end", () => resolve(Buffer.concat(chunks)));
    s.on("error", reject);
  });
  const raw = createReadStream(file);
  if (head[0] === 0x28 && head[1] === 0xb5) throw new Error(`${file}: zstd layers are not supported here`);
  if (head[0] !== 0x1f || head[1] !== 0x8b) return raw;
  const gunzip = createGunzip();
  raw.on("error", (e) => gunzip.destroy(e));
  return raw.pipe(gunzip);
}

/** Reads one layer blob (tar, or gzipped tar) into entries, hashing file contents as they stream by. */
export async function readLayer(file: string): Promise<LayerEntry[]> {
  const entries: LayerEntry[] = [];
  const extract = tar.extract();
  extract.on("entry", (header, stream, next) => {
    const e = layerEntryFromHeader(header);
    const hash = createHash("sha256");
    let size = 0;
    stream.on("data", (chunk) => {
      const c = chunk as Buffer;
      hash.update(c);
      size += c.length;
    });
    stream.on("end", () => {
      if (e.kind === "file") {
        e.sha256 = hash.digest("hex");
        e.size = size;
      }
      entries.push(e);
      next();
    });
    stream.resume();
  });
  await pipeline(await openLayer(file), new PassThrough(), extract);
  return entries;
}

/** Flattens an image's layer blobs (lowest first). */
export async function flattenLayers(files: string[]): Promise<Map<string, TreeEntry>> {
  const tree = new FlatTree();
  for (const f of files) tree.applyLayer(await readLayer(f));
  return tree.finish();
}

/** One line per path: what the comparison diffs (`path type mode uid:gid size sha link`). */
export function describeEntry(p: string, e: TreeEntry): string {
  const mode = e.mode.toString(8).padStart(4, "0");
  const parts = [`/${p}`, e.type, mode, `${e.uid}:${e.gid}`];
  if (e.type === "file") parts.push(String(e.size), (e.sha256 ?? "").slice(0, 16));
  if (e.link !== undefined) parts.push(`-> ${e.link}`);
  if (e.dev !== undefined) parts.push(e.dev);
  if (e.hardlinks) parts.push(`links=${e.hardlinks.map((x) => `/${x}`).join(",")}`);
  return parts.join(" ");
}
