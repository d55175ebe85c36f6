export {
  BuildKitManager,
  type BuildKitManagerOptions,
  CACHE_VOLUME,
  SANDBOX_NAME,
} from "./buildkit-manager.js";
export {
  buildkitdConfig,
  EGRESS_PORT,
  type RegistryHostConfig,
  STEP_BRIDGE,
  STEP_GATEWAY,
  STEP_SUBNET,
} from "./buildkitd-config.js";
export { type RegistrySettings, writeChannelConfig } from "./channel-config.js";
export { defaultGcKeepBytes, gcKeepBytesForDisk } from "./gc-policy.js";
export {
  assembleSandboxImage,
  loadSandboxImage,
  pinnedBuildkitVersion,
  SANDBOX_REGISTRY_HOST,
  SandboxError,
  type SandboxImage,
} from "./image/index.js";
export type { Sandbox, SandboxKind, SandboxStatus } from "./sandbox.js";
export {
  DEFAULT_SANDBOX_PIDS_LIMIT,
  defaultSandboxMemory,
  SANDBOX_USERNS,
  type SandboxLimits,
} from "./sandbox-isolation.js";
export { requireTool, toolsBin } from "./tools.js";
export { type KvmProbe, probeKvm } from "./vm/kvm-probe.js";
export { type VmAssets, vmAssets } from "./vm/vm-assets.js";
export type { SandboxContainer } from "./vm/vm-container-view.js";
export { VmSandbox, type VmSandboxOptions } from "./vm/vm-sandbox.js";
