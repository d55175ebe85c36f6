import { CodedError, type ErrorKind } from "../util/index.js";

/** Closed set of runtime error codes; each maps to exactly one kind. */
const CODE_KIND = {
  not_found: "not_found",
  image_not_found: "not_found",
  /** Name already in use, or the container is running where that is not allowed. */
  conflict: "conflict",
  not_running: "conflict",
  invalid_spec: "invalid_argument",
  runc_failed: "internal",
  rootfs_failed: "internal",
  closed: "unavailable",
  internal: "internal",
} as const satisfies Record<string, ErrorKind>;

export type RuntimeErrorCode = keyof typeof CODE_KIND;

export class RuntimeError extends CodedError<RuntimeErrorCode> {
  override readonly name = "RuntimeError";
  constructor(code: RuntimeErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, CODE_KIND, message, options);
  }
}
