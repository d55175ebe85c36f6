export {
  BuildKitManager,
  type BuildKitManagerOptions,
  CACHE_VOLUME,
  SANDBOX_NAME,
  type SandboxStatus,
} from "./buildkit-manager.js";
export { buildkitdConfig } from "./buildkitd-config.js";
export { defaultGcKeepBytes, gcKeepBytesForDisk } from "./gc-policy.js";
export {
  assembleSandboxImage,
  loadSandboxImage,
  pinnedBuildkitVersion,
  SANDBOX_REGISTRY_HOST,
  type SandboxImage,
  SandboxImageError,
} from "./image/index.js";
export { requireTool, toolsBin } from "./tools.js";
