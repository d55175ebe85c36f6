import { CodedError, type ErrorKind } from "../util/index.js";

/** Closed set of registry-client error codes; the kind is derived, never chosen per throw site. */
const KINDS = {
  /** The registry refused the credentials, or asked for some and none were given (401). */
  unauthorized: "unauthenticated",
  /** The registry says the credentials may not do this (403). */
  denied: "failed_precondition",
  /** The manifest, tag, blob or repository does not exist (404). */
  not_found: "not_found",
  /** A bad name, tag, platform or X-Registry-Auth header. */
  invalid_request: "invalid_argument",
  /** What the registry sent is not what was asked for (digest or size mismatch, bad manifest). */
  bad_content: "failed_precondition",
  /** A manifest format Arca does not read (schema 1) or a request it does not serve (--all-tags). */
  unsupported: "failed_precondition",
  /** The registry cannot be reached, answered with an error, or stopped answering. */
  unreachable: "unavailable",
} as const satisfies Record<string, ErrorKind>;

export type RegistryErrorCode = keyof typeof KINDS;

export class RegistryError extends CodedError<RegistryErrorCode> {
  override readonly name = "RegistryError";
  constructor(code: RegistryErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, KINDS, message, options);
  }
}
