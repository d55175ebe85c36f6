import { CodedError, type ErrorKind } from "../util/index.js";

const kinds = {
  /** A --backend flag or backends.json entry that cannot be used. */
  invalid_config: "invalid_argument",
  /** No backend of that name. */
  unknown_backend: "not_found",
  /** No backend can take the build (all down, drained or removed). */
  no_backend: "unavailable",
  /** The backend a build or call was on went away. */
  backend_lost: "unavailable",
  /** The operation conflicts with the backend's state (e.g. removing the last one). */
  conflict: "conflict",
} as const satisfies Record<string, ErrorKind>;

export type BackendErrorCode = keyof typeof kinds;

/** Errors of the backend pool: configuration, routing, health. */
export class BackendError extends CodedError<BackendErrorCode> {
  override readonly name = "BackendError";
  constructor(code: BackendErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, kinds, message, options);
  }
}
