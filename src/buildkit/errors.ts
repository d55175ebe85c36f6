import { CodedError, type ErrorKind } from "../util/index.js";

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
export class BuildKitError extends CodedError<BuildKitErrorCode> {
  override readonly name = "BuildKitError";
  constructor(code: BuildKitErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, kinds, message, options);
  }
}

/** What a build says when its connection to BuildKit dies under it (a crashed buildkitd or sandbox). */
export const LOST_BUILDKIT =
  "lost connection to BuildKit during the build (it may have crashed; it is restarted automatically, retry the build)";
