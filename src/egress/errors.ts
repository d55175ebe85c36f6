import { CodedError, type ErrorKind } from "../util/index.js";

/** Closed set of egress-layer error codes; the kind is derived, never chosen per throw site. */
const KINDS = {
  /** The policy file or document is malformed (the message names the file and the field). */
  invalid_policy: "invalid_argument",
  /** The policy file cannot be read. */
  policy_unreadable: "failed_precondition",
  /** No daemon runs to reload, or it did not confirm the reload. */
  daemon_unavailable: "unavailable",
  /** The audit log cannot be read. */
  audit_unreadable: "failed_precondition",
  /** The upstream name does not resolve (the proxy answers 502). */
  upstream_unresolved: "unavailable",
  /** The upstream did not accept or answer in time (504). */
  upstream_timeout: "unavailable",
  /** The upstream refused or reset the connection (502). */
  upstream_failed: "unavailable",
  /** The policy refuses the destination (the daemon's own pulls and pushes; the proxy answers 403). */
  denied: "failed_precondition",
} as const satisfies Record<string, ErrorKind>;

export type EgressErrorCode = keyof typeof KINDS;

export class EgressError extends CodedError<EgressErrorCode> {
  override readonly name = "EgressError";
  constructor(code: EgressErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, KINDS, message, options);
  }
}
