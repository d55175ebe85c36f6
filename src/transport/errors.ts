import { CodedError, type ErrorKind } from "../util/index.js";

/** Closed set of transport failure codes; each maps to exactly one kind. */
const CODE_KIND = {
  invalid_address: "invalid_argument",
  tls_config: "invalid_argument",
  unsupported: "failed_precondition",
  permission_denied: "failed_precondition",
  refused: "unavailable",
  not_found: "unavailable",
  timeout: "unavailable",
  reset: "unavailable",
  unreachable: "unavailable",
  handshake_failed: "unavailable",
  tls_failed: "unavailable",
  dial_failed: "unavailable",
  unavailable: "unavailable",
  address_in_use: "conflict",
  aborted: "canceled",
} as const satisfies Record<string, ErrorKind>;

export type TransportErrorCode = keyof typeof CODE_KIND;

export class TransportError extends CodedError<TransportErrorCode> {
  override readonly name = "TransportError";
  constructor(code: TransportErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, CODE_KIND, message, options);
  }
}

const ERRNO_CODE: Record<string, TransportErrorCode> = {
  ECONNREFUSED: "refused",
  ENOENT: "not_found",
  ENOTFOUND: "not_found",
  ENOTDIR: "not_found",
  ETIMEDOUT: "timeout",
  ECONNRESET: "reset",
  EPIPE: "reset",
  ECONNABORTED: "reset",
  ERR_STREAM_PREMATURE_CLOSE: "reset",
  EHOSTUNREACH: "unreachable",
  ENETUNREACH: "unreachable",
  EHOSTDOWN: "unreachable",
  EAI_AGAIN: "unreachable",
  EACCES: "permission_denied",
  EPERM: "permission_denied",
  EADDRINUSE: "address_in_use",
  ABORT_ERR: "aborted",
  ERR_TLS_CERT_ALTNAME_INVALID: "tls_failed",
  DEPTH_ZERO_SELF_SIGNED_CERT: "tls_failed",
  SELF_SIGNED_CERT_IN_CHAIN: "tls_failed",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "tls_failed",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "tls_failed",
  CERT_HAS_EXPIRED: "tls_failed",
  CERT_NOT_YET_VALID: "tls_failed",
};

function codeOf(err: unknown): TransportErrorCode | undefined {
  const e = err as { code?: unknown; name?: unknown };
  if (typeof e.code === "string") {
    const mapped = ERRNO_CODE[e.code];
    if (mapped) return mapped;
    // OpenSSL failures surface as ERR_SSL_* codes (alerts, bad certificates, ...).
    if (e.code.startsWith("ERR_SSL_")) return "tls_failed";
  }
  if (e.name === "AbortError") return "aborted";
  return undefined;
}

/**
 * The one place that turns whatever a socket operation threw into a
 * TransportError: an existing TransportError is returned as is, otherwise the
 * cause chain is walked for the first errno/abort it recognises.
 */
export function toTransportError(err: unknown, what: string): TransportError {
  let cur: unknown = err;
  for (let i = 0; i < 16 && cur; i++) {
    if (cur instanceof TransportError) return cur;
    const code = codeOf(cur);
    if (code) return new TransportError(code, `${what}: ${describe(cur)}`, { cause: err });
    cur = (cur as { cause?: unknown }).cause;
  }
  return new TransportError("dial_failed", `${what}: ${describe(err)}`, { cause: err });
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
