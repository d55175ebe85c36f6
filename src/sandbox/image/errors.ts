import { CodedError, type ErrorKind } from "../../util/index.js";

const kinds = {
  tool_missing: "failed_precondition",
  repo_file_missing: "failed_precondition",
  invalid_layout: "failed_precondition",
  assembly_failed: "internal",
} as const satisfies Record<string, ErrorKind>;

export type SandboxImageErrorCode = keyof typeof kinds;

/**
 * Errors of the sandbox image assembly. The sandbox layer has no errors.ts yet; when it gets one, these
 * codes belong in its closed set and this class goes away.
 */
export class SandboxImageError extends CodedError<SandboxImageErrorCode> {
  override readonly name = "SandboxImageError";
  constructor(code: SandboxImageErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, kinds, message, options);
  }
}
