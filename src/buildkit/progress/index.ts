export type { ProgressClock } from "./clock.js";
export {
  type LogEvent,
  type ProgressEvent,
  type StatusEvent,
  toProgressEvents,
  type VertexEvent,
  type VertexPhase,
  vertexPhase,
  type WarningEvent,
} from "./events.js";
export { formatBytes, toFixedGo } from "./go-format.js";
export { mapStatusText } from "./map-text.js";
export { type PlainProgressOptions, PlainProgressPrinter } from "./plain-printer.js";
export { type FailedStep, type ProgressSummary, ProgressTracker } from "./tracker.js";
export { statusHasVertexError } from "./vertex-error.js";
