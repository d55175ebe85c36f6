export { type BuildEgressGrant, openBuildEgress } from "./build-egress.js";
export { BuildJobs } from "./build-jobs.js";
export { BuildMemo, type MemoImages, type MemoizedBuild } from "./build-memo.js";
export {
  type BuildParams,
  type BuildRequestInfo,
  decodeRegistryConfig,
  parseBuildParams,
} from "./build-params.js";
export { keptContextDir, sweepBuildTemps } from "./build-temps.js";
export { type PruneOptions, type PruneReport, parsePruneParams, pruneBuildCache } from "./cache-prune.js";
export { buildCacheUsage, type CacheRecord, cacheRecord, goTime } from "./cache-usage.js";
export { ClassicOutput, type ClassicOutputOptions } from "./classic-output.js";
export { type ContextArchive, contextRelativePath, spoolContext } from "./context-archive.js";
export { ContextReuse } from "./context-reuse.js";
export { BuildError, type BuildErrorCode } from "./errors.js";
export { buildFailure } from "./failure-message.js";
export { type EmitMessage, errorMessageLine, type JsonMessage } from "./json-message.js";
export {
  type BuildLease,
  type BuildRoute,
  type ImageBuildDeps,
  type ImageBuildOutcome,
  type ImageBuildRequest,
  runImageBuild,
} from "./run-build.js";
export { imageIdMessage, traceMessage } from "./trace-output.js";
