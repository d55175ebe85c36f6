import { randomUUID } from "node:crypto";
import { mkdir, readdir, readFile, rename, stat, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { MediaTypes } from "../../images/index.js";
import { SandboxError } from "../errors.js";

/** The annotation an OCI layout uses to name a manifest. */
export const REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name";

export interface LayoutDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

export function blobPath(layoutDir: string, digest: string): string {
  const hex = /^sha256:([a-f0-9]{64})$/.exec(digest)?.[1];
  if (!hex) throw new SandboxError("invalid_layout", `not a sha256 digest: ${digest}`);
  return path.join(layoutDir, "blobs", "sha256", hex);
}

/** Writes a file via a temp name and rename, so readers see the old or the new content, never half. */
export async function writeFileAtomic(file: string, data: Buffer | string): Promise<void> {
  const tmp = `${file}.tmp-${randomUUID()}`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, file);
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

/** Moves a finished temp file into the blob store under its digest (already verified by the writer). */
export async function commitBlobFile(layoutDir: string, digest: string, tmpFile: string): Promise<void> {
  await mkdir(path.join(layoutDir, "blobs", "sha256"), { recursive: true });
  await rename(tmpFile, blobPath(layoutDir, digest));
}

export async function writeBlob(layoutDir: string, digest: string, bytes: Buffer): Promise<void> {
  await mkdir(path.join(layoutDir, "blobs", "sha256"), { recursive: true });
  const file = blobPath(layoutDir, digest);
  if ((await stat(file).catch(() => undefined))?.size === bytes.length) return;
  await writeFileAtomic(file, bytes);
}

/**
 * Points the layout at one manifest: `oci-layout`, then `index.json` (atomically, last, so a reader never
 * sees an index whose blobs are missing), then removes blobs nothing references any more (the previous
 * image's ~100 MB layer).
 */
export async function publishLayout(
  layoutDir: string,
  manifest: LayoutDescriptor,
  keep: string[],
): Promise<void> {
  await writeFileAtomic(
    path.join(layoutDir, "oci-layout"),
    `${JSON.stringify({ imageLayoutVersion: "1.0.0" })}\n`,
  );
  const index = { schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: [manifest] };
  await writeFileAtomic(path.join(layoutDir, "index.json"), `${JSON.stringify(index)}\n`);
  const wanted = new Set([manifest.digest, ...keep].map((d) => path.basename(blobPath(layoutDir, d))));
  const dir = path.join(layoutDir, "blobs", "sha256");
  for (const name of await readdir(dir)) {
    if (!wanted.has(name)) await unlink(path.join(dir, name)).catch(() => {});
  }
}

/** The single manifest descriptor of a layout's index.json. */
export async function readLayoutManifest(layoutDir: string): Promise<LayoutDescriptor> {
  let index: { manifests?: LayoutDescriptor[] };
  try {
    index = JSON.parse(await readFile(path.join(layoutDir, "index.json"), "utf8")) as typeof index;
  } catch (err) {
    throw new SandboxError(
      "invalid_layout",
      `cannot read ${layoutDir}/index.json: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  const m = index.manifests?.[0];
  if (!m || typeof m.digest !== "string" || index.manifests?.length !== 1) {
    throw new SandboxError("invalid_layout", `${layoutDir}/index.json must list exactly one manifest`);
  }
  return m;
}
