import { CodedError, type ErrorKind } from "../util/index.js";

/** Closed set of image-layer error codes; the kind is derived, never chosen per throw site. */
export type ImageErrorCode =
  | "invalid_reference"
  | "invalid_digest"
  | "invalid_manifest"
  | "invalid_archive"
  | "digest_mismatch"
  | "size_mismatch"
  | "invalid_offset"
  | "image_not_found"
  | "blob_not_found"
  | "manifest_not_found"
  | "upload_not_found"
  | "ambiguous_reference"
  | "image_conflict"
  | "upload_busy"
  | "unsupported"
  | "store_failed";

const KINDS: Record<ImageErrorCode, ErrorKind> = {
  invalid_reference: "invalid_argument",
  invalid_digest: "invalid_argument",
  invalid_manifest: "invalid_argument",
  invalid_archive: "invalid_argument",
  digest_mismatch: "invalid_argument",
  size_mismatch: "invalid_argument",
  invalid_offset: "invalid_argument",
  image_not_found: "not_found",
  blob_not_found: "not_found",
  manifest_not_found: "not_found",
  upload_not_found: "not_found",
  ambiguous_reference: "invalid_argument",
  image_conflict: "conflict",
  upload_busy: "conflict",
  unsupported: "failed_precondition",
  store_failed: "internal",
};

export class ImageError extends CodedError<ImageErrorCode> {
  override readonly name = "ImageError";
  constructor(code: ImageErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, KINDS, message, options);
  }
}
