import { CodedError, type ErrorKind } from "../util/index.js";

const kinds = {
  tool_missing: "failed_precondition",
  repo_file_missing: "failed_precondition",
  invalid_layout: "failed_precondition",
  assembly_failed: "internal",
  /** The VM sandbox cannot run here (a tool, the kernel or an accelerator is missing). */
  vm_unavailable: "failed_precondition",
  /** The VM did not come up, or went away. */
  vm_failed: "unavailable",
} as const satisfies Record<string, ErrorKind>;

export type SandboxErrorCode = keyof typeof kinds;

/** Errors of the sandbox layer: image assembly, guest disks, the VM. */
export class SandboxError extends CodedError<SandboxErrorCode> {
  override readonly name = "SandboxError";
  constructor(code: SandboxErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, kinds, message, options);
  }
}
