import path from "node:path";
import { type SweepReport, sweepOrphanedTemps } from "../util/index.js";

/** Where POST /build spools context archives (`build-<pid>-<random>.spool`). */
export function buildTempDir(dataRoot: string): string {
  return path.join(dataRoot, "tmp");
}

/** Where the daemon keeps the last upload of each project for the next one to reuse (see ContextReuse). */
export function keptContextDir(dataRoot: string): string {
  return path.join(dataRoot, "contexts");
}

/**
 * Removes context spools whose daemon is gone (kill -9 mid-build); the daemon runs it at start. Uploads a
 * gone daemon kept for reuse go too, unreported: they were a cache, not leftovers.
 */
export async function sweepBuildTemps(dataRoot: string): Promise<SweepReport> {
  await sweepOrphanedTemps(keptContextDir(dataRoot), ["build-"], { ownToo: true });
  return await sweepOrphanedTemps(buildTempDir(dataRoot), ["build-"]);
}
