export {
  type BackendSpec,
  DEFAULT_BACKEND,
  mergeBackendSpecs,
  parseBackendFlag,
  readBackendsFile,
  SANDBOX_ADDRESS,
} from "./backend-config.js";
export {
  type BackendHealth,
  BackendPool,
  type BackendView,
  type Lease,
  type Placement,
  type PoolEvent,
  type PoolOptions,
} from "./backend-pool.js";
export { type BackendTarget, REMOTE_PUSH_SCOPE, RemoteTarget, SandboxTarget } from "./backend-target.js";
export { BackendError, type BackendErrorCode } from "./errors.js";
export { rendezvousOrder } from "./rendezvous.js";
