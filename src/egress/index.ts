export { hostPort, normalizeHost, parseIp } from "./address.js";
export { type EgressAuditRecord, formatAuditRecord, parseAuditLine } from "./audit-record.js";
export type { EgressClient, EgressCredential } from "./credentials.js";
export type { EgressDial } from "./dial.js";
export { EgressError, type EgressErrorCode } from "./errors.js";
export { HOST_LOOPBACK_NAME } from "./host-loopback.js";
export {
  type DecideOptions,
  type EgressDecision,
  type EgressMode,
  EgressPolicy,
  type EgressPolicyDoc,
  loadEgressPolicy,
} from "./policy.js";
export {
  type EgressPolicyStatus,
  readEgressPolicyStatus,
  writeEgressPolicyStatus,
} from "./policy-status.js";
export { EgressProxy, type EgressProxyOptions } from "./proxy.js";
export type { EgressSummary } from "./summary.js";
