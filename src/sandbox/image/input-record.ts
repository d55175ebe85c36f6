import { readFile, stat } from "node:fs/promises";
import type { LayerResult } from "./layer-writer.js";
import { writeFileAtomic } from "./oci-layout.js";

/** Everything that determines the image, except the bytes of host files (those are fingerprinted by stat). */
export interface InputKey {
  assembler: number;
  buildkitVersion: string;
  platform: string;
  sourceDateEpoch: number;
  gzipLevel: number;
  /** sha256 of the generated texts (entrypoint, buildkitd.toml). */
  texts: Record<string, string>;
  /** Resolved host path per tool role. */
  tools: Record<string, string>;
}

export interface FileStamp {
  path: string;
  size: number;
  mtimeMs: number;
  ino: number;
}

export interface AssembledImage extends LayerResult {
  manifestDigest: string;
  manifestSize: number;
  configDigest: string;
  configSize: number;
}

/** Written next to the layout after a successful assembly; the fast path compares against it. */
export interface InputRecord {
  key: InputKey;
  files: FileStamp[];
  image: AssembledImage;
}

export async function stampFiles(paths: string[]): Promise<FileStamp[]> {
  return Promise.all(
    paths.map(async (p) => {
      const st = await stat(p);
      return { path: p, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino };
    }),
  );
}

export async function readInputRecord(file: string): Promise<InputRecord | undefined> {
  try {
    return JSON.parse(await readFile(file, "utf8")) as InputRecord;
  } catch {
    return undefined;
  }
}

export async function writeInputRecord(file: string, record: InputRecord): Promise<void> {
  await writeFileAtomic(file, `${JSON.stringify(record, null, 2)}\n`);
}

/**
 * True when the record was made from these inputs: same key and every recorded host file unchanged (size,
 * mtime, inode). Stat instead of hashing ~100 MB keeps the check in the low milliseconds; a tool replaced by
 * `npm run setup` changes at least its mtime or inode.
 */
export async function recordMatches(record: InputRecord | undefined, key: InputKey): Promise<boolean> {
  if (!record || JSON.stringify(record.key) !== JSON.stringify(key)) return false;
  try {
    const now = await stampFiles(record.files.map((f) => f.path));
    return JSON.stringify(now) === JSON.stringify(record.files);
  } catch {
    return false;
  }
}
