export { buildkitdConfig } from "./buildkitd-config.js";
export { HostBuildkitd, type HostBuildkitdOptions } from "./host-buildkitd.js";
export { requireTool, toolsBin } from "./tools.js";
