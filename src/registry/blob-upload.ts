import type { Readable } from "node:stream";
import { RegistryError } from "./errors.js";
import type { RepositoryClient } from "./repository.js";

/** Blobs up to this size go in one PUT; larger ones in PATCH chunks of this size, then a PUT. */
export const CHUNK_SIZE = 128 * 1024 * 1024;

export interface BlobToPush {
  digest: string;
  size: number;
  /** A fresh stream of the blob's bytes from `start` to `end` (inclusive; default: the last). */
  open(start: number, end?: number): Readable;
}

export type UploadOutcome = { kind: "exists" } | { kind: "mounted"; from: string } | { kind: "pushed" };

/**
 * One blob into a repository: HEAD (already there?), a cross-repository
 * mount from a repository known to hold it, else an upload (monolithic
 * PUT, or PATCH chunks with Content-Range then the closing PUT).
 */
export async function uploadBlob(
  repo: RepositoryClient,
  blob: BlobToPush,
  mountFrom: string[],
  onBytes: (sent: number) => void,
): Promise<UploadOutcome> {
  const head = await repo.send("HEAD", `blobs/${blob.digest}`, { accept: [404] });
  head.resume();
  if (head.statusCode === 200) return { kind: "exists" };
  let location: URL | undefined;
  for (const from of mountFrom.filter((f) => f !== repo.path).slice(0, 3)) {
    const url = repo.url("blobs/uploads/");
    url.searchParams.set("mount", blob.digest);
    url.searchParams.set("from", from);
    const res = await repo.send("POST", url, {
      headers: { "content-length": 0 },
      extraScopes: [`repository:${from}:pull`],
    });
    res.resume();
    if (res.statusCode === 201) return { kind: "mounted", from };
    location = locationOf(repo, res.headers.location);
    break;
  }
  if (!location) {
    const res = await repo.send("POST", "blobs/uploads/", { headers: { "content-length": 0 } });
    res.resume();
    location = locationOf(repo, res.headers.location);
  }
  if (blob.size <= CHUNK_SIZE) {
    location.searchParams.set("digest", blob.digest);
    const res = await repo.send("PUT", location, {
      headers: { "content-type": "application/octet-stream", "content-length": blob.size },
      body: counted(blob.open(0), 0, onBytes),
    });
    res.resume();
    return { kind: "pushed" };
  }
  for (let start = 0; start < blob.size; start += CHUNK_SIZE) {
    const end = Math.min(blob.size, start + CHUNK_SIZE) - 1;
    const body = counted(blob.open(start, end), start, onBytes);
    const res = await repo.send("PATCH", location, {
      headers: {
        "content-type": "application/octet-stream",
        "content-length": end - start + 1,
        "content-range": `${start}-${end}`,
      },
      body,
    });
    res.resume();
    location = locationOf(repo, res.headers.location);
  }
  location.searchParams.set("digest", blob.digest);
  const done = await repo.send("PUT", location, { headers: { "content-length": 0 } });
  done.resume();
  return { kind: "pushed" };
}

function locationOf(repo: RepositoryClient, loc: string | undefined): URL {
  if (!loc)
    throw new RegistryError(
      "bad_content",
      `${repo.auth.endpoint.base.host}: upload answer without a Location`,
    );
  return new URL(loc, repo.auth.endpoint.base);
}

function counted(src: Readable, start: number, onBytes: (n: number) => void): Readable {
  let sent = start;
  src.on("data", (c: Buffer) => {
    sent += c.length;
    onBytes(sent);
  });
  return src;
}
