import { type Digest, digestOf, MANIFEST_SIZE_LIMIT } from "../images/index.js";
import { RegistryError } from "./errors.js";
import { MANIFEST_ACCEPT, SCHEMA1_TYPES } from "./media.js";
import type { RepositoryClient } from "./repository.js";
import { readBody } from "./transport.js";

export interface FetchedManifest {
  bytes: Buffer;
  mediaType: string;
  digest: Digest;
}

/**
 * GET a manifest or index by tag or digest (at most 4 MiB, as distribution
 * allows). By digest, the bytes must hash to it. Schema 1 is refused with a
 * message that says what to do.
 */
export async function fetchManifest(
  repo: RepositoryClient,
  reference: string,
  shown: string,
): Promise<FetchedManifest> {
  const res = await repo.send("GET", `manifests/${reference}`, { headers: { accept: MANIFEST_ACCEPT } });
  const bytes = await readBody(res, MANIFEST_SIZE_LIMIT, `manifest for ${shown}`);
  const declared =
    String(res.headers["content-type"] ?? "")
      .split(";")[0]
      ?.trim() ?? "";
  let doc: { schemaVersion?: number; mediaType?: string; manifests?: unknown; config?: unknown };
  try {
    doc = JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new RegistryError("bad_content", `manifest for ${shown} is not JSON`);
  }
  if (SCHEMA1_TYPES.has(declared) || doc?.schemaVersion === 1) {
    throw new RegistryError(
      "unsupported",
      `${shown} has a Docker Image manifest version 2, schema 1, which Arca does not read (as dockerd since v28): push it again with a current docker or buildx to get a schema 2 or OCI manifest`,
    );
  }
  const digest = digestOf(bytes);
  if (reference.startsWith("sha256:") && digest !== reference) {
    throw new RegistryError(
      "bad_content",
      `manifest verification failed for digest ${reference} (got ${digest})`,
    );
  }
  const mediaType =
    declared && declared !== "application/json" && declared !== "text/plain"
      ? declared
      : typeof doc.mediaType === "string"
        ? doc.mediaType
        : Array.isArray(doc.manifests)
          ? "application/vnd.oci.image.index.v1+json"
          : "application/vnd.oci.image.manifest.v1+json";
  return { bytes, mediaType, digest };
}
