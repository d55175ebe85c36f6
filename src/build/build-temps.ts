import path from "node:path";
import { type SweepReport, sweepOrphanedTemps } from "../util/index.js";

/** Where POST /build spools context archives (`build-<pid>-<random>.spool`). */
export function buildTempDir(dataRoot: string): string {
  return path.join(dataRoot, "tmp");
}

/** Removes context spools whose daemon is gone (kill -9 mid-build); the daemon runs it at start. */
export function sweepBuildTemps(dataRoot: string): Promise<SweepReport> {
  return sweepOrphanedTemps(buildTempDir(dataRoot), ["build-"]);
}
