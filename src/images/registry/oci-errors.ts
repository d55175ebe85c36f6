import { findArcaError } from "../../util/index.js";
import { ImageError } from "../errors.js";

export type OciErrorCode =
  | "BLOB_UNKNOWN"
  | "BLOB_UPLOAD_INVALID"
  | "BLOB_UPLOAD_UNKNOWN"
  | "DENIED"
  | "DIGEST_INVALID"
  | "MANIFEST_BLOB_UNKNOWN"
  | "MANIFEST_INVALID"
  | "MANIFEST_UNKNOWN"
  | "NAME_INVALID"
  | "NAME_UNKNOWN"
  | "SIZE_INVALID"
  | "TAG_INVALID"
  | "UNSUPPORTED"
  | "UNKNOWN";

/** An error as the distribution spec shapes it: a status and `{"errors":[{code,message}]}`. */
export class RegistryHttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: OciErrorCode,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** Where an error happened changes its OCI code (a missing blob is BLOB_UNKNOWN on GET, MANIFEST_BLOB_UNKNOWN on PUT). */
export type RegistryContext = "manifest-get" | "manifest-put" | "blob" | "upload";

export function toRegistryError(err: unknown, ctx: RegistryContext): RegistryHttpError {
  if (err instanceof RegistryHttpError) return err;
  const arca = findArcaError(err);
  const msg = (err as Error)?.message ?? String(err);
  if (!(arca instanceof ImageError)) return new RegistryHttpError(500, "UNKNOWN", msg);
  switch (arca.code) {
    case "invalid_reference":
      return new RegistryHttpError(400, "NAME_INVALID", msg);
    case "invalid_digest":
    case "digest_mismatch":
      return new RegistryHttpError(400, "DIGEST_INVALID", msg);
    case "size_mismatch":
      return new RegistryHttpError(400, "SIZE_INVALID", msg);
    case "invalid_manifest":
      return new RegistryHttpError(400, "MANIFEST_INVALID", msg);
    case "blob_not_found":
      return ctx === "manifest-put"
        ? new RegistryHttpError(400, "MANIFEST_BLOB_UNKNOWN", msg)
        : new RegistryHttpError(404, "BLOB_UNKNOWN", msg);
    case "manifest_not_found":
    case "image_not_found":
      return new RegistryHttpError(404, "MANIFEST_UNKNOWN", msg);
    case "upload_not_found":
      return new RegistryHttpError(404, "BLOB_UPLOAD_UNKNOWN", msg);
    case "invalid_offset":
      return new RegistryHttpError(416, "BLOB_UPLOAD_INVALID", msg);
    case "upload_busy":
      return new RegistryHttpError(409, "BLOB_UPLOAD_INVALID", msg);
    case "unsupported":
      return new RegistryHttpError(415, "UNSUPPORTED", msg);
    default:
      return new RegistryHttpError(500, "UNKNOWN", msg);
  }
}
