export { type ControlClient, type ControlService, createControlClient } from "./client/control-client.js";
export {
  type BuildOptions,
  type BuildResult,
  type BuildSettings,
  type BuildSource,
  build,
  imageExportAttrs,
  waitReady,
} from "./engine/build.js";
export {
  distributedExportCompression,
  outputCompression,
  storeExportCompression,
} from "./engine/export-compression.js";
export { stepProxyAttrs } from "./engine/frontend-attrs.js";
export { type OutputSpec, parseOutputSpec } from "./engine/outputs.js";
export { BuildKitError, type BuildKitErrorCode, LOST_BUILDKIT } from "./errors.js";
export {
  CacheOptionsEntrySchema,
  DiskUsageRequestSchema,
  DiskUsageResponseSchema,
  ExporterSchema,
  ListWorkersRequestSchema,
  type ListWorkersResponse,
  ListWorkersResponseSchema,
  PruneRequestSchema,
  SolveRequestSchema,
  SolveResponseSchema,
  StatusRequestSchema,
  type StatusResponse,
  StatusResponseSchema,
  type UsageRecord,
  UsageRecordSchema,
} from "./gen/moby/buildkit/v1/control_pb.js";
export * from "./progress/index.js";
export {
  hostSourceFS,
  type SourceDirent,
  type SourceFile,
  type SourceFS,
  type SourceStat,
  subSourceFS,
  type TransferStats,
} from "./session/filesync/index.js";
export { parseSecretSpec, type SecretSource } from "./session/secrets/index.js";
export { openSessionStream } from "./session/session-stream.js";
