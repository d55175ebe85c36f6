export { abortReason, sleep, throwIfAborted } from "./abort.js";
export { createDirectFileWriter, type DirectFileWriterOptions } from "./direct-file-writer.js";
export { ArcaError, CodedError, type ErrorKind, errorMessage, findArcaError } from "./errors.js";
export { type HashingTransformOptions, hashingTransform } from "./hashing-transform.js";
export { noSpaceMessage } from "./no-space.js";
export { OffloadedSha256 } from "./offloaded-sha256.js";
export { ownedTempName, type SweepReport, sweepOrphanedTemps, tempOwner } from "./owned-temp.js";
