import { createHash, type Hash } from "node:crypto";
import type { OffloadedSha256 } from "../util/index.js";
import { ImageError } from "./errors.js";

/** Only sha256 is accepted: it is what Docker, BuildKit and OCI layouts produce. */
const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

export type Digest = `sha256:${string}`;

/** Buffer and Uint8Array: the installed @types/node's Buffer no longer assigns to TS 5.9's Uint8Array. */
export type Bytes = Uint8Array | Buffer;

export function isDigest(value: string): value is Digest {
  return DIGEST_RE.test(value);
}

/** Throws invalid_digest unless value is `sha256:<64 lowercase hex>`. */
export function parseDigest(value: string): Digest {
  if (!isDigest(value)) throw new ImageError("invalid_digest", `invalid digest: ${JSON.stringify(value)}`);
  return value;
}

export function digestHex(digest: Digest): string {
  return digest.slice("sha256:".length);
}

export function newHash(): Hash {
  return createHash("sha256");
}

export function hashDigest(hash: Hash): Digest {
  return `sha256:${hash.digest("hex")}`;
}

/** Finishes an offloaded hash as a digest. */
export async function finishDigest(hash: OffloadedSha256): Promise<Digest> {
  return `sha256:${await hash.digest()}`;
}

export function digestOf(bytes: Bytes): Digest {
  return hashDigest(newHash().update(bytes as Uint8Array));
}
