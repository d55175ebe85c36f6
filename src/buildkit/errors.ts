import { ArcaError, type ErrorKind } from "../util/index.js";

const kinds = {
  invalid_option: "invalid_argument",
  unavailable: "unavailable",
  canceled: "canceled",
  build_failed: "failed_precondition",
  session_failed: "internal",
  protocol: "internal",
  export_failed: "internal",
} as const satisfies Record<string, ErrorKind>;

export type BuildKitErrorCode = keyof typeof kinds;

/** The buildkit layer's one error class. */
export class BuildKitError extends ArcaError {
  override readonly name = "BuildKitError";
  readonly kind: ErrorKind;
  constructor(
    readonly code: BuildKitErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.kind = kinds[code];
  }
}
