export { parseDockerignore } from "./dockerignore.js";
export { GoMode } from "./file-mode.js";
export {
  createFileSyncService,
  DEFAULT_CHUNK_SIZE,
  type FileSyncOptions,
  type LocalDir,
} from "./file-sync-service.js";
export { type FilterOptions, filteredWalk, type StatInit } from "./filtered-walk.js";
export { type MatchInfo, PatternError, PatternMatcher } from "./pattern-matcher.js";
export {
  hostSourceFS,
  type SourceDirent,
  type SourceFile,
  type SourceFS,
  type SourceStat,
  subSourceFS,
} from "./source-fs.js";
export {
  countTransfer,
  createTransferStats,
  type TransferCounters,
  type TransferStats,
} from "./transfer-stats.js";
