import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** An image read from an unpacked `docker save` or OCI layout archive. */
export interface ArchiveImage {
  /** The raw config JSON. */
  config: Record<string, unknown>;
  /** sha256:… of the config blob when the archive names blobs by digest (OCI layout), else of the file. */
  configDigest: string;
  /** sha256:… of the image manifest, when the archive has one (OCI layout). */
  manifestDigest?: string;
  /** Layer blob files, lowest first. */
  layers: string[];
}

interface Descriptor {
  mediaType?: string;
  digest: string;
}

const INDEX_TYPES = new Set([
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
]);

function blobPath(dir: string, digest: string): string {
  const [alg, hex] = digest.split(":");
  return path.join(dir, "blobs", alg as string, hex as string);
}

async function readJson<T>(file: string): Promise<T> {
  return JSON.parse(await readFile(file, "utf8")) as T;
}

/** Unpacks an image archive (tar) into `dir` with the system tar (streams; blobs stay on disk). */
export async function unpackArchive(archive: string, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await run("tar", ["-xf", archive, "-C", dir]);
}

/**
 * Reads the single image of an unpacked archive: through index.json (OCI
 * layout, following nested indexes to the first manifest) when present, else
 * manifest.json (`docker save` of dockerd 20.10, which has no index.json).
 */
export async function readArchiveImage(dir: string): Promise<ArchiveImage> {
  if (existsSync(path.join(dir, "index.json"))) {
    let desc = (await readJson<{ manifests: Descriptor[] }>(path.join(dir, "index.json"))).manifests[0];
    for (;;) {
      if (!desc) throw new Error(`${dir}: index.json names no manifest`);
      if (!INDEX_TYPES.has(desc.mediaType ?? "")) break;
      desc = (await readJson<{ manifests: Descriptor[] }>(blobPath(dir, desc.digest))).manifests[0];
    }
    const manifest = await readJson<{ config: Descriptor; layers: Descriptor[] }>(blobPath(dir, desc.digest));
    return {
      config: await readJson(blobPath(dir, manifest.config.digest)),
      configDigest: manifest.config.digest,
      manifestDigest: desc.digest,
      layers: manifest.layers.map((l) => blobPath(dir, l.digest)),
    };
  }
  const [m] = await readJson<{ Config: string; Layers: string[] }[]>(path.join(dir, "manifest.json"));
  if (!m) throw new Error(`${dir}: manifest.json lists no image`);
  const base = path.basename(m.Config).replace(/\.json$/, "");
  return {
    config: await readJson(path.join(dir, m.Config)),
    configDigest: `sha256:${base}`,
    layers: m.Layers.map((l) => path.join(dir, l)),
  };
}
