import { ArcaError, type ErrorKind } from "../util/index.js";

const kinds = {
  /** A request parameter dockerd rejects as invalid (400). */
  invalid_parameter: "invalid_argument",
  /** The build context archive cannot be read or is unsafe (400). */
  invalid_context: "invalid_argument",
  /** A feature this daemon does not offer (squash, remote contexts…) (400). */
  unsupported: "failed_precondition",
  /** What dockerd rejects with an untyped error, hence 500 (bad `t`, `shmsize`, network mode). */
  rejected: "internal",
  /** The daemon could not store the uploaded context (a full disk, an I/O error): its fault, not the client's (500). */
  spool_failed: "internal",
  /** The build was canceled (client gone or POST /build/cancel). */
  canceled: "canceled",
} as const satisfies Record<string, ErrorKind>;

export type BuildErrorCode = keyof typeof kinds;

/** The build layer's one error class. */
export class BuildError extends ArcaError {
  override readonly name = "BuildError";
  readonly kind: ErrorKind;
  constructor(
    readonly code: BuildErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.kind = kinds[code];
  }
}
