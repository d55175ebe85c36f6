import { CodedError, type ErrorKind, findArcaError } from "../util/index.js";

const kinds = {
  invalid_parameter: "invalid_argument",
  not_found: "not_found",
  conflict: "conflict",
  unsupported: "failed_precondition",
  unavailable: "unavailable",
  /** An Engine API endpoint Arca does not serve (see unsupported-routes.ts): 501, as dockerd's NotImplemented. */
  not_implemented: "unimplemented",
  /** dockerd answers some protocol errors with a plain 500 (e.g. a /grpc request that is no h2c upgrade). */
  protocol_error: "internal",
} as const satisfies Record<string, ErrorKind>;

export type ApiErrorCode = keyof typeof kinds;

/** Errors the API layer raises itself (request validation); lower layers raise their own. */
export class ApiError extends CodedError<ApiErrorCode> {
  override readonly name = "ApiError";
  constructor(code: ApiErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, kinds, message, options);
  }
}

/**
 * Abort reasons for a peer gone away, shared: building a stack for every closed call and
 * connection was the daemon's largest single cost in a cached buildx build (~0.7 ms of CPU).
 */
export const CALL_CLOSED = new ApiError("unavailable", "call closed");
export const CLIENT_DISCONNECTED = new ApiError("unavailable", "client disconnected");

const STATUS: Record<ErrorKind, number> = {
  invalid_argument: 400,
  not_found: 404,
  conflict: 409,
  failed_precondition: 400,
  unavailable: 503,
  canceled: 499,
  unimplemented: 501,
  unauthenticated: 401,
  internal: 500,
};

/**
 * The one place where errors become HTTP status codes (as dockerd's
 * httpstatus.FromError): by the error's kind, never by its message.
 * Untyped errors are 500.
 */
export function httpStatusFor(err: unknown): number {
  const e = findArcaError(err);
  return e ? STATUS[e.kind] : 500;
}
